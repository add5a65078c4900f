#!/usr/bin/env bash
# Installs what is missing on a fresh Debian 12 machine. Needs root for apt-get; does nothing when
# everything is already there. Python packages come at the versions pinned in
# scripts/constraints.txt (the tested ones), so a new release upstream cannot change what CI runs.
#   scripts/install-deps.sh         the build and the tests: Criterion, pkg-config, NumPy, pytest,
#                                   matplotlib (the benchmark report's plots); with nvcc, PyPI's
#                                   cuobjdump and nvdisasm for tests/sass_check.py (the toolkit
#                                   here lacks both)
#   scripts/install-deps.sh --ci    also the hardening tools of .ci/run: clang and libFuzzer,
#                                   clang-tidy, clang-format, cppcheck; and PyTorch (CPU use; the
#                                   PyPI wheel, about 5 GB with its CUDA libraries) and scikit-learn
#                                   for the tests of the Python package, and JAX (jax with its CPU
#                                   jaxlib, about 350 MB; CMake builds the JAX FFI handler against
#                                   jaxlib's headers) for closs_jax's tests, and OpenCLIP's
#                                   loss code (open_clip_torch without its dependencies) for the
#                                   two-tower baselines' test (all skip visibly without them
#                                   outside CI); `build` for scripts/test-wheel.sh's sdist. In CI
#                                   every pinned package is brought
#                                   to its pinned version, even where another one is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
constraints=scripts/constraints.txt
ci=0
[[ ${1:-} == --ci ]] && ci=1

packages=()
need() { command -v "$1" >/dev/null || packages+=("$2"); }
need cmake cmake
need pkg-config pkg-config
pkg-config --exists criterion 2>/dev/null || packages+=(libcriterion-dev)
if ((ci)); then
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

# Outside CI only what is missing is installed (a developer's own versions are left alone); in CI
# everything, so that pip moves any other version to the pin.
python_packages=()
python_need() {
    if ((ci)) || ! python3 -c "import $1" 2>/dev/null; then python_packages+=("$2"); fi
}
python_need numpy numpy
python_need pytest pytest
python_need matplotlib matplotlib
if ((ci)); then
    python_need torch torch
    python_need sklearn scikit-learn
    python_need jax jax
    python_need jaxlib jaxlib
    python_need build build # scripts/test-wheel.sh's sdist
fi
if ((${#python_packages[@]})); then
    echo "install-deps: pip install ${python_packages[*]} (pinned by $constraints)"
    python3 -m pip install -q -c "$constraints" "${python_packages[@]}"
fi
# OpenCLIP's own loss code for the two-tower baselines' test (bench/baselines/two_tower.py loads its
# loss.py alone, which needs only torch): without the package's dependencies (torchvision, timm...).
if ((ci)); then
    echo "install-deps: pip install --no-deps open_clip_torch (pinned by $constraints)"
    python3 -m pip install -q --no-deps -c "$constraints" open_clip_torch
fi

# cuobjdump and nvdisasm (cuobjdump -sass runs nvdisasm) for tests/sass_check.py, from PyPI: the
# series of the installed nvcc if PyPI has it, else the pair pinned in the constraints file.
if command -v nvcc >/dev/null && ! python3 tests/sass_check.py --find-tools >/dev/null 2>&1; then
    series=$(nvcc --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
    tools=(nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)
    if [[ -n $series ]] && python3 -m pip install -q "${tools[@]/%/==$series.*}" 2>/dev/null; then
        echo "install-deps: pip install ${tools[*]} $series.* (the series of nvcc)"
    else
        pinned=($(grep -E "^nvidia-cuda-(cuobjdump|nvdisasm)==" "$constraints"))
        echo "install-deps: warning: PyPI has no ${tools[*]} of nvcc's series ${series:-?};" \
            "installing the pinned ${pinned[*]} ($constraints says why they are fine)" >&2
        python3 -m pip install -q "${pinned[@]}"
    fi
    python3 tests/sass_check.py --find-tools
fi
