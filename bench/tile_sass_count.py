#!/usr/bin/env python3
"""The tile engine's instructions per column tile, counted in its SASS, and the time they predict.

    bench/tile_sass_count.py [--arch sm_90] [--rows 65536] [--dim 128]

Compiles bench/tile_count.cu (the library's NT-Xent/SupCon tile kernels, bf16, with one element
loop each: plain, positives, masked) with nvcc to a cubin, disassembles it (cuobjdump, nvdisasm:
scripts/install-deps.sh), and counts, for each kernel, the instructions of its column-walk loop
(the outermost loop holding an HMMA, its inner loops left out): what one 64-column tile (32 at
D = 256 backward) of 16-byte aligned rows costs one warp. Then the model of bench/NOTES.md ("The tile engine"), per CTA tile (a block's anchor rows × one
column tile), from those counts and an H100 SXM's rates:
  issue      all instructions × warps / 4 schedulers
  HMMA       HMMA.16816 × warps × --hmma-clocks SM clocks each (mma.sync at 2/3 of the dense
             wgmma peak: 1.5 SM clocks per 16×8×16 at 4096 flops/clock)
  shared     wavefronts (128 bytes a clock): LDSM.x4 4, LDGSTS (a warp's 32 × 16-byte cp.async) 4,
             LDS and STS 1 (the column vectors: the 8 lanes of a fragment column read one address)
  MUFU       MUFU × warps × 32 lanes / 16 a clock
  L2         the column tile's bytes (its rows of z) and the vectors' global loads, at --l2-rate
and the time of a pass over rows × rows: the busiest SM's CTA tiles (⌈blocks/SMs⌉ blocks of
⌈rows/column rows⌉ tiles: the wave tail included) × the largest of them (perfect overlap) up to
their sum (none). NT-Xent's tiles are nearly all plain (the masked
ones, a diagonal or a partner, are 2 of rows/64 per warp); SupCon's all test positives."""
import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import sass_check  # noqa: E402  (find_tool, parse_sass, main_loop, demangle)

KINDS = ("plain", "positives", "masked")
WAVEFRONTS = {"LDSM": 4, "LDGSTS": 4, "LDS": 1, "STS": 1}


def shape(pass_name, dim):
    """(warps, anchor rows, column rows) of contrastive_tile_kernels.cuh's TileForwardShape and
    TileBackwardShape (kept in step with them by hand)."""
    if pass_name == "forward":
        return (8, 256, 64) if dim <= 128 else (8, 128, 64)
    return (8, 128, 64 if dim <= 128 else 32)


def compile_and_disassemble(arch, source="tile_count.cu"):
    """The SASS of bench/<source> (bench/two_tower_sass_count.py compiles its own)."""
    nvcc = shutil.which("nvcc")
    tools, missing = sass_check.find_tools(None)
    if not nvcc or missing:
        sys.exit(f"tile_sass_count: {'nvcc not on PATH' if not nvcc else missing}")
    os.environ["PATH"] = os.path.dirname(tools["nvdisasm"]) + os.pathsep + os.environ["PATH"]
    with tempfile.TemporaryDirectory() as work:
        cubin = os.path.join(work, "count.cubin")
        subprocess.run([nvcc, "-O3", f"-arch={arch}", "-std=c++17", "-fmad=false", "-cubin", "-o", cubin,
                        f"-I{ROOT}/include", f"-I{ROOT}/host", f"-I{ROOT}/cuda", os.path.join(HERE, source)],
                       check=True)
        return subprocess.run([tools["cuobjdump"], "-sass", cubin], check=True, capture_output=True,
                              text=True).stdout


