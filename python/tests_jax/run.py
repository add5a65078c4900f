"""CTest's entry to closs_jax's tests: pytest over python/tests_jax with the FFI handler from the
build (CLOSS_JAX_LIBRARY, set by CTest when CMake built it). Without jax or without the handler it
exits 77, which CTest reports as skipped, unless CLOSS_REQUIRE_JAX=1 (as in .ci/run), where either
is a failure."""

import os
import pathlib
import sys

required = os.environ.get("CLOSS_REQUIRE_JAX") == "1"


def unavailable(why):
    if required:
        print("FAIL: %s and CLOSS_REQUIRE_JAX=1 (scripts/install-deps.sh --ci installs jax before CMake "
              "configures)" % why)
        sys.exit(1)
    print("SKIP: %s (scripts/install-deps.sh --ci installs jax; then reconfigure CMake)" % why)
    sys.exit(77)


try:
    import jax  # noqa: F401
except ImportError:
    unavailable("jax is not installed")
if not os.environ.get("CLOSS_JAX_LIBRARY"):
    unavailable("the JAX FFI handler was not built (CMake did not find jax when it configured)")

import pytest

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))  # closs_jax from the source tree
sys.exit(pytest.main(["-q", "-rs", "-p", "no:cacheprovider", str(here)] + sys.argv[1:]))
