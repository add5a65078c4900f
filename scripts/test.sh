#!/usr/bin/env bash
# The README's test command: installs what is missing, builds everything in build/, runs every
# test suite through CTest (the GPU tests skip, visibly, where no CUDA device is present).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
