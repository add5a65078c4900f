"""What a PyTorch user would otherwise write for each of closs's losses, with the parameters
`closs bench` uses on the GPU (bench/gpu.c), and inputs drawn the same way.

  pair     the contract's formula in torch ops (euclidean distance, margin 1)
  triplet  F.triplet_margin_loss(margin=1, p=2, eps=0): euclidean distance, as closs bench's
           triplet runs with CLOSS_DISTANCE_EUCLIDEAN
  cosine   F.cosine_embedding_loss(target = 2y − 1, margin 0)
  ntxent   F.cross_entropy over the self-masked similarity matrix (SimCLR's usual code), τ = 0.1
  supcon   SupConLoss as the official SupContrast code computes it (max-shifted logits, masks,
           mean log-probability of the positives), τ = τ_b = 0.07, two views per class, so that its
           mean over all anchors equals closs's mean over anchors with a positive
"""

import torch
import torch.nn.functional as F

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "f64": torch.float64}
INPUTS = {"pair": 2, "triplet": 3, "cosine": 2, "ntxent": 1, "supcon": 1}
ROWWISE = {"pair", "triplet", "cosine"}


def pair(xs, y):
    d = torch.linalg.vector_norm(xs[0] - xs[1], dim=1)
    return (y * d.square() + (1 - y) * torch.clamp(1.0 - d, min=0).square()).mean()


def triplet(xs, y):
    del y
    return F.triplet_margin_loss(xs[0], xs[1], xs[2], margin=1.0, p=2, eps=0.0)


def cosine(xs, y):
    return F.cosine_embedding_loss(xs[0], xs[1], 2 * y - 1, margin=0.0)


def ntxent(xs, labels, temperature=0.1):
    del labels  # the positives are the other view: rows i and i + N
    z = xs[0]
    rows = z.shape[0]
    zhat = F.normalize(z, dim=1)
    logits = zhat @ zhat.t() / temperature
    self_mask = torch.eye(rows, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    half = rows // 2
    targets = torch.cat([torch.arange(half, rows), torch.arange(0, half)]).to(z.device)
    return F.cross_entropy(logits, targets)


def supcon(xs, labels, temperature=0.07, base_temperature=0.07):
    z = xs[0]
    rows = z.shape[0]
    zhat = F.normalize(z, dim=1)
    column = labels.view(-1, 1)
    mask = torch.eq(column, column.t()).to(zhat.dtype)
    logits = zhat @ zhat.t() / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    logits_mask = 1 - torch.eye(rows, dtype=zhat.dtype, device=z.device)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    positives = mask.sum(1)
    positives = torch.where(positives < 1e-6, torch.ones_like(positives), positives)
    mean_log_prob_pos = (mask * log_prob).sum(1) / positives
    return (-(temperature / base_temperature) * mean_log_prob_pos).mean()


LOSSES = {"pair": pair, "triplet": triplet, "cosine": cosine, "ntxent": ntxent, "supcon": supcon}


def make_inputs(loss, rows, dim, dtype, device, seed):
    """(inputs, labels) as closs bench draws them: uniform [-1, 1) features; y alternating 0/1
    (pair, cosine); SupCon labels i mod rows/2 (two views per class)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    xs = [(2 * torch.rand(rows, dim, device=device, generator=generator) - 1).to(dtype)
          for _ in range(INPUTS[loss])]
    index = torch.arange(rows, device=device)
    if loss == "supcon":
        labels = index % max(rows // 2, 1)
    else:
        labels = (index % 2).to(dtype)
    return xs, labels
