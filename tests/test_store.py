"""The tiled on-disk store: every tile, resumed or not, equals the in-memory kernel bit for bit."""

import errno
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nnpk
from nnpk import _core
from nnpk.store import CorruptTileError, IncompleteStoreError, StoreMismatchError, StoreWriteError, compute_tile
from engine_sums import conditional_sums as _conditional_sums
from engine_sums import kernel_sums as _kernel_sums
from engine_sums import tangent_sums as _tangent_sums

pytest.importorskip("zarr")
pytestmark = pytest.mark.timeout(600)  # a guard against a hang, generous for a loaded machine

ARCH = nnpk.MLP(hidden=[32, 16], out=3, W_std=1.3, b_std=0.2)
Q = _core.ROW_QUANTUM


def points(n, d=6, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


X1, X2 = points(250), points(130, seed=1)


def test_blocks_of_the_engine_equal_blocks_of_the_whole_kernel():
    """The engine fact the store rests on: rows I of x1 against rows J of x2 give exactly
    block (I, J) of the full call, and of the symmetric call (x2 = None)."""
    x = points(300)
    I, J = slice(0, 96), slice(192, 300)
    for dtype in (np.float32, np.float64):
        a = x.astype(dtype)
        common = dict(seed=4, start=0, stop=5, n_threads=2)
        sym = _kernel_sums(a, None, ARCH, all_layers=False, **common)[0]
        full = _kernel_sums(a, a, ARCH, all_layers=False, **common)[0]
        block = _kernel_sums(a[I], a[J], ARCH, all_layers=False, **common)[0]
        diag = _kernel_sums(a[J], None, ARCH, all_layers=False, **common)[0]
        assert np.array_equal(block, full[I, J]) and np.array_equal(block, sym[I, J])
        assert np.array_equal(block.T, sym[J, I]) and np.array_equal(diag, sym[J, J])
        tangent = dict(names=("ntk",), weights=[True] * 3, biases=[True] * 3, per_layer=False, per_logit=False)
        sym = _tangent_sums(a, None, ARCH, **tangent, **common)[0]
        block = _tangent_sums(a[I], a[J], ARCH, **tangent, **common)[0]
        assert np.array_equal(block, sym[I, J]) and np.array_equal(block.T, sym[J, I])


def test_sums_continued_in_place_equal_sums_continued_from_a_copy():
    """The store accumulates each tile in a reused buffer (in_place): the same bits as the
    engine's own zeroed output, and as continuing from a copied partial sum."""
    a, b = points(150), points(100, seed=2)
    common = dict(seed=3, n_threads=2)
    tangent = dict(names=("nngp", "ntk"), weights=[True] * 3, biases=[True] * 3, per_layer=False, per_logit=False)
    engines = {
        "gram": lambda **kw: _kernel_sums(a, b, ARCH, all_layers=True, **common, **kw),
        "conditional": lambda **kw: _conditional_sums(a, b, ARCH, layers=[0, 1], **common, **kw),
        "tangent": lambda **kw: _tangent_sums(a, b, ARCH, **tangent, **common, **kw),
    }
    for name, run in engines.items():
        whole = run(start=0, stop=5)
        first = run(start=0, stop=2)
        buffers = [np.zeros_like(s) for s in first]
        out = run(start=0, stop=2, initial=buffers, in_place=True)
        assert all(o is s for o, s in zip(out, buffers)), name
        out = run(start=2, stop=5, initial=buffers, in_place=True)
        assert all(o is s for o, s in zip(out, buffers)), name
        copied = run(start=2, stop=5, initial=first)
        for k in range(len(whole)):
            assert np.array_equal(buffers[k], whole[k]) and np.array_equal(copied[k], whole[k]), (name, k)


@pytest.mark.parametrize("bad, match", [
    (lambda s: [s.astype(np.float32)], "C-contiguous float64"),
    (lambda s: [np.asfortranarray(s)], "C-contiguous float64"),
    (lambda s: [s[:, :50]], "C-contiguous float64"),
    (lambda s: [np.zeros((150, 99))], "must have the output's shape"),
    (lambda s: [s, s], "one partial sum per output"),
    (lambda s: None, "in_place needs the partial sums"),
])
def test_in_place_sums_refuse_arrays_they_cannot_write_into(bad, match):
    a, b = points(150), points(100, seed=2)
    start = np.zeros((150, 100))
    with pytest.raises(ValueError, match=match):
        _kernel_sums(a, b, ARCH, all_layers=False, seed=0, start=0, stop=1, n_threads=1, initial=bad(start),
                     in_place=True)
    readonly = np.zeros((150, 100))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _kernel_sums(a, b, ARCH, all_layers=False, seed=0, start=0, stop=1, n_threads=1, initial=[readonly],
                     in_place=True)


def test_the_threads_executor_holds_at_most_two_tile_buffers(tmp_path, monkeypatch):
    """Tile k is written while tile k + 1 is computed, and tile k + 2 waits for tile k's write: whatever the
    machine's load, at most two tile buffers serve all the tiles (memory: two tiles)."""
    import nnpk.store._executors

    made = []

    class Recording(nnpk.store._store.TileBuffers):
        def __init__(self, tile_size):
            super().__init__(tile_size)
            made.append(self)

    monkeypatch.setattr(nnpk.store._executors, "TileBuffers", Recording)
    store = nnpk.compute_to_store(tmp_path / "k", X1, X2, arch=ARCH, n_networks=3, tile_size=Q, n_threads=1)
    assert len(store.tiles) == 6 and len(made) == 1 and len(made[0]._made) <= 2
    assert np.array_equal(store.to_numpy(), nnpk.monte_carlo(X1, X2, arch=ARCH, n_networks=3, n_threads=1))


@pytest.mark.parametrize(
    "x2, kernel, options, tile_size",
    [
        (None, "nngp", dict(dtype="float64"), Q),  # the default estimator: conditional
        (None, "nngp", dict(dtype="float32", estimator="sampled"), 2 * Q),
        (X2, "nngp", dict(dtype="float64", estimator="readout"), Q),
        (X2, "nngp", dict(dtype="float32", arch=nnpk.MLP(hidden=[], out=2, b_std=0.3)), Q),  # exact: x x' / d
        (None, "nngp", dict(arch=nnpk.MLP(hidden=[20], activation="erf")), Q),  # exact: one hidden layer
        (None, "ntk", dict(dtype="float32"), Q),
        (X2, "ntk", dict(dtype="float64", wrt="weights"), 2 * Q),
        (None, "ntk", dict(wrt=[0, -1]), 3 * Q),  # one tile: the in-memory call itself
    ],
)
def test_store_equals_monte_carlo(tmp_path, x2, kernel, options, tile_size):
    kwargs = {"arch": ARCH, "n_networks": 7, "seed": 11, **options}
    expected = nnpk.monte_carlo(X1, x2, get=kernel, **kwargs)
    store = nnpk.compute_to_store(tmp_path / "k", X1, x2, kernel=kernel, tile_size=tile_size, n_threads=2, **kwargs)
    assert store.complete and np.array_equal(store.to_numpy(), expected)
    store.export(tmp_path / "k.npy")
    assert np.array_equal(np.load(tmp_path / "k.npy"), expected)
    # Only tiles on and above the diagonal of a symmetric kernel are stored.
    g1, g2 = store.grid
    assert len(store.tiles) == (g1 * (g1 + 1) // 2 if x2 is None else g1 * g2)


@pytest.mark.parametrize(
    "x2, get, options",
    [
        (None, "nngp", {}),
        (X2, "ntk", dict(arch=nnpk.MLP(hidden=[16, 16], activation="tanh", b_std=0.1), quadrature_order=12)),
        (None, "ntk", dict(arch=nnpk.MLP(hidden=[16], parameterization="standard", activation="gelu"),
                           closed_form=False, quadrature_order=12)),
    ],
)
def test_store_equals_analytic(tmp_path, x2, get, options):
    options = {"arch": ARCH, **options}
    expected = nnpk.analytic(X1, x2, get=get, **options)
    store = nnpk.compute_to_store(tmp_path / "k", X1, x2, kernel=f"analytic_{get}", tile_size=Q, **options)
    assert np.array_equal(store.to_numpy(), expected)
    assert store.spec["n_networks"] is None and store.status()["seconds_left"] == 0


def test_checkpointed_tiles_are_exact(tmp_path, monkeypatch):
    """checkpoint_seconds=0 saves the partial sum after every call (of one network
    then); the sum continues from each save."""
    import nnpk.store._store as store_module

    expected = nnpk.monte_carlo(X1, arch=ARCH, n_networks=9, seed=2)
    saved = []
    save = store_module._save_checkpoint
    monkeypatch.setattr(store_module, "_save_checkpoint",
                        lambda path, total, networks: (saved.append(networks), save(path, total, networks)))
    store = nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=9, seed=2, tile_size=Q,
                                  checkpoint_seconds=0)
    assert saved[:8] == list(range(1, 9))  # the first tile: one network per call
    assert np.array_equal(store.to_numpy(), expected)
    assert os.listdir(tmp_path / "k" / "partial") == []


def test_resume_from_a_checkpoint_and_from_finished_tiles(tmp_path):
    """A store with some tiles done and one tile's partial sum saved is finished exactly,
    without touching the finished tiles."""
    path = tmp_path / "k"
    M = 8
    nnpk.compute_to_store(path, X1, arch=ARCH, n_networks=M, seed=5, tile_size=Q, checkpoint_seconds=None)
    store = nnpk.open_store(path)
    expected = nnpk.monte_carlo(X1, arch=ARCH, n_networks=M, seed=5)
    # Forget two tiles; give one of them the float64 sum of its first 3 networks.
    for i, j in [(0, 1), (1, 2)]:
        os.unlink(store._chunk_path(i, j))
    rows, cols = store.bounds(0, 1)
    a1, a2 = np.ascontiguousarray(X1[rows]), np.ascontiguousarray(X1[cols])
    partial = store._plan(ARCH, ARCH.compile(a1.shape[1:]), a1, a2, n_threads=1).run(0, 3, None)
    from nnpk.store._store import _save_checkpoint

    _save_checkpoint(store._partial_path(0, 1), partial, 3)
    assert store.status()["in_progress"] == [{"tile": [0, 1], "networks": 3}]
    before = {t: os.stat(store._chunk_path(*t)).st_mtime_ns for t in store.tiles_done()}
    with pytest.raises(IncompleteStoreError, match="2 of 6 tiles .* are not computed yet"):
        store.export(tmp_path / "k.npy")
    store = nnpk.compute_to_store(path, X1, arch=ARCH, n_networks=M, seed=5, tile_size=Q)
    assert {t: os.stat(store._chunk_path(*t)).st_mtime_ns for t in before} == before
    assert np.array_equal(store.to_numpy(), expected)
    assert json.load(open(store._record_path(0, 1)))["networks"] == M - 3


def test_tile_task_is_pure_and_standalone(tmp_path):
    """compute_tile needs only the store path and the tile: any process may run it."""
    path = tmp_path / "k"
    M = 4
    nnpk.compute_to_store(path, X1, X2, arch=ARCH, n_networks=M, tile_size=Q)
    store = nnpk.open_store(path)
    expected = store.tile(1, 0).copy()
    os.unlink(store._chunk_path(1, 0))
    script = f"import nnpk.store as s; s.compute_tile({str(path)!r}, 1, 0, n_threads=1)"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    assert np.array_equal(store.tile(1, 0), expected)
    record = compute_tile(path, 1, 0, n_threads=1)
    assert record["networks"] == M and record["n_threads"] == 1


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(seed=1), "seed is 0 in the store, 1 here"),
        (dict(arch=nnpk.MLP(hidden=[32, 17], out=3, W_std=1.3, b_std=0.2)), r"arch.hidden is \[32, 16\] in the store"),
        (dict(arch=nnpk.MLP(hidden=[32, 16], out=3, W_std=1.3, b_std=0.2, activation="tanh")), "arch.activation"),
        (dict(n_networks=4), "n_networks is 3 in the store, 4 here"),
        (dict(kernel="ntk"), "kernel is 'nngp' in the store, 'ntk' here"),
        (dict(dtype="float32"), "dtype is 'float64' in the store, 'float32' here"),
        (dict(tile_size=2 * Q), "tile_size is 96 in the store, 192 here"),
        (dict(estimator="readout"), "estimator is 'conditional' in the store, 'readout' here"),
        (dict(kernel="analytic_nngp", n_networks=None), "kernel is 'nngp' in the store, 'analytic_nngp' here; "
                                                        "n_networks is 3 in the store, None here"),
        (dict(x1=X1 + np.eye(*X1.shape) * 1e-12), r"inputs.x1.sha256 is '[0-9a-f]{64}' in the store"),
        (dict(x1=X1[:200]), r"inputs.x1.shape is \[250, 6\] in the store, \[200, 6\] here"),
        (dict(x2=X2),
         r"inputs.x2 is None in the store, \{.*\} here; .*shape is \[250, 250\] in the store, \[250, 130\]"),
    ],
)
def test_resume_with_another_spec_or_other_inputs_is_refused(tmp_path, change, match):
    kwargs = dict(x1=X1, arch=ARCH, n_networks=3, seed=0, tile_size=Q)
    nnpk.compute_to_store(tmp_path / "k", **kwargs)
    with pytest.raises(StoreMismatchError, match=match):
        nnpk.compute_to_store(tmp_path / "k", **{**kwargs, **change})


