#!/usr/bin/env python3
"""Check `closs eval` (CPU) against the independent NumPy implementation of docs/contract.md.

    python3 tests/test_cli_vs_numpy.py PATH/TO/closs [--seed N] [--jobs J] [--verbose]

For every loss x option combination x reduction (and a few dtypes and edge cases) it writes fresh
random inputs as .npy files into a temporary directory, runs

    closs eval LOSS --in IN --out OUT --device cpu [--dtype f32] NAME=VALUE ...

and compares OUT/loss.npy, OUT/grad_*.npy and the stdout JSON line with tests/contract_numpy.py,
to 1e-8 norm-wise relative error (absolute floor 1e-12). It also checks that invalid arguments are
rejected. The seed is printed at the start and with every failure; pass it back with --seed (or the
CLOSS_TEST_SEED environment variable) to reproduce a run. Exit status: 0 all passed, 1 a failure,
2 usage error, 77 skipped (NumPy missing).
"""
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

try:
    import numpy as np
except ImportError:
    print("test_cli_vs_numpy: SKIP: numpy is not importable by %s" % sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract_numpy as cn  # noqa: E402

RTOL = 1e-8      # norm-wise relative tolerance
ATOL = 1e-12     # absolute floor for values that are (near) zero
ROW_FLOOR = 1e-6  # row-wise check: a row is compared relative to max(‖row‖, ROW_FLOOR·‖whole‖)
TIMEOUT_S = 60

INPUT_NAMES = {
    "pair": ("x1", "x2", "y"),
    "cosine": ("x1", "x2", "y"),
    "triplet": ("anchor", "positive", "negative"),
    "ntxent": ("z",),
    "supcon": ("z", "labels"),
    "clip": ("a", "b"),
    "siglip": ("a", "b"),
}
GRAD_NAMES = {
    "pair": ("x1", "x2"),
    "cosine": ("x1", "x2"),
    "triplet": ("anchor", "positive", "negative"),
    "ntxent": ("z",),
    "supcon": ("z",),
    "clip": ("a", "b", "logit_scale"),
    "siglip": ("a", "b", "logit_scale", "logit_bias"),
}
FLAGS = ("swap", "squared", "normalize", "symmetric", "in_batch_negatives", "grad_negatives")


# ------------------------------------------------------------------------------------------------
# cases
# ------------------------------------------------------------------------------------------------
class Case:
    """One CLI run: inputs (arrays as written to .npy), CLI parameters, CLI dtype."""

    def __init__(self, name, loss, params, make, dtype="f64", file_dtype=np.float64, expect_ok=True,
                 expect_nonfinite=False):
        self.name = name
        self.loss = loss
        self.params = dict(params)   # NAME -> string value, as passed on the command line
        self.make = make             # make(rng) -> dict of input arrays (float64 / int)
        self.dtype = dtype           # CLI --dtype
        self.file_dtype = file_dtype  # dtype of the float .npy files written
        self.expect_ok = expect_ok
        self.expect_nonfinite = expect_nonfinite  # NaN/Inf in an input: a non-finite loss
        self.index = None

    def describe(self):
        opts = " ".join("%s=%s" % kv for kv in self.params.items())
        return "[%d] %s: %s %s --dtype %s (files %s)" % (
            self.index, self.name, self.loss, opts or "(defaults)", self.dtype,
            np.dtype(self.file_dtype).name)


def _numpy_kwargs(loss, params):
    kw = {}
    for k, v in params.items():
        if k == "reduction" or k == "distance":
            kw[k] = v
        elif k in FLAGS:
            kw[k] = bool(int(v))
        else:
            kw[k] = float(v)
    return kw


def _expected(case, inputs):
    kw = _numpy_kwargs(case.loss, case.params)
    if case.loss == "pair":
        return cn.pair(inputs["x1"], inputs["x2"], inputs["y"], **kw)
    if case.loss == "cosine":
        return cn.cosine(inputs["x1"], inputs["x2"], inputs["y"], **kw)
    if case.loss == "triplet":
        return cn.triplet(inputs["anchor"], inputs["positive"], inputs["negative"], **kw)
    if case.loss == "ntxent":
        return cn.ntxent(inputs["z"], **kw)
    if case.loss in ("clip", "siglip"):
        return getattr(cn, case.loss)(inputs["a"], inputs["b"], **kw)
    return cn.supcon(inputs["z"], inputs["labels"], **kw)


def _d1(arr):
    """With D = 1, cos and normalize are ±1 and their true gradient is exactly 0; what an
    implementation computes instead is rounding of order 1e-16/|x|. Keep |x| >= 0.2 there so that
    this stays under the absolute floor (a conditioning choice, not a looser tolerance)."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = np.where(arr < 0.0, -1.0, 1.0) * np.maximum(np.abs(arr), 0.2)
    return arr


def _labels_y(rng, n):
    """Pair labels: exact 0 and 1 and soft values in [0, 1]."""
    y = rng.uniform(0.0, 1.0, n)
    k = rng.permutation(n)
    y[k[: n // 3]] = 0.0
    y[k[n // 3: 2 * n // 3]] = 1.0
    return y


def _gen_pairlike(n, d, scale=0.35, identical=0, zero_row=False):
    def make(rng):
        x1 = rng.normal(size=(n, d)) * scale
        x2 = rng.normal(size=(n, d)) * scale
        if identical:
            x2[:identical] = x1[:identical]
        if zero_row:
            x1[0] = 0.0
        return {"x1": _d1(x1), "x2": _d1(x2), "y": _labels_y(rng, n)}
    return make


def _gen_cosinelike(n, d, identical=0, zero_row=False):
    def make(rng):
        # correlated pairs so that cos spreads over [-1, 1]
        x1 = rng.normal(size=(n, d))
        t = rng.uniform(-1.0, 1.0, (n, 1))
        x2 = t * x1 + rng.normal(size=(n, d)) * 0.7
        if identical:
            x2[:identical] = x1[:identical]
        if zero_row:
            x1[0] = 0.0
        return {"x1": _d1(x1), "x2": _d1(x2), "y": _labels_y(rng, n)}
    return make


def _gen_triplet(n, d, scale=0.35, a_eq_p=0, a_eq_n=0):
    def make(rng):
        a = rng.normal(size=(n, d)) * scale
        # p and n both near a (n a little farther): the hinge is active in part of the rows
        p = a + rng.normal(size=(n, d)) * scale
        ng = a + rng.normal(size=(n, d)) * scale * 1.3
        if a_eq_p:
            p[:a_eq_p] = a[:a_eq_p]
        if a_eq_n:
            ng[a_eq_p:a_eq_p + a_eq_n] = a[a_eq_p:a_eq_p + a_eq_n]
        return {"anchor": _d1(a), "positive": _d1(p), "negative": _d1(ng)}
    return make


def _gen_z(m, d, scale=1.0, zero_row=False):
    def make(rng):
        z = rng.normal(size=(m, d)) * scale
        if zero_row:
            z[0] = 0.0
        return {"z": _d1(z)}
    return make


def _gen_supcon(labels, d, scale=1.0, zero_row=False):
    labels = np.asarray(labels)

    def make(rng):
        z = rng.normal(size=(labels.size, d)) * scale
        if zero_row:
            z[0] = 0.0
        return {"z": _d1(z), "labels": labels.copy()}
    return make


def _gen_towers(n, k, d, scale=1.0):
    """a (n, d) and b (n + k, d), each partner b_i leaning towards a_i."""
    def make(rng):
        a = rng.normal(size=(n, d)) * scale
        b = rng.normal(size=(n + k, d)) * scale
        b[:n] += 0.7 * a
        return {"a": _d1(a), "b": _d1(b)}
    return make


def build_cases():
    cases = []
    reds = ("mean", "sum", "none")

    def add(*a, **k):
        cases.append(Case(*a, **k))

    def dtype_variants(name, loss, params, make):
        """The float64 run, plus float32 files and --dtype f32 for the mean reduction."""
        add(name, loss, params, make)
        if params.get("reduction") == "mean":
            add(name + " f32-files", loss, params, make, file_dtype=np.float32)
            add(name + " cli-f32", loss, params, make, dtype="f32")

    # ---- pair --------------------------------------------------------------------------------
    for dist in ("euclidean", "cosine"):
        for margin in ("0", "0.5", "1.0", "10"):
            for red in reds:
                mk = _gen_pairlike(9, 5) if dist == "euclidean" else _gen_cosinelike(9, 5)
                dtype_variants("pair", "pair", {"distance": dist, "margin": margin,
                                                "reduction": red}, mk)
    add("pair defaults", "pair", {}, _gen_pairlike(8, 4))
    for dist in ("euclidean", "cosine"):
        for red in reds:
            add("pair rows=1", "pair", {"distance": dist, "reduction": red}, _gen_pairlike(1, 3))
        add("pair D=1", "pair", {"distance": dist, "margin": "0.5"}, _gen_pairlike(7, 1))
        add("pair x1==x2 rows", "pair", {"distance": dist, "margin": "1.5", "reduction": "sum"},
            _gen_pairlike(6, 4, identical=3))
        add("pair x1==x2 rows", "pair", {"distance": dist, "reduction": "none"},
            _gen_pairlike(6, 4, identical=3))
        add("pair x1==x2 rows cli-f32", "pair", {"distance": dist, "margin": "0.8"},
            _gen_pairlike(6, 4, identical=3), dtype="f32")
    add("pair zero row (cos eps)", "pair", {"distance": "cosine", "margin": "1.2"},
        _gen_pairlike(5, 3, zero_row=True))

    # ---- triplet -----------------------------------------------------------------------------
    for dist in ("sqeuclidean", "euclidean", "cosine"):
        for swap in ("0", "1"):
            for margin in ("-0.25", "0", "0.3", "1.0"):
                for red in reds:
                    dtype_variants("triplet", "triplet",
                                   {"distance": dist, "swap": swap, "margin": margin,
                                    "reduction": red}, _gen_triplet(12, 5))
    add("triplet defaults", "triplet", {}, _gen_triplet(8, 4))
    for dist in ("sqeuclidean", "euclidean", "cosine"):
        for red in reds:
            add("triplet rows=1", "triplet", {"distance": dist, "swap": "1", "margin": "2",
                                              "reduction": red}, _gen_triplet(1, 4))
        add("triplet D=1", "triplet", {"distance": dist, "margin": "0.2"}, _gen_triplet(7, 1))
        add("triplet D=1 swap", "triplet", {"distance": dist, "margin": "0.2", "swap": "1",
                                            "reduction": "none"}, _gen_triplet(7, 1))
        # a == p in some rows: d(a, p) = 0 (euclidean: non-differentiable) and, with swap,
        # d(a, n) == d(p, n) exactly (tie -> (a, n)); a == n in others: d(a, n) = 0
        for swap in ("0", "1"):
            add("triplet a==p, a==n rows", "triplet",
                {"distance": dist, "swap": swap, "margin": "1.5", "reduction": "sum"},
                _gen_triplet(8, 3, a_eq_p=3, a_eq_n=2))
        add("triplet a==p rows cli-f32", "triplet", {"distance": dist, "swap": "1", "margin": "1.5"},
            _gen_triplet(8, 3, a_eq_p=3, a_eq_n=2), dtype="f32")

    # ---- NT-Xent -----------------------------------------------------------------------------
    for norm in ("0", "1"):
        for t in ("0.05", "0.1", "1.0"):
            for red in reds:
                scale = 1.0 if norm == "1" else 0.3
                dtype_variants("ntxent", "ntxent", {"normalize": norm, "temperature": t,
                                                    "reduction": red}, _gen_z(10, 6, scale))
    add("ntxent defaults", "ntxent", {}, _gen_z(8, 5))
    for norm in ("0", "1"):
        for red in reds:
            add("ntxent 2 rows", "ntxent", {"normalize": norm, "temperature": "0.5",
                                            "reduction": red}, _gen_z(2, 3, 0.5))
        add("ntxent D=1", "ntxent", {"normalize": norm, "temperature": "0.2",
                                     "reduction": "none"}, _gen_z(6, 1, 0.5))
        add("ntxent large batch", "ntxent", {"normalize": norm, "temperature": "0.1"},
            _gen_z(64, 16, 1.0 if norm == "1" else 0.15))
    # a zero row: ẑ = 0 and, by the clamp max(‖z‖, 1e-12) (as torch), its gradient is g / 1e-12
    for red in ("mean", "none"):
        add("ntxent zero row (normalize eps)", "ntxent", {"reduction": red},
            _gen_z(6, 3, zero_row=True))
        add("supcon zero row (normalize eps)", "supcon", {"reduction": red},
            _gen_supcon(np.array([3, 3, 4, 4, 3], np.int64), 3, zero_row=True))
    add("ntxent tiny temperature", "ntxent", {"temperature": "0.01", "reduction": "sum"},
        _gen_z(8, 4))

    # ---- SupCon ------------------------------------------------------------------------------
    label_sets = [
        ("mixed int64 (7,-3,1000,singletons)",
         np.array([7, -3, 7, 1000, -3, 5, 7, 42, 1000, -3], dtype=np.int64)),
        ("mixed int32 (7,-3,1000,singletons)",
         np.array([1000, 7, -3, 7, 11, -3, 1000, 7, 99], dtype=np.int32)),
    ]
    for norm in ("0", "1"):
        for tparams in ({"temperature": "0.07"},
                        {"temperature": "0.1", "base_temperature": "0.1"},
                        {"temperature": "0.2", "base_temperature": "0.07"},
                        {"temperature": "0.5", "base_temperature": "1.5"}):
            for lname, labels in label_sets:
                for red in reds:
                    scale = 1.0 if norm == "1" else 0.3
                    p = dict(tparams, normalize=norm, reduction=red)
                    dtype_variants("supcon " + lname, "supcon", p,
                                   _gen_supcon(labels, 6, scale))
    add("supcon defaults", "supcon", {}, _gen_supcon(np.array([0, 1, 0, 1, 2, 2], np.int64), 4))
    for red in reds:
        for dt in (np.int32, np.int64):
            add("supcon all distinct (valid 0)", "supcon", {"reduction": red},
                _gen_supcon(np.array([5, -1, 9, 1000, 3], dtype=dt), 4))
            add("supcon all equal", "supcon", {"reduction": red, "temperature": "0.3"},
                _gen_supcon(np.full(6, -3, dtype=dt), 4))
        add("supcon rows=1 (valid 0)", "supcon", {"reduction": red},
            _gen_supcon(np.array([7], dtype=np.int64), 3))
        add("supcon D=1", "supcon", {"reduction": red, "temperature": "0.5",
                                     "base_temperature": "0.25"},
            _gen_supcon(np.array([1, 2, 1, 2, 3], dtype=np.int32), 1))
    add("supcon large batch", "supcon", {"temperature": "0.1"},
        _gen_supcon(np.arange(60, dtype=np.int64) % 13 * 7 - 20, 16))
    add("supcon two views == labels by index", "supcon", {"temperature": "0.1", "normalize": "1"},
        _gen_supcon(np.tile(np.arange(5, dtype=np.int64), 2), 6))

    # ---- cosine ------------------------------------------------------------------------------
    for sq in ("0", "1"):
        for margin in ("-0.5", "0", "0.3"):
            for red in reds:
                dtype_variants("cosine", "cosine", {"squared": sq, "margin": margin,
                                                    "reduction": red}, _gen_cosinelike(9, 5))
    add("cosine defaults", "cosine", {}, _gen_cosinelike(8, 4))
    for sq in ("0", "1"):
        for red in reds:
            add("cosine rows=1", "cosine", {"squared": sq, "margin": "-0.5", "reduction": red},
                _gen_cosinelike(1, 4))
        add("cosine D=1", "cosine", {"squared": sq, "margin": "0.3"}, _gen_cosinelike(7, 1))
        add("cosine x1==x2 rows", "cosine", {"squared": sq, "margin": "-0.5", "reduction": "none"},
            _gen_cosinelike(6, 4, identical=3))
        add("cosine zero row (eps)", "cosine", {"squared": sq, "margin": "-0.5",
                                                "reduction": "sum"},
            _gen_cosinelike(5, 3, zero_row=True))

    # ---- CLIP and SigLIP ----------------------------------------------------------------------
    # every variant, K, normalisation and reduction once; grad_negatives=0 on every other case
    # with extra negatives; the dtype variants for the normalised mean
    for sym, in_batch in (("1", "1"), ("0", "1"), ("0", "0")):
        for k in ((0, 4) if in_batch == "1" else (4,)):
            for norm in ("0", "1"):
                for red in reds:
                    params = {"symmetric": sym, "in_batch_negatives": in_batch, "normalize": norm,
                              "logit_scale": "14.285714285714286" if norm == "1" else "2",
                              "reduction": red}
                    if k and red != "sum":
                        params["grad_negatives"] = "0" if red == "none" else "1"
                    make = _gen_towers(7, k, 5, 1.0 if norm == "1" else 0.4)
                    if norm == "1":
                        dtype_variants("clip K=%d" % k, "clip", params, make)
                    else:
                        add("clip K=%d" % k, "clip", params, make)
    for k in (0, 4):
        for norm in ("0", "1"):
            for red in reds:
                scale, bias = ("10", "-10") if norm == "1" else ("2", "0.5")
                params = {"normalize": norm, "logit_scale": scale, "logit_bias": bias,
                          "reduction": red}
                if k:
                    params["grad_negatives"] = "0" if red == "none" else "1"
                make = _gen_towers(7, k, 5, 1.0 if norm == "1" else 0.4)
                if norm == "1":
                    dtype_variants("siglip K=%d" % k, "siglip", params, make)
                else:
                    add("siglip K=%d" % k, "siglip", params, make)
    add("clip defaults", "clip", {}, _gen_towers(8, 3, 6))
    add("siglip defaults", "siglip", {}, _gen_towers(8, 3, 6))
    add("clip MNRL (s = 20, hard negatives)", "clip", {"symmetric": "0", "logit_scale": "20"},
        _gen_towers(6, 6, 8))
    add("clip MoCo v2 (queue, no gradient)", "clip",
        {"symmetric": "0", "in_batch_negatives": "0", "logit_scale": "5", "grad_negatives": "0"},
        _gen_towers(5, 16, 8))
    add("clip 1 pair", "clip", {"reduction": "none"}, _gen_towers(1, 2, 3))
    add("siglip 1 pair", "siglip", {"reduction": "sum"}, _gen_towers(1, 0, 3))
    add("clip D=1", "clip", {"logit_scale": "3", "symmetric": "0"}, _gen_towers(5, 2, 1))
    add("siglip D=1", "siglip", {"normalize": "0", "logit_scale": "2", "logit_bias": "0"},
        _gen_towers(5, 2, 1, 0.5))
    # large scales: never NaN (CLIP clamps its scale to 100); unnormalised logits in the hundreds
    for red in reds:
        add("clip large scale", "clip", {"reduction": red, "logit_scale": "100"},
            _gen_towers(9, 3, 6))
        add("siglip large scale", "siglip",
            {"reduction": red, "logit_scale": "100", "logit_bias": "-100"}, _gen_towers(9, 3, 6))
    add("clip larger scale", "clip", {"logit_scale": "1000"}, _gen_towers(9, 3, 6))
    add("siglip larger scale", "siglip", {"logit_scale": "1000", "logit_bias": "-1000"},
        _gen_towers(9, 3, 6))
    add("clip large unnormalised logits", "clip", {"normalize": "0", "logit_scale": "100"},
        _gen_towers(9, 3, 6))
    add("siglip large unnormalised logits", "siglip",
        {"normalize": "0", "logit_scale": "100", "logit_bias": "3", "reduction": "none"},
        _gen_towers(9, 3, 6))
    add("clip zero row (normalize eps)", "clip", {"reduction": "none"},
        lambda rng: dict(_gen_towers(5, 2, 3)(rng), a=np.vstack([np.zeros((1, 3)),
                                                                  rng.normal(size=(4, 3))])))
    add("clip large batch", "clip", {"logit_scale": "20"}, _gen_towers(48, 16, 12))
    add("siglip large batch", "siglip", {}, _gen_towers(48, 16, 12))

    # ---- empty batches (pair, triplet, cosine accept rows == 0: loss 0) ----------------------
    for red in reds:
        add("pair rows=0", "pair", {"reduction": red}, _gen_pairlike(0, 3))
        add("triplet rows=0", "triplet", {"reduction": red}, _gen_triplet(0, 3))
        add("cosine rows=0", "cosine", {"reduction": red}, _gen_cosinelike(0, 3))

    # ---- NaN / Inf in an input propagate to the loss -----------------------------------------
    def poisoned(make, key, value):
        def mk(rng):
            d = make(rng)
            d[key][1, 0] = value
            return d
        return mk

    for red in ("mean", "sum"):
        add("pair NaN input", "pair", {"reduction": red},
            poisoned(_gen_pairlike(4, 3), "x1", np.nan), expect_nonfinite=True)
        # (an Inf in `negative` may rightly give a finite loss: max(0, d(a,p) − ∞ + α) = 0)
        add("triplet NaN input", "triplet", {"reduction": red},
            poisoned(_gen_triplet(4, 3), "negative", np.nan), expect_nonfinite=True)
        add("triplet Inf input", "triplet", {"reduction": red, "distance": "euclidean"},
            poisoned(_gen_triplet(4, 3), "positive", np.inf), expect_nonfinite=True)
        add("ntxent NaN input", "ntxent", {"reduction": red},
            poisoned(_gen_z(4, 3), "z", np.nan), expect_nonfinite=True)
        add("supcon NaN input", "supcon", {"reduction": red},
            poisoned(_gen_supcon(np.array([1, 1, 2, 2], np.int64), 3), "z", np.nan),
            expect_nonfinite=True)
        add("cosine NaN input", "cosine", {"reduction": red},
            poisoned(_gen_cosinelike(4, 3), "x2", np.nan), expect_nonfinite=True)
        # (an Inf without normalisation: exp(−∞) and softplus(−∞) must not hide it)
        for loss in ("clip", "siglip"):
            add("%s NaN input" % loss, loss, {"reduction": red},
                poisoned(_gen_towers(4, 2, 3), "b", np.nan), expect_nonfinite=True)
            add("%s Inf input" % loss, loss, {"reduction": red, "normalize": "0"},
                poisoned(_gen_towers(4, 2, 3), "a", np.inf), expect_nonfinite=True)

    # ---- invalid arguments: the CLI must reject them (non-zero exit, no loss.npy) ------------
    add("pair NaN input with check_inputs=1", "pair", {"check_inputs": "1"},
        poisoned(_gen_pairlike(4, 3), "x1", np.nan), expect_ok=False)
    def bad_y(v):
        def make(rng):
            d = _gen_pairlike(4, 3)(rng)
            d["y"][1] = v
            return d
        return make

    for loss in ("pair", "cosine"):
        for v in (1.5, -0.25, float("nan")):
            add("%s invalid y=%r" % (loss, v), loss, {}, bad_y(v), expect_ok=False)
    add("pair negative margin", "pair", {"margin": "-0.5"}, _gen_pairlike(4, 3), expect_ok=False)
    add("cosine margin > 1", "cosine", {"margin": "1.5"}, _gen_cosinelike(4, 3), expect_ok=False)
    add("ntxent odd rows", "ntxent", {}, _gen_z(5, 3), expect_ok=False)
    add("ntxent temperature 0", "ntxent", {"temperature": "0"}, _gen_z(4, 3), expect_ok=False)
    add("supcon negative temperature", "supcon", {"temperature": "-0.1"},
        _gen_supcon(np.array([1, 1, 2], np.int64), 3), expect_ok=False)
    add("triplet unknown distance", "triplet", {"distance": "manhattan"}, _gen_triplet(3, 2),
        expect_ok=False)
    add("triplet unknown reduction", "triplet", {"reduction": "max"}, _gen_triplet(3, 2),
        expect_ok=False)
    add("clip symmetric without in-batch negatives", "clip", {"in_batch_negatives": "0"},
        _gen_towers(4, 2, 3), expect_ok=False)
    add("clip logit_scale 0", "clip", {"logit_scale": "0"}, _gen_towers(4, 2, 3), expect_ok=False)
    add("siglip negative logit_scale", "siglip", {"logit_scale": "-1"}, _gen_towers(4, 2, 3),
        expect_ok=False)
    add("clip b with fewer rows than a", "clip", {},
        lambda rng: {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=(3, 3))}, expect_ok=False)
    add("siglip b of another dim", "siglip", {},
        lambda rng: {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=(5, 2))}, expect_ok=False)
    add("siglip NaN input with check_inputs=1", "siglip", {"check_inputs": "1"},
        poisoned(_gen_towers(4, 2, 3), "a", np.nan), expect_ok=False)

    for i, c in enumerate(cases):
        c.index = i
    return cases


# ------------------------------------------------------------------------------------------------
# running and comparing
# ------------------------------------------------------------------------------------------------
def rel_err(got, exp):
    got = np.asarray(got, dtype=np.float64)
    exp = np.asarray(exp, dtype=np.float64)
    return float(np.linalg.norm((got - exp).ravel()) / max(np.linalg.norm(exp.ravel()), 1e-300))


def close(got, exp):
    """Norm-wise ‖got − exp‖ <= RTOL·‖exp‖ + ATOL, and (for matrices) row by row with a floor."""
    got = np.asarray(got, dtype=np.float64)
    exp = np.asarray(exp, dtype=np.float64)
    if got.shape != exp.shape or not np.all(np.isfinite(got)):
        return False
    whole = np.linalg.norm(exp.ravel())
    if not np.linalg.norm((got - exp).ravel()) <= RTOL * whole + ATOL:
        return False
    if exp.ndim == 2:
        rn = np.linalg.norm(exp, axis=1)
        re = np.linalg.norm(got - exp, axis=1)
        if not np.all(re <= RTOL * np.maximum(rn, ROW_FLOOR * whole) + ATOL):
            return False
    return True


def diff_text(label, got, exp, limit=6):
    got = np.asarray(got, dtype=np.float64)
    exp = np.asarray(exp, dtype=np.float64)
    lines = []
    if got.shape != exp.shape:
        return ["    %s: shape %s, expected %s" % (label, got.shape, exp.shape)]
    lines.append("    %s: norm-wise relative error %.3e (tolerance %.0e, floor %.0e)"
                 % (label, rel_err(got, exp), RTOL, ATOL))
    if got.ndim == 0:
        lines.append("      got %.17g expected %.17g" % (got, exp))
        return lines
    bad = np.argwhere(~np.isclose(got, exp, rtol=RTOL, atol=ATOL))
    for idx in bad[:limit]:
        t = tuple(int(i) for i in idx)
        lines.append("      at %s: got %.17g expected %.17g" % (t, got[t], exp[t]))
    if len(bad) > limit:
        lines.append("      ... %d entries differ in all" % len(bad))
    return lines


def run_case(cli, case, seed, root):
    """Returns (ok, [message lines])."""
    rng = np.random.default_rng([seed, case.index])
    raw = case.make(rng)
    work = os.path.join(root, "case%04d" % case.index)
    din = os.path.join(work, "in")
    dout = os.path.join(work, "out")
    os.makedirs(din)
    os.makedirs(dout)
    used = {}
    for k, v in raw.items():
        if k == "labels":
            np.save(os.path.join(din, k + ".npy"), v)
            used[k] = v
            continue
        if case.dtype == "f32" and k == "y":
            v = v.astype(np.float32).astype(np.float64)  # y exactly representable: no ambiguity
        arr = v.astype(case.file_dtype)
        np.save(os.path.join(din, k + ".npy"), arr)
        x = arr.astype(np.float64)
        if case.dtype == "f32":
            x = x.astype(np.float32).astype(np.float64)  # the CLI rounds inputs to float32
        used[k] = x
    cmd = [cli, "eval", case.loss, "--in", din, "--out", dout, "--device", "cpu"]
    if case.dtype != "f64":
        cmd += ["--dtype", case.dtype]
    cmd += ["%s=%s" % kv for kv in case.params.items()]
    head = ["FAIL %s  (seed %d, case %d)" % (case.describe(), seed, case.index),
            "    command: " + " ".join(cmd)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, head + ["    could not run: %s" % e]
    tail = ["    stdout: " + proc.stdout.strip()[:500], "    stderr: " + proc.stderr.strip()[:500]]

    if not case.expect_ok:
        msgs = []
        if proc.returncode == 0:
            msgs.append("    expected the CLI to reject the input, but it exited 0")
        if proc.returncode < 0:
            msgs.append("    the CLI died from signal %d" % -proc.returncode)
        if os.path.exists(os.path.join(dout, "loss.npy")):
            msgs.append("    loss.npy was written although the input is invalid")
        if not proc.stderr.strip():
            msgs.append("    nothing on stderr to say why")
        return (not msgs), (head + msgs + tail if msgs else [])

    if proc.returncode != 0:
        return False, head + ["    exit status %d" % proc.returncode] + tail

    if case.expect_nonfinite:
        # contract: NaN or Inf in an input propagates to the loss (not silently dropped);
        # `closs eval --help`: a non-finite loss is null in the JSON line, with "loss_text"
        msgs = []
        try:
            got_loss = np.load(os.path.join(dout, "loss.npy"))
            if np.all(np.isfinite(got_loss)):
                msgs.append("    loss.npy %r is finite: the NaN/Inf in the input was dropped"
                            % (got_loss,))
        except (OSError, ValueError) as e:
            msgs.append("    loss.npy: cannot load (%s)" % e)
        try:
            js = json.loads(proc.stdout.strip().splitlines()[-1])
            if js.get("loss") is not None or "loss_text" not in js:
                msgs.append("    JSON: expected loss null and a loss_text for a non-finite loss")
        except (ValueError, IndexError, AttributeError) as e:
            msgs.append("    stdout is not one JSON object line (%s)" % e)
        return (not msgs), (head + msgs + tail if msgs else [])

    exp_loss, exp_grads = _expected(case, used)
    rows = used[INPUT_NAMES[case.loss][0]].shape[0]
    dim = used[INPUT_NAMES[case.loss][0]].shape[1]
    red = case.params.get("reduction", "mean")
    msgs = []

    # loss.npy
    try:
        got_loss = np.load(os.path.join(dout, "loss.npy"))
    except (OSError, ValueError) as e:
        got_loss = None
        msgs.append("    loss.npy: cannot load (%s)" % e)
    if got_loss is not None:
        want_shape = (rows,) if red == "none" else ()
        if got_loss.dtype != np.float64 or got_loss.shape != want_shape:
            msgs.append("    loss.npy: dtype %s shape %s, expected float64 shape %s"
                        % (got_loss.dtype, got_loss.shape, want_shape))
        elif not close(got_loss, exp_loss):
            msgs += diff_text("loss", got_loss, exp_loss)

    # grad_*.npy (b's gradient has the shape NumPy gives: only the partner rows with
    # grad_negatives=0; the logit scale's and bias's are 0-d)
    want = {"grad_%s.npy" % g for g in GRAD_NAMES[case.loss]}
    present = {f for f in os.listdir(dout) if f.startswith("grad_")}
    if present != want:
        msgs.append("    gradient files %s, expected %s" % (sorted(present), sorted(want)))
    for g in GRAD_NAMES[case.loss]:
        path = os.path.join(dout, "grad_%s.npy" % g)
        if not os.path.exists(path):
            continue
        try:
            got = np.load(path)
        except (OSError, ValueError) as e:
            msgs.append("    grad_%s.npy: cannot load (%s)" % (g, e))
            continue
        want_shape = np.shape(exp_grads[g])
        if got.dtype != np.float64 or got.shape != want_shape:
            msgs.append("    grad_%s.npy: dtype %s shape %s, expected float64 %s"
                        % (g, got.dtype, got.shape, want_shape))
        elif not close(got, exp_grads[g]):
            msgs += diff_text("grad_" + g, got, exp_grads[g])

    # stdout JSON
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        if len(lines) != 1:
            raise ValueError("%d non-empty lines on stdout" % len(lines))
        js = json.loads(lines[0])
        if not isinstance(js, dict):
            raise ValueError("not an object")
    except ValueError as e:
        js = None
        msgs.append("    stdout is not one JSON object line (%s)" % e)
    if js is not None:
        for key in ("loss", "device", "dtype", "rows", "dim", "reduction"):
            if key not in js:
                msgs.append("    JSON: key %r missing" % key)
        if js.get("device", "cpu") != "cpu":
            msgs.append("    JSON: device %r, expected 'cpu'" % js.get("device"))
        if js.get("dtype", case.dtype) != case.dtype:
            msgs.append("    JSON: dtype %r, expected %r" % (js.get("dtype"), case.dtype))
        if js.get("rows", rows) != rows:
            msgs.append("    JSON: rows %r, expected %d" % (js.get("rows"), rows))
        if js.get("dim", dim) != dim:
            msgs.append("    JSON: dim %r, expected %d" % (js.get("dim"), dim))
        if js.get("reduction", red) != red:
            msgs.append("    JSON: reduction %r, expected %r" % (js.get("reduction"), red))
        if "loss" in js:
            jl = js["loss"]
            if red == "none":
                # not a single value: `closs eval --help` documents null (a list of the per-row
                # losses would do as well)
                if jl is not None and not (isinstance(jl, list) and len(jl) == rows and
                                           close(np.array(jl, dtype=np.float64), exp_loss)):
                    msgs.append("    JSON: loss %r for reduction none, expected null (or the "
                                "per-row losses)" % (jl,))
            elif not isinstance(jl, (int, float)) or not close(float(jl), exp_loss):
                msgs.append("    JSON: loss %r, expected %.17g" % (jl, exp_loss))
        if case.loss == "supcon":
            if js.get("valid") != exp_grads["valid"]:
                msgs.append("    JSON: valid %r, expected %d" % (js.get("valid"), exp_grads["valid"]))
        if case.loss in ("clip", "siglip"):
            negatives = used["b"].shape[0] - rows
            if js.get("negatives") != negatives:
                msgs.append("    JSON: negatives %r, expected %d" % (js.get("negatives"), negatives))

    if msgs:
        return False, head + msgs + tail
    return True, []


def main(argv):
    args = list(argv[1:])
    seed = os.environ.get("CLOSS_TEST_SEED")
    jobs = min(4, os.cpu_count() or 1)
    verbose = False
    cli = None
    while args:
        a = args.pop(0)
        if a == "--seed" and args:
            seed = args.pop(0)
        elif a == "--jobs" and args:
            jobs = max(1, int(args.pop(0)))
        elif a == "--verbose":
            verbose = True
        elif cli is None and not a.startswith("--"):
            cli = a
        else:
            print(__doc__)
            return 2
    if cli is None:
        print(__doc__)
        return 2
    if not (os.path.isfile(cli) and os.access(cli, os.X_OK)):
        print("test_cli_vs_numpy: %s is not an executable file" % cli)
        return 2
    seed = int(seed) if seed is not None else secrets.randbits(32)
    cases = build_cases()
    print("cli-vs-numpy: %s, %d cases, seed %d (reproduce with --seed %d or CLOSS_TEST_SEED=%d)"
          % (cli, len(cases), seed, seed, seed), flush=True)

    root = tempfile.mkdtemp(prefix="closs-cli-vs-numpy-")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda c: run_case(cli, c, seed, root), cases))

    passed = failed = 0
    for case, (ok, msgs) in zip(cases, results):
        if ok:
            passed += 1
            if verbose:
                print("ok   " + case.describe())
        else:
            failed += 1
            print("\n".join(msgs), flush=True)
    if failed:
        print("cli-vs-numpy: the inputs of the failed cases are kept under %s" % root)
        for case, (ok, _) in zip(cases, results):
            if ok:
                shutil.rmtree(os.path.join(root, "case%04d" % case.index), ignore_errors=True)
    else:
        shutil.rmtree(root, ignore_errors=True)
    print("cli-vs-numpy: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
