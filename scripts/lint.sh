#!/usr/bin/env bash
# Static analysis and formatting, every finding fatal:
#   clang-tidy    .clang-tidy's checks on every .c file of host/, host/ref/, tools/, bench/ and fuzz/, with
#                 the compile commands of a configured (not built) build in build-lint/;
#   cppcheck      warning, performance and portability checks on the same files;
#   clang-format  --dry-run against .clang-format on the C sources and headers of include/, host/,
#                 tools/, bench/, fuzz/, tests/ and cuda/*.h (not the .cu/.cuh files).
# Every tool runs even when an earlier one found something; the last line sums up, and the exit
# status is non-zero when anything was found. Written for Debian 12's clang-tidy/clang-format 14
# and cppcheck 2.10 (apt-get install clang-tidy clang-format cppcheck); other versions have other
# checks and may disagree. LINT_JOBS sets clang-tidy's parallelism (default: nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=build-lint
jobs=${LINT_JOBS:-$(nproc)}

missing=()
for tool in cmake clang-tidy cppcheck clang-format; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "lint: missing ${missing[*]} (Debian: apt-get install clang-tidy clang-format cppcheck)" >&2
    exit 2
fi

shopt -s nullglob
tidy_sources=(host/*.c host/ref/*.c tools/*.c bench/*.c fuzz/*.c)
format_files=(include/*.h host/*.[ch] host/ref/*.[ch] tools/*.[ch] bench/*.[ch] fuzz/*.[ch] tests/*.[ch]
              cuda/*.h)
shopt -u nullglob

work=$(mktemp -d "${TMPDIR:-/tmp}/closs-lint.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$SECONDS
summary=()
failed=0

# ---- clang-tidy -------------------------------------------------------------------------------
echo "lint: configuring $build/ (compile commands only)"
if ! cmake -S . -B "$build" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$work/cmake.log" 2>&1; then
    cat "$work/cmake.log" >&2
    echo "lint: cmake could not configure $build/" >&2
    exit 2
fi

echo "lint: clang-tidy on ${#tidy_sources[@]} files ($jobs at a time)"
# One log per file, so that parallel runs do not interleave. The fuzz targets' own sources
# (fuzz_*.c) are only compiled in a clang build with CLOSS_BUILD_FUZZERS=ON, and the rest of fuzz/
# only with the tests: clang-tidy then infers their commands from a neighbour, to which the include
# directories the fuzz targets use (fuzz/CMakeLists.txt) are added.
run_tidy() {
    local source=$1 log
    log=$work/tidy.$(tr / _ <<<"$source")
    local extra=()
    [[ $source == fuzz/* ]] && extra=(--extra-arg="-I$root/fuzz" --extra-arg="-I$root/tools"
                                      --extra-arg="-I$root/include")
    if ! clang-tidy -p "$build" --quiet "${extra[@]}" "$source" >"$log" 2>&1; then
        touch "$log.failed"
    fi
}
export -f run_tidy
export work build root
printf '%s\0' "${tidy_sources[@]}" | xargs -0 -n1 -P"$jobs" bash -c 'run_tidy "$1"' _
tidy_failed=0
for source in "${tidy_sources[@]}"; do
    log=$work/tidy.$(tr / _ <<<"$source")
    if [[ -e $log.failed ]]; then
        tidy_failed=$((tidy_failed + 1))
        grep -vE '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$|^Suppressed [0-9]+ warnings|^Use -header-filter|^Use -system-headers' "$log" || true
    fi
done
if ((tidy_failed)); then
    summary+=("clang-tidy: findings in $tidy_failed files")
    failed=1
else
    summary+=("clang-tidy clean")
fi

# ---- cppcheck ---------------------------------------------------------------------------------
echo "lint: cppcheck on ${#tidy_sources[@]} files"
# -I tools -I bench -I fuzz: the bench and fuzz sources include tools/ headers (and tools/ bench/'s),
# found through these in the build.
# No suppressions are needed; add any with --suppress=ID:FILE and a comment saying why.
if cppcheck --enable=warning,performance,portability --error-exitcode=1 --inline-suppr -q \
        --std=c11 -I include -I host -I cuda -I tools -I bench -I fuzz "${tidy_sources[@]}"; then
    summary+=("cppcheck clean")
else
    summary+=("cppcheck: findings (above)")
    failed=1
fi

# ---- clang-format -----------------------------------------------------------------------------
echo "lint: clang-format on ${#format_files[@]} files"
format_failed=()
for file in "${format_files[@]}"; do
    if ! clang-format --dry-run --Werror "$file" 2>"$work/format.log"; then
        head -n 30 "$work/format.log"
        format_failed+=("$file")
    fi
done
if ((${#format_failed[@]})); then
    summary+=("clang-format: ${#format_failed[@]} files to reformat (clang-format -i ${format_failed[*]})")
    failed=1
else
    summary+=("clang-format clean")
fi

joined=$(printf ', %s' "${summary[@]}")
echo "lint: ${joined:2} ($((SECONDS - start)) s)"
exit "$failed"
