#!/usr/bin/env bash
# Installs what is missing on a fresh Debian 12 machine. Needs root for apt-get; does nothing when
# everything is already there.
#   scripts/install-deps.sh         the build and the tests: Criterion, pkg-config, NumPy
#   scripts/install-deps.sh --ci    also the hardening tools of .ci/run: clang and libFuzzer,
#                                   clang-tidy, clang-format, cppcheck
set -euo pipefail

packages=()
need() { command -v "$1" >/dev/null || packages+=("$2"); }
need cmake cmake
need pkg-config pkg-config
pkg-config --exists criterion 2>/dev/null || packages+=(libcriterion-dev)
if [[ ${1:-} == --ci ]]; then
    need clang clang
    need clang-tidy clang-tidy
    need clang-format clang-format
    need cppcheck cppcheck
    ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
        packages+=(libclang-rt-14-dev)
fi
if ((${#packages[@]})); then
    echo "install-deps: apt-get install ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

if ! python3 -c 'import numpy' 2>/dev/null; then
    echo "install-deps: pip install numpy"
    python3 -m pip install -q numpy
fi
