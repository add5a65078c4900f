#!/usr/bin/env python3
"""An independent float64 NumPy implementation of docs/contract.md: values and analytic gradients.

Written from the contract alone (not from host/ref), so that it can judge the C library.

Every function returns ``(loss, grads)``:
  * ``loss`` is a Python float for ``reduction='mean'`` / ``'sum'`` and a float64 array of one value
    per row (anchor) for ``'none'``;
  * ``grads`` is a dict of float64 arrays, the gradients of the reduced loss (for ``'none'``: of the
    sum of the per-row losses). Keys: ``x1, x2`` (pair, cosine), ``anchor, positive, negative``
    (triplet), ``z`` (ntxent, supcon), ``a, b, logit_scale`` (clip, siglip) and ``logit_bias``
    (siglip); supcon also puts the number of anchors with at least one positive under ``'valid'``
    (an int). With ``grad_negatives=False``, clip's and siglip's ``b`` gradient has only the N
    partner rows.

Conventions kept (see contract.md):
  * ``normalize(x) = x / max(‖x‖, 1e-12)``; ``cos(a, b) = a·b / (max(‖a‖,1e-8)·max(‖b‖,1e-8))``; the
    derivative of ``max(‖x‖, eps)`` is taken as 0 on the ``eps`` side (as torch's clamp_min).
  * at a non-differentiable point (a hinge exactly 0, a Euclidean distance exactly 0) the gradient of
    the non-smooth factor is 0.
  * SupCon anchors without a positive have loss 0 and are left out of the mean (mean 0 when none).
  * NT-Xent partner p(i) = (i + N) mod 2N, mean over all 2N anchors.
  * triplet swap: negative distance min(d(a,n), d(p,n)); the gradient goes to the selected pair;
    a tie selects (a, n).
  * clip and siglip: a is (N, D), b is (N + K, D): row i of b is the partner of row i of a, the
    K rows after them extra negatives; the mean is over the N pairs.

``python3 tests/contract_numpy.py --self-check`` compares every analytic gradient with central finite
differences (and every vectorised value with a plain-loop transcription of the formulas) for every
option combination. Exit code 77 when NumPy is missing.
"""
import sys

try:
    import numpy as np
except ImportError:  # pragma: no cover
    if __name__ == "__main__":
        print("contract_numpy: SKIP: numpy is not importable")
        sys.exit(77)
    raise

NORMALIZE_EPS = 1e-12
COSINE_EPS = 1e-8

__all__ = ["pair", "triplet", "ntxent", "supcon", "cosine", "clip", "siglip"]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _f64(a):
    return np.array(a, dtype=np.float64, copy=True)


def _check_reduction(reduction):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError("reduction must be mean, sum or none, got %r" % (reduction,))


def _reduce(per_row, count, reduction):
    """Return (loss, weight) where weight is d loss / d per_row (a scalar)."""
    if reduction == "none":
        return per_row.copy(), 1.0
    if reduction == "sum":
        return float(np.sum(per_row)), 1.0
    if count == 0:
        return 0.0, 0.0
    return float(np.sum(per_row) / count), 1.0 / count


def _normalize_fwd(x):
    """Row-wise x / max(‖x‖, eps). Returns (xhat, nrm, clamped)."""
    nrm = np.sqrt(np.sum(x * x, axis=1))
    den = np.maximum(nrm, NORMALIZE_EPS)
    return x / den[:, None], nrm, den


def _normalize_bwd(g, xhat, nrm, den):
    """Backward of normalize: for ‖x‖ > eps, (g − x̂ (x̂·g)) / ‖x‖; otherwise g / eps."""
    above = nrm > NORMALIZE_EPS
    proj = np.where(above, np.sum(xhat * g, axis=1), 0.0)
    return (g - xhat * proj[:, None]) / den[:, None]


def _cos_fwd_bwd(a, b):
    """Row-wise cos(a, b) with separate eps clamps, and its gradients dc/da, dc/db."""
    na = np.sqrt(np.sum(a * a, axis=1))
    nb = np.sqrt(np.sum(b * b, axis=1))
    A = np.maximum(na, COSINE_EPS)
    B = np.maximum(nb, COSINE_EPS)
    dot = np.sum(a * b, axis=1)
    c = dot / (A * B)
    # dc/da = b/(A B) − c/A · dA/da,  dA/da = a/‖a‖ when ‖a‖ > eps else 0 (and then A = ‖a‖)
    ka = np.where(na > COSINE_EPS, c / (A * A), 0.0)
    kb = np.where(nb > COSINE_EPS, c / (B * B), 0.0)
    dca = b / (A * B)[:, None] - a * ka[:, None]
    dcb = a / (A * B)[:, None] - b * kb[:, None]
    return c, dca, dcb


