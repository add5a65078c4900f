"""closs for PyTorch: contrastive and metric-learning losses backed by libcloss, on the CPU (the
double-precision reference) and on CUDA (the fused kernels), differentiable through autograd, as
registered operators (torch.ops.closs.*: see _ops.py) that torch.compile and torch.export trace.

    import closs
    loss = closs.NTXentLoss(temperature=0.1)(torch.cat([z1, z2]))
    loss.backward()
    loss = closs.ClipLoss()(image_features, text_features, model.logit_scale.exp())   # as OpenCLIP's

The library is found through $CLOSS_LIBRARY, the copy `pip install` put beside this file, the
source tree's build/, or the system's library path, in that order, and must be this package's
version (closs.ClossVersionError otherwise).
"""

from ._capi import (ClossArgumentError, ClossError, ClossNonfiniteInputError, ClossNotSupportedError,
                    ClossVersionError, library, package_version)
from .functional import (clip_loss, cosine_contrastive_loss, ntxent_loss, pair_contrastive_loss, siglip_loss,
                         supcon_loss, triplet_margin_loss)
from .modules import (ClipLoss, ContrastiveLoss, CosineContrastiveLoss, NTXentLoss, SigLipLoss, SupConLoss,
                      TripletMarginLoss)

__all__ = ["ContrastiveLoss", "TripletMarginLoss", "NTXentLoss", "SupConLoss", "CosineContrastiveLoss", "ClipLoss",
           "SigLipLoss", "pair_contrastive_loss", "triplet_margin_loss", "ntxent_loss", "supcon_loss",
           "cosine_contrastive_loss", "clip_loss", "siglip_loss", "ClossError", "ClossArgumentError", "ClossNonfiniteInputError",
           "ClossNotSupportedError", "ClossVersionError", "library", "library_version", "cuda_available"]

__version__ = package_version()


def library_version():
    """The version of the libcloss this package loaded (on first use): always __version__, since a
    library of another version raises ClossVersionError, naming both and where the library was found."""
    return library().version()


def cuda_available():
    """True when libcloss was built with CUDA (a device is still needed to run on one)."""
    return library().cuda_available()
