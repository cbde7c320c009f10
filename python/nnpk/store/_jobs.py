"""`nnpk compute JOB.toml`, `nnpk status STORE`, `nnpk export STORE OUT.npy`: kernels as batch jobs.

Exit codes, for schedulers and job scripts:

    0   done (compute, export), or the store is complete (status)
    1   unexpected failure (a bug, a crashed worker): read the message
    2   the job file, its inputs or the store path are invalid, or the store was
        made for another job: fix the job; resubmitting it unchanged fails again
    3   a stored tile fails its checksum: `nnpk status STORE --verify --repair`,
        then run the job again to recompute it
    74  the file system is full, over quota, read-only or not writable, or the store
        would not fit (EX_IOERR): the message names the file and the space needed;
        make room (or move the store) and submit the same job again: it resumes
    75  interrupted (SIGINT, SIGTERM), or tiles are still missing: submit the same
        job again and it resumes where it stopped (EX_TEMPFAIL)
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import signal
import sys
import traceback

import numpy as np

from .._threads import physical_cores
from ._compute import compute_to_store
from ._executors import DASK_CONFIG
from ._layout import (
    DEFAULT_CHECKPOINT_SECONDS,
    DEFAULT_TILE_SIZE,
    CorruptTileError,
    IncompleteStoreError,
    StoreMismatchError,
    StoreWriteError,
)
from ._space import WRITE_ERRNOS
from ._spec import _arch_from_spec
from ._store import open_store

__all__ = ["register", "EXIT_OK", "EXIT_FAILED", "EXIT_INVALID", "EXIT_CORRUPT", "EXIT_IOERR", "EXIT_INCOMPLETE"]

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_CORRUPT, EXIT_IOERR, EXIT_INCOMPLETE = 0, 1, 2, 3, 74, 75

_JOB_KEYS = {"store", "x1", "x2", "kernel", "n_networks", "seed", "dtype", "wrt", "tile_size", "checkpoint_seconds",
             "arch", "run"}
_RUN_KEYS = {"executor", "n_threads", "progress", "scheduler_file", "scheduler_address"}


class JobError(ValueError):
    """The job file is not a valid job."""


def _toml(path: str) -> dict:
    try:
        import tomllib
    except ImportError:  # the store needs zarr 3, hence Python >= 3.11, which has tomllib
        raise JobError("nnpk compute needs Python >= 3.11") from None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise JobError(f"cannot read the job file: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise JobError(f"{path} is not valid TOML: {e}") from None


def _check_keys(table: dict, known: set, where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise JobError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")


def load_job(path: str) -> dict:
    """The job file as keyword arguments of compute_to_store (x1, x2 loaded), plus its [run] table.

    Relative paths are relative to the job file's directory."""
    job = _toml(path)
    _check_keys(job, _JOB_KEYS, path)
    for key in ("store", "x1", "arch"):
        if key not in job:
            raise JobError(f"{path}: missing key {key!r}")
    if not isinstance(job["arch"], dict):
        raise JobError(f"{path}: arch must be a table ([arch] with hidden = [...], out = ..., ...; or "
                       f"type = \"Network\" and layers = [...])")
    run = job.pop("run", {})
    if not isinstance(run, dict):
        raise JobError(f"{path}: run must be a table ([run] with executor = ..., ...)")
    _check_keys(run, _RUN_KEYS, f"{path} [run]")
    base = os.path.dirname(os.path.abspath(path))

    def resolve(p: str) -> str:
        return os.path.join(base, os.path.expanduser(p))  # join keeps absolute paths as they are
    job["path"] = resolve(job.pop("store"))
    for name in ("x1", "x2"):
        if name in job:
            try:
                job[name] = np.load(resolve(job[name]), mmap_mode="r")
            except (OSError, ValueError) as e:
                raise JobError(f"{path}: cannot load {name} = {job[name]!r}: {e}") from None
    try:
        job["arch"] = _arch_from_spec(job["arch"])
    except (TypeError, ValueError, KeyError) as e:
        raise JobError(f"{path} [arch]: {e!s}") from None
    if "scheduler_file" in run:
        run["scheduler_file"] = resolve(run["scheduler_file"])
    return {**job, "run": run}


