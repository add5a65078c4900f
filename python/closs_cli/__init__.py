"""The `closs` command that `pip install` puts on PATH: it runs the closs tool the wheel carries
(bin/closs here, which finds libcloss in the closs package beside this one). A package of its own,
so that the command starts without importing PyTorch."""

import os
import pathlib
import sys


def tool_path():
    """The closs tool installed with this package."""
    return pathlib.Path(__file__).resolve().parent / "bin" / "closs"


def main():
    tool = tool_path()
    if not tool.is_file():
        sys.exit("closs: the closs tool is not installed at %s (this closs_cli comes from a source tree, "
                 "not a wheel: build it with cmake and run build/closs)" % tool)
    os.execv(str(tool), [str(tool)] + sys.argv[1:])
