#!/usr/bin/env bash
# Run HERE (Debian, with libcriterion-dev installed) before a device check: gathers what the
# device machine lacks and cannot download into .device-deps/ (in .gitignore; the device tool's
# `carry` takes it along): Criterion's headers, its shared library with every library it needs
# beyond glibc, and a pkg-config file pointing at them; pytest (pure-Python wheels, unpacked into
# python/) for the Python package's tests; and the two-tower baselines OpenCLIP, Inf-CL and memeff
# (pure-Python wheels too). bench/device-check.sh uses it there.
set -euo pipefail
cd "$(dirname "$0")/.."

deps=.device-deps
rm -rf "$deps"
mkdir -p "$deps/include" "$deps/lib/pkgconfig"
cp -r /usr/include/criterion "$deps/include/"
library=$(readlink -f /usr/lib/x86_64-linux-gnu/libcriterion.so.3)
cp "$library" "$deps/lib/"
ln -sf "$(basename "$library")" "$deps/lib/libcriterion.so.3"
ln -sf libcriterion.so.3 "$deps/lib/libcriterion.so"
# Every dependency except the C library's own parts, which the device has.
ldd "$library" | awk '/=> \// {print $3}' |
    grep -vE '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux[^/]*)\.so' |
    while read -r dependency; do cp -L "$dependency" "$deps/lib/"; done
cat > "$deps/lib/pkgconfig/criterion.pc" <<'PC'
prefix=${pcfiledir}/../..
Name: criterion
Description: Criterion, carried for the device check
Version: 2.4.1
Libs: -L${prefix}/lib -lcriterion
Cflags: -I${prefix}/include
PC
python3 -m pip download -q --no-deps --only-binary :all: --implementation py --platform any \
    -c scripts/constraints.txt \
    --python-version 3.10 -d "$deps/wheels" pytest pluggy iniconfig packaging \
    pygments exceptiongroup tomli # the last two for Python 3.10
# The two-tower baselines (bench/baselines/two_tower.py): OpenCLIP (only its loss.py is loaded: the
# package's own imports need torchvision and timm), Inf-CL and memeff (Triton kernels: they use the
# device's torch and triton), without their dependencies.
python3 -m pip download -q --no-deps --only-binary :all: -c scripts/constraints.txt -d "$deps/wheels" \
    open_clip_torch inf-cl memeff
for wheel in "$deps"/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$deps/python"; done
rm -rf "$deps/wheels"
du -sh "$deps"