def _dask_client(run: dict):
    import distributed

    if "scheduler_file" in run:
        return distributed.Client(scheduler_file=run["scheduler_file"])
    if "scheduler_address" in run:
        return distributed.Client(run["scheduler_address"])
    import dask


    with dask.config.set(DASK_CONFIG):  # read by the scheduler here and sent to the workers by their nannies
        # Quiet workers: a failed tile's error reaches this process, which reports it once (a full disk in
        # one line); the workers would log it again, with its traceback, on the same stderr. No dashboard,
        # and the scheduler's HTTP endpoint on a free port (not 8787, maybe taken, which is warned about).
        cluster = distributed.LocalCluster(n_workers=physical_cores(), threads_per_worker=1, dashboard_address=None,
                                           scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
                                           silence_logs=logging.CRITICAL)
    return distributed.Client(cluster)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _compute(args) -> int:
    job = load_job(args.job)
    run = job.pop("run")
    executor = args.executor or run.get("executor", "threads")
    n_threads = args.threads if args.threads is not None else run.get("n_threads")
    progress = run.get("progress", True) and not args.no_progress
    # Slurm and most schedulers send SIGTERM before SIGKILL: stop like Ctrl-C and say how to resume.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        client = _dask_client(run) if executor == "dask" else None
        try:
            store = compute_to_store(**job, executor=executor, client=client, n_threads=n_threads, progress=progress,
                                     space_check=not args.no_space_check)
        finally:
            if client is not None:
                cluster = client.cluster
                client.close()
                if cluster is not None and "scheduler_file" not in run and "scheduler_address" not in run:
                    cluster.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"nnpk: {store.path} is complete ({len(store.tiles)} tiles); "
          f"`nnpk export {store.path} OUT.npy` writes it to a .npy file")
    return EXIT_OK


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _describe(store, status: dict) -> str:
    spec = store.spec
    lines = [f"store    {store.path} (made by nnpk {spec['nnpk_version']})",
             f"kernel   {spec['kernel']}, {spec['n_networks']} networks, seed {spec['seed']}, "
             f"{spec['dtype']} forward passes",
             f"arch     {store.arch}"]
    for name in ("x1", "x2"):
        inp = spec["inputs"][name]
        if inp is not None:
            points = "" if spec.get("point_shape") is None else f" (points of shape {tuple(spec['point_shape'])})"
            lines.append(f"{name:<8} {tuple(inp['shape'])}{points} {np.dtype(inp['dtype']).name}, "
                         f"sha256 {inp['sha256'][:16]}...")
    n1, n2 = spec["shape"]
    symmetric = " (symmetric: tiles on and above the diagonal)" if spec["symmetric"] else ""
    lines.append(f"output   {n1} x {n2} float64{symmetric}, tiles of {spec['tile_size']}")
    partial = "".join(f"; tile ({t['tile'][0]}, {t['tile'][1]}) at {t['networks']}/{spec['n_networks']} networks"
                      for t in status["in_progress"])
    lines.append(f"tiles    {status['tiles_done']} of {status['tiles']} done ({100 * status['fraction_done']:.1f}% "
                 f"of the work){partial}")
    builds = status["builds"]
    if builds:
        lines.append("built by " + "; ".join(f"nnpk {b['nnpk_version']} at {b['isa_level']}: {len(b['tiles'])} tile(s)"
                                             for b in builds))
    if status["mixed_isa_levels"]:
        levels = sorted({b["isa_level"] for b in builds})
        lines.append(f"mixed    the tiles come from {len(levels)} instruction-set levels ({', '.join(levels)}): each "
                     "tile is bitwise reproducible at its own level, and the levels agree to rounding; NNPK_ISA "
                     "chooses a level for the next run")
    run = status["last_run"]
    if run:
        started = datetime.datetime.fromtimestamp(run["started"]).strftime("%Y-%m-%d %H:%M")
        lines.append(f"last run {run['executor']}, {run['workers']} worker(s), started {started} on {run['host']}")
    if not status["complete"]:
        left = status["seconds_left"]
        lines.append("time     " + ("unknown until a tile is finished" if left is None else
                                    f"about {_duration(left)} left at the last run's speed"))
    return "\n".join(lines)


