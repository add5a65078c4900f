#!/usr/bin/env bash
# The device check: everything that needs a GPU, in one call of about five minutes.
#
#   here:   bench/prepare-device-deps.sh            (Criterion for the device, into .device-deps/)
#   device: run  command "bash bench/device-check.sh"  carry [".device-deps"]  timeout_s 560
#
# On the device machine (an H200: sm_90): builds in build-device/, runs the whole test suite with
# the GPU tests, runs compute-sanitizer (memcheck and racecheck) on the GPU tests, runs the
# PyTorch side-by-side benchmark, and prints a short summary last. Full logs go to $OUT (bench-out/
# when OUT is unset); commit them under bench/results/<date>-<gpu>/ with the summary.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/.device-deps/lib:${LD_LIBRARY_PATH:-}"
export CMAKE_PREFIX_PATH="$PWD/.device-deps"
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

gpu_filter='gpu_rowwise/@(every_option_reduction_and_dtype|check_mode|caller_workspace)'
tests=build-device/tests
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
step configure 120 cmake -S . -B build-device "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90 &&
    step build 300 cmake --build build-device -j16 &&
    {
        step ctest 300 ctest --test-dir build-device --output-on-failure -j8
        step memcheck 150 compute-sanitizer --tool memcheck --target-processes all \
            --error-exitcode 3 "$tests/test_gpu_rowwise" --jobs 1 --filter "$gpu_filter"
        step racecheck 120 compute-sanitizer --tool racecheck --target-processes all \
            --error-exitcode 3 "$tests/test_gpu_rowwise" --jobs 1 \
            --filter 'gpu_rowwise/@(check_mode|caller_workspace)'
        step bench 240 python3 bench/baselines/rowwise.py --lib build-device/host/libcloss.so \
            --json "$out/rowwise.json"
    }

echo
echo "==== device check: $(head -n 2 "$out/device.txt" | tail -n 1)"
grep -hE "tests passed|tests failed|\*\*\*Failed|\*\*\*Skipped|Not Run" "$out/ctest.log" 2>/dev/null
grep -hE "ERROR SUMMARY|RACECHECK SUMMARY|not supported" "$out/memcheck.log" "$out/racecheck.log" 2>/dev/null
sed -n '/^loss /,$p' "$out/bench.log" 2>/dev/null
printf '%s\n' "${summary[@]}"