def test_a_store_drawn_by_another_scheme_is_refused_saying_why(tmp_path):
    """A store of nnpk 0.1 (no draw scheme in its spec) or 0.2 (nnpk_v2) is never continued with other networks."""
    import zarr

    nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=2, tile_size=Q)
    group = zarr.open_group(str(tmp_path / "k" / "kernel.zarr"), mode="r+")
    spec = dict(group.attrs["nnpk"])
    del spec["draws"]
    group.attrs["nnpk"] = spec
    with pytest.raises(StoreMismatchError, match=r"its networks were drawn by nnpk_v1 \(nnpk 0.1: Philox4x64-10, "
                                                 r"float64 Box-Muller\), and this nnpk draws them by nnpk_v3"):
        nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=2, tile_size=Q)
    # nnpk 0.2's scheme: the same generator, the radius's last bits by CPU.
    spec["draws"] = "nnpk_v2: Philox4x32-10 keyed by (seed, network, layer, stream), float32 Box-Muller"
    group.attrs["nnpk"] = spec
    with pytest.raises(StoreMismatchError, match=r"drawn by nnpk_v2: Philox4x32-10 .* this nnpk draws them by nnpk_v3"):
        nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=2, tile_size=Q)
    # Analytic kernels draw nothing: their stores record no scheme.
    store = nnpk.compute_to_store(tmp_path / "a", X1[:50], arch=ARCH, kernel="analytic_nngp", tile_size=Q)
    assert store.spec["draws"] is None


