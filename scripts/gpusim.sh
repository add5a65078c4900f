#!/usr/bin/env bash
# The simulated GPU tier: closs's CUDA code run in GPGPU-Sim (functional mode) on a machine without
# a GPU: the real PTX, launches, CUB calls and host code, at small sizes (README, "The simulated
# GPU tier", says what this proves and what it does not).
#
#   scripts/gpusim.sh
#
# 1. ../shared/gpusim/setup.sh (GPUSIM_DIR overrides the folder): the simulator and CUDA 11.8,
#    cached in ~/.cache/gpusim (GPUSIM_HOME overrides); about 5 minutes the first time, seconds
#    after. Needs root for apt-get the first time.
# 2. Builds closs in build-gpusim/ for the simulator: PTX for compute_70, the shared CUDA runtime
#    (the simulator replaces libcudart.so), g++-11 as the host compiler, and cuda/contrastive.cu
#    at cicc -O1 (CUDA 11.8's cicc does not finish it at -O3).
# 3. Runs the GPU test suites with CLOSS_GPU_TEST_SCALE=sim (tests/gpu_scale.h: the same tests at
#    small sizes, the chunked path left out since cuBLAS cannot run there), and `closs eval
#    --device cuda` against the CPU on every loss (test_cli), in build-gpusim/sim-run/.
# The simulator's own output goes to build-gpusim/sim-logs/*.sim.log, the tests' to *.log; the
# tests' output is printed. Fails if a suite fails or did not run all its tests, if the simulator
# ran anything but functional mode, or if a kernel of the library's PTX was never launched (but
# the chunked path's and CUB's passes for large sorts, which are listed). Ends with the wall and
# CPU seconds spent.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS
# cpu_now sets $cpu: the CPU seconds (user + system) of this script's finished children, whatever
# the machine's load. `times` runs in this shell: in a subshell it would count the subshell's.
times_file=$(mktemp)
trap 'rm -f "$times_file"' EXIT
cpu_now() {
    times >"$times_file"
    cpu=$(awk 'NR == 2 { split($1, u, "m"); split($2, s, "m"); printf "%d", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' \
        "$times_file")
}
sim_dir=${GPUSIM_DIR:-$root/../shared/gpusim}
if [[ ! -f $sim_dir/setup.sh ]]; then
    echo "gpusim: no simulator set-up at $sim_dir/setup.sh: the simulated GPU tier needs" \
        "GPGPU-Sim's materials in ../shared/gpusim beside the checkout (or GPUSIM_DIR)" >&2
    exit 2
fi

echo "gpusim: setting up the simulator (cached)"
env_file=$(bash "$sim_dir/setup.sh")
# shellcheck source=/dev/null
source "$env_file"
setup_done=$SECONDS

build=$root/build-gpusim
run_dir=$build/sim-run
logs=$build/sim-logs
echo "gpusim: building in build-gpusim/"
mkdir -p "$build"
# The shared ptxas wrapper caches what `ptxas` printed, by the PTX, so that the simulator's
# `ptxas -v` at every process start is fast; a cache hit writes no cubin, which a build needs (a
# second configure would find CMake's identical compiler-id PTX cached and fail). The build gets an
# empty cache of its own; the test runs below use the shared one.
build_ptxas_cache=$build/ptxas-build-cache
rm -rf "$build_ptxas_cache"
export GPUSIM_PTXAS_CACHE=$build_ptxas_cache
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_COMPILER="$CUDA_INSTALL_PATH/bin/nvcc" -DCMAKE_CUDA_HOST_COMPILER=g++-11 \
    -DCUDAToolkit_ROOT="$CUDA_INSTALL_PATH" -DCMAKE_CUDA_ARCHITECTURES=70-virtual \
    -DCMAKE_CUDA_RUNTIME_LIBRARY=Shared -DCLOSS_CONTRASTIVE_CUDA_OPTIONS="-Xcicc -O1" \
    >"$build/gpusim-configure.log" 2>&1 || { cat "$build/gpusim-configure.log" >&2; exit 1; }
cmake --build "$build" -j"$(nproc)" --target test_gpu_rowwise test_gpu_contrastive test_cli \
    closs_cli >"$build/gpusim-build.log" 2>&1 || { tail -n 60 "$build/gpusim-build.log" >&2; exit 1; }
unset GPUSIM_PTXAS_CACHE
build_done=$SECONDS
cpu_now
build_cpu=$cpu

# The simulator reads its configuration from the working folder and writes its PTX files there.
rm -rf "$run_dir" "$logs"
mkdir -p "$run_dir" "$logs"
cp "$GPUSIM_CONFIG_DIR/gpgpusim.config" "$GPUSIM_CONFIG_DIR/config_volta_islip.icnt" "$run_dir/"
export CLOSS_GPU_TEST_SCALE=sim

