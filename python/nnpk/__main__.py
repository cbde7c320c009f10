"""`python -m nnpk`: the `nnpk` command (e.g. under `mpiexec ... python -m mpi4py.futures -m nnpk`)."""

import sys

from .cli import main

# mpi4py.futures workers import the main module under another name, as multiprocessing does.
if __name__ == "__main__":
    sys.exit(main())