def test_a_conditional_store_of_another_scheme_is_refused_saying_why(tmp_path):
    """A conditional store of nnpk 0.3 or before (no control variate) is never continued with the new sums."""
    import zarr

    arch = nnpk.MLP(hidden=[8, 8], out=2)
    store = nnpk.compute_to_store(tmp_path / "k", X1, arch=arch, n_networks=2, tile_size=Q)
    assert store.spec["estimator"] == "conditional" and store.spec["conditional"].startswith("conditional_v2")
    group = zarr.open_group(str(tmp_path / "k" / "kernel.zarr"), mode="r+")
    spec = dict(group.attrs["nnpk"])
    del spec["conditional"]
    group.attrs["nnpk"] = spec
    with pytest.raises(StoreMismatchError, match=r"its conditional estimate was summed by conditional_v1 \(nnpk 0.1 "
                                                 r"to 0.3: without the control variate\), and this nnpk sums "
                                                 r"conditional_v2"):
        nnpk.compute_to_store(tmp_path / "k", X1, arch=arch, n_networks=2, tile_size=Q)
    # Other estimators record no scheme.
    other = nnpk.compute_to_store(tmp_path / "r", X1, arch=arch, n_networks=2, tile_size=Q, estimator="readout")
    assert other.spec["conditional"] is None


