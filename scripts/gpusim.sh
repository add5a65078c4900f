#!/usr/bin/env bash
# The simulated GPU tier: closs's CUDA code run in GPGPU-Sim (functional mode) on a machine without
# a GPU: the real PTX, launches, CUB calls and host code, at small sizes (README, "The simulated
# GPU tier", says what this proves and what it does not).
#
#   scripts/gpusim.sh
#
# 1. ../shared/gpusim/setup.sh (GPUSIM_DIR overrides the folder): the simulator and CUDA 11.8,
#    cached in ~/.cache/gpusim (GPUSIM_HOME overrides); about 5 minutes the first time, seconds
#    after. Needs root for apt-get the first time. Then closs's own build of the same simulator
#    with closs's fixes to f16 WMMA (scripts/gpusim/wmma-fixes.patch) and its additions to the
#    CUDA runtime (scripts/gpusim/runtime-api.patch: cudaStreamIsCapturing), once, in
#    $GPUSIM_HOME/closs-sim-<hash of the patches> (about 5 minutes the first time, nothing
#    after); everything below runs against it.
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

# closs's own simulator: the shared set-up's source and fixes, plus closs's patches (each says
# what and why), built as setup.sh builds its own, once, in a folder named after the patches'
# hash, so that a changed patch builds afresh.
closs_patches=("$root/scripts/gpusim/wmma-fixes.patch" "$root/scripts/gpusim/runtime-api.patch")
sim_hash=$(cat "$sim_dir/gpgpu-sim-fixes.patch" "${closs_patches[@]}" | sha256sum | cut -c1-12)
sim=$GPUSIM_HOME/closs-sim-$sim_hash
sim_build_began=$SECONDS
if [[ ! -f $sim/built ]]; then
    echo "gpusim: building closs's patched simulator in $sim (about 5 minutes on 2 cores)"
    rm -rf "$sim"
    mkdir -p "$sim"
    tar -xzf "$sim_dir/gpgpu-sim-667834c.tar.gz" -C "$sim" --strip-components=1
    (cd "$sim" && patch -p1 -s <"$sim_dir/gpgpu-sim-fixes.patch" &&
        for closs_patch in "${closs_patches[@]}"; do patch -p1 -s <"$closs_patch"; done)
    # The simulator names its build after `git` state, at build and at run time: a repository.
    (cd "$sim" && git init -q && git add -A &&
        git -c user.name=gpusim -c user.email=gpusim@localhost commit -qm "667834c, closs's fixes")
    # shellcheck source=/dev/null
    (cd "$sim" && set +u && source setup_environment release >/dev/null 2>&1 &&
        make -j"$(nproc)" >"$sim/closs-build.log" 2>&1) ||
        { tail -n 40 "$sim/closs-build.log" >&2
          echo "gpusim: the patched simulator's build failed: $sim/closs-build.log" >&2; exit 1; }
    touch "$sim/built"
