#!/usr/bin/env python3
"""One benchmark report from closs's and the baselines' JSON (schema "closs-bench/1", documented
at the top of bench/output.c).

    python3 bench/report.py closs.json rowwise.json contrastive.json [--out DIR]

writes DIR/report.md (default DIR: bench/results/<date>-<gpu>/, the date and device taken from the
inputs) with, per loss, one table row per (dtype, rows, dim): the time of each implementation,
closs's speed-up over torch eager and torch.compile, closs's % of the hardware floor, and the peak
extra memory of each; then the CPU reference's points and every correctness check. Beside it,
one PNG per loss: time and memory against batch size, log-log, one line per implementation (and
dim), one column per dtype. Without matplotlib the report is written without plots and says how
to add them later on a machine that has it.
"""

import argparse
import collections
import datetime
import json
import math
import os
import re
import shutil
import sys

SCHEMA = "closs-bench/1"
LOSSES = ["pair", "triplet", "cosine", "ntxent", "supcon", "clip", "siglip"]
TWO_TOWER = {"clip", "siglip"}
DTYPES = ["f32", "bf16", "f16", "f64"]
# "closs" is the AUTO path; closs-fused and closs-chunked come from `closs bench --path`, closs-wmma
# and closs-simt from CLOSS_TILE_KERNELS (the fused path's kernels other than the tile engine).
# closs-torch and the libraries after it: bench/baselines/two_tower.py (CLIP, SigLIP).
TWO_TOWER_IMPLEMENTATIONS = ["closs-torch", "openclip-eager", "openclip-compile", "inf-cl", "memeff"]
IMPLEMENTATIONS = ["closs", "closs-fused", "closs-chunked", "closs-wmma", "closs-simt", "torch-eager", "torch-compile",
                   "closs-reference"] + TWO_TOWER_IMPLEMENTATIONS
COLORS = {"closs": "C0", "torch-eager": "C1", "torch-compile": "C2", "closs-reference": "C3", "closs-chunked": "C4",
          "closs-fused": "C5", "closs-torch": "C6", "openclip-eager": "C7", "openclip-compile": "C8",
          "inf-cl": "C9", "memeff": "k", "closs-wmma": "tab:olive", "closs-simt": "tab:gray"}
# The other closs implementations a GPU table shows beside "closs" where they were measured.
ALTERNATIVES = [("closs-chunked", "chunked"), ("closs-wmma", "WMMA"), ("closs-simt", "SIMT")]
DIM_STYLES = ["-", "--", ":", "-."]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(paths):
    """(documents, points): every input file, and all their points with the file's source."""
    documents, points = [], []
    for path in paths:
        with open(path) as handle:
            document = json.load(handle)
        if document.get("schema") != SCHEMA:
            raise SystemExit("report.py: %s: schema %r, expected %r" % (path, document.get("schema"), SCHEMA))
        documents.append(document)
        for point in document["points"]:
            points.append(dict(point, source=document.get("source", path)))
    return documents, points


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def default_out(documents):
    created = min((d.get("created_utc") or "" for d in documents), default="") or \
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    names = [d.get("device", {}).get("gpu_name") for d in documents]
    gpu = next((n for n in names if n), None)
    return os.path.join(REPO, "bench", "results", "%s-%s" % (created[:10], slug(gpu) if gpu else "cpu"))


def ms(point):
    if point is None:
        return "—"
    if point["status"] != "ok":
        return point["status"]
    return "%.3f" % point["median_ms"] if point["median_ms"] is not None else "—"


def mb(point):
    if point is None or point["status"] != "ok" or point.get("peak_extra_bytes") is None:
        return "—"
    return "%.1f" % (point["peak_extra_bytes"] / 1e6)


def ratio(numerator, denominator):
    if not numerator or not denominator or numerator["status"] != "ok" or denominator["status"] != "ok":
        return "—"
    if not numerator.get("median_ms") or not denominator.get("median_ms"):
        return "—"
    return "%.2f×" % (numerator["median_ms"] / denominator["median_ms"])


