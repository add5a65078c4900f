"""`closs bench`, bench/report.py and the two-tower baselines, on the CPU (pytest; CTest runs it with
CLOSS_CLI and CLOSS_LIBRARY set).

The bench runs at tiny sizes so that the whole file takes seconds: its JSON must parse and carry
the schema's fields (bench/output.c), the narrowing options must narrow, bad command lines
must fail with one line on stderr, nothing on stdout and no file; report.py must turn that JSON
plus a synthetic baseline record into report.md and PNGs, and without matplotlib into report.md
that says how to add the plots.
"""

import json
import os
import subprocess
import sys

import pytest

CLI = os.environ.get("CLOSS_CLI", os.path.join(os.path.dirname(__file__), "..", "build", "closs"))
REPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "report.py")
POINT_FIELDS = {"implementation", "loss", "dtype", "rows", "dim", "status", "error", "repeats", "median_ms",
                "rate", "rate_unit", "floor_ms", "floor_fraction", "peak_extra_bytes", "memory_method",
                "check_error", "check_tolerance", "check_method", "loss_value"}
TOP_FIELDS = {"schema", "source", "closs_version", "created_utc", "device", "ceilings", "points"}


def bench(*args):
    return subprocess.run([CLI, "bench", *args], capture_output=True, text=True, timeout=300)


def gpu_ran():
    return "GPU part skipped" not in bench("--loss", "pair", "--rows", "8", "--dim", "4", "--dtype", "f64",
                                           "--repeats", "1").stdout


def test_pair_json_has_the_schema(tmp_path):
    path = tmp_path / "pair.json"
    result = bench("--loss", "pair", "--rows", "300", "--dim", "16", "--repeats", "3", "--dtype", "f64",
                   "--json", str(path))
    assert result.returncode == 0, result.stderr
    document = json.loads(path.read_text())
    assert TOP_FIELDS <= set(document)
    assert document["schema"] == "closs-bench/1" and document["source"] == "closs bench"
    assert set(document["device"]) == {"gpu_ran", "gpu_reason", "gpu_name"}
    if not document["device"]["gpu_ran"]:
        assert document["device"]["gpu_reason"] and document["ceilings"] is None
        assert "GPU part skipped: " + document["device"]["gpu_reason"] in result.stdout
    [point] = document["points"]
    assert set(point) == POINT_FIELDS
    assert point["implementation"] == "closs-reference" and point["loss"] == "pair"
    assert (point["dtype"], point["rows"], point["dim"], point["repeats"]) == ("f64", 300, 16, 3)
    assert point["status"] == "ok" and point["error"] is None
    assert point["median_ms"] > 0 and point["rate"] > 0 and point["rate_unit"] == "GB/s"
    assert point["check_method"] == "finite-differences" and point["check_error"] < point["check_tolerance"]
    assert point["floor_ms"] is None and point["peak_extra_bytes"] is None
    assert "pair" in result.stdout and "closs-reference" in result.stdout


def test_narrowing_selects_losses_rows_and_dims(tmp_path):
    path = tmp_path / "narrow.json"
    result = bench("--loss", "ntxent", "--rows", "31,64", "--dim", "3,8", "--dtype", "f64", "--repeats", "1",
                   "--json", str(path))
    assert result.returncode == 0, result.stderr
    points = json.loads(path.read_text())["points"]
    # NT-Xent takes two views per sample: 31 rows become 32.
    assert sorted((p["loss"], p["rows"], p["dim"]) for p in points) == [
        ("ntxent", 32, 3), ("ntxent", 32, 8), ("ntxent", 64, 3), ("ntxent", 64, 8)]
    assert all(p["rate_unit"] == "GFLOP/s" for p in points)


def test_gpu_only_dtype_runs_no_cpu_point(tmp_path):
    path = tmp_path / "gpu.json"
    result = bench("--loss", "cosine", "--rows", "64", "--dim", "8", "--dtype", "bf16", "--repeats", "1",
                   "--json", str(path))
    assert result.returncode == 0, result.stderr
    points = json.loads(path.read_text())["points"]
    assert all(p["implementation"] == "closs" and p["dtype"] == "bf16" for p in points)
    if "GPU part skipped" in result.stdout:
        assert points == []