def test_equivalent_arguments_resume(tmp_path):
    """Same network and same forward-pass values: the store is resumed, not refused."""
    nnpk.compute_to_store(tmp_path / "k", X1, arch=nnpk.MLP(hidden=[8], W_std=1), n_networks=2, tile_size=Q)
    nnpk.compute_to_store(tmp_path / "k", X1.tolist(), arch=nnpk.MLP(hidden=(8,), W_std=[1.0, 1.0]), n_networks=2,
                          tile_size=Q)


@pytest.mark.parametrize("direct", [True, False], ids=["o_direct-where-possible", "buffered"])
def test_chunks_are_the_bytes_zarr_writes(tmp_path, monkeypatch, direct):
    """nnpk writes a finished tile's chunk itself (no copy of the tile, past the page cache
    where it can): the same bytes as zarr's own encoder gives the same block, interior and
    edge tiles alike."""
    import zarr

    if not direct:
        monkeypatch.setattr(nnpk.store._store, "_write_direct", lambda path, data: False)
    store = nnpk.compute_to_store(tmp_path / "k", X1, points(130, seed=4), arch=ARCH, n_networks=2, tile_size=Q)
    assert store._plain_chunks and store.grid == (3, 2)
    reference = zarr.open_group(tmp_path / "zarr", mode="w").create_array(
        "kernel", shape=store.shape, chunks=(Q, Q), dtype="float64", compressors=[zarr.codecs.Crc32cCodec()],
        fill_value=np.nan)
    for i, j in store.tiles:
        rows, cols = store.bounds(i, j)
        reference[rows, cols] = store.tile(i, j)
        key = reference.metadata.encode_chunk_key((i, j))
        with open(os.path.join(tmp_path, "zarr", "kernel", *key.split("/")), "rb") as f:
            expected = f.read()
        with open(store._chunk_path(i, j), "rb") as f:
            assert f.read() == expected, (i, j)


@pytest.mark.parametrize("kernel, options", [
    ("nngp", dict(n_networks=2, estimator="sampled")),
    ("nngp", dict(n_networks=2, arch=nnpk.MLP(hidden=[16], out=3))),  # exact: one network's worth
    ("analytic_ntk", dict()),
    ("ntk", dict(n_networks=2)),
])
def test_every_kind_of_tile_is_offered_aligned_for_a_direct_write(tmp_path, monkeypatch, kernel, options):
    offered = []
    monkeypatch.setattr(nnpk.store._store, "_write_direct",
                        lambda path, data: offered.append(data.ctypes.data % 4096 == 0 and data.nbytes % 4096 == 0))
    options = {"arch": ARCH, **options}
    store = nnpk.compute_to_store(tmp_path / "k", X1, X2, kernel=kernel, tile_size=Q, **options)
    assert offered == [True] * len(store.tiles)


def test_direct_writes_need_alignment_and_write_exactly_the_bytes(tmp_path):
    from nnpk.store._files import _write_direct, aligned_empty

    data = aligned_empty(96 * 96)
    data[:] = np.random.default_rng(0).standard_normal(data.size)
    assert data.ctypes.data % 4096 == 0
    raw = data.view(np.uint8)
    assert not _write_direct(str(tmp_path / "a"), raw[8:8 + 4096]) and not os.path.exists(tmp_path / "a")
    assert not _write_direct(str(tmp_path / "b"), raw[:4000]) and not os.path.exists(tmp_path / "b")
    if not _write_direct(str(tmp_path / "c"), raw):
        pytest.skip("no O_DIRECT on this platform or file system (the buffered write is tested above)")
    with open(tmp_path / "c", "rb") as f:
        assert f.read() == raw.tobytes()


def flip_a_byte(path, offset=100):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x10]))