def percent_of_floor(point):
    if not point or point["status"] != "ok" or not point.get("floor_ms") or not point.get("median_ms"):
        return "—"
    return "%.0f %%" % (100.0 * point["floor_ms"] / point["median_ms"])


def grouped(points, implementations):
    """{loss: {(dtype, rows, dim): {implementation: point}}}, the later file winning ties."""
    groups = collections.defaultdict(lambda: collections.defaultdict(dict))
    for p in points:
        if p["implementation"] in implementations:
            groups[p["loss"]][(p["dtype"], p["rows"], p["dim"])][p["implementation"]] = p
    return groups


def order(key):
    dtype, rows, dim = key
    return (DTYPES.index(dtype) if dtype in DTYPES else len(DTYPES), dim, rows)


def device_lines(documents):
    lines = []
    for d in documents:
        device = d.get("device") or {}
        where = device.get("gpu_name") or "no GPU (%s)" % (device.get("gpu_reason") or "not recorded")
        extra = ", ".join("%s %s" % (k, v) for k, v in sorted(d.items())
                          if k in ("torch_version", "closs_version") and v)
        lines.append("- `%s` (%s): %s, %s" % (d.get("source"), d.get("created_utc"), where, extra or "—"))
        ceilings = d.get("ceilings")
        if ceilings:
            lines.append("  - ceilings measured in that run: copy %s GB/s (read + write), bf16 GEMM %s TFLOP/s, "
                         "exp %s /s" % (fmt(ceilings.get("copy_gbs"), "%.0f"),
                                        fmt(ceilings.get("gemm_bf16_tflops"), "%.0f"),
                                        fmt(ceilings.get("exp_per_second"), "%.3g")))
    return lines


def fmt(value, pattern):
    return pattern % value if isinstance(value, (int, float)) and math.isfinite(value) else "—"


def gpu_tables(points):
    lines = []
    groups = grouped(points, {"closs", "torch-eager", "torch-compile"} | {name for name, _ in ALTERNATIVES})
    for loss in sorted(set(groups) - TWO_TOWER, key=lambda name: LOSSES.index(name) if name in LOSSES else 99):
        # NT-Xent's and SupCon's chunked path (closs bench --path chunked) and other fused kernels
        # (CLOSS_TILE_KERNELS), where they were measured
        extra = [(name, title) for name, title in ALTERNATIVES if any(name in row for row in groups[loss].values())]
        lines += ["", "### %s" % loss, "",
                  "| dtype | rows | dim | closs ms |%s eager ms | compile ms | × eager | × compile | closs %% of floor "
                  "| rate | closs MB | eager MB | compile MB |" % "".join(" %s ms |" % title for _, title in extra),
                  "| --- | ---: | ---: | ---: |%s ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
                  % (" ---: |" * len(extra))]
        for key in sorted(groups[loss], key=order):
            row = groups[loss][key]
            closs, eager, compiled = row.get("closs"), row.get("torch-eager"), row.get("torch-compile")
            rate = "—"
            if closs and closs["status"] == "ok" and closs.get("rate") is not None:
                rate = "%.3g %s" % (closs["rate"], closs["rate_unit"])
            lines.append("| %s | %d | %d | %s |%s %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                key[0], key[1], key[2], ms(closs), "".join(" %s |" % ms(row.get(name)) for name, _ in extra),
                ms(eager), ms(compiled), ratio(eager, closs), ratio(compiled, closs), percent_of_floor(closs), rate,
                mb(closs), mb(eager), mb(compiled)))
    return lines