def _distance_fwd_bwd(a, b, distance):
    """Row-wise distance and its gradients w.r.t. a and b."""
    if distance == "sqeuclidean":
        diff = a - b
        return np.sum(diff * diff, axis=1), 2.0 * diff, -2.0 * diff
    if distance == "euclidean":
        diff = a - b
        d = np.sqrt(np.sum(diff * diff, axis=1))
        safe = np.where(d > 0.0, d, 1.0)
        u = np.where((d > 0.0)[:, None], diff / safe[:, None], 0.0)
        return d, u, -u
    if distance == "cosine":
        c, dca, dcb = _cos_fwd_bwd(a, b)
        return 1.0 - c, -dca, -dcb
    raise ValueError("unknown distance %r" % (distance,))


def _check_pair_inputs(x1, x2, y):
    if x1.ndim != 2 or x1.shape != x2.shape:
        raise ValueError("x1 and x2 must be (N, D) of the same shape")
    if y.shape != (x1.shape[0],):
        raise ValueError("y must be (N,)")
    if np.any(np.isnan(y)) or np.any(y < 0.0) or np.any(y > 1.0):
        raise ValueError("y must be in [0, 1]")


def _rowwise_lse(S, mask):
    """Stable log Σ_{mask} exp(S) per row and the softmax over the mask (0 outside it)."""
    Sm = np.where(mask, S, -np.inf)
    mx = np.max(Sm, axis=1)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    E = np.where(mask, np.exp(Sm - mx[:, None]), 0.0)
    tot = np.sum(E, axis=1)
    with np.errstate(divide="ignore"):
        lse = mx + np.log(tot)
    P = E / np.where(tot > 0.0, tot, 1.0)[:, None]
    return lse, P


# ------------------------------------------------------------------------------------------------
# 1. pair contrastive
# ------------------------------------------------------------------------------------------------
def pair(x1, x2, y, margin=1.0, distance="euclidean", reduction="mean"):
    """ℓ_i = y_i d_i² + (1 − y_i) max(0, m − d_i)², d euclidean or 1 − cos."""
    x1, x2, y = _f64(x1), _f64(x2), _f64(y)
    _check_pair_inputs(x1, x2, y)
    _check_reduction(reduction)
    if distance not in ("euclidean", "cosine"):
        raise ValueError("pair distance must be euclidean or cosine")
    if not (np.isfinite(margin) and margin >= 0.0):
        raise ValueError("pair margin must be finite and >= 0")
    n = x1.shape[0]
    d, dda, ddb = _distance_fwd_bwd(x1, x2, distance)
    h = np.maximum(0.0, margin - d)
    per = y * d * d + (1.0 - y) * h * h
    loss, w = _reduce(per, n, reduction)
    # dℓ/dd = 2 y d − 2 (1 − y) max(0, m − d)
    dl = w * (2.0 * y * d - 2.0 * (1.0 - y) * h)
    return loss, {"x1": dl[:, None] * dda, "x2": dl[:, None] * ddb}


# ------------------------------------------------------------------------------------------------
# 2. triplet
# ------------------------------------------------------------------------------------------------
def triplet(a, p, n, margin=1.0, distance="sqeuclidean", swap=False, reduction="mean"):
    """ℓ_i = max(0, d(a, p) − d_neg + α), d_neg = d(a, n) or min(d(a, n), d(p, n)) with swap."""
    a, p, n = _f64(a), _f64(p), _f64(n)
    if a.ndim != 2 or a.shape != p.shape or a.shape != n.shape:
        raise ValueError("anchor, positive, negative must be (N, D) of the same shape")
    _check_reduction(reduction)
    if not np.isfinite(margin):
        raise ValueError("triplet margin must be finite")
    rows = a.shape[0]
    dap, dap_a, dap_p = _distance_fwd_bwd(a, p, distance)
    dan, dan_a, dan_n = _distance_fwd_bwd(a, n, distance)
    if swap:
        dpn, dpn_p, dpn_n = _distance_fwd_bwd(p, n, distance)
        use_pn = dpn < dan  # a tie selects (a, n)
    else:
        dpn = dan
        dpn_p = np.zeros_like(a)
        dpn_n = np.zeros_like(a)
        use_pn = np.zeros(rows, dtype=bool)
    dneg = np.where(use_pn, dpn, dan)
    u = dap - dneg + margin
    per = np.maximum(0.0, u)
    loss, w = _reduce(per, rows, reduction)
    act = np.where(u > 0.0, w, 0.0)[:, None]  # hinge exactly 0 -> gradient 0
    sel_an = (~use_pn)[:, None].astype(np.float64)
    sel_pn = use_pn[:, None].astype(np.float64)
    ga = act * (dap_a - sel_an * dan_a)
    gp = act * (dap_p - sel_pn * dpn_p)
    gn = act * (-sel_an * dan_n - sel_pn * dpn_n)
    return loss, {"anchor": ga, "positive": gp, "negative": gn}


