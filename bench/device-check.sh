#!/usr/bin/env bash
# The device check: everything that needs a GPU, in one or two calls of about five minutes.
#
#   here:   bench/prepare-device-deps.sh             (Criterion, pytest and the two-tower baselines
#                                                     for the device, into .device-deps/)
#   device: run  command "bash bench/device-check.sh tests"  carry [".device-deps"]  timeout_s 560
#           run  command "bash bench/device-check.sh bench"  carry [".device-deps"]  timeout_s 560
#           run  command "bash bench/device-check.sh two-tower"  carry [".device-deps"]  timeout_s 560
#           (or "all" for the three in one call, when the budget allows ~15 minutes)
#
# On the device machine (an H200: sm_90) it builds in build-device/ (kept between calls), then
#   tests: the whole test suite with the GPU suites (test_gpu_rowwise includes issue #14's
#          workspace offsets, two streams, device binding and pending-error tests, and runs the
#          templated row-wise kernels at every D of the sweep; test_gpu_two_tower CLIP and SigLIP
#          on both paths; test_gpu_capture CUDA graph capture's refusals and replays, issue #28
#          item 3; python_package and python_jax: the PyTorch and JAX packages' CUDA tests, with
#          the image's torch and jax, whose CUDA 13 plugin gives closs_jax its GPU), and
#          compute-sanitizer (memcheck, racecheck) on a subset of the GPU
#          tests;
#   bench: `closs bench` on the GPU (JSON), SupCon on the chunked path at M = 65,536 (`--path
#          chunked`), NT-Xent and SupCon on the WMMA kernels at M = 65,536 (CLOSS_TILE_KERNELS=wmma:
#          the tile engine's predecessor, timed beside it), the PyTorch baselines eager and
#          torch.compile on the same sweep (bench/baselines/run.py), and bench/report.py's
#          report.md with plots in results/;
#   two-tower: `closs bench --loss clip|siglip` at issue #23's target (N = 65,536, D = 512; bf16
#          on AUTO, i.e. the tile engine's walks, f32 on the fused SIMT kernels, bf16 on the SIMT
#          walks by CLOSS_TILE_KERNELS=simt, "closs-simt", and bf16 on the chunked path), the
#          engine's walks at D = 256 too, then CLIP
#          and SigLIP at N = 8,192 to 65,536, D = 512, bf16: closs (its PyTorch package) beside
#          OpenCLIP (eager, torch.compile), Inf-CL and memeff, time and memory
#          (bench/baselines/two_tower.py), and their report;
# and prints a short summary last. Full logs and JSON go to $OUT (bench-out/ when OUT is unset),
# packed into one archive with the summary beside it (the device tool returns at most 8 files);
# commit them under bench/results/<date>-<gpu>/.
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
part=${1:-all}
case $part in tests | bench | two-tower | all) ;; *)
    echo "usage: bench/device-check.sh [tests|bench|two-tower|all]" >&2
    exit 2
    ;;
