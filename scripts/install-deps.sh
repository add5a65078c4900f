#!/usr/bin/env bash
# Installs what is missing on a fresh Debian 12 machine. Needs root for apt-get; does nothing when
# everything is already there.
#   scripts/install-deps.sh         the build and the tests: Criterion, pkg-config, NumPy, pytest,
#                                   matplotlib (the benchmark report's plots); with nvcc, PyPI's
#                                   cuobjdump for tests/sass_check.py (the toolkit here lacks it)
#   scripts/install-deps.sh --ci    also the hardening tools of .ci/run: clang and libFuzzer,
#                                   clang-tidy, clang-format, cppcheck; and PyTorch (CPU use; the
#                                   PyPI wheel, about 5 GB with its CUDA libraries) and scikit-learn
#                                   for the tests of the Python package, and JAX (jax with its CPU
#                                   jaxlib, about 350 MB; CMake builds the JAX FFI handler against
#                                   jaxlib's headers) for closs_jax's tests (all skip visibly
#                                   without them outside CI)
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
    need g++ g++ # the JAX FFI handler (C++17)
    ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
        packages+=(libclang-rt-14-dev)
fi
if ((${#packages[@]})); then
    echo "install-deps: apt-get install ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

python_packages=()
python_need() { python3 -c "import $1" 2>/dev/null || python_packages+=("$2"); }
python_need numpy numpy
python_need pytest pytest
python_need matplotlib matplotlib
if [[ ${1:-} == --ci ]]; then
    python_need torch torch
    python_need sklearn scikit-learn
    python_need jax jax
fi
# cuobjdump for tests/sass_check.py: the CUDA toolkit here lacks it, PyPI has it.
if command -v nvcc >/dev/null && ! command -v cuobjdump >/dev/null &&
    ! compgen -G "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu*/bin/cuobjdump" >/dev/null; then
    python_packages+=(nvidia-cuda-cuobjdump)
fi
if ((${#python_packages[@]})); then
    echo "install-deps: pip install ${python_packages[*]}"
    python3 -m pip install -q "${python_packages[@]}"
fi
