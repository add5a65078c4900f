#!/usr/bin/env python3
"""CLIP's and SigLIP's walks on the tile engine: instructions per column tile, counted in their
SASS, and the time they predict.

    bench/two_tower_sass_count.py [--arch sm_90] [--rows 65536] [--dim 256]

Compiles bench/two_tower_tile_count.cu (cuda/two_tower_tile_kernels.cuh's walks, bf16, with the
plain element loop only) and counts each kernel's column-walk loop once through, as
bench/tile_sass_count.py does for NT-Xent and SupCon (whose model, per CTA tile, this reuses:
issue, HMMA, shared-memory wavefronts, MUFU, L2 reads of the column tile). Then the walks of a
forward+backward call at N pairs, K = 0 (cuda/two_tower_fused.cu): CLIP forward a over b and b
over a, backward a over b and b over a; SigLIP the backward's two walks (the loss on the way). The
time of a call: the busiest SM's CTA tiles × the largest resource (perfect overlap) up to their sum
(none), per walk, added."""
import argparse
import math
import re
import sys

import tile_sass_count as counting  # compile_and_disassemble, loop_histogram, sass_check

WAVEFRONTS = counting.WAVEFRONTS


def shape(pass_name, dim):
    """(warps, anchor rows, column rows, column vectors) of TtForwardShape and TtBackwardShape
    (cuda/two_tower_tile_kernels.cuh; kept in step with them by hand)."""
    if pass_name == "forward":
        if dim > 256:
            return (4, 128, 32, 1)  # 4 warps of 32 rows, anchors in shared memory
        return (8, 256 if dim <= 128 else 128, 64, 1)
    return (8, 64 if dim > 256 else 128, 64 if dim <= 128 else 32, 3)  # D = 512: warps in pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--rows", type=int, default=65536, help="N (pairs), K = 0")
    parser.add_argument("--dim", type=int, default=256, help="D of the prediction (the counts are for every D)")
    parser.add_argument("--sms", type=int, default=132)
    parser.add_argument("--clock", type=float, default=1.83e9, help="SM clock (Hz): the H100 SXM's at 989 TFLOP/s")
    parser.add_argument("--hmma-clocks", type=float, default=1.5)
    parser.add_argument("--l2-rate", type=float, default=5.5e12, help="L2 read bytes/s (an estimate)")
    args = parser.parse_args()

    functions = counting.sass_check.parse_sass(counting.compile_and_disassemble(args.arch, "two_tower_tile_count.cu"))
    names = counting.sass_check.demangle(sorted(functions))
    counts = {}
    for mangled, code in functions.items():
        m = re.search(r"count_(forward|backward)_walk_kernel<(true|false), (\d+)>", names[mangled])
        if m:
            counts[(m.group(1), "siglip" if m.group(2) == "true" else "clip", int(m.group(3)))] = \
                counting.loop_histogram(code)
    if len(counts) != 16:
        sys.exit(f"two_tower_sass_count: found {len(counts)} of the 16 count kernels")

    columns = ("all", "HMMA", "LDSM", "LDS", "LDGSTS", "LDG", "MUFU", "FFMA", "FMUL", "FADD", "F2FP", "BAR")
    print(f"SASS per warp and column tile ({args.arch}, bf16, the plain element loop)\n")
    print("| walk | loss | D | " + " | ".join(columns) + " |")
    print("| --- " * (3 + len(columns)) + "|")
    for (pass_name, loss, dim), h in sorted(counts.items(), key=lambda kv: (kv[0][0] != "forward", kv[0][1], kv[0][2])):
        print(f"| {pass_name} | {loss} | {dim} | " + " | ".join(str(h.get(c, 0)) for c in columns) + " |")

    dim = 64 if args.dim <= 64 else 128 if args.dim <= 128 else 256 if args.dim <= 256 else 512
    print(f"\nPredicted at N = {args.rows}, K = 0, D = {args.dim} (variant {dim}), {args.sms} SMs at "
          f"{args.clock / 1e9:.2f} GHz: SM clocks per CTA tile, then ms per walk\n")
    print("| walk | loss | issue | HMMA | shared | MUFU | L2 | bound | tiles/SM | ms (overlap … none) |")
    print("| --- " * 10 + "|")
    totals = {}
    for loss in ("clip", "siglip"):
        walks = ("forward", "forward", "backward", "backward") if loss == "clip" else ("backward", "backward")
        for pass_name in ("forward", "backward"):
            warps, anchor_rows, tile_rows, vectors = shape(pass_name, dim)
            tiles_per_sm = math.ceil(math.ceil(args.rows / anchor_rows) / args.sms) * math.ceil(args.rows / tile_rows)
            h = counts[(pass_name, loss, dim)]
            clocks = {
                "issue": h["all"] * warps / 4,
                "HMMA": h.get("HMMA", 0) * warps * args.hmma_clocks,
                "shared": sum(h.get(op, 0) * w for op, w in WAVEFRONTS.items()) * warps,
                "MUFU": h.get("MUFU", 0) * warps * 32 / 16,
                "L2": (tile_rows * args.dim * 2 + vectors * 4 * tile_rows) * args.sms * args.clock / args.l2_rate,
            }
            bound = max(clocks, key=clocks.get)
            low = tiles_per_sm * clocks[bound] / args.clock * 1e3
            high = tiles_per_sm * sum(clocks.values()) / args.clock * 1e3
            n = walks.count(pass_name)
            if n:
                previous = totals.get(loss, (0.0, 0.0))
                totals[loss] = (previous[0] + n * low, previous[1] + n * high)
            resources = " | ".join(f"{clocks[k]:.0f}" for k in ("issue", "HMMA", "shared", "MUFU", "L2"))
            print(f"| {pass_name} | {loss} | {resources} | {bound} | {tiles_per_sm} | {low:.2f} … {high:.2f} |")
    print()
    for loss, (low, high) in totals.items():
        floor = (8 if loss == "clip" else 6) * args.rows ** 2 * args.dim / 989e12 * 1e3
        print(f"{loss}: forward+backward walks {low:.1f} … {high:.1f} ms; floor {floor:.2f} ms "
              f"({(8 if loss == 'clip' else 6)}·N²·D at 989 TFLOP/s): {low / floor:.1f}× … {high / floor:.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
