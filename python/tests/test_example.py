"""The training examples, shortened: SupCon on scikit-learn's digits must train to a k-NN accuracy
far above chance (10%), and CLIP's two towers (top and bottom halves of each digit, a learnable
logit scale) to a held-out retrieval accuracy far above chance (1 in 450); both above the
untrained networks'."""

import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install scikit-learn)")

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python" / "supcon_digits.py"


def test_supcon_digits_trains():
    result = subprocess.run([sys.executable, str(EXAMPLE), "--epochs", "5", "--device", "cpu",
                             "--min-accuracy", "0.9"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "epoch   5" in result.stdout


def test_clip_digits_trains():
    example = EXAMPLE.parent / "clip_digits.py"
    result = subprocess.run([sys.executable, str(example), "--epochs", "5", "--device", "cpu",
                             "--min-accuracy", "0.02"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "epoch   5" in result.stdout
