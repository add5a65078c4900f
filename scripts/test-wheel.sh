#!/usr/bin/env bash
# closs installed as a user installs it, tested from outside the checkout (.ci/run runs it):
#   1. the sdist (python3 -m build --sdist), then a wheel built by pip from that sdist, as
#      `pip install` builds it: CUDA kernels when nvcc is on PATH, the JAX handler required
#      (CLOSS_BUILD_JAX=ON), in pip's own temporary build folder (nothing from build/);
#   2. a fresh virtual environment with --system-site-packages (the machine's torch and jax) and the
#      wheel installed into it (--no-deps);
#   3. in a folder outside the checkout, with a copy of libcloss first on LD_LIBRARY_PATH: the
#      packages, their libraries and the `closs` command must all be the installed ones (a libcloss
#      mapped from anywhere else fails, the checkout's build/ or that copy); then
#      the PyTorch tests (python/tests but the distributed ones, which test.sh runs) and the JAX
#      tests (python/tests_jax), copied there with examples/python, and `closs eval` from the
#      environment's PATH against the installed package's own reference.
# pip's isolated build environments install scikit-build-core at its pin through PIP_CONSTRAINT
# (they ignore `pip install -c`). Needs `build` (scripts/install-deps.sh --ci installs it).
#   scripts/test-wheel.sh [DIR [ARG...]]   works in DIR (default: a temporary folder, removed at the
#                                          end); ARGs go to `pip wheel`, e.g. the CPU-only build:
#                                          -C cmake.define.CLOSS_ENABLE_CUDA=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PIP_CONSTRAINT=$root/scripts/constraints.txt
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
unset CLOSS_LIBRARY CLOSS_JAX_LIBRARY PYTHONPATH # nothing may point the packages elsewhere

if [[ -n ${1:-} ]]; then
    work=$(mkdir -p "$1" && cd "$1" && pwd)
    shift
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/closs-wheel.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
start=$SECONDS
step() { echo "test-wheel: [$((SECONDS - start)) s] $*"; }

step "sdist"
rm -rf "$work/dist"
python3 -m build --sdist --outdir "$work/dist" . >"$work/sdist.log" 2>&1 || {
    cat "$work/sdist.log"
    exit 1
}
sdist=$(ls "$work"/dist/closs-*.tar.gz)
step "wheel from $(basename "$sdist") (the log: $work/wheel.log)"
if ! python3 -m pip wheel -v --no-deps --wheel-dir "$work/dist" "$sdist" \
    -C cmake.define.CLOSS_BUILD_JAX=ON "$@" >"$work/wheel.log" 2>&1; then
    tail -n 60 "$work/wheel.log"
    exit 1
fi
grep -E "closs: (CUDA support|the JAX FFI handler)" "$work/wheel.log" | sed 's/^ */test-wheel:   /'
wheel=$(ls "$work"/dist/closs-*.whl)

step "a fresh environment with $(basename "$wheel")"
rm -rf "$work/venv"
python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/python" -m pip install -q --no-deps "$wheel"
export PATH=$work/venv/bin:$PATH
python=$work/venv/bin/python
# A copy of the library elsewhere, first on the loader's path: the installed handler and tool must
# still load the package's own (their RPATH), and the check below sees which one is mapped.
site=$("$python" -c "import sysconfig; print(sysconfig.get_paths()['platlib'])")
mkdir -p "$work/elsewhere"
if [[ -f $site/closs/libcloss.so ]]; then # else the check below says it is missing
    cp "$site/closs/libcloss.so" "$work/elsewhere/"
fi
export LD_LIBRARY_PATH=$work/elsewhere${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# Outside the checkout: the tests and the example they run, nothing else.
outside=$work/outside
rm -rf "$outside"
mkdir -p "$outside/python" "$outside/examples"
cp -r python/tests python/tests_jax "$outside/python/"
cp -r examples/python "$outside/examples/"
cd "$outside"

step "the installed packages use their own libraries and tool"
"$python" - "$work/venv" <<'EOF'
import pathlib, re, subprocess, sys, sysconfig
venv = pathlib.Path(sys.argv[1]).resolve()
import torch, jax.numpy as jnp
import closs, closs_jax, closs_cli
site = pathlib.Path(sysconfig.get_paths()["platlib"]).resolve()
problems = []
def expect(what, path, folder):
    path = pathlib.Path(path).resolve()
    if folder not in path.parents:
        problems.append("%s is %s, not in %s" % (what, path, folder))
for module in (closs, closs_jax, closs_cli):
    expect(module.__name__, module.__file__, site)
expect("closs's library", closs.library().path, site / "closs")
expect("closs_jax's handler", closs_jax.handler_path, site / "closs_jax")
# Both packages at work, then every libcloss the process has mapped: the package's one only.
closs.ntxent_loss(torch.randn(4, 3, dtype=torch.float64))
closs_jax.ntxent_loss(jnp.ones((4, 3)))
mapped = set(re.findall(r"\s(/\S*libcloss[^/\s]*\.so[.0-9]*)$", open("/proc/self/maps").read(), re.M))
for path in mapped:
    expect("a mapped libcloss", path, site)
if len(mapped) != 2:  # libcloss.so and libcloss_jax.so
    problems.append("mapped: %s" % sorted(mapped))
ldd = subprocess.run(["ldd", str(closs_cli.tool_path())], capture_output=True, text=True, check=True).stdout
for path in re.findall(r"libcloss\S* => (\S+)", ldd) or ["(none)"]:
    expect("the closs tool's libcloss", path, site / "closs")
versions = {closs.__version__, closs.library_version(), closs_jax.__version__, closs_jax.library_version()}
if len(versions) != 1:
    problems.append("versions: %s" % versions)
print("\n".join(problems) or "test-wheel:   closs %s, its libraries and tool from %s" % (closs.__version__, site))
sys.exit(1 if problems else 0)
EOF
[[ $(command -v closs) == "$work/venv/bin/closs" ]] || {
    echo "test-wheel: closs on PATH is $(command -v closs), not the environment's" >&2
    exit 1
}

step "closs eval from PATH"
"$python" -c "import numpy as np; r = np.random.default_rng(0); \
np.save('z.npy', r.standard_normal((8, 16)).astype(np.float32)); np.save('labels.npy', np.repeat(np.arange(4), 2))"
closs eval supcon --in . --out result temperature=0.1 | tee eval.json
"$python" - <<'EOF'
import json, numpy as np, torch, closs
z, labels = np.load("z.npy"), np.load("labels.npy")
want = closs.supcon_loss(torch.from_numpy(z).double(), torch.from_numpy(labels), temperature=0.1).item()
got = json.load(open("eval.json"))["loss"]
assert abs(got - want) <= 1e-12 * abs(want) and float(np.load("result/loss.npy")) == got, (got, want)
EOF

step "PyTorch tests on the installed closs"
"$python" -m pytest -q -rs -p no:cacheprovider python/tests -k "not distributed"
step "JAX tests on the installed closs_jax"
"$python" -m pytest -q -rs -p no:cacheprovider python/tests_jax
step "passed"