def test_a_flipped_byte_is_reported_with_its_tile(tmp_path):
    store = nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=2, tile_size=Q)
    expected = store.to_numpy()
    flip_a_byte(store._chunk_path(0, 2))
    with pytest.raises(CorruptTileError, match=r"tile \(0, 2\) \(rows 0:96, columns 192:250\) of .* is corrupted"):
        store.tile(0, 2)
    with pytest.raises(CorruptTileError, match=r"tile \(0, 2\)"):
        store.tile(2, 0)  # the mirrored tile reads the same chunk
    with pytest.raises(CorruptTileError, match=r"tile \(0, 2\)"):
        store.export(tmp_path / "k.npy")
    assert not os.path.exists(tmp_path / "k.npy")
    assert store.verify() == [(0, 2)]
    assert store.verify(repair=True) == [(0, 2)] and not store.complete
    store = nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=2, tile_size=Q)
    assert store.verify() == [] and np.array_equal(store.to_numpy(), expected)


def test_a_damaged_checkpoint_restarts_its_tile(tmp_path):
    store = nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=5, seed=1, tile_size=Q)
    expected = store.to_numpy()
    os.unlink(store._chunk_path(1, 1))
    with open(store._partial_path(1, 1), "wb") as f:
        f.write(b"PK\x03\x04 not a whole checkpoint")
    with pytest.warns(RuntimeWarning, match="ignoring the unreadable checkpoint .*1-1.npz"):
        store = nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=5, seed=1, tile_size=Q)
    assert np.array_equal(store.to_numpy(), expected)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(tile_size=100), ValueError, "tile_size must be a multiple of 96, got 100"),
        (dict(tile_size=0), ValueError, "tile_size must be >= 1"),
        (dict(kernel="nngp_analytic"), ValueError, "kernel must be one of nngp, ntk, analytic_nngp, analytic_ntk"),
        (dict(n_networks=None), TypeError, "kernel='nngp' needs n_networks"),
        (dict(kernel="analytic_ntk"), ValueError,
         "n_networks applies to Monte Carlo kernels, not kernel='analytic_ntk'"),
        (dict(kernel="analytic_nngp", n_networks=None, dtype="float32"), ValueError, "is computed in float64"),
        (dict(kernel="analytic_nngp", n_networks=None, quadrature_order=0), ValueError,
         "quadrature_order must be >= 1"),
        (dict(kernel="analytic_nngp", n_networks=None, closed_form="no"), TypeError, "closed_form must be a bool"),
        (dict(quadrature_order=20), ValueError, "quadrature_order applies to analytic kernels, not kernel='nngp'"),
        (dict(kernel="ntk", estimator="readout"), ValueError, "estimator applies to the NNGP, not kernel='ntk'"),
        (dict(estimator="exact"), ValueError, "estimator must be one of"),
        (dict(executor="slurm"), ValueError, "executor must be one of threads, dask, mpi"),
        (dict(checkpoint_seconds=-1), ValueError, "checkpoint_seconds must be >= 0 or None"),
        (dict(n_threads=0), ValueError, "n_threads must not be 0"),
        (dict(executor="dask", n_threads=0), ValueError, "n_threads must not be 0"),
        (dict(executor="mpi", client=object()), TypeError, "needs client to be an mpi4py.futures.MPIPoolExecutor"),
        (dict(executor="dask", client=object()), TypeError, "needs client to be a distributed.Client"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, match):
    kwargs = {**dict(arch=ARCH, n_networks=2, tile_size=Q), **kwargs}
    with pytest.raises(error, match=match):
        nnpk.compute_to_store(tmp_path / "k", X1, **kwargs)


def test_dask_needs_a_client(tmp_path):
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match="executor='dask' needs a distributed.Client"):
        nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=2, tile_size=Q, executor="dask")


def test_paths_that_are_not_stores(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileNotFoundError, match="is not an nnpk kernel store"):
        nnpk.compute_to_store(tmp_path / "other", X1, arch=ARCH, n_networks=2, tile_size=Q)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    with pytest.raises(FileNotFoundError, match="is not an nnpk kernel store"):
        nnpk.open_store(tmp_path / "missing")
    (tmp_path / "empty").mkdir()  # an empty directory becomes the store
    assert nnpk.compute_to_store(tmp_path / "empty", X1, arch=ARCH, n_networks=1, tile_size=Q).complete


def test_memory_limits(tmp_path, monkeypatch):
    store = nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=1, tile_size=Q)
    monkeypatch.setenv("NNPK_MEMORY_LIMIT", str(8 * 250 * 250 - 1))
    with pytest.raises(MemoryError, match="read it tile by tile with KernelStore.tile, or export it"):
        store.to_numpy()
    store.export(tmp_path / "k.npy")  # tile by tile: allowed
    monkeypatch.setenv("NNPK_MEMORY_LIMIT", str(2 * 8 * Q * Q - 1))  # the tile and the one being written
    with pytest.raises(MemoryError, match=r"tile \(0, 1\) \(96 x 96\) needs .* choose a smaller tile_size"):
        nnpk.compute_to_store(tmp_path / "k2", X1, arch=ARCH, n_networks=1, tile_size=Q)