def two_tower_tables(points):
    """CLIP and SigLIP: every implementation's time and memory side by side (bench/baselines/
    two_tower.py; closs's own `closs bench` point beside them where it was measured), and how
    many times closs-torch's time each other one takes."""
    groups = grouped(points, set(TWO_TOWER_IMPLEMENTATIONS) | {"closs"})
    lines = []
    for loss in [name for name in ("clip", "siglip") if name in groups]:
        present = [name for name in ["closs"] + TWO_TOWER_IMPLEMENTATIONS
                   if any(name in row for row in groups[loss].values())]
        others = [name for name in present if name != "closs-torch"]
        lines += ["", "### %s" % loss, "",
                  "| dtype | rows | dim | %s | %s | closs-torch %% of floor |" % (
                      " | ".join("%s ms | %s MB" % (name, name) for name in present),
                      " | ".join("× %s" % name for name in others)),
                  "| --- | ---: | ---: |%s%s ---: |" % (" ---: | ---: |" * len(present), " ---: |" * len(others))]
        for key in sorted(groups[loss], key=order):
            row = groups[loss][key]
            ours = row.get("closs-torch")
            lines.append("| %s | %d | %d | %s | %s | %s |" % (
                key[0], key[1], key[2], " | ".join("%s | %s" % (ms(row.get(n)), mb(row.get(n))) for n in present),
                " | ".join(ratio(row.get(n), ours) for n in others), percent_of_floor(ours)))
    return lines