fi
sim_build_s=$((SECONDS - sim_build_began))
# Run against it, not the shared build: the shared build's folders come off PATH and
# LD_LIBRARY_PATH, and closs's setup_environment puts its own libcudart.so there.
drop_shared_sim() { tr ':' '\n' <<<"$1" | { grep -v "^$GPUSIM_HOME/sim/" || true; } | paste -sd:; }
PATH=$(drop_shared_sim "$PATH")
LD_LIBRARY_PATH=$(drop_shared_sim "$LD_LIBRARY_PATH")
set +u
# shellcheck source=/dev/null
source "$sim/setup_environment" release >/dev/null 2>&1
set -u
sim_lib=$sim/lib/$GPGPUSIM_CONFIG
sim_commit=$(git -C "$sim" log --abbrev-commit -n 1 --format=%h)  # in the simulator's banner
[[ -f $sim_lib/libcudart.so ]] || { echo "gpusim: no $sim_lib/libcudart.so" >&2; exit 1; }
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
# CMake cannot switch an existing build to another nvcc (it keeps the old compiler and drops
# CMAKE_CUDA_HOST_COMPILER): a build made with another one (GPUSIM_HOME moved) starts afresh.
if ! grep -qx "CMAKE_CUDA_COMPILER:[A-Z]*=$CUDA_INSTALL_PATH/bin/nvcc" "$build/CMakeCache.txt" 2>/dev/null
then
    rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_COMPILER="$CUDA_INSTALL_PATH/bin/nvcc" -DCMAKE_CUDA_HOST_COMPILER=g++-11 \
    -DCUDAToolkit_ROOT="$CUDA_INSTALL_PATH" -DCMAKE_CUDA_ARCHITECTURES=70-virtual \
    -DCMAKE_CUDA_RUNTIME_LIBRARY=Shared -DCLOSS_CONTRASTIVE_CUDA_OPTIONS="-Xcicc -O1" \
    >"$build/gpusim-configure.log" 2>&1 || { cat "$build/gpusim-configure.log" >&2; exit 1; }
cmake --build "$build" -j"$(nproc)" --target test_gpu_rowwise test_gpu_contrastive test_gpu_two_tower \
    test_cli closs_cli >"$build/gpusim-build.log" 2>&1 || { tail -n 60 "$build/gpusim-build.log" >&2; exit 1; }
unset GPUSIM_PTXAS_CACHE
cudart=$(ldd "$build/tests/test_gpu_contrastive" | grep -o '/[^ ]*libcudart\.so[^ ]*' | head -n 1 ||
    true)