def test_list_sizes_is_the_narrowed_sweep():
    result = bench("--list-sizes", "--loss", "ntxent", "--rows", "5,8", "--dim", "64", "--dtype", "bf16,f16")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == ["ntxent bf16 6 64", "ntxent bf16 8 64", "ntxent f16 6 64",
                                          "ntxent f16 8 64"]
    full = bench("--list-sizes").stdout.splitlines()
    assert {line.split()[0] for line in full} == {"pair", "triplet", "ntxent", "supcon", "cosine"}
    assert {line.split()[1] for line in full} == {"f32", "bf16", "f16"}


@pytest.mark.parametrize("args, expected", [
    (["--bogus"], "unknown or incomplete option '--bogus'"),
    (["--rows"], "unknown or incomplete option '--rows'"),
    (["--loss", "hinge"], "unknown loss 'hinge'"),
    (["--rows", "0"], "--rows 0: expected positive integers"),
    (["--rows", "12,"], "--rows 12,: expected positive integers"),
    (["--dim", "x"], "--dim x: expected positive integers"),
    (["--dtype", "f8"], "--dtype f8: expected a list of f32, bf16, f16, f64"),
    (["--repeats", "1,2"], "--repeats 1,2: expected a positive integer"),
    (["--path", "tiled"], "--path tiled: expected auto, fused or chunked"),
])
def test_bad_options_fail_with_one_line_and_write_nothing(tmp_path, args, expected):
    path = tmp_path / "never.json"
    result = bench("--json", str(path), *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("closs: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr
    assert not path.exists()


def test_help_lists_the_options():
    result = bench("--help")
    assert result.returncode == 0 and result.stderr == ""
    for option in ("--loss", "--rows", "--dim", "--dtype", "--path", "--repeats", "--json", "--list-sizes"):
        assert option in result.stdout


# ---- bench/report.py --------------------------------------------------------------------------

def closs_and_baseline(tmp_path):
    """closs bench's JSON for pair at two sizes, and a synthetic torch-eager file beside it."""
    closs = tmp_path / "closs.json"
    result = bench("--loss", "pair", "--rows", "128,512", "--dim", "8", "--dtype", "f64", "--repeats", "2",
                   "--json", str(closs))
    assert result.returncode == 0, result.stderr
    document = json.loads(closs.read_text())
    baseline = dict(document, source="synthetic baseline", torch_version="0.0", points=[])
    for point in document["points"]:
        # A made-up GPU pair of points per size: closs at twice its floor, eager 3× slower.
        gpu = dict(point, dtype="bf16", floor_ms=point["median_ms"] / 2, peak_extra_bytes=100.0 * point["rows"])
        baseline["points"].append(dict(gpu, implementation="closs"))
        baseline["points"].append(dict(gpu, implementation="torch-eager", median_ms=3 * point["median_ms"],
                                       peak_extra_bytes=1000.0 * point["rows"],
                                       memory_method="torch.max_memory_allocated"))
    baseline["points"].append(dict(gpu, implementation="torch-compile", status="oom", median_ms=None,
                                   error="out of memory"))
    # and the chunked path and the WMMA kernels of NT-Xent at one of the sizes (`closs bench --path
    # chunked`, CLOSS_TILE_KERNELS=wmma)
    for implementation, median in (("closs", 2.0), ("closs-chunked", 5.0), ("closs-wmma", 4.0)):
        baseline["points"].append(dict(gpu, implementation=implementation, loss="ntxent", median_ms=median))
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    return closs, path


def test_report_writes_tables_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    closs, baseline = closs_and_baseline(tmp_path)
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, REPORT, str(closs), str(baseline), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    assert "## CPU reference" in report and "| pair | 128 | 8 |" in report
    assert "torch-compile pair bf16 rows=512 dim=8: oom" in report
    row = next(line for line in report.splitlines() if line.startswith("| bf16 | 128 | 8 |"))
    assert "| 3.00× |" in row and "| 50 % |" in row and "| 0.0 | 0.1 |" in row, row
    assert "chunked ms" not in report.split("### pair")[1].split("###")[0]  # no chunked points for pair
    ntxent = report.split("### ntxent")[1]
    assert "| closs ms | chunked ms | WMMA ms |" in ntxent and "| 2.000 | 5.000 | 4.000 |" in ntxent, ntxent
    assert "![pair](pair.png)" in report
    png = (out / "pair.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert (out / "closs.json").exists() and (out / "baseline.json").exists()


def test_report_without_matplotlib_says_how_to_add_plots(tmp_path):
    closs, baseline = closs_and_baseline(tmp_path)
    blocker = tmp_path / "no_matplotlib"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text("raise ImportError('hidden by the test')\n")
    out = tmp_path / "report"
    environment = dict(os.environ, PYTHONPATH=str(blocker))
    result = subprocess.run([sys.executable, REPORT, str(closs), str(baseline), "--out", str(out)],
                            capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    assert "matplotlib was not available" in report and "python3 bench/report.py" in report
    assert "re-run where it is" in result.stderr
    assert not list(out.glob("*.png"))


def test_report_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"schema": "something-else", "points": []}))
    result = subprocess.run([sys.executable, REPORT, str(path), "--out", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "schema" in result.stderr


# ---- bench/baselines/two_tower.py -----------------------------------------------------------------

TWO_TOWER = os.path.join(os.path.dirname(REPORT), "baselines", "two_tower.py")


def test_two_tower_baselines_run_and_report_on_the_cpu(tmp_path):
    """The logic of the two-tower run without a GPU: closs (its PyTorch package, the CPU reference)
    and OpenCLIP's own loss code on tiny float64 inputs, each checked against float64 torch; Inf-CL
    and memeff, which need a GPU, recorded as errors; then report.py's side-by-side tables."""
    pytest.importorskip("torch", reason="PyTorch is not installed (scripts/install-deps.sh --ci installs it)")
    if os.environ.get("CLOSS_LIBRARY_SANITIZED"):
        pytest.skip("libcloss is built with sanitizers (%s): python3 cannot load it unpreloaded; the plain "
                    "build runs this test" % os.environ["CLOSS_LIBRARY_SANITIZED"])
    path = tmp_path / "two-tower.json"
    result = subprocess.run([sys.executable, TWO_TOWER, "--device", "cpu", "--rows", "64", "--dim", "16",
                             "--dtype", "f64", "--repeats", "1", "--json", str(path), "--implementations",
                             "closs-torch,openclip-eager,inf-cl,memeff"],  # torch.compile: minutes here
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    document = json.loads(path.read_text())
    assert TOP_FIELDS <= set(document) and document["schema"] == "closs-bench/1"
    points = {(p["implementation"], p["loss"]): p for p in document["points"]}
    assert all(set(p) == POINT_FIELDS for p in points.values())
    assert set(points) == {(name, loss) for name in ("closs-torch", "openclip-eager") for loss in ("clip", "siglip")
                           } | {("inf-cl", "clip"), ("memeff", "clip")}
    for loss in ("clip", "siglip"):
        ours = points[("closs-torch", loss)]
        assert ours["status"] == "ok" and ours["check_error"] < 1e-12, ours
        openclip = points[("openclip-eager", loss)]
        if os.environ.get("CI") or openclip["status"] == "ok":  # CI installs open_clip_torch
            assert openclip["status"] == "ok" and openclip["check_error"] < 1e-12, openclip
            assert abs(openclip["loss_value"] - ours["loss_value"]) < 1e-12 * abs(ours["loss_value"])
    out = tmp_path / "report"
    report_run = subprocess.run([sys.executable, REPORT, str(path), "--out", str(out)], capture_output=True,
                                text=True, timeout=120)
    assert report_run.returncode == 0, report_run.stderr
    report = (out / "report.md").read_text()
    assert "## CLIP and SigLIP: closs against OpenCLIP" in report
    assert "| f64 | 64 | 16 | " in report.split("### clip")[1] and "× openclip-eager" in report
