#!/usr/bin/env python3
"""Warp instructions per row of the row-wise kernels, counted in their SASS (bench/NOTES.md).

    cuobjdump -sass libcloss.so | bench/rowwise_sass_count.py [--dim 128]

For each rowwise_kernel it counts the instructions of the row loop once through, leaving out the
loops that only rows longer than the registers hold take (any backward branch inside the row loop
closes such a loop) and the IEEE division and square-root slow paths (subroutines outside the
loop). Both sides of the few short branches inside (NONE or not, the label's dtype) are counted,
so the count is a slight over-estimate of the path a row takes. Dividing by the rows a warp
handles at once (32 / lanes, lanes from the kernel's layout rule at --dim) gives instructions per
row. Needs nothing but the SASS text; cuobjdump and the nvdisasm it runs come from
scripts/install-deps.sh (PyPI's nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm)."""
import argparse
import re
import subprocess
import sys

LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def functions(text):
    for chunk in re.split(r"\n\s+Function : ", text)[1:]:
        name = chunk.split("\n", 1)[0].strip()
        yield name, [(int(a, 16), op, rest) for a, _, op, rest in LINE.findall(chunk)]


def row_loop_count(code):
    """Instructions of the outermost loop (the row loop), inner loops left out."""
    branches = [(addr, int(m.group(1), 16)) for addr, op, rest in code if op.startswith("BRA")
                for m in [re.search(r"0x([0-9a-f]+)", rest)] if m and int(m.group(1), 16) < addr]
    if not branches:
        return None
    head, back = min(((t, a) for a, t in branches), key=lambda tb: tb[0] - tb[1])
    inner = [(t, a) for a, t in branches if head < t and a < back]
    count = 0
    for addr, _, _ in code:
        if head <= addr <= back and not any(t <= addr <= a for t, a in inner):
            count += 1
    return count


def lanes_for(dim, vec, chunks):
    lanes = 1
    while lanes < 32 and vec * chunks * lanes < dim:
        lanes *= 2
    return lanes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args()
    kinds = {"0": "pair", "1": "triplet", "2": "cosine"}
    distances = {"0": "euclidean", "1": "sqeuclidean", "2": "cosine"}
    print(f"{'kernel':<48} {'row loop':>8} {'rows/warp':>9} {'per row':>8}")
    for name, code in functions(sys.stdin.read()):
        m = re.search(r"rowwise_kernelI(f|6__half|13__nv_bfloat16)NS0_4LossIL14closs_row_kind(\d)EL16"
                      r"closs_distance_t(\d)ELi(\d)EEELi(\d+)E", name)
        if not m:
            continue
        dtype = {"f": "f32", "6__half": "f16", "13__nv_bfloat16": "bf16"}[m.group(1)]
        vec = int(m.group(5))
        if vec == 1:
            continue  # the unaligned fallback
        chunks = 2 if dtype != "f32" else 4  # rowwise_kernels.cuh, chunks_for()
        rows = 32 // lanes_for(args.dim, vec, chunks)
        count = row_loop_count(code)
        label = f"{kinds[m.group(2)]} {distances[m.group(3)]}{' swap' if m.group(4) == '1' else ''} {dtype}"
        print(f"{label:<48} {count:>8} {rows:>9} {count / rows:>8.0f}")


if __name__ == "__main__":
    main()