def loop_histogram(code):
    """Opcode counts of the column-walk loop once through, its inner loops left out: the element-wise
    staging of rows cp.async cannot copy (the model assumes 16-byte aligned rows)."""
    span = sass_check.main_loop(code)
    inner = [s for s in sass_check.loops(code) if s != span and span[0] <= s[0] and s[1] <= span[1]]
    histogram = {}
    for address, opcode, _ in code:
        if span[0] <= address <= span[1] and not any(a <= address <= b for a, b in inner):
            base = opcode.split(".")[0]
            histogram[base] = histogram.get(base, 0) + 1
    histogram["all"] = sum(histogram.values())
    return histogram


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--rows", type=int, default=65536)
    parser.add_argument("--dim", type=int, default=128, help="D of the prediction (the counts are for every D)")
    parser.add_argument("--sms", type=int, default=132)
    parser.add_argument("--clock", type=float, default=1.83e9, help="SM clock (Hz): the H100 SXM's at 989 TFLOP/s")
    parser.add_argument("--hmma-clocks", type=float, default=1.5)
    parser.add_argument("--l2-rate", type=float, default=5.5e12, help="L2 read bytes/s (an estimate)")
    args = parser.parse_args()

    functions = sass_check.parse_sass(compile_and_disassemble(args.arch))
    names = sass_check.demangle(sorted(functions))
    counts = {}
    for mangled, code in functions.items():
        m = re.search(r"count_(forward|backward)_kernel<__nv_bfloat16, (true|false), (\d+), "
                      r"\(closs::\(anonymous namespace\)::TileKind\)(\d)>", names[mangled])
        if m:
            key = (m.group(1), m.group(2) == "true", int(m.group(3)), KINDS[int(m.group(4))])
            counts[key] = loop_histogram(code)
    if len(counts) != 36:
        sys.exit(f"tile_sass_count: found {len(counts)} of the 36 count kernels")

    columns = ("all", "HMMA", "LDSM", "LDS", "STS", "LDGSTS", "LDG", "MUFU", "FFMA", "FMUL", "FADD", "F2FP", "SHFL",
               "BAR")
    print(f"SASS per warp and column tile ({args.arch}, bf16; forward/backward, shift, D, element loop)\n")
    print("| pass | shift | D | loop | " + " | ".join(columns) + " |")
    print("| --- " * (4 + len(columns)) + "|")
    for (pass_name, fixed, dim, kind), h in sorted(counts.items(), key=lambda kv: (kv[0][0] != "forward", not kv[0][1],
                                                                                 kv[0][2], KINDS.index(kv[0][3]))):
        print(f"| {pass_name} | {'fixed' if fixed else 'online'} | {dim} | {kind} | "
              + " | ".join(str(h.get(c, 0)) for c in columns) + " |")

    dim = 64 if args.dim <= 64 else 128 if args.dim <= 128 else 256
    print(f"\nPredicted at M = {args.rows}, D = {args.dim} (variant {dim}), {args.sms} SMs at "
          f"{args.clock / 1e9:.2f} GHz: SM clocks per CTA tile, then ms per pass\n")
    print("| pass | shift | loop | issue | HMMA | shared | MUFU | L2 | bound | tiles/SM | ms (overlap … none) |")
    print("| --- " * 11 + "|")
    for pass_name in ("forward", "backward"):
        warps, anchor_rows, tile_rows = shape(pass_name, dim)
        # The busiest SM's CTA tiles: its CTAs (co-resident ones share its units) × tiles each.
        tiles_per_sm = math.ceil(math.ceil(args.rows / anchor_rows) / args.sms) * math.ceil(args.rows / tile_rows)
        vector_bytes = (2 if pass_name == "forward" else 5) * 4 * tile_rows
        for fixed in (True, False):
            for kind in ("plain", "positives"):
                h = counts[(pass_name, fixed, dim, kind)]
                clocks = {
                    "issue": h["all"] * warps / 4,
                    "HMMA": h.get("HMMA", 0) * warps * args.hmma_clocks,
                    "shared": sum(h.get(op, 0) * w for op, w in WAVEFRONTS.items()) * warps,
                    "MUFU": h.get("MUFU", 0) * warps * 32 / 16,
                    "L2": (tile_rows * args.dim * 2 + vector_bytes) * args.sms * args.clock / args.l2_rate,
                }
                bound = max(clocks, key=clocks.get)
                low = tiles_per_sm * clocks[bound] / args.clock * 1e3
                high = tiles_per_sm * sum(clocks.values()) / args.clock * 1e3
                print(f"| {pass_name} | {'fixed' if fixed else 'online'} | {kind} | "
                      + " | ".join(f"{clocks[k]:.0f}" for k in ("issue", "HMMA", "shared", "MUFU", "L2"))
                      + f" | {bound} | {tiles_per_sm} | {low:.2f} … {high:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