def cpu_table(points):
    cpu = [p for p in points if p["implementation"] == "closs-reference"]
    if not cpu:
        return []
    lines = ["", "## CPU reference (double precision)", "",
             "| loss | rows | dim | median ms | rate | gradient check | status |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for p in cpu:
        lines.append("| %s | %d | %d | %s | %s | %s | %s |" % (
            p["loss"], p["rows"], p["dim"], ms(p),
            "%.3g %s" % (p["rate"], p["rate_unit"]) if p.get("rate") is not None else "—",
            fmt(p.get("check_error"), "%.1e"), p["status"]))
    return lines


def check_table(points):
    seen, lines = set(), []
    for p in points:
        if p["implementation"] == "closs-reference" or p.get("check_error") is None:
            continue
        key = (p["implementation"], p["loss"], p["dtype"], p.get("check_method"))
        if key in seen:
            continue
        seen.add(key)
        within = p.get("check_tolerance") is None or p["check_error"] <= p["check_tolerance"]
        # closs must meet its tolerance; PyTorch's own error in a low precision is information.
        verdict = "ok" if within else "**FAILED**" if p["implementation"].startswith("closs") else "above"
        lines.append("| %s | %s | %s | %s | %.2e | %s | %s |" % (
            p["implementation"], p["loss"], p["dtype"], p.get("check_method") or "—", p["check_error"],
            fmt(p.get("check_tolerance"), "%.0e"), verdict))
    if not lines:
        return []
    return ["", "## Correctness checks", "",
            "| implementation | loss | dtype | method | error | tolerance | verdict |",
            "| --- | --- | --- | --- | ---: | ---: | --- |"] + lines


def problems(points):
    bad = [p for p in points if p["status"] != "ok"]
    if not bad:
        return []
    lines = ["", "## Points that did not run cleanly", ""]
    for p in bad:
        lines.append("- %s %s %s rows=%d dim=%d: %s — %s" % (
            p["implementation"], p["loss"], p["dtype"], p["rows"], p["dim"], p["status"], p.get("error") or ""))
    return lines


def plot(points, out_dir):
    """One PNG per loss; returns their file names, or None when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    files = []
    by_loss = collections.defaultdict(list)
    for p in points:
        if p["status"] == "ok" and p.get("median_ms"):
            by_loss[p["loss"]].append(p)
    for loss in sorted(by_loss, key=lambda name: LOSSES.index(name) if name in LOSSES else 99):
        dtypes = sorted({p["dtype"] for p in by_loss[loss]}, key=lambda d: DTYPES.index(d) if d in DTYPES else 9)
        figure, axes = plt.subplots(2, len(dtypes), figsize=(4.2 * len(dtypes) + 1, 7), squeeze=False)
        for column, dtype in enumerate(dtypes):
            lines = collections.defaultdict(list)
            for p in by_loss[loss]:
                if p["dtype"] == dtype:
                    lines[(p["implementation"], p["dim"])].append(p)
            dims = sorted({dim for _, dim in lines})
            for (implementation, dim), series in sorted(lines.items(), key=lambda item: (
                    IMPLEMENTATIONS.index(item[0][0]) if item[0][0] in IMPLEMENTATIONS else 9, item[0][1])):
                series.sort(key=lambda p: p["rows"])
                label = implementation if len(dims) == 1 else "%s, D=%d" % (implementation, dim)
                style = dict(marker="o", label=label, color=COLORS.get(implementation, "C4"),
                             linestyle=DIM_STYLES[dims.index(dim) % len(DIM_STYLES)])
                rows = [p["rows"] for p in series]
                axes[0][column].plot(rows, [p["median_ms"] for p in series], **style)
                memory = [(p["rows"], p["peak_extra_bytes"] / 2**20) for p in series
                          if p.get("peak_extra_bytes")]
                if memory:
                    axes[1][column].plot(*zip(*memory), **style)
            axes[0][column].set_title("%s, %s" % (loss, dtype))
            axes[0][column].set_ylabel("forward+backward, ms (median)")
            axes[1][column].set_ylabel("peak extra device memory, MiB")
            for row in (0, 1):
                axis = axes[row][column]
                axis.set_xscale("log", base=2)
                axis.set_xlabel("batch rows")
                axis.grid(True, which="both", alpha=0.3)
                if axis.lines:
                    axis.set_yscale("log")
                    axis.legend(fontsize=8)
                else:
                    axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
        figure.tight_layout()
        name = "%s.png" % loss
        figure.savefig(os.path.join(out_dir, name), dpi=90)
        plt.close(figure)
        files.append(name)
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="JSON files in the closs-bench/1 schema")
    parser.add_argument("--out", help="output folder (default bench/results/<date>-<gpu>/)")
    args = parser.parse_args(argv)

    documents, points = load(args.inputs)
    out_dir = args.out or default_out(documents)
    os.makedirs(out_dir, exist_ok=True)
    kept = []  # the inputs, copied beside the report so that it can be re-made from its folder
    for path in args.inputs:
        target = os.path.join(out_dir, os.path.basename(path))
        if os.path.abspath(path) != os.path.abspath(target):
            shutil.copyfile(path, target)
        kept.append(target)
    plots = plot(points, out_dir)

    lines = ["# Benchmark report", "",
             "Forward+backward of each loss, median time (CUDA events on the GPU), peak extra device "
             "memory and the share of the hardware floor reached. Written by `bench/report.py` from:", ""]
    lines += device_lines(documents)
    lines += ["", "## GPU: closs against PyTorch", "",
              "× eager and × compile: the PyTorch time over closs's (above 1: closs is faster). "
              "% of floor: the floor over closs's time (row-wise: bytes read and written over the copy "
              "bandwidth; NT-Xent/SupCon: max(6·M²·D / bf16 GEMM rate, 2·M² / exp rate)). "
              "Memory: closs, workspace + gradients + loss; PyTorch, the allocator's peak over the step."]
    gpu = gpu_tables(points)
    lines += gpu if gpu else ["", "No GPU points in these files."]
    two_tower = two_tower_tables(points)
    if two_tower:
        lines += ["", "## CLIP and SigLIP: closs against OpenCLIP, Inf-CL and memeff", "",
                  "Each implementation's forward+backward from raw features, normalisation included "
                  "(bench/baselines/two_tower.py says what each computes); closs-torch is closs through its "
                  "PyTorch package. × NAME: NAME's time over closs-torch's (above 1: closs is faster). "
                  "% of floor: 8·N²·D flops for CLIP, 6·N²·D for SigLIP, at the measured bf16 GEMM rate, over "
                  "closs-torch's time."] + two_tower

    lines += cpu_table(points) + check_table(points) + problems(points)
    lines += ["", "## Plots", ""]
    if plots is None:
        rerun = "python3 bench/report.py %s --out %s" % (" ".join(kept), out_dir)
        lines.append("matplotlib was not available: no plots. To add them, on a machine with matplotlib run "
                     "`%s` (the JSON files are kept next to this report)." % rerun)
        print("report.py: matplotlib is not installed, no plots; re-run where it is: %s" % rerun, file=sys.stderr)
    else:
        lines += ["![%s](%s)" % (name[:-4], name) for name in plots] or ["No points to plot."]
    with open(os.path.join(out_dir, "report.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("report.py: wrote %s (%d points, %s plots)" % (
        os.path.join(out_dir, "report.md"), len(points), "no" if plots is None else len(plots)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
