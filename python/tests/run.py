"""CTest's entry to the Python package's tests: pytest over python/tests with libcloss from the
build (CLOSS_LIBRARY). Without PyTorch it exits 77, which CTest reports as skipped, unless
CLOSS_REQUIRE_TORCH=1 (as in .ci/run), where a missing PyTorch is a failure."""

import os
import pathlib
import sys

try:
    import torch  # noqa: F401
except ImportError:
    if os.environ.get("CLOSS_REQUIRE_TORCH") == "1":
        print("FAIL: PyTorch is not installed and CLOSS_REQUIRE_TORCH=1 (scripts/install-deps.sh --ci installs it)")
        sys.exit(1)
    print("SKIP: PyTorch is not installed (scripts/install-deps.sh --ci installs it)")
    sys.exit(77)

import pytest

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))  # the package itself, from the source tree
if __name__ == "__main__":  # not again in the processes that multiprocessing spawns, which import it
    sys.exit(pytest.main(["-q", "-rs", "-p", "no:cacheprovider", str(here)] + sys.argv[1:]))