# run NAME TESTS COMMAND...: runs a Criterion suite that must run TESTS tests, all passing, its
# tests $jobs at a time (each in a process of its own).
jobs=$(nproc)
failed=()
run() {
    local name=$1 tests=$2 began=$SECONDS cpu_began
    cpu_now
    cpu_began=$cpu
    shift 2
    echo "gpusim: $name"
    (cd "$run_dir" && "$@" --jobs "$jobs" --verbose >"$logs/$name.sim.log" 2>"$logs/$name.log") ||
        true
    grep -v '^\[PASS\]\|^\[RUN \]\|Test is disabled$' "$logs/$name.log" || true
    local verdict
    verdict=$(grep -o 'Synthesis: Tested: [0-9]* | Passing: [0-9]* | Failing: [0-9]* | Crashing: [0-9]*' \
        "$logs/$name.log" || true)
    if [[ $verdict != "Synthesis: Tested: $tests | Passing: $tests | Failing: 0 | Crashing: 0" ]]; then
        failed+=("$name (want $tests tests passing; see build-gpusim/sim-logs/$name*.log)")
    fi
    if grep -q 'simulation mode [^1]' "$logs/$name.sim.log" ||
        ! grep -q 'simulation mode 1' "$logs/$name.sim.log"; then
        failed+=("$name: the simulator did not run in functional mode (simulation mode 1)")
    fi
    cpu_now
    echo "gpusim: $name took $((SECONDS - began)) s ($((cpu - cpu_began)) CPU seconds)"
}

# Criterion counts a skipped test as not tested: test_gpu_rowwise skips 2 of its 10 here (they
# need concurrent streams and the runtime's pending-error state; each says why).
run rowwise 8 "$build/tests/test_gpu_rowwise"
run contrastive 11 "$build/tests/test_gpu_contrastive"
# The closs tool runs as a child of test_cli: its kernels are in libcloss.so, where the simulator
# reads them only when told (PYTORCH_BIN).
PYTORCH_BIN=$build/host/libcloss.so run cli_eval 1 "$build/tests/test_cli" \
    --filter='cli_eval/cuda_matches_the_cpu'

# Kernel coverage: every kernel in the library's PTX was launched, but the chunked path's
# (cuda/contrastive.cu), which run only after cuBLAS's. The kernel names are mangled C++.
ptx_entries() { grep -ho '^\(\.visible \|\.weak \)*\.entry [A-Za-z0-9_$]*' "$@" | sed 's/.* //' | sort -u; }
ptx_entries "$run_dir"/test_gpu_contrastive.*.ptx >"$logs/kernels.all"
ptx_entries "$run_dir"/test_gpu_contrastive.*.ptx | grep '_contrastive_cu_' >"$logs/kernels.chunked" || true
cat "$logs"/*.sim.log | grep -o "pushing kernel '[^']*'" | sed "s/.*'\(.*\)'/\1/" | sort -u \
    >"$logs/kernels.launched"
# The tensor-core kernels are left out: bf16 WMMA needs sm_80 (at compute_70 those kernels are
# empty and bf16 takes the SIMT kernels), and f16's crash the simulator (tests/gpu_scale.h).
ptx_entries "$run_dir"/test_gpu_contrastive.*.ptx | grep 'wmma' >"$logs/kernels.sm80" || true
never=$(comm -23 "$logs/kernels.all" "$logs/kernels.launched" | comm -23 - "$logs/kernels.chunked" |
    comm -23 - "$logs/kernels.sm80")
echo "gpusim: $(comm -12 "$logs/kernels.all" "$logs/kernels.launched" | wc -l) of" \
    "$(wc -l <"$logs/kernels.all") kernels launched; the chunked path's" \
    "$(wc -l <"$logs/kernels.chunked") were not (cuBLAS), nor the tensor-core ones" \
    "($(wc -l <"$logs/kernels.sm80"): f16's crash the simulator, bf16's need sm_80)"
# Listed, not failed: CUB's kernels closs never needs at these sizes (the multi-tile radix sort
# passes, its empty kernel); the row-wise instantiations the small sweep does not reach (one
# template per loss, distance, dtype and group width; the sweep launches each loss, distance and
# dtype); the fused path's other f16 kernels (norms, class sums, losses), whose cases are left out
# with the f16 tensor cores.
if [[ -n $never ]]; then
    echo "gpusim: never launched:"
    c++filt <<<"$never" | sed 's/^/    /' | cut -c1-160
    required=$(grep -v '^_ZN3cub' <<<"$never" | grep -v 'rowwise_kernel' |
        grep -v 'contrastive_fused_cu.*6__half' || true)
    if [[ -n $required ]]; then
        c++filt <<<"$required" | sed 's/^/    must run: /' | cut -c1-160
        failed+=("closs kernels never launched (above)")
    fi
fi

cpu_now
echo "gpusim: setup $((setup_done - start)) s, build $((build_done - setup_done)) s," \
    "tests $((SECONDS - build_done)) s, total $((SECONDS - start)) s of wall time;" \
    "CPU seconds: $build_cpu until the tests, $((cpu - build_cpu)) in them"
if ((${#failed[@]})); then
    printf 'gpusim: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "gpusim: every simulated GPU test passed"