# ------------------------------------------------------------------------------------------------
# 3. NT-Xent
# ------------------------------------------------------------------------------------------------
def ntxent(z, temperature=0.1, normalize=True, reduction="mean"):
    """ℓ_i = − s_{i,p(i)}/τ + log Σ_{k≠i} exp(s_ik/τ), p(i) = (i + N) mod 2N."""
    z = _f64(z)
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[0] % 2:
        raise ValueError("z must be (2N, D) with 2N >= 2 even")
    _check_reduction(reduction)
    if not (np.isfinite(temperature) and temperature > 0.0):
        raise ValueError("temperature must be finite and > 0")
    M = z.shape[0]
    N = M // 2
    if normalize:
        zh, nrm, den = _normalize_fwd(z)
    else:
        zh = z
    S = (zh @ zh.T) / temperature
    idx = np.arange(M)
    part = (idx + N) % M
    off = ~np.eye(M, dtype=bool)
    lse, P = _rowwise_lse(S, off)
    per = -S[idx, part] + lse
    loss, w = _reduce(per, M, reduction)
    G = P.copy()  # dℓ_i/dS_ik
    G[idx, part] -= 1.0
    G *= w
    gzh = (G + G.T) @ zh / temperature
    gz = _normalize_bwd(gzh, zh, nrm, den) if normalize else gzh
    return loss, {"z": gz}


# ------------------------------------------------------------------------------------------------
# 4. SupCon
# ------------------------------------------------------------------------------------------------
def supcon(z, labels, temperature=0.07, base_temperature=None, normalize=True, reduction="mean"):
    """ℓ_i = (τ/τ_b)(− (1/|P(i)|) Σ_P s_ip/τ + log Σ_{a≠i} exp(s_ia/τ)); |P(i)| = 0 -> ℓ_i = 0."""
    z = _f64(z)
    labels = np.asarray(labels)
    if z.ndim != 2 or z.shape[0] < 1:
        raise ValueError("z must be (M, D) with M >= 1")
    if labels.shape != (z.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError("labels must be (M,) integers")
    _check_reduction(reduction)
    if not (np.isfinite(temperature) and temperature > 0.0):
        raise ValueError("temperature must be finite and > 0")
    tb = temperature if base_temperature is None else float(base_temperature)
    if not (np.isfinite(tb) and tb > 0.0):
        raise ValueError("base_temperature must be finite and > 0")
    M = z.shape[0]
    if normalize:
        zh, nrm, den = _normalize_fwd(z)
    else:
        zh = z
    S = (zh @ zh.T) / temperature
    off = ~np.eye(M, dtype=bool)
    pos = (labels[:, None] == labels[None, :]) & off
    npos = np.sum(pos, axis=1)
    valid_mask = npos > 0
    valid = int(np.sum(valid_mask))
    lse, P = _rowwise_lse(S, off)
    inv_np = np.where(valid_mask, 1.0 / np.maximum(npos, 1), 0.0)
    possum = np.sum(np.where(pos, S, 0.0), axis=1)
    scale = temperature / tb
    per = np.where(valid_mask, scale * (-possum * inv_np + lse), 0.0)
    loss, w = _reduce(per, valid, reduction)
    wi = np.where(valid_mask, w * scale, 0.0)  # d L / d (bracket_i)
    G = wi[:, None] * (P - pos * inv_np[:, None])
    gzh = (G + G.T) @ zh / temperature
    gz = _normalize_bwd(gzh, zh, nrm, den) if normalize else gzh
    return loss, {"z": gz, "valid": valid}


# ------------------------------------------------------------------------------------------------
# 5. cosine contrastive
# ------------------------------------------------------------------------------------------------
def cosine(x1, x2, y, margin=0.0, squared=False, reduction="mean"):
    """ℓ_i = y_i (1 − c_i) + (1 − y_i) max(0, c_i − δ)^q, q = 2 if squared else 1."""
    x1, x2, y = _f64(x1), _f64(x2), _f64(y)
    _check_pair_inputs(x1, x2, y)
    _check_reduction(reduction)
    if not (np.isfinite(margin) and -1.0 <= margin <= 1.0):
        raise ValueError("cosine margin must be in [-1, 1]")
    n = x1.shape[0]
    c, dca, dcb = _cos_fwd_bwd(x1, x2)
    h = np.maximum(0.0, c - margin)
    if squared:
        per = y * (1.0 - c) + (1.0 - y) * h * h
        dh = 2.0 * h
    else:
        per = y * (1.0 - c) + (1.0 - y) * h
        dh = np.where(c - margin > 0.0, 1.0, 0.0)  # hinge exactly 0 -> 0
    loss, w = _reduce(per, n, reduction)
    dl = w * (-y + (1.0 - y) * dh)
    return loss, {"x1": dl[:, None] * dca, "x2": dl[:, None] * dcb}


# ------------------------------------------------------------------------------------------------
# 6. CLIP and 7. SigLIP (two towers)
# ------------------------------------------------------------------------------------------------
def _check_two_tower(a, b, logit_scale, reduction):
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] < 1 or a.shape[1] != b.shape[1]:
        raise ValueError("a must be (N, D) with N >= 1 and b (N + K, D)")
    if b.shape[0] < a.shape[0]:
        raise ValueError("b needs at least the N partner rows of a")
    _check_reduction(reduction)
    if not (np.isfinite(logit_scale) and logit_scale > 0.0):
        raise ValueError("logit_scale must be finite and > 0")


