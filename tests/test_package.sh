#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds and runs examples/c against it
# twice: through find_package(closs) and through pkg-config (shared and static).
# usage: test_package.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 source=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/include/closs.h"
test -f "$prefix/lib/cmake/closs/clossConfig.cmake" || test -f "$prefix/lib64/cmake/closs/clossConfig.cmake"

cmake -S "$source/examples/c" -B "$prefix/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer" >/dev/null
"$prefix/consumer/supcon_example" | tee "$prefix/cmake.out"
grep -q "SupCon loss" "$prefix/cmake.out"

if ! command -v pkg-config >/dev/null; then
    echo "package: find_package works; pkg-config is not installed, its half is skipped"
    exit 0
fi
libdir=$(dirname "$(find "$prefix" -name closs.pc)")/..
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc "$source/examples/c/supcon_example.c" $(pkg-config --cflags --libs closs) -o "$prefix/pc_shared"
LD_LIBRARY_PATH="$libdir" "$prefix/pc_shared" | grep -q "SupCon loss"
cc "$source/examples/c/supcon_example.c" $(pkg-config --cflags closs) \
   $(pkg-config --static --libs closs | sed "s|-lcloss|$libdir/libcloss.a|") -o "$prefix/pc_static"
"$prefix/pc_static" | grep -q "SupCon loss"
echo "package: find_package, pkg-config shared and static all work"