echo "gpusim: the tests load $cudart"
[[ $cudart == "$sim_lib"/* ]] ||
    { echo "gpusim: expected closs's simulator's runtime, in $sim_lib" >&2; exit 1; }
build_done=$SECONDS
cpu_now
build_cpu=$cpu

# The simulator reads its configuration from the working folder and writes its PTX files there.
rm -rf "$run_dir" "$logs"
mkdir -p "$run_dir" "$logs"
cp "$GPUSIM_CONFIG_DIR/gpgpusim.config" "$GPUSIM_CONFIG_DIR/config_volta_islip.icnt" "$run_dir/"
export CLOSS_GPU_TEST_SCALE=sim

# defined SOURCE SUITE [PREFIX]: how many tests SOURCE defines in SUITE (whose names start with
# PREFIX): Test(SUITE, PREFIX...) at the start of a line, the one way closs's suites define them.
defined() {
    grep -cE "^Test\($2, ${3:-}" "$root/tests/$1"
}

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
    if ! grep -q "build gpgpu-sim_git-commit-$sim_commit" "$logs/$name.sim.log"; then
        failed+=("$name: not closs's patched simulator (its banner lacks build ...-commit-$sim_commit)")
    fi
    if grep -q 'simulation mode [^1]' "$logs/$name.sim.log" ||
        ! grep -q 'simulation mode 1' "$logs/$name.sim.log"; then
        failed+=("$name: the simulator did not run in functional mode (simulation mode 1)")
    fi
    cpu_now
    echo "gpusim: $name took $((SECONDS - began)) s ($((cpu - cpu_began)) CPU seconds)"
}

# Every test the source defines must pass, counted from the source so that a new test needs no
# edit here. Criterion counts a skipped test as not tested: test_gpu_rowwise skips 2 here (they
# need concurrent streams and the runtime's pending-error state; each says why).
run rowwise $(($(defined test_gpu_rowwise.c gpu_rowwise) - 2)) "$build/tests/test_gpu_rowwise"
run contrastive "$(defined test_gpu_contrastive.c gpu_contrastive)" "$build/tests/test_gpu_contrastive"
run two_tower "$(defined test_gpu_two_tower.c gpu_two_tower)" "$build/tests/test_gpu_two_tower"
# The closs tool runs as a child of test_cli: its kernels are in libcloss.so, where the simulator
# reads them only when told (PYTORCH_BIN). One test at a time: each tool process extracts the
# library's PTX into the working folder under the same names, and two at once can corrupt each
# other's (a CI run saw the tool abort, wait status 6, with two in flight; alone it passes).
jobs=1 PYTORCH_BIN=$build/host/libcloss.so run cli_eval "$(defined test_cli.c cli_eval cuda_)" \
    "$build/tests/test_cli" --filter='cli_eval/cuda_*'

# Kernel coverage: every kernel in the library's PTX was launched, but the chunked paths'
# (cuda/contrastive.cu, cuda/two_tower_chunked.cu), which run only after cuBLAS's. The kernel names
# are mangled C++.
ptx_entries() { grep -ho '^\(\.visible \|\.weak \)*\.entry [A-Za-z0-9_$]*' "$@" | sed 's/.* //' | sort -u; }
ptx_entries "$run_dir"/test_gpu_contrastive.*.ptx >"$logs/kernels.all"
ptx_entries "$run_dir"/test_gpu_contrastive.*.ptx | grep -e '_contrastive_cu_' -e '_two_tower_chunked_cu_' \
    >"$logs/kernels.chunked" || true
cat "$logs"/*.sim.log | grep -o "pushing kernel '[^']*'" | sed "s/.*'\(.*\)'/\1/" | sort -u \
    >"$logs/kernels.launched"
# Left out: the tile engine's kernels and bf16's WMMA kernels, which need sm_80 (at compute_70 they
# are traps, and cuda/tile_dispatch.h sends f16 to the WMMA kernels, bf16 to the SIMT ones), and
# f16's SIMT kernels, which run only where the WMMA kernels' shared memory does not fit the device
# (the simulator accepts any). f16's WMMA kernels run (closs's scripts/gpusim/wmma-fixes.patch).
ptx_entries "$run_dir"/test_gpu_contrastive.*.ptx |
    grep -E 'tile_(forward|backward)_kernel|wmma.*bfloat16|14forward_kernelI6__half|15backward_kernelI6__half' \
        >"$logs/kernels.sm80" || true
never=$(comm -23 "$logs/kernels.all" "$logs/kernels.launched" | comm -23 - "$logs/kernels.chunked" |
    comm -23 - "$logs/kernels.sm80")
echo "gpusim: $(comm -12 "$logs/kernels.all" "$logs/kernels.launched" | wc -l) of" \
    "$(wc -l <"$logs/kernels.all") kernels launched; the chunked path's" \
    "$(wc -l <"$logs/kernels.chunked") were not (cuBLAS), nor the tile engine's, bf16's WMMA" \
    "and f16's SIMT fallback ($(wc -l <"$logs/kernels.sm80"): sm_80, or too little shared memory)"
# Listed, not failed: CUB's kernels closs never needs at these sizes (the multi-tile radix sort
# passes, its empty kernel); the row-wise instantiations the small sweep does not reach (one
# template per loss, distance, dtype and group width; the sweep launches each loss, distance and
# dtype).
if [[ -n $never ]]; then
    echo "gpusim: never launched:"
    c++filt <<<"$never" | sed 's/^/    /' | cut -c1-160
    required=$(grep -v '^_ZN3cub' <<<"$never" | grep -v 'rowwise_kernel' || true)
    if [[ -n $required ]]; then
        c++filt <<<"$required" | sed 's/^/    must run: /' | cut -c1-160
        failed+=("closs kernels never launched (above)")
    fi
fi

cpu_now
echo "gpusim: setup $((setup_done - start)) s (closs's simulator: $sim_build_s s)," \
    "build $((build_done - setup_done)) s," \
    "tests $((SECONDS - build_done)) s, total $((SECONDS - start)) s of wall time;" \
    "CPU seconds: $build_cpu until the tests, $((cpu - build_cpu)) in them"
if ((${#failed[@]})); then
    printf 'gpusim: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "gpusim: every simulated GPU test passed"