def _towers(a, b, normalize):
    """(â, b̂, backward) with backward(gâ, gb̂) -> (ga, gb) through the normalisation."""
    if not normalize:
        return a, b, lambda ga, gb: (ga, gb)
    ah, na, da = _normalize_fwd(a)
    bh, nb, db = _normalize_fwd(b)
    return ah, bh, lambda ga, gb: (_normalize_bwd(ga, ah, na, da), _normalize_bwd(gb, bh, nb, db))


def _two_tower_grads(G, C, ah, bh, s, backward, grad_negatives):
    """∂/∂a, ∂/∂b, ∂/∂s from G = ∂L/∂x (N, N + K), C = Â B̂ᵀ and x = s·C (+ β)."""
    ga, gb = backward(s * G @ bh, s * G.T @ ah)
    if not grad_negatives:
        gb = gb[: ah.shape[0]]
    return {"a": ga, "b": gb, "logit_scale": float(np.sum(G * C))}


def clip(a, b, logit_scale=1.0 / 0.07, symmetric=True, in_batch_negatives=True, normalize=True,
         grad_negatives=True, reduction="mean"):
    """ℓ_i = ½(L_ab(i) + L_ba(i)) (symmetric) or L_ab(i), x_ij = s·â_i·b̂_j,
    L_ab(i) = −x_ii + log Σ_{j∈C(i)} exp(x_ij), L_ba(j) = −x_jj + log Σ_{i<N} exp(x_ij).

    Evaluated as softplus(lse of the negatives − x_ii), and the positive's softmax gradient as
    −σ(lse of the negatives − x_ii), so that a confident pair keeps its tiny loss and gradient to
    full relative precision (−x + lse would cancel two large numbers)."""
    a, b = _f64(a), _f64(b)
    _check_two_tower(a, b, logit_scale, reduction)
    if symmetric and not in_batch_negatives:
        raise ValueError("symmetric needs in_batch_negatives")
    n = a.shape[0]
    s = float(logit_scale)
    ah, bh, backward = _towers(a, b, normalize)
    C = ah @ bh.T
    X = s * C
    idx = np.arange(n)
    partner = np.zeros(X.shape, dtype=bool)
    partner[idx, idx] = True
    row_set = np.ones(X.shape, dtype=bool)  # C(i)
    if not in_batch_negatives:
        row_set[:, :n] = partner[:, :n]
    diag = X[idx, idx]
    h = 0.5 if symmetric else 1.0

    def direction(logits, negatives):
        """Per row: the loss softplus(n − x), the softmax over the row without the positive's
        entry, and the positive's −σ(n − x)."""
        lse_negatives, _ = _rowwise_lse(logits, negatives)
        t = lse_negatives - diag
        total = diag + np.logaddexp(0.0, t)
        P = np.where(negatives, np.exp(logits - total[:, None]), 0.0)
        return np.logaddexp(0.0, t), P, -np.exp(-np.logaddexp(0.0, -t))

    per, P, positive = direction(X, row_set & ~partner)
    per = h * per
    G = h * P  # dℓ/dx, scaled by the reduction's weight below
    g_diag = h * positive
    if symmetric:
        per_ba, Q, positive_ba = direction(X[:, :n].T, ~partner[:, :n])
        per = per + h * per_ba
        G[:, :n] += h * Q.T
        g_diag = g_diag + h * positive_ba
    G[idx, idx] = g_diag
    loss, w = _reduce(per, n, reduction)
    return loss, _two_tower_grads(w * G, C, ah, bh, s, backward, grad_negatives)


def _log_sigmoid(t):
    """log σ(t) = −softplus(−t), without overflow."""
    return -np.logaddexp(0.0, -t)


