"""The two-process example: SupCon on the digits with closs.distributed under torchrun (gloo, CPU,
loopback) must match a single process on the same global batches, step by step and in the final
parameters (the script checks and exits 1 otherwise). Plain SGD, so a gradient off by the world
size would show."""

import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install scikit-learn)")

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python" / "supcon_digits_distributed.py"


def test_two_processes_match_one():
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", CUDA_VISIBLE_DEVICES="")  # CPU and gloo
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(EXAMPLE), "--steps", "4"], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the 2-process run matches the single-process run" in result.stdout, result.stdout