def test_in_memory_refusal_points_to_the_store(monkeypatch):
    monkeypatch.setenv("NNPK_MEMORY_LIMIT", str(250 * 250 * 8 - 1))
    with pytest.raises(MemoryError, match=r"on-disk store instead: nnpk.compute_to_store\(path, x1, x2, ...\) "
                                          r"or the batch command `nnpk compute JOB.toml`"):
        nnpk.monte_carlo(X1, arch=ARCH, n_networks=1)
    with pytest.raises(MemoryError, match="on-disk store"):
        nnpk.monte_carlo(X1, arch=ARCH, n_networks=1, get="ntk")


def test_status_reports_progress_and_time_left(tmp_path):
    path = tmp_path / "k"
    store = nnpk.compute_to_store(path, X1, arch=ARCH, n_networks=4, tile_size=Q)
    status = store.status()
    assert status["complete"] and status["tiles_done"] == status["tiles"] == 6 and status["fraction_done"] == 1
    assert status["last_run"]["executor"] == "threads" and status["last_run"]["workers"] == 1
    os.unlink(store._chunk_path(0, 0))
    os.unlink(store._chunk_path(1, 2))
    status = store.status()
    assert not status["complete"] and status["tiles_done"] == 4
    # Work left (96*97/2 + 96*58 entries of 250*251/2) at the speed measured on the finished tiles.
    assert status["fraction_done"] == pytest.approx(1 - (96 * 97 / 2 + 96 * 58) / (250 * 251 / 2))
    assert status["seconds_left"] > 0


def test_tiles_record_the_version_and_level_and_status_reports_a_mixed_store(tmp_path, capsys):
    from nnpk.cli import main

    path = tmp_path / "k"
    store = nnpk.compute_to_store(path, X1, arch=ARCH, n_networks=2, tile_size=Q)
    info = nnpk.build_info()
    for i, j in store.tiles:
        with open(store._record_path(i, j)) as f:
            record = json.load(f)
        assert record["nnpk_version"] == nnpk.__version__ and record["isa_level"] == info["isa_level"]
    status = store.status()
    assert not status["mixed_isa_levels"]
    assert status["builds"] == [{"nnpk_version": nnpk.__version__, "isa_level": info["isa_level"],
                                 "tiles": [list(t) for t in store.tiles]}]
    main(["status", str(path)])
    out = capsys.readouterr().out
    assert f"built by nnpk {nnpk.__version__} at {info['isa_level']}: 6 tile(s)" in out and "mixed" not in out
    # A tile recorded as computed by another level (a node of another kind), another without a record.
    with open(store._record_path(0, 2)) as f:
        record = json.load(f)
    with open(store._record_path(0, 2), "w") as f:
        json.dump({**record, "isa_level": "x86-64-v2-fake"}, f)
    os.unlink(store._record_path(1, 1))
    status = store.status()
    assert status["mixed_isa_levels"]
    assert [(b["isa_level"], b["tiles"]) for b in status["builds"]] == [
        (info["isa_level"], [[0, 0], [0, 1], [1, 2], [2, 2]]), ("x86-64-v2-fake", [[0, 2]]), ("unknown", [[1, 1]])]
    assert status["builds"][2]["nnpk_version"] == "unknown"
    main(["status", str(path)])
    out = capsys.readouterr().out
    assert f"at {info['isa_level']}: 4 tile(s)" in out and "at x86-64-v2-fake: 1 tile(s)" in out
    levels = ", ".join(sorted([info["isa_level"], "unknown", "x86-64-v2-fake"]))
    assert f"mixed    the tiles come from 3 instruction-set levels ({levels})" in out


def test_a_tile_computed_at_another_level_agrees_to_rounding_and_records_it(tmp_path):
    info = nnpk.build_info()
    others = [lv for lv in info["isa_levels"] if lv != info["isa_level"] and lv in info["cpu_isa_levels"]]
    if not others:
        pytest.skip("one instruction-set level only in this build or on this CPU")
    path = tmp_path / "k"
    store = nnpk.compute_to_store(path, X1, X2, arch=ARCH, n_networks=3, tile_size=Q, dtype="float32")
    expected = store.tile(1, 0).copy()
    os.unlink(store._chunk_path(1, 0))
    script = f"import nnpk.store as s; s.compute_tile({str(path)!r}, 1, 0, n_threads=1)"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, env={**os.environ, "NNPK_ISA": others[0]})
    np.testing.assert_allclose(store.tile(1, 0), expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    status = store.status()
    assert status["mixed_isa_levels"] and [b["isa_level"] for b in status["builds"]] == [info["isa_level"], others[0]]
    assert status["builds"][1]["tiles"] == [[1, 0]]


def test_peak_memory_stays_under_a_budget_smaller_than_the_kernel(tmp_path):
    """A 450 MiB kernel under a 192 MiB budget: refused in memory, computed and exported
    through the store tile by tile. Peak resident memory measured in a fresh process."""
    n, budget = 80 * Q, 192 * 2**20
    assert 8 * n * n > 2 * budget
    script = textwrap.dedent(
        f"""
        import json, numpy as np, nnpk
        x = np.random.default_rng(3).standard_normal(({n}, 8))
        arch = nnpk.MLP(hidden=[16], out=2)
        try:
            nnpk.monte_carlo(x, arch=arch, n_networks=2)
            refused = False
        except MemoryError as e:
            refused = "compute_to_store" in str(e)
        store = nnpk.compute_to_store({str(tmp_path / "k")!r}, x, arch=arch, n_networks=2, tile_size={10 * Q})
        store.export({str(tmp_path / "k.npy")!r})
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
        print(json.dumps(dict(refused=refused, peak=peak)))
        """
    )
    env = {**os.environ, "NNPK_MEMORY_LIMIT": str(budget)}
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env,
                         timeout=300).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["refused"]
    assert result["peak"] < budget, f"peak {result['peak'] / 2**20:.0f} MiB"
    x = np.random.default_rng(3).standard_normal((n, 8))
    expected = nnpk.monte_carlo(x, arch=nnpk.MLP(hidden=[16], out=2), n_networks=2)
    assert np.array_equal(np.load(tmp_path / "k.npy", mmap_mode="r"), expected)