def _status(args) -> int:
    store = open_store(args.store)
    bad = store.verify(repair=args.repair) if args.verify else []
    status = store.status()
    if args.json:
        print(json.dumps({**status, "spec": store.spec, "corrupted": bad}, indent=1))
    else:
        print(_describe(store, status))
        if bad:
            listed = ", ".join(f"({i}, {j})" for i, j in bad)
            print(f"corrupt  {len(bad)} tile(s) fail their checksum: {listed}"
                  + ("; deleted, run the job again to recompute them" if args.repair else
                     "; `--verify --repair` deletes them so that the job recomputes them"))
    if bad and not args.repair:
        return EXIT_CORRUPT
    return EXIT_OK if status["complete"] else EXIT_INCOMPLETE


def _export(args) -> int:
    store = open_store(args.store)
    store.export(args.out)
    print(f"nnpk: wrote {args.out} ({store.shape[0]} x {store.shape[1]} float64)")
    return EXIT_OK


def _run(func):
    """Runs a subcommand and turns its outcome into an exit code."""

    def wrapped(args) -> int:
        try:
            return func(args)
        except KeyboardInterrupt:
            print("nnpk: interrupted; finished tiles and checkpoints are saved: run the same command again to resume",
                  file=sys.stderr)
            return EXIT_INCOMPLETE
        except IncompleteStoreError as e:
            print(f"nnpk: {e}", file=sys.stderr)
            return EXIT_INCOMPLETE
        except CorruptTileError as e:
            print(f"nnpk: {e}", file=sys.stderr)
            return EXIT_CORRUPT
        except StoreWriteError as e:  # says which file, how much room and what to do
            print(f"nnpk: {e}", file=sys.stderr)
            return EXIT_IOERR
        except OSError as e:
            if e.errno in WRITE_ERRNOS:  # status --repair deleting tiles on a read-only store, say
                print(f"nnpk: {e.strerror.lower() if e.strerror else 'cannot write'}: cannot write {e.filename}",
                      file=sys.stderr)
                return EXIT_IOERR
            if isinstance(e, FileNotFoundError):
                print(f"nnpk: error: {e}", file=sys.stderr)
                return EXIT_INVALID
            traceback.print_exc()
            return EXIT_FAILED
        except (JobError, StoreMismatchError, ImportError, MemoryError, TypeError,
                ValueError) as e:
            print(f"nnpk: error: {e}", file=sys.stderr)
            return EXIT_INVALID
        except Exception:
            traceback.print_exc()
            return EXIT_FAILED

    return wrapped


def register(sub) -> None:
    """Adds the batch subcommands to the `nnpk` command's subparsers."""
    epilog = __doc__.split("\n\n", 1)[1]
    p = sub.add_parser("compute", help="compute a kernel into an on-disk store, or resume it", epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=f"Computes the kernel a TOML job file describes into its store, resuming the "
                                   f"store if it exists (defaults: tile_size={DEFAULT_TILE_SIZE}, "
                                   f"checkpoint_seconds={DEFAULT_CHECKPOINT_SECONDS:g}; see the README).")
    p.add_argument("job", help="the job file (TOML)")
    p.add_argument("--executor", choices=("threads", "dask", "mpi"), help="overrides [run] executor")
    p.add_argument("--threads", type=int, help="OpenMP threads per tile; overrides [run] n_threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-space-check", action="store_true",
                   help="start even if the store's file system has less free space than the store needs")
    p.set_defaults(func=_run(_compute))

    p = sub.add_parser("status", help="tiles done, spec and time left of a store", epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store")
    p.add_argument("--verify", action="store_true", help="read every tile and check its checksum")
    p.add_argument("--repair", action="store_true", help="with --verify: delete corrupted tiles so they are recomputed")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run(_status))

    p = sub.add_parser("export", help="write a complete store's kernel to a .npy file", epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store")
    p.add_argument("out", help="the .npy file to write")
    p.set_defaults(func=_run(_export))
