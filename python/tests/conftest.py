import pathlib
import sys

here = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(here.parent), str(here)]  # closs from the source tree; torch_losses beside the tests