# ----------------------------------------------------------------------------- full and unwritable file systems


def test_a_full_disk_raises_store_write_error_and_the_store_resumes(tmp_path, monkeypatch):
    """The chunk writer fails on the third tile as on a full disk, half the tile written: an OSError
    (ENOSPC) naming the chunk; two tiles done, no tile cut short counted and no temporary file left."""
    written = []

    def write_direct(path, data):
        if len(written) == 2:
            with open(path, "wb") as f:
                f.write(data.data[:data.nbytes // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(path)
        return False

    monkeypatch.setattr(nnpk.store._store, "_write_direct", write_direct)
    path = tmp_path / "k"
    # Left: 4 chunks of 19 blocks of 4096 bytes (8 * 96**2 + 4 bytes) and their records, two checkpoints.
    with pytest.raises(StoreWriteError, match=r"no space left on device: cannot write .*kernel\.zarr.*; the store "
                                              r".* needs about 472\.0 KiB more") as info:
        nnpk.compute_to_store(path, X1, arch=ARCH, n_networks=3, tile_size=Q)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC and info.value.free > 0
    store = nnpk.open_store(path)
    assert info.value.filename == store._chunk_path(*sorted(store.tiles, key=lambda t: -store.cost(*t))[2])
    assert len(store.tiles_done()) == 2 and store.verify() == []
    assert [f for _, _, files in os.walk(path) for f in files if f.endswith(".tmp")] == []
    monkeypatch.undo()
    store = nnpk.compute_to_store(path, X1, arch=ARCH, n_networks=3, tile_size=Q)
    assert np.array_equal(store.to_numpy(), nnpk.monte_carlo(X1, arch=ARCH, n_networks=3))


def test_a_full_disk_stops_an_export_leaving_no_file(tmp_path, monkeypatch):
    store = nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=1, tile_size=Q)

    def allocate(path, size):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(nnpk.store._store, "_allocate", allocate)
    with pytest.raises(StoreWriteError, match=r"cannot write .*K\.npy; the kernel \(250 x 250 float64\) needs about "
                                              r"4\d\d\.\d KiB"):
        store.export(tmp_path / "K.npy")
    assert sorted(os.listdir(tmp_path)) == ["k"]


def on_disk(path, block=4096):
    return sum(-(-os.path.getsize(os.path.join(d, f)) // block) * block for d, _, fs in os.walk(path) for f in fs)


@pytest.mark.parametrize("x2", [None, X2])
def test_the_space_estimate_is_the_chunks_exactly_and_bounds_the_store(tmp_path, x2):
    from nnpk.store._space import store_bytes

    store = nnpk.compute_to_store(tmp_path / "k", X1, x2, arch=ARCH, n_networks=2, tile_size=Q)
    chunks = [os.path.getsize(store._chunk_path(*t)) for t in store.tiles]
    assert chunks == [8 * Q * Q + 4] * 6  # edge tiles padded to whole chunks
    estimate = store_bytes(store.spec, checkpoints=False)
    assert on_disk(store.path) <= estimate <= on_disk(store.path) + 16 * 4096
    assert store_bytes(store.spec, tiles_done=6, inputs=False) == 0
    assert store_bytes(store.spec, tiles_done=5, inputs=False, checkpoints=False) == 19 * 4096 + 4096


def test_a_store_that_would_not_fit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(nnpk.store._space, "free_bytes", lambda path: 100_000)
    with pytest.raises(StoreWriteError, match=r"the store .*k needs about .* KiB, and the file system of .* has "
                                              r"97\.7 KiB free") as info:
        nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=2, tile_size=Q)
    assert info.value.errno == errno.ENOSPC and not os.path.exists(tmp_path / "k")
    store = nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=2, tile_size=Q, space_check=False)
    os.unlink(store._chunk_path(0, 0))  # resuming: the tiles left count
    block = nnpk.store._space.block_size(tmp_path)
    needed = 2 * -(-(8 * Q * Q + 1024) // block) * block + -(-(8 * Q * Q + 4) // block) * block + block
    monkeypatch.setattr(nnpk.store._space, "free_bytes", lambda path: needed - 1)  # one tile, two checkpoints
    with pytest.raises(StoreWriteError, match=r"\(1 of 6 tiles left\) needs about"):
        nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=2, tile_size=Q)
    monkeypatch.setattr(nnpk.store._space, "free_bytes", lambda path: needed)
    assert nnpk.compute_to_store(tmp_path / "k", X1, arch=ARCH, n_networks=2, tile_size=Q).complete


# ----------------------------------------------------------------------------- nnpk.Network in the store

CNN = nnpk.Network([nnpk.Conv(6, (3, 3), W_std=1.4, b_std=0.1), "relu",
                    nnpk.Residual([nnpk.Conv(6, (3, 3), padding="same"), nnpk.Activation("erf")], scale=0.5),
                    nnpk.AvgPool((2, 2)), nnpk.Flatten(), nnpk.Dense(4, W_std=1.2, b_std=0.05)], init="orthogonal")
IMAGES, IMAGES2 = points(150, d=36).reshape(150, 6, 6, 1), points(70, d=36, seed=5).reshape(70, 6, 6, 1)


def test_a_network_description_survives_the_store_spec():
    import json

    from nnpk.store._spec import _arch_from_spec, _arch_spec

    nets = [CNN, nnpk.Network([nnpk.Conv(4, 5, stride=2, padding="valid"), nnpk.MaxPool(2, stride=1), "tanh",
                               nnpk.GlobalAvgPool(), nnpk.Dense(3)], parameterization="standard", init="uniform")]
    for net in nets:
        assert _arch_from_spec(json.loads(json.dumps(_arch_spec(net)))) == net
    assert _arch_spec(_arch_from_spec(_arch_spec(ARCH))) == _arch_spec(ARCH)  # per-layer stds, the same network


@pytest.mark.parametrize("kernel, options", [
    ("nngp", dict(n_networks=3)),  # the readout estimator, monte_carlo's default for a Network ending with Dense
    ("nngp", dict(n_networks=3, estimator="sampled", dtype="float32")),
    ("ntk", dict(n_networks=2)),
    ("ntk", dict(n_networks=2, wrt=[1, 2])),
])
@pytest.mark.parametrize("second", [False, True], ids=["symmetric", "x2"])
def test_store_of_a_conv_network_equals_monte_carlo(tmp_path, kernel, options, second):
    x2 = IMAGES2 if second else None
    store = nnpk.compute_to_store(tmp_path / "k", IMAGES, x2, arch=CNN, kernel=kernel, tile_size=Q, **options)
    expected = nnpk.monte_carlo(IMAGES, x2, arch=CNN, get=kernel, **options)
    assert store.arch == CNN and store.spec["point_shape"] == [6, 6, 1]
    assert np.array_equal(store.to_numpy(), expected)


def test_store_of_a_dense_network_equals_analytic(tmp_path):
    net = nnpk.Network([nnpk.Dense(32, W_std=1.4, b_std=0.1), "relu", nnpk.Dense(3, W_std=1.1)])
    store = nnpk.compute_to_store(tmp_path / "k", X1, X2, arch=net, kernel="analytic_ntk", tile_size=Q)
    assert np.array_equal(store.to_numpy(), nnpk.analytic(X1, X2, arch=net, get="ntk"))


@pytest.mark.parametrize("change, match", [
    (dict(arch=nnpk.Network(CNN.layers, init="gaussian")), "arch.init is 'orthogonal' in the store, 'gaussian' here"),
    (dict(arch=nnpk.Network(CNN.layers[:-1] + (nnpk.Dense(5, W_std=1.2, b_std=0.05),), init="orthogonal")),
     r"arch.layers is .* in the store"),
    (dict(x1=IMAGES.reshape(150, 36, 1), arch=nnpk.Network([nnpk.Conv(6, 3), "relu", nnpk.Flatten(), nnpk.Dense(4)])),
     r"point_shape is \[6, 6, 1\] in the store, \[36, 1\] here"),
])
def test_resume_with_another_network_is_refused(tmp_path, change, match):
    nnpk.compute_to_store(tmp_path / "k", IMAGES, arch=CNN, n_networks=2, tile_size=Q)
    with pytest.raises(StoreMismatchError, match=match):
        nnpk.compute_to_store(tmp_path / "k", **{"x1": IMAGES, "arch": CNN, "n_networks": 2, "tile_size": Q, **change})


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(kernel="analytic_nngp"), ValueError, r"layer 2 \(Residual, scale 0.5\) has a block ending with Activation"),
    (dict(kernel="nngp", n_networks=2, estimator="conditional"), ValueError, "this one ends AvgPool"),
    (dict(kernel="nngp", n_networks=2, x1=IMAGES[..., 0]), ValueError, "points"),
])
def test_networks_the_store_cannot_do_are_refused_before_it_exists(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        nnpk.compute_to_store(tmp_path / "k", **{"x1": IMAGES, "arch": CNN, "tile_size": Q, **kwargs})
    assert not os.path.exists(tmp_path / "k")
