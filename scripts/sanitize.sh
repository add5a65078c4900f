#!/usr/bin/env bash
# The test suite under sanitizers, CPU only (no CUDA in these builds):
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer (leaks included), every test but
#                the package test (an installed sanitized library cannot serve a plain program)
#                and the Python packages' (python3 cannot load a sanitized library unpreloaded);
#   build-tsan/  ThreadSanitizer without OpenMP (libgomp is not instrumented), the thread tests.
# Any report aborts the test that triggered it, so the run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCLOSS_ENABLE_CUDA=OFF \
      -DCLOSS_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$jobs"
ctest --test-dir build-asan --output-on-failure -j"$jobs" -E '^(package|python_package|python_distributed|python_jax)$'

export TSAN_OPTIONS=halt_on_error=1
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCLOSS_ENABLE_CUDA=OFF -DCLOSS_USE_OPENMP=OFF \
      -DCLOSS_SANITIZE=thread >/dev/null
cmake --build build-tsan -j"$jobs" --target test_threads
ctest --test-dir build-tsan --output-on-failure -R '^test_threads$'
