"""Bad arguments give Python exceptions carrying closs's message (which argument, which value,
why), at construction for module parameters, and leave nothing half done."""

import pytest
import torch

import closs


@pytest.mark.parametrize("build, words", [
    (lambda: closs.NTXentLoss(temperature=0.0), "temperature = 0"),
    (lambda: closs.NTXentLoss(temperature=float("nan")), "temperature = nan"),
    (lambda: closs.SupConLoss(base_temperature=-1.0), "base_temperature = -1"),
    (lambda: closs.ContrastiveLoss(margin=-1.0), "margin = -1"),
    (lambda: closs.ContrastiveLoss(distance="sqeuclidean"), "distance"),
    (lambda: closs.CosineContrastiveLoss(margin=2.0), "margin = 2"),
    (lambda: closs.TripletMarginLoss(margin=float("inf")), "margin = inf"),
])
def test_bad_parameters_fail_at_construction_with_closs_message(build, words):
    with pytest.raises(closs.ClossArgumentError, match=words) as error:
        build()
    assert isinstance(error.value, ValueError)
    assert error.value.status == 1 and error.value.detail


@pytest.mark.parametrize("build, words", [
    (lambda: closs.NTXentLoss(reduction="avg"), "reduction = 'avg': must be one of 'mean', 'sum', 'none'"),
    (lambda: closs.TripletMarginLoss(distance="manhattan"), "distance = 'manhattan'"),
    (lambda: closs.SupConLoss(path="fast"), "path = 'fast'"),
])
def test_bad_choices(build, words):
    with pytest.raises(ValueError, match=words):
        build()


def test_shape_errors_name_the_argument():
    with pytest.raises(closs.ClossArgumentError, match="rows"):
        closs.ntxent_loss(torch.randn(5, 3))  # NT-Xent needs an even number of rows
    with pytest.raises(closs.ClossArgumentError, match="x2"):
        closs.pair_contrastive_loss(torch.randn(4, 3), torch.randn(4, 2), torch.ones(4))
    with pytest.raises(closs.ClossArgumentError, match="labels"):
        closs.supcon_loss(torch.randn(4, 3), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="anchor must be 2-D"):
        closs.triplet_margin_loss(torch.randn(3), torch.randn(3), torch.randn(3))


def test_label_values_are_checked():
    with pytest.raises(closs.ClossArgumentError, match="y"):
        closs.pair_contrastive_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0.0, 1.5]))
    with pytest.raises(TypeError, match="integer"):
        closs.supcon_loss(torch.randn(4, 3), torch.zeros(4))


def test_check_inputs_reports_nonfinite():
    z = torch.randn(4, 3)
    z[2, 1] = float("nan")
    assert torch.isnan(closs.ntxent_loss(z))  # NaN propagates by default
    with pytest.raises(closs.ClossNonfiniteInputError, match="z"):
        closs.ntxent_loss(z, check_inputs=True)


def test_types_and_devices():
    with pytest.raises(TypeError, match="dtype torch.int64"):
        closs.ntxent_loss(torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        closs.triplet_margin_loss(torch.randn(2, 2), [[0.0, 1.0]], torch.randn(2, 2))
    with pytest.raises(ValueError, match="not on meta"):
        closs.ntxent_loss(torch.randn(4, 3, device="meta"))
    with pytest.raises(ValueError, match="labels is None"):
        closs.SupConLoss()(torch.randn(4, 3))


def test_no_gradient_is_written_when_the_call_fails():
    z = torch.randn(4, 3, requires_grad=True)
    with pytest.raises(closs.ClossArgumentError):
        closs.supcon_loss(z, torch.zeros(5, dtype=torch.int64)).backward()
    assert z.grad is None


def test_a_missing_closs_library_is_named(tmp_path):
    """A CLOSS_LIBRARY that does not exist is an error naming it, not a fallback to another copy."""
    import os
    import subprocess
    import sys
    missing = tmp_path / "libcloss.so"
    environment = dict(os.environ, CLOSS_LIBRARY=str(missing))
    result = subprocess.run([sys.executable, "-c", "import closs; closs.NTXentLoss()"], env=environment,
                            capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode != 0 and str(missing) in result.stderr
