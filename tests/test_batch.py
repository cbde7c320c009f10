"""Batch jobs: `nnpk compute/status/export`, SIGKILL and SIGTERM mid-run, Dask and MPI workers.

Every kernel is compared with the in-memory `nnpk.monte_carlo` call, bit for bit."""

import errno
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nnpk

pytest.importorskip("zarr")
# Guards against a hang only, generous for a loaded machine (jobs here take seconds on an idle one).
pytestmark = pytest.mark.timeout(900)
HANG = 600  # seconds before a subprocess counts as hung

ARCH = dict(hidden=[64, 32], out=4, activation="erf", W_std=1.5, b_std=0.1)


def toml_value(v):
    return json.dumps(v)  # numbers, strings and lists of them are written alike in JSON and TOML


def write_job(tmp_path, *, n=300, d=8, n_networks=6, seed=3, arch=ARCH, run=None, name="job.toml", **keys):
    """A job file and its input x.npy in tmp_path; returns (job path, x)."""
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    job = {**dict(store="store", x1="x.npy", kernel="nngp", n_networks=n_networks, seed=seed, dtype="float32",
                  tile_size=96), **keys}
    lines = [f"{k} = {toml_value(v)}" for k, v in job.items()]
    lines += ["[arch]"] + [f"{k} = {toml_value(v)}" for k, v in arch.items()]
    lines += ["[run]"] + [f"{k} = {toml_value(v)}" for k, v in (run or {}).items()]
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return tmp_path / name, x


def expected_kernel(x, n_networks=6, seed=3, arch=ARCH):
    return nnpk.monte_carlo(x, arch=nnpk.MLP(**arch), n_networks=n_networks, seed=seed, dtype="float32")