def siglip(a, b, logit_scale=10.0, logit_bias=-10.0, normalize=True, grad_negatives=True,
           reduction="mean"):
    """ℓ_i = −Σ_{j<N+K} log σ(z_ij·x_ij), x_ij = s·â_i·b̂_j + β, z_ij = 1 if i = j else −1."""
    a, b = _f64(a), _f64(b)
    _check_two_tower(a, b, logit_scale, reduction)
    if not np.isfinite(logit_bias):
        raise ValueError("logit_bias must be finite")
    n = a.shape[0]
    s = float(logit_scale)
    ah, bh, backward = _towers(a, b, normalize)
    C = ah @ bh.T
    X = s * C + float(logit_bias)
    Z = -np.ones(X.shape)
    Z[np.arange(n), np.arange(n)] = 1.0
    per = -np.sum(_log_sigmoid(Z * X), axis=1)
    loss, w = _reduce(per, n, reduction)
    G = -w * Z * np.exp(_log_sigmoid(-Z * X))  # d softplus(−z·x)/dx = −z·σ(−z·x)
    grads = _two_tower_grads(G, C, ah, bh, s, backward, grad_negatives)
    grads["logit_bias"] = float(np.sum(G))
    return loss, grads


# ------------------------------------------------------------------------------------------------
# self-check: finite differences and a plain-loop transcription of the formulas
# ------------------------------------------------------------------------------------------------
def _loop_values(kind, inputs, params):
    """Per-row losses by straightforward scalar loops (values only), independent of the vector code."""
    import math

    def norm(v):
        return math.sqrt(sum(t * t for t in v))

    def cosv(u, v):
        return sum(s * t for s, t in zip(u, v)) / (max(norm(u), 1e-8) * max(norm(v), 1e-8))

    def dist(u, v, kind_d):
        if kind_d == "sqeuclidean":
            return sum((s - t) ** 2 for s, t in zip(u, v))
        if kind_d == "euclidean":
            return math.sqrt(sum((s - t) ** 2 for s, t in zip(u, v)))
        return 1.0 - cosv(u, v)

    def nrmz(v):
        k = max(norm(v), 1e-12)
        return [t / k for t in v]

    out = []
    if kind in ("pair", "cosine"):
        x1, x2, y = inputs["x1"].tolist(), inputs["x2"].tolist(), inputs["y"].tolist()
        for u, v, yi in zip(x1, x2, y):
            if kind == "pair":
                d = dist(u, v, params.get("distance", "euclidean"))
                m = params.get("margin", 1.0)
                out.append(yi * d * d + (1 - yi) * max(0.0, m - d) ** 2)
            else:
                c = cosv(u, v)
                q = 2 if params.get("squared", False) else 1
                out.append(yi * (1 - c) + (1 - yi) * max(0.0, c - params.get("margin", 0.0)) ** q)
        return out, None
    if kind == "triplet":
        dk = params.get("distance", "sqeuclidean")
        for a, p, n in zip(inputs["anchor"].tolist(), inputs["positive"].tolist(),
                           inputs["negative"].tolist()):
            dn = dist(a, n, dk)
            if params.get("swap", False):
                dn = min(dn, dist(p, n, dk))
            out.append(max(0.0, dist(a, p, dk) - dn + params.get("margin", 1.0)))
        return out, None
    if kind in ("clip", "siglip"):
        return _loop_two_tower(kind, inputs, params, nrmz), None
    z = inputs["z"].tolist()
    if params.get("normalize", True):
        z = [nrmz(v) for v in z]
    M = len(z)
    s = [[sum(p * q for p, q in zip(z[i], z[k])) for k in range(M)] for i in range(M)]
    if kind == "ntxent":
        t = params.get("temperature", 0.1)
        for i in range(M):
            part = (i + M // 2) % M
            out.append(-s[i][part] / t + math.log(sum(math.exp(s[i][k] / t)
                                                      for k in range(M) if k != i)))
        return out, None
    t = params.get("temperature", 0.07)
    tb = params.get("base_temperature") or t
    lab = inputs["labels"].tolist()
    valid = 0
    for i in range(M):
        P = [p for p in range(M) if p != i and lab[p] == lab[i]]
        if not P:
            out.append(0.0)
            continue
        valid += 1
        out.append((t / tb) * (-sum(s[i][p] for p in P) / (len(P) * t)
                               + math.log(sum(math.exp(s[i][a] / t) for a in range(M) if a != i))))
    return out, valid


def _loop_two_tower(kind, inputs, params, nrmz):
    """CLIP's and SigLIP's per-pair losses, term by term."""
    import math

    a, b = inputs["a"].tolist(), inputs["b"].tolist()
    if params.get("normalize", True):
        a, b = [nrmz(v) for v in a], [nrmz(v) for v in b]
    n = len(a)
    s = params.get("logit_scale", 1.0 / 0.07 if kind == "clip" else 10.0)
    x = [[s * sum(p * q for p, q in zip(u, v)) for v in b] for u in a]
    out = []
    if kind == "siglip":
        beta = params.get("logit_bias", -10.0)
        for i in range(n):
            # −log σ(z·(x + β)) = log(1 + exp(−z·(x + β)))
            out.append(sum(math.log1p(math.exp(-(1.0 if j == i else -1.0) * (x[i][j] + beta)))
                           for j in range(len(b))))
        return out
    in_batch = params.get("in_batch_negatives", True)
    for i in range(n):
        negatives = [j for j in range(len(b)) if in_batch or j == i or j >= n]
        l_ab = -x[i][i] + math.log(sum(math.exp(x[i][j]) for j in negatives))
        if params.get("symmetric", True):
            l_ba = -x[i][i] + math.log(sum(math.exp(x[k][i]) for k in range(n)))
            out.append(0.5 * (l_ab + l_ba))
        else:
            out.append(l_ab)
    return out


def _call(kind, inputs, params):
    if kind == "pair":
        return pair(inputs["x1"], inputs["x2"], inputs["y"], **params)
    if kind == "triplet":
        return triplet(inputs["anchor"], inputs["positive"], inputs["negative"], **params)
    if kind == "ntxent":
        return ntxent(inputs["z"], **params)
    if kind == "supcon":
        return supcon(inputs["z"], inputs["labels"], **params)
    if kind in ("clip", "siglip"):
        return (clip if kind == "clip" else siglip)(inputs["a"], inputs["b"], **params)
    return cosine(inputs["x1"], inputs["x2"], inputs["y"], **params)


def _scalar(loss):
    return float(np.sum(loss))


def _fd_check(kind, inputs, params, h=1e-6):
    """Worst relative error (norm-wise, per input) between analytic and central-difference gradients."""
    _, grads = _call(kind, inputs, params)
    worst = 0.0
    for key, g in grads.items():
        if key == "valid":
            continue
        # an input array, or a scalar parameter with a gradient (logit_scale, logit_bias)
        x = inputs[key] if key in inputs else np.array([params.get(key, _call_default(kind, key))])
        num = np.zeros_like(x)
        for idx in np.ndindex(*x.shape):
            old = x[idx]
            vals = []
            for step in (h, -h):
                x[idx] = old + step
                if key not in inputs:
                    params = dict(params, **{key: float(x[idx])})
                vals.append(_scalar(_call(kind, inputs, params)[0]))
            x[idx] = old
            if key not in inputs:
                params = dict(params, **{key: float(old)})
            num[idx] = (vals[0] - vals[1]) / (2.0 * h)
        if np.ndim(g) == 2 and g.shape[0] < num.shape[0]:
            num = num[: g.shape[0]]  # grad_negatives=False: the partner rows only
        err = np.linalg.norm(np.asarray(g) - num.reshape(np.shape(g))) / max(np.linalg.norm(num),
                                                                            1e-6)
        worst = max(worst, err)
    return worst


def _call_default(kind, key):
    """The default of a scalar parameter that has a gradient."""
    import inspect

    return inspect.signature(clip if kind == "clip" else siglip).parameters[key].default


def _self_check_cases(rng):
    """Yield (kind, inputs, params) for every option combination at small sizes."""
    reds = ("mean", "sum", "none")

    def soft_y(n):
        y = rng.uniform(0.0, 1.0, n)
        y[: n // 3] = 0.0
        y[n // 3: 2 * n // 3] = 1.0
        return y

    for dist in ("euclidean", "cosine"):
        for margin in (0.0, 0.7, 1.0, 5.0):
            for red in reds:
                n, dim = 6, 4
                yield "pair", {"x1": rng.normal(size=(n, dim)) * 0.5,
                               "x2": rng.normal(size=(n, dim)) * 0.5, "y": soft_y(n)}, \
                    {"margin": margin, "distance": dist, "reduction": red}
    for dist in ("sqeuclidean", "euclidean", "cosine"):
        for swap in (False, True):
            for margin in (-0.5, 0.0, 1.0, 3.0):
                for red in reds:
                    n, dim = 5, 3
                    yield "triplet", {"anchor": rng.normal(size=(n, dim)),
                                      "positive": rng.normal(size=(n, dim)),
                                      "negative": rng.normal(size=(n, dim))}, \
                        {"margin": margin, "distance": dist, "swap": swap, "reduction": red}
    for norm in (False, True):
        for t in (0.05, 0.1, 1.0):
            for red in reds:
                scale = 1.0 if norm else 0.4
                yield "ntxent", {"z": rng.normal(size=(6, 3)) * scale}, \
                    {"temperature": t, "normalize": norm, "reduction": red}
    for norm in (False, True):
        for t, tb in ((0.07, None), (0.1, 0.07), (0.5, 1.0)):
            for labels in (np.array([7, -3, 7, 1000, -3, 5, 7], dtype=np.int64),
                           np.array([1, 2, 3, 4], dtype=np.int32),
                           np.array([4, 4, 4, 4, 4], dtype=np.int32)):
                for red in reds:
                    scale = 1.0 if norm else 0.4
                    yield "supcon", {"z": rng.normal(size=(labels.size, 3)) * scale,
                                     "labels": labels}, \
                        {"temperature": t, "base_temperature": tb, "normalize": norm,
                         "reduction": red}
    for sym, in_batch in ((True, True), (False, True), (False, False)):
        for k in (0, 3) if in_batch else (3,):  # (K = 0 without in-batch negatives: loss 0)
            for norm in (False, True):
                for red in reds:
                    n, dim = 5, 3
                    scale = 1.0 if norm else 0.5
                    yield "clip", {"a": rng.normal(size=(n, dim)) * scale,
                                   "b": rng.normal(size=(n + k, dim)) * scale}, \
                        {"logit_scale": 2.5 if norm else 1.5, "symmetric": sym,
                         "in_batch_negatives": in_batch, "normalize": norm,
                         "grad_negatives": k == 0 or red != "sum", "reduction": red}
    for k in (0, 3):
        for norm in (False, True):
            for red in reds:
                n, dim = 5, 3
                yield "siglip", {"a": rng.normal(size=(n, dim)), "b": rng.normal(size=(n + k, dim))}, \
                    {"logit_scale": 3.0, "logit_bias": -1.5 if norm else 0.5, "normalize": norm,
                     "grad_negatives": k == 0 or red != "none", "reduction": red}
    for sq in (False, True):
        for margin in (-0.5, 0.0, 0.3):
            for red in reds:
                n, dim = 6, 4
                yield "cosine", {"x1": rng.normal(size=(n, dim)), "x2": rng.normal(size=(n, dim)),
                                 "y": soft_y(n)}, \
                    {"margin": margin, "squared": sq, "reduction": red}


def _self_check(verbose=True):
    """Finite differences + loop-transcribed values + convention spot checks. Returns 0 on success."""
    rng = np.random.default_rng(20240611)
    failures = []
    count = 0
    worst_fd = 0.0
    worst_val = 0.0
    for kind, inputs, params in _self_check_cases(rng):
        count += 1
        loss, grads = _call(kind, inputs, params)
        # values against the scalar loops
        per, valid = _loop_values(kind, inputs, params)
        per = np.array(per)
        red = params["reduction"]
        if red == "none":
            ref = per
        elif red == "sum":
            ref = per.sum()
        else:
            cnt = valid if kind == "supcon" else per.size
            ref = per.sum() / cnt if cnt else 0.0
        diff = np.linalg.norm(np.asarray(loss) - ref)
        verr = diff / max(np.linalg.norm(ref), 1e-300)
        worst_val = max(worst_val, min(verr, diff / 1e-13))
        if diff > 1e-13 and verr > 1e-12:
            failures.append("%s %s: value %r vs loop %r" % (kind, params, loss, ref))
        if kind == "supcon" and grads["valid"] != valid:
            failures.append("%s %s: valid %d vs %d" % (kind, params, grads["valid"], valid))
        # gradients against central differences
        err = _fd_check(kind, inputs, params)
        worst_fd = max(worst_fd, err)
        if not err < 1e-6:
            failures.append("%s %s: finite-difference relative error %.3g" % (kind, params, err))

    # convention spot checks: non-differentiable points give 0 and never NaN
    x = rng.normal(size=(3, 4))
    _, g = pair(x, x.copy(), np.array([0.0, 0.5, 1.0]), margin=1.0)
    if not (np.all(g["x1"] == 0.0) and np.all(g["x2"] == 0.0)):
        failures.append("pair euclidean at d = 0: gradient not exactly 0")
    _, g = triplet(x, x.copy(), x + 1.0, distance="euclidean", margin=10.0)
    expect = np.full((3, 4), 0.5 / 3.0)  # −∂d(a,n)/∂a = (n − a)/‖n − a‖ = 1/2, mean over 3 rows
    if not np.allclose(g["anchor"], expect, rtol=1e-12, atol=1e-12) or not np.all(g["positive"] == 0.0):
        failures.append("triplet euclidean at d(a,p) = 0: wrong gradient")
    # swap tie (a == p so d(a,n) == d(p,n)): the (a, n) pair is selected
    n_ = rng.normal(size=(3, 4))
    _, g = triplet(x, x.copy(), n_, swap=True, margin=100.0)
    if not (np.all(g["positive"] == 0.0) and np.allclose(g["anchor"], -2.0 * (x - n_) / 3.0)):
        failures.append("triplet swap tie: gradient did not go to (a, n)")
    # hinge exactly 0: triplet with d(a,p) − d(a,n) + α == 0 exactly
    a = np.array([[0.0, 0.0]])
    p = np.array([[1.0, 0.0]])
    n_ = np.array([[2.0, 0.0]])
    l, g = triplet(a, p, n_, margin=3.0)  # 1 − 4 + 3 = 0
    if l != 0.0 or any(np.any(v != 0.0) for v in g.values()):
        failures.append("triplet hinge at 0: loss or gradient not 0")
    l, g = cosine(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([0.0]), margin=1.0)
    if l != 0.0 or any(np.any(v != 0.0) for v in g.values()):
        failures.append("cosine hinge at 0: loss or gradient not 0")
    # supcon with no valid anchor: mean 0, gradient 0; SupCon(labels = index over two views) == NT-Xent
    l, g = supcon(rng.normal(size=(4, 3)), np.arange(4), reduction="mean")
    if l != 0.0 or g["valid"] != 0 or np.any(g["z"] != 0.0):
        failures.append("supcon with no positives: not (0, valid 0, zero gradient)")
    z = rng.normal(size=(8, 5))
    for norm in (True, False):
        l1, g1 = ntxent(z, temperature=0.3, normalize=norm)
        l2, g2 = supcon(z, np.tile(np.arange(4), 2), temperature=0.3, normalize=norm)
        if not (abs(l1 - l2) <= 1e-12 * abs(l1) and np.allclose(g1["z"], g2["z"], rtol=1e-12,
                                                                 atol=1e-15)):
            failures.append("supcon(labels = index) != ntxent (normalize=%s)" % norm)
    # zero vectors: finite values, no NaN
    zz = np.zeros((2, 3))
    for res in (ntxent(zz), supcon(zz, np.array([1, 1])), cosine(zz, zz, np.array([0.0, 1.0])),
                pair(zz, zz, np.array([0.0, 1.0]), distance="cosine"),
                triplet(zz, zz, zz, distance="cosine")):
        vals = [np.asarray(res[0])] + [np.asarray(v) for v in res[1].values()]
        if not all(np.all(np.isfinite(v)) for v in vals):
            failures.append("zero vectors gave a non-finite value")
    # two towers: CLIP without symmetry or extra negatives is NT-Xent-like cross-entropy; the
    # default CLIP is the mean of the two directions; large scales stay finite
    a_, b_ = rng.normal(size=(5, 4)), rng.normal(size=(8, 4))
    l_ab, _ = clip(a_, b_[:5], symmetric=False, logit_scale=3.0)
    l_ba, _ = clip(b_[:5], a_, symmetric=False, logit_scale=3.0)
    l_sym, _ = clip(a_, b_[:5], logit_scale=3.0)
    if abs(l_sym - 0.5 * (l_ab + l_ba)) > 1e-13:
        failures.append("clip symmetric != the mean of the two directions")
    # a confident pair: ℓ = softplus(−s) and ∂L/∂s = −σ(−s) to full relative precision, far
    # below what −x + lse could resolve (1e-18 next to logits of 40)
    l_, g_ = clip(np.eye(2), np.eye(2), logit_scale=40.0)
    if not (abs(l_ - np.log1p(np.exp(-40.0))) <= 1e-13 * np.log1p(np.exp(-40.0)) and
            abs(g_["logit_scale"] + np.exp(-40.0) / (1 + np.exp(-40.0))) <= 1e-13 * np.exp(-40.0)):
        failures.append("clip lost the relative precision of a confident pair")
    for s_ in (100.0, 1e4):
        for res in (clip(a_, b_, logit_scale=s_), clip(a_, b_, logit_scale=s_, normalize=False),
                    siglip(a_, b_, logit_scale=s_, logit_bias=-s_),
                    siglip(a_, b_, logit_scale=s_, normalize=False)):
            vals = [np.asarray(res[0])] + [np.asarray(v) for v in res[1].values()]
            if not all(np.all(np.isfinite(v)) for v in vals):
                failures.append("clip/siglip at logit_scale %g gave a non-finite value" % s_)
    # large logits: the log-sum-exp must stay finite
    l, g = ntxent(rng.normal(size=(4, 3)) * 30.0, temperature=0.01, normalize=False)
    if not (np.isfinite(l) and np.all(np.isfinite(g["z"]))):
        failures.append("ntxent with large logits overflowed")

    if verbose:
        for f in failures:
            print("FAIL:", f)
        print("contract_numpy self-check: %d combinations, worst finite-difference rel. error %.2e, "
              "worst value-vs-loop rel. error %.2e, %d failure(s)"
              % (count, worst_fd, worst_val, len(failures)))
    return 0 if not failures else 1


if __name__ == "__main__":
    if "--self-check" in sys.argv[1:]:
        sys.exit(_self_check())
    print(__doc__)