esac
out=${OUT:-bench-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/.device-deps/lib:${LD_LIBRARY_PATH:-}"
export CMAKE_PREFIX_PATH="$PWD/.device-deps"
export PYTHONPATH="$PWD/.device-deps/python${PYTHONPATH:+:$PYTHONPATH}" # pytest
export PYTHONUNBUFFERED=1

summary=()
# step NAME SECONDS COMMAND...: runs COMMAND with a time limit, its output in $out/NAME.log.
step() {
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    local verdict=ok
    ((rc == 0)) || verdict="FAIL($rc)"
    ((rc == 124)) && verdict="TIMEOUT"
    summary+=("$(printf '%-12s %-9s %4ds  %s' "$name" "$verdict" $((SECONDS - start)) "$out/$name.log")")
    return $rc
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    date -u
} >"$out/device.txt" 2>&1

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
tests=build-device/tests
targets=()
[[ $part == bench ]] && targets=(--target closs_cli) # the bench needs only the tool and library
[[ $part == two-tower ]] && targets=(--target closs closs_cli) # the PyTorch package's library, the bench
if step configure 120 cmake -S . -B build-device "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90 && step build 300 cmake --build build-device -j16 "${targets[@]}"; then
    if [[ $part == tests || $part == all ]]; then
        step ctest 300 ctest --test-dir build-device --output-on-failure -j8
        step memcheck 150 compute-sanitizer --tool memcheck --target-processes all \
            --error-exitcode 3 "$tests/test_gpu_rowwise" --jobs 1 \
            --filter 'gpu_rowwise/@(every_option_reduction_and_dtype|check_mode|caller_workspace|handle_workspace_ordered_across_streams|handle_of_another_device_is_refused|pending_error_is_the_callers)'
        step memcheck-c 150 compute-sanitizer --tool memcheck --target-processes all \
            --error-exitcode 3 "$tests/test_gpu_contrastive" --jobs 1 \
            --filter 'gpu_contrastive/@(paths|check_mode|nan_reaches_every_anchor|caller_workspace|row_ranges)'
        step racecheck 120 compute-sanitizer --tool racecheck --target-processes all \
            --error-exitcode 3 "$tests/test_gpu_rowwise" --jobs 1 \
            --filter 'gpu_rowwise/@(check_mode|caller_workspace)'
        # the fused NT-Xent/SupCon kernels share tiles through shared memory (AUTO picks them here)
        step racecheck-c 120 compute-sanitizer --tool racecheck --target-processes all \
            --error-exitcode 3 "$tests/test_gpu_contrastive" --jobs 1 \
            --filter 'gpu_contrastive/caller_workspace'
        # the tensor-core kernels (f16, bf16): their tiles, G' and dZ rows pass through shared memory
        step racecheck-tc 150 compute-sanitizer --tool racecheck --target-processes all \
            --error-exitcode 3 "$tests/test_gpu_contrastive" --jobs 1 \
            --filter 'gpu_contrastive/tensor_core_shapes'
        # CLIP's and SigLIP's walks: c tiles, G and the staged rows pass through plain shared
        # arrays, which the CPU harness's race check does not see: this is their race check. At
        # the simulated tier's sizes (every kernel variant, one tile each; these two tests call
        # no cuBLAS there)
        step memcheck-tt 150 env CLOSS_GPU_TEST_SCALE=sim compute-sanitizer --tool memcheck \
            --target-processes all --error-exitcode 3 "$tests/test_gpu_two_tower" --jobs 1 \
            --filter 'gpu_two_tower/@(caller_workspace|every_kernel_dtype_and_option)'
        step racecheck-tt 150 env CLOSS_GPU_TEST_SCALE=sim compute-sanitizer --tool racecheck \
            --target-processes all --error-exitcode 3 "$tests/test_gpu_two_tower" --jobs 1 \
            --filter 'gpu_two_tower/@(caller_workspace|every_kernel_dtype_and_option)'
    fi
    if [[ $part == bench || $part == all ]]; then
        # closs bench's GPU sweep (f64 left out: the CPU reference is timed on any machine), then
        # SupCon's chunked path at one size, NT-Xent's and SupCon's WMMA kernels at one size, the
        # PyTorch baselines on the same sweep (eager, then torch.compile until the budget is spent),
        # then the merged report with plots. ~1 + 0.5 + 1 + 3 + 0.5 minutes after the build.
        step bench 150 build-device/closs bench --dtype f32,bf16,f16 --json "$out/closs.json"
        # SupCon's chunked path (cuBLAS: SGEMM for f32, tensor cores for bf16; the label sort) at
        # the size of the fused path's target, beside it in the report
        step chunked 60 build-device/closs bench --loss supcon --path chunked --rows 65536 --dim 128 \
            --dtype f32,bf16 --repeats 5 --json "$out/closs-chunked.json"
        # the fused path's WMMA kernels (what the tile engine replaced; cuda/tile_dispatch.h) at the
        # engine's target size, beside it in the report ("closs-wmma")
        for loss in ntxent supcon; do
            step "wmma-$loss" 60 env CLOSS_TILE_KERNELS=wmma build-device/closs bench --loss "$loss" --rows 65536 \
                --dim 128 --dtype bf16,f16 --repeats 5 --json "$out/closs-wmma-$loss.json"
        done
        step baselines 240 python3 bench/baselines/run.py --closs build-device/closs \
            --dtype f32,bf16,f16 --budget-s 150 --json "$out/torch.json"
        inputs=()
        for json in "$out/closs.json" "$out/closs-chunked.json" "$out"/closs-wmma-*.json "$out/torch.json"; do
            [[ -s $json ]] && inputs+=("$json")
        done
        ((${#inputs[@]})) && step report 60 python3 bench/report.py "${inputs[@]}" --out "$out/results"
    fi
    if [[ $part == two-tower || $part == all ]]; then
        # closs's C entry points at issue #23's target: bf16 on the tile engine's walks (predicted
        # ≈ 0.08 s a call) and f32 on the SIMT walks (≈ 1.3 s), bf16 on the SIMT walks (≈ 1.3 s)
        # and on the chunked path (the GPU reference, ≈ 0.6 s), bench/NOTES.md; the engine at
        # D = 256 (≈ 36 ms). Each point is 3 warm-up and 3 timed calls: ≈ 30 s a loss, ≈ 4 min
        # for the part with the baselines' budget after the build (the step limits are caps).
        for loss in clip siglip; do
            step "$loss" 60 build-device/closs bench --loss "$loss" --rows 65536 --dim 512 \
                --dtype bf16,f32 --repeats 3 --json "$out/closs-$loss.json"
            step "$loss-simt" 45 env CLOSS_TILE_KERNELS=simt build-device/closs bench --loss "$loss" \
                --rows 65536 --dim 512 --dtype bf16 --repeats 3 --json "$out/closs-$loss-simt.json"
            step "$loss-chunked" 30 build-device/closs bench --loss "$loss" --path chunked \
                --rows 65536 --dim 512 --dtype bf16 --repeats 3 --json "$out/closs-$loss-chunked.json"
            step "$loss-engine-256" 20 build-device/closs bench --loss "$loss" --rows 65536 --dim 256 \
                --dtype bf16 --repeats 3 --json "$out/closs-$loss-engine-256.json"
        done
        # Smallest sizes first; each implementation compiles (torch.compile, Triton) in its first
        # point's warm-up. ~4 minutes after the build.
        step two-tower 300 env CLOSS_LIBRARY="$PWD/build-device/host/libcloss.so" python3 \
            bench/baselines/two_tower.py --rows 8192,16384,32768,65536 --dim 512 --dtype bf16 \
            --budget-s 240 --json "$out/two-tower.json"
        inputs=()
        for json in "$out"/closs-clip*.json "$out"/closs-siglip*.json "$out/two-tower.json"; do
            [[ -s $json ]] && inputs+=("$json")
        done
        ((${#inputs[@]})) &&
            step report-2t 60 python3 bench/report.py "${inputs[@]}" --out "$out/results-two-tower"
    fi
fi

{
    echo "==== device check ($part): $(head -n 2 "$out/device.txt" | tail -n 1)"
    grep -hE "tests passed|tests failed|\*\*\*Failed|\*\*\*Skipped|Not Run" "$out/ctest.log" 2>/dev/null
    grep -hE "ERROR SUMMARY|RACECHECK SUMMARY|not supported" "$out"/memcheck*.log "$out"/racecheck*.log 2>/dev/null
    grep -hE "^GPU |^implementation |^closs +[a-z]+ +bf16 |FAILED| (oom|error)" "$out/bench.log" 2>/dev/null
    grep -hE "^closs(-chunked|-simt)? +(clip|siglip) | (oom|error)" "$out"/clip*.log "$out"/siglip*.log 2>/dev/null
    grep -hE "^[0-9]+ points in" "$out/baselines.log" 2>/dev/null
    grep -chE "  (oom|error|skipped)" "$out/baselines.log" 2>/dev/null | sed 's/^/baseline points not ok: /'
    grep -hE "^report.py" "$out/report.log" "$out/report-2t.log" 2>/dev/null
    grep -hE "^(closs-torch|openclip|inf-cl|memeff) .* 65536 |^[0-9]+ points in" "$out/two-tower.log" 2>/dev/null
    printf '%s\n' "${summary[@]}"
} >"$out/summary-$part.txt"
(cd "$out" && tar -czf "device-check-$part.tar.gz" --remove-files device.txt ./*.log ./*.json ./results* 2>/dev/null)
echo
cat "$out/summary-$part.txt"