def nnpk_cli(*args, timeout=HANG, **kwargs):
    return subprocess.run([sys.executable, "-m", "nnpk", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def test_compute_status_export(tmp_path):
    job, x = write_job(tmp_path)
    out = nnpk_cli("compute", job)
    assert out.returncode == 0, out.stderr
    assert "is complete (10 tiles)" in out.stdout and "tiles" in out.stderr  # the progress bar
    status = nnpk_cli("status", tmp_path / "store")
    assert status.returncode == 0
    assert "10 of 10 done (100.0% of the work)" in status.stdout and "x1       (300, 8) float32" in status.stdout
    info = json.loads(nnpk_cli("status", tmp_path / "store", "--json").stdout)
    assert info["complete"] and info["spec"]["n_networks"] == 6 and info["spec"]["arch"]["activation"] == "erf"
    assert nnpk_cli("export", tmp_path / "store", tmp_path / "K.npy").returncode == 0
    assert np.array_equal(np.load(tmp_path / "K.npy"), expected_kernel(x))
    again = nnpk_cli("compute", job, "--no-progress")  # nothing left to do
    assert again.returncode == 0 and again.stderr == ""


def partial_checkpoints(store):
    return glob.glob(os.path.join(store, "partial", "*.npz"))


def test_sigkill_mid_tile_then_resume_is_exact(tmp_path):
    """Killed while a tile is half done: the rerun continues that tile from its saved
    float64 sum and gives the uninterrupted kernel bit for bit."""
    M = 150
    arch = dict(hidden=[256, 256], out=4)
    job, x = write_job(tmp_path, n=384, n_networks=M, arch=arch, checkpoint_seconds=0, run=dict(n_threads=1))
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "nnpk", "compute", str(job), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + HANG  # a guard against a loop without end, not a measurement
        while True:  # freeze the job, and kill it only if a tile is done and another half done
            assert proc.poll() is None and time.monotonic() < deadline, "the job ended before it could be killed"
            if glob.glob(str(store / "tiles" / "*.json")) and partial_checkpoints(store):
                proc.send_signal(signal.SIGSTOP)
                frozen = nnpk.open_store(store).status()
                if frozen["tiles_done"] >= 1 and frozen["in_progress"]:
                    break
                proc.send_signal(signal.SIGCONT)
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    status = nnpk.open_store(store).status()
    assert not status["complete"] and status["tiles_done"] >= 1
    partial = {tuple(t["tile"]): t["networks"] for t in status["in_progress"]}
    assert partial and all(0 < k < M for k in partial.values())
    assert nnpk_cli("status", store).returncode == 75

    job.write_text(job.read_text().replace("checkpoint_seconds = 0", "checkpoint_seconds = 300"))
    out = nnpk_cli("compute", job, "--no-progress")
    assert out.returncode == 0, out.stderr
    resumed = nnpk.open_store(store)
    for (i, j), k in partial.items():
        assert json.load(open(resumed._record_path(i, j)))["networks"] == M - k
    assert np.array_equal(resumed.to_numpy(), expected_kernel(x, n_networks=M, arch=arch))
    assert partial_checkpoints(store) == []


def test_sigterm_stops_with_exit_code_75_and_the_job_resumes(tmp_path):
    M = 100
    arch = dict(hidden=[256, 256], out=4)
    job, x = write_job(tmp_path, n=384, n_networks=M, arch=arch, run=dict(n_threads=1))
    proc = subprocess.Popen([sys.executable, "-m", "nnpk", "compute", str(job), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + HANG  # a guard against a loop without end, not a measurement
        while not glob.glob(str(tmp_path / "store" / "tiles" / "*.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "the job ended before a tile was written"
            time.sleep(0.01)
        # Frozen first, so that it cannot finish the remaining tiles while this (loaded) process is slow.
        proc.send_signal(signal.SIGSTOP)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
        _, stderr = proc.communicate(timeout=HANG)
    finally:
        proc.kill()
    assert proc.returncode == 75, stderr
    assert "interrupted; finished tiles and checkpoints are saved: run the same command again" in stderr
    assert not nnpk.open_store(tmp_path / "store").complete
    assert nnpk_cli("compute", job, "--no-progress").returncode == 0
    assert np.array_equal(nnpk.open_store(tmp_path / "store").to_numpy(), expected_kernel(x, n_networks=M, arch=arch))


def test_two_jobs_on_one_store_at_once(tmp_path):
    """Both may create the store and write the same tiles: every write is atomic and
    every tile's bits are the same, so both succeed and the kernel is exact."""
    job, x = write_job(tmp_path, n=400, run=dict(n_threads=1))
    procs = [subprocess.Popen([sys.executable, "-m", "nnpk", "compute", str(job), "--no-progress"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=HANG)
        assert proc.returncode == 0, stderr
    assert np.array_equal(nnpk.open_store(tmp_path / "store").to_numpy(), expected_kernel(x))
    assert [p for p in os.listdir(tmp_path) if p.startswith(".store")] == []  # no half-made store left


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.replace("seed = 3", "sed = 3"), "unknown key 'sed'"),
        (lambda t: t.replace("[run]", "[run]\nexecuter = \"dask\""), r"\[run\]: unknown key 'executer'"),
        (lambda t: t.replace('x1 = "x.npy"\n', ""), "missing key 'x1'"),
        (lambda t: t.replace('"x.npy"', '"nowhere.npy"'), "cannot load x1 = 'nowhere.npy'"),
        (lambda t: t.replace("tile_size = 96", "tile_size = 100"), "tile_size must be a multiple of 96"),
        (lambda t: t.replace("hidden = ", "hiden = "), r"\[arch\]: .*unexpected keyword argument 'hiden'"),
        (lambda t: t.replace('activation = "erf"', 'activation = "Erf"'), "activation must be one of"),
        (lambda t: t.replace("n_networks = 6", "n_networks = [6"), "is not valid TOML"),
        (lambda t: t.replace('kernel = "nngp"', 'kernel = "gp"'), "kernel must be one of"),
    ],
)
def test_invalid_jobs_exit_with_code_2(tmp_path, edit, match):
    job, _ = write_job(tmp_path)
    job.write_text(edit(job.read_text()))
    out = nnpk_cli("compute", job)
    assert out.returncode == 2
    assert re.search(match, out.stderr), out.stderr


def test_another_job_on_the_same_store_exits_with_code_2(tmp_path):
    job, _ = write_job(tmp_path)
    assert nnpk_cli("compute", job, "--no-progress").returncode == 0
    job.write_text(job.read_text().replace("seed = 3", "seed = 4"))
    out = nnpk_cli("compute", job)
    assert out.returncode == 2 and "seed is 3 in the store, 4 here" in out.stderr
    np.save(tmp_path / "x.npy", np.load(tmp_path / "x.npy")[::-1])
    job.write_text(job.read_text().replace("seed = 4", "seed = 3"))
    out = nnpk_cli("compute", job)
    assert out.returncode == 2 and "inputs.x1.sha256 is" in out.stderr


def test_corruption_and_missing_tiles_exit_codes(tmp_path):
    job, x = write_job(tmp_path)
    store_path = tmp_path / "store"
    assert nnpk_cli("compute", job, "--no-progress").returncode == 0
    store = nnpk.open_store(store_path)
    with open(store._chunk_path(1, 2), "r+b") as f:
        f.seek(50)
        f.write(b"\x00\x01\x02")
    out = nnpk_cli("export", store_path, tmp_path / "K.npy")
    assert out.returncode == 3 and "tile (1, 2) (rows 96:192, columns 192:288)" in out.stderr
    assert not os.path.exists(tmp_path / "K.npy")
    out = nnpk_cli("status", store_path, "--verify")
    assert out.returncode == 3 and "1 tile(s) fail their checksum: (1, 2)" in out.stdout
    out = nnpk_cli("status", store_path, "--verify", "--repair")
    assert out.returncode == 75 and "9 of 10 done" in out.stdout
    out = nnpk_cli("export", store_path, tmp_path / "K.npy")
    assert out.returncode == 75 and "1 of 10 tiles" in out.stderr
    assert nnpk_cli("compute", job, "--no-progress").returncode == 0
    assert nnpk_cli("export", store_path, tmp_path / "K.npy").returncode == 0
    assert np.array_equal(np.load(tmp_path / "K.npy"), expected_kernel(x))
    assert nnpk_cli("status", tmp_path / "nowhere").returncode == 2


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def worker_pids(store):
    return {json.load(open(p))["pid"] for p in glob.glob(os.path.join(store.path, "tiles", "*.json"))}


@pytest.mark.parametrize("kernel", ["nngp", "ntk"])
def test_dask_local_cluster_equals_in_memory(tmp_path, dask_client, kernel):
    arch = nnpk.MLP(**ARCH)
    x1 = np.random.default_rng(0).standard_normal((400, 8))
    x2 = None if kernel == "nngp" else np.random.default_rng(1).standard_normal((250, 8))
    expected = nnpk.monte_carlo(x1, x2, arch=arch, n_networks=5, seed=7, get=kernel)
    store = nnpk.compute_to_store(tmp_path / "k", x1, x2, arch=arch, kernel=kernel, n_networks=5, seed=7,
                                  tile_size=96, executor="dask", client=dask_client)
    assert np.array_equal(store.to_numpy(), expected)
    assert store.status()["last_run"]["workers"] == 2
    records = [json.load(open(p)) for p in glob.glob(os.path.join(store.path, "tiles", "*.json"))]
    assert {r["n_threads"] for r in records} == {1}  # Dask workers default to one OpenMP thread
    assert len(worker_pids(store)) == 2 and os.getpid() not in worker_pids(store)


def test_dask_resumes_what_another_executor_started(tmp_path, dask_client):
    arch = nnpk.MLP(**ARCH)
    x = np.random.default_rng(0).standard_normal((300, 8))
    store = nnpk.compute_to_store(tmp_path / "k", x, arch=arch, n_networks=4, tile_size=96)
    for tile in [(0, 0), (0, 3), (2, 3)]:
        os.unlink(store._chunk_path(*tile))
    store = nnpk.compute_to_store(tmp_path / "k", x, arch=arch, n_networks=4, tile_size=96, executor="dask",
                                  client=dask_client, n_threads=2)
    assert np.array_equal(store.to_numpy(), nnpk.monte_carlo(x, arch=arch, n_networks=4))


def mpiexec():
    pytest.importorskip("mpi4py")
    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec: install the mpi extra (pip install 'nnpk[mpi]')")
    return found


def test_mpiexec_two_processes_equal_in_memory(tmp_path):
    job, x = write_job(tmp_path, n=400, run=dict(executor="mpi"))
    command = [mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py.futures", "-m", "nnpk", "compute", str(job),
               "--no-progress"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=HANG)
    assert out.returncode == 0, out.stderr
    store = nnpk.open_store(tmp_path / "store")
    assert store.status()["last_run"] == {**store.status()["last_run"], "executor": "mpi", "workers": 1}
    assert np.array_equal(store.to_numpy(), expected_kernel(x))
    # The tiles were computed by the worker rank, not by the driver (rank 0).
    assert len(worker_pids(store)) == 1
    # Exit codes reach the scheduler through mpiexec.
    job.write_text(job.read_text().replace("seed = 3", "seed = 9"))
    out = subprocess.run(command, capture_output=True, text=True, timeout=HANG)
    assert out.returncode == 2 and "seed is 3 in the store, 9 here" in out.stderr


def test_a_job_computes_the_kernel_of_a_network(tmp_path):
    x = np.random.default_rng(2).standard_normal((200, 12, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "job.toml").write_text(textwrap.dedent('''\
        store = "store"
        x1 = "x.npy"
        kernel = "ntk"
        n_networks = 3
        seed = 5
        dtype = "float32"
        tile_size = 96
        [arch]
        type = "Network"
        init = "truncated_normal"
        layers = [{type = "Conv", channels = 6, kernel_size = 3, b_std = 0.1}, "relu",
                  {type = "Residual", block = [{type = "Conv", channels = 6, kernel_size = 3}, "tanh"], scale = 0.5},
                  {type = "GlobalAvgPool"}, {type = "Dense", width = 3, W_std = 1.3}]
        '''))
    out = nnpk_cli("compute", tmp_path / "job.toml", "--no-progress")
    assert out.returncode == 0, out.stderr
    net = nnpk.Network([nnpk.Conv(6, 3, b_std=0.1), "relu", nnpk.Residual([nnpk.Conv(6, 3), "tanh"], scale=0.5),
                        nnpk.GlobalAvgPool(), nnpk.Dense(3, W_std=1.3)], init="truncated_normal")
    assert nnpk.open_store(tmp_path / "store").arch == net
    assert "x1       (200, 24) (points of shape (12, 2)) float32" in nnpk_cli("status", tmp_path / "store").stdout
    expected = nnpk.monte_carlo(x, arch=net, get="ntk", n_networks=3, seed=5, dtype="float32")
    assert np.array_equal(nnpk.open_store(tmp_path / "store").to_numpy(), expected)
    job = (tmp_path / "job.toml").read_text()
    (tmp_path / "job.toml").write_text(job.replace('type = "Network"', 'type = "Network"\nwidth = 3'))
    bad = nnpk_cli("compute", tmp_path / "job.toml", "--no-progress")
    assert bad.returncode == 2 and "[arch]" in bad.stderr and "width" in bad.stderr


def test_the_local_dask_cluster_of_a_job_monitors_less(monkeypatch):
    """`nnpk compute --executor dask` without a scheduler starts a LocalCluster with DASK_CONFIG."""
    distributed = pytest.importorskip("distributed")
    import dask

    from nnpk.store._jobs import _dask_client

    seen = {}

    def cluster(**kwargs):
        seen.update({key: dask.config.get(key) for key in nnpk.store.DASK_CONFIG}, **kwargs)
        return "cluster"

    monkeypatch.setattr(distributed, "LocalCluster", cluster)
    monkeypatch.setattr(distributed, "Client", lambda c: ("client", c))
    assert _dask_client({}) == ("client", "cluster")
    assert seen["distributed.worker.profile.enabled"] is False and seen["distributed.admin.tick.interval"] == "1s"
    assert seen["threads_per_worker"] == 1
    assert dask.config.get("distributed.worker.profile.enabled") is True  # only while the cluster starts


# ----------------------------------------------------------------------------- full and unwritable file systems


def no_temporary_files(path):
    return [os.path.join(d, f) for d, _, files in os.walk(path) for f in files if f.endswith(".tmp")]


def assert_finished_tiles_are_exact(store_path, expected):
    """Every tile the store counts as done holds its block of the in-memory kernel, bit for bit."""
    store = nnpk.open_store(store_path)
    assert store.verify() == [] and no_temporary_files(store_path) == []
    for i, j in store.tiles_done():
        rows, cols = store.bounds(i, j)
        assert np.array_equal(store.tile(i, j), expected[rows, cols]), (i, j)
    return store


def assert_io_error(out, *words):
    """Exit code 74, and on stderr one line, no traceback, with these words (under mpiexec, the MPI
    runtime adds its own line, saying that rank 0 ended the run with that code)."""
    assert out.returncode == 74, out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if not line.startswith("Abort(74)")]
    assert "Traceback" not in out.stderr and len(lines) == 1, out.stderr
    for word in words:
        assert word in out.stderr, (word, out.stderr)


@pytest.fixture
def small_file_system(tmp_path):
    """A 2 MiB tmpfs mounted on tmp_path / "fs" (root only), and a function remounting it with other options."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    where = tmp_path / "fs"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")

    def remount(options):
        subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)

    try:
        yield where, remount
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_a_full_file_system_exits_74_and_the_job_resumes_when_there_is_room(tmp_path, small_file_system):
    """A 2 MiB tmpfs and a 4.3 MiB store (55 tiles of 96 x 96): refused at the start; with
    --no-space-check, stopped when the disk fills with tiles written intact; refused read-only;
    finished, bit for bit, once the file system is larger."""
    fs, remount = small_file_system
    store = fs / "store"
    job, x = write_job(tmp_path, n=960, store=str(store), run=dict(n_threads=1))
    expected = expected_kernel(x)
    out = nnpk_cli("compute", job, "--no-progress")
    assert_io_error(out, f"the store {store} needs about 4.", "MiB", "free", "--no-space-check")
    assert os.listdir(fs) == []  # refused before anything was written
    out = nnpk_cli("compute", job, "--no-progress", "--no-space-check")
    assert_io_error(out, "no space left on device: cannot write " + str(store), "needs about", "more", "free",
                    "run the same computation again")
    print(out.stderr)
    done = assert_finished_tiles_are_exact(store, expected).tiles_done()
    assert 5 <= len(done) < 55
    written = {t: os.stat(nnpk.open_store(store)._chunk_path(*t)).st_mtime_ns for t in done}
    remount("ro")
    out = nnpk_cli("compute", job, "--no-progress", "--no-space-check")
    assert_io_error(out, "read-only file system: cannot write " + str(store), "remount the file system writable")
    assert ".tmp" not in out.stderr  # the file named is the one the store keeps
    print(out.stderr)
    remount("rw,size=16m")
    out = nnpk_cli("compute", job, "--no-progress")
    assert out.returncode == 0, out.stderr
    resumed = nnpk.open_store(store)
    assert {t: os.stat(resumed._chunk_path(*t)).st_mtime_ns for t in done} == written
    assert np.array_equal(resumed.to_numpy(), expected)
    # The exported kernel (7 MiB) fits once, not twice: the second export is refused and leaves no file.
    assert nnpk_cli("export", store, fs / "K.npy").returncode == 0
    out = nnpk_cli("export", store, fs / "K2.npy")
    assert_io_error(out, f"cannot write {fs / 'K2.npy'}; the kernel (960 x 960 float64) needs about 7.0 MiB")
    print(out.stderr)
    assert sorted(os.listdir(fs)) == ["K.npy", "store"]
    assert np.array_equal(np.load(fs / "K.npy"), expected)


FAILING_WRITER = """
import errno, os, runpy, sys
import nnpk.store._store as store_module

written = []


def write_direct(path, data):  # the chunk writer: {ok} tiles, then half a tile and no space left
    if len(written) >= {ok}:
        with open(path, "wb") as f:
            f.write(data.data[:data.nbytes // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    written.append(path)
    return False  # the buffered write writes the chunk


store_module._write_direct = write_direct
executor = sys.argv[sys.argv.index("--executor") + 1]
if executor == "dask":  # workers in this process, so that they fail too
    import functools
    import distributed

    distributed.LocalCluster = functools.partial(distributed.LocalCluster, processes=False)
if executor == "mpi":  # every rank runs this script
    sys.argv = ["mpi4py.futures", "-m", "nnpk", *sys.argv[1:]]
    runpy.run_module("mpi4py.futures", run_name="__main__", alter_sys=True)
else:
    from nnpk.cli import main

    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("executor", ["threads", "dask", "mpi"])
def test_a_failing_tile_writer_exits_74_on_every_executor(tmp_path, executor):
    """The chunk writer fails after 3 tiles as on a full disk, on whichever process writes: the same
    exit code and one-line message, no hang, finished tiles intact; the same job then completes."""
    if executor == "dask":
        pytest.importorskip("distributed")
    command = [sys.executable]
    if executor == "mpi":
        command = [mpiexec(), "-n", "2", sys.executable]
    job, x = write_job(tmp_path, n=400, run=dict(n_threads=1))
    (tmp_path / "failing.py").write_text(FAILING_WRITER.replace("{ok}", "3"))
    out = subprocess.run([*command, str(tmp_path / "failing.py"), "compute", str(job), "--no-progress",
                          "--executor", executor], capture_output=True, text=True, timeout=HANG)
    chunks = tmp_path / "store" / "kernel.zarr" / "kernel"
    assert_io_error(out, f"no space left on device: cannot write {chunks}", "needs about", "free")
    store = assert_finished_tiles_are_exact(tmp_path / "store", expected_kernel(x))
    assert 3 <= len(store.tiles_done()) < len(store.tiles)
    if executor == "threads":
        assert len(store.tiles_done()) == 3  # the first failed write stops the run
    again = [*command, "-m", "mpi4py.futures"] if executor == "mpi" else command
    out = subprocess.run([*again, "-m", "nnpk", "compute", str(job), "--no-progress", "--executor", executor],
                         capture_output=True, text=True, timeout=HANG)
    assert out.returncode == 0, out.stderr
    assert np.array_equal(nnpk.open_store(tmp_path / "store").to_numpy(), expected_kernel(x))


def test_a_store_larger_than_the_disk_is_refused_before_it_is_made(tmp_path):
    """960000 points in one tile: 7.4 TB of kernel, more than this disk has free."""
    n = 10000 * 96
    job, _ = write_job(tmp_path, n=n, d=1, tile_size=n)
    out = nnpk_cli("compute", job, "--no-progress")
    assert_io_error(out, f"the store {tmp_path / 'store'} needs about", "TiB", "free", "--no-space-check")
    assert not os.path.exists(tmp_path / "store")


SMALL_DISK = """
import sys
import nnpk.store._space as space

space.free_bytes = lambda path: 10000
from nnpk.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_no_space_check_skips_the_estimate(tmp_path):
    """A file system said to have 10000 bytes free: refused, then computed with --no-space-check."""
    job, x = write_job(tmp_path)
    (tmp_path / "small.py").write_text(SMALL_DISK)
    run = lambda *options: subprocess.run([sys.executable, str(tmp_path / "small.py"), "compute", str(job),
                                           "--no-progress", *options], capture_output=True, text=True, timeout=HANG)
    assert_io_error(run(), "has 9.8 KiB free", "--no-space-check")
    assert not os.path.exists(tmp_path / "store")
    out = run("--no-space-check")
    assert out.returncode == 0, out.stderr
    assert np.array_equal(nnpk.open_store(tmp_path / "store").to_numpy(), expected_kernel(x))


def test_repairing_a_read_only_store_exits_74(tmp_path, monkeypatch, capsys):
    """`status --verify --repair` cannot delete a corrupt tile of a read-only store: exit code 74, one line."""
    from nnpk.cli import main

    job, _ = write_job(tmp_path)
    assert nnpk_cli("compute", job, "--no-progress").returncode == 0
    chunk = nnpk.open_store(tmp_path / "store")._chunk_path(0, 1)
    with open(chunk, "r+b") as f:
        f.seek(50)
        f.write(b"\x00\x01\x02")

    def unlink(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    monkeypatch.setattr(os, "unlink", unlink)
    assert main(["status", str(tmp_path / "store"), "--verify", "--repair"]) == 74
    err = capsys.readouterr().err
    assert err == f"nnpk: read-only file system: cannot write {chunk}\n"
