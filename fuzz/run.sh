#!/usr/bin/env bash
# A bounded libFuzzer run of every fuzz target, one after the other:
#
#   fuzz/run.sh [SECONDS]      (default 60 seconds per target)
#
# Builds the targets with clang in build-fuzz/ (override with CLOSS_FUZZ_BUILD_DIR), then runs
# each for SECONDS on a copy of its seed corpus (fuzz/corpus/<kind>/) in a temporary directory, so
# the repository is never modified. Exits non-zero if any target found a crash, a leak, a timeout
# or an out-of-memory input, and prints where the input that triggered it was saved; the temporary
# directory is then kept (also kept when CLOSS_FUZZ_KEEP=1, e.g. to keep the grown corpus).
#
# Needs clang and libFuzzer: on Debian 12, apt-get install clang libclang-rt-14-dev.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: fuzz/run.sh [SECONDS per target, default 60]" >&2
  exit 2
fi
build=${CLOSS_FUZZ_BUILD_DIR:-build-fuzz}

CC=clang cmake -S . -B "$build" -DCLOSS_BUILD_FUZZERS=ON -DCLOSS_ENABLE_CUDA=OFF \
      -DCLOSS_BUILD_TESTS=OFF -DCLOSS_SANITIZE=address,undefined >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_npy fuzz_cli_args

# Every report is fatal (the targets are also built with -fno-sanitize-recover=all); leaks are
# findings too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

work=$(mktemp -d "${TMPDIR:-/tmp}/closs-fuzz.XXXXXX")
failed=()

# run_target NAME CORPUS_KIND MAX_LEN: one libFuzzer run; its full output goes to a log file.
run_target() {
  local name=$1 kind=$2 max_len=$3
  local dir=$work/$name
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp fuzz/corpus/"$kind"/* "$dir/corpus/"
  echo "== $name: $seconds s, seeds fuzz/corpus/$kind/, log $dir/log.txt"
  local status=0
  "$build/fuzz/$name" "$dir/corpus" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
      -rss_limit_mb=2048 -dict="fuzz/$kind.dict" -artifact_prefix="$dir/artifacts/" \
      -print_final_stats=1 >"$dir/log.txt" 2>&1 || status=$?
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb)' \
      "$dir/log.txt" || true
  local found
  found=$(find "$dir/artifacts" -type f)
  if [[ $status -ne 0 || -n $found ]]; then
    failed+=("$name")
    echo "!! $name failed (exit status $status); the end of its log:"
    tail -n 40 "$dir/log.txt"
    for file in $found; do
      echo "!! input saved in $file"
      echo "   replay: $build/fuzz/$name $file"
      echo "   once fixed, keep it: mkdir -p tests/regressions/$kind && cp $file tests/regressions/$kind/"
    done
  fi
}

start=$SECONDS
# -max_len: an .npy header and some data fit in 16 KiB (a longer header adds nothing the 2-byte
# and 4-byte length fields do not already reach); a command line fits in 4 KiB.
run_target fuzz_npy npy 16384
run_target fuzz_cli_args cli 4096
echo "== fuzzing took $((SECONDS - start)) s"

if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}; the inputs and logs are in $work" >&2
  exit 1
fi
if [[ ${CLOSS_FUZZ_KEEP:-0} == 1 ]]; then
  echo "no findings; kept $work"
else
  rm -rf "$work"
  echo "no findings"
fi
