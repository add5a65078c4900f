"""One version for the package and its library (CMakeLists.txt's project(closs VERSION ...)), and a
clear error, not a crash and not a call, when the library found is of another version or is not
libcloss at all. The wrong libraries are small stand-ins compiled here (skipped without a C
compiler), loaded by a fresh Python through CLOSS_LIBRARY / CLOSS_JAX_LIBRARY."""

import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import closs

PACKAGE_ROOT = pathlib.Path(closs.__file__).resolve().parents[1]  # where this closs was imported from


def test_the_package_and_its_library_have_one_version():
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", closs.__version__)
    assert closs.library_version() == closs.__version__
    cmake = PACKAGE_ROOT.parent / "CMakeLists.txt"
    if cmake.is_file():  # a source tree: the version is the one CMakeLists.txt declares
        assert "project(closs VERSION %s" % closs.__version__ in cmake.read_text()


def shared_library(tmp_path, name, source):
    """`source` compiled into tmp_path/name as a shared library."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in library")
    (tmp_path / "stand_in.c").write_text(source)
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(tmp_path / name), str(tmp_path / "stand_in.c")],
                   check=True)
    return tmp_path / name


def run_python(code, **environment):
    """`code` in a fresh Python that imports the same packages as this one."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")]),
               **environment)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


# A libcloss of another version: the entry points the package calls first, which must not be reached.
OTHER_VERSION = """
#include <stdlib.h>
const char *closs_version_string(void) { return "0.0.1"; }
int closs_version(void) { return 1; }
const char *closs_last_error(void) { abort(); }
const char *closs_status_string(int status) { (void)status; abort(); }
int closs_cuda_available(void) { abort(); }
int closs_ref_ntxent(void) { abort(); }
"""


def test_a_library_of_another_version_is_refused(tmp_path):
    library = shared_library(tmp_path, "libcloss.so", OTHER_VERSION)
    result = run_python("import closs, torch\n"
                        "for use in (closs.library_version, lambda: closs.ntxent_loss(torch.randn(4, 3))):\n"
                        "    try:\n"
                        "        use()\n"
                        "    except closs.ClossVersionError as error:\n"
                        "        print('refused:', error)\n",
                        CLOSS_LIBRARY=str(library))
    assert result.returncode == 0, result.stdout + result.stderr
    refusals = [line for line in result.stdout.splitlines() if line.startswith("refused:")]
    assert len(refusals) == 2, result.stdout
    for refusal in refusals:  # both versions, where the library was found and how
        assert "closs package %s" % closs.__version__ in refusal and "libcloss 0.0.1" in refusal
        assert str(library) in refusal and "$CLOSS_LIBRARY" in refusal


def test_a_library_that_is_not_libcloss_is_refused(tmp_path):
    library = shared_library(tmp_path, "libother.so", "int unrelated(void) { return 0; }\n")
    result = run_python("import closs\ncloss.library_version()", CLOSS_LIBRARY=str(library))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ClossVersionError: %s ($CLOSS_LIBRARY) is not libcloss" % library in result.stderr


def test_a_jax_handler_over_a_library_of_another_version_is_refused(tmp_path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    handler = shared_library(tmp_path, "libcloss_jax.so", OTHER_VERSION + "void closs_jax_cpu(void) {}\n"
                                                                          "void closs_jax_cuda(void) {}\n")
    result = run_python("import closs_jax", CLOSS_JAX_LIBRARY=str(handler))
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError: closs_jax %s" % closs.__version__), message
    assert "libcloss is 0.0.1 (%s)" % handler in message
