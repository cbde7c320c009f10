"""nnpk.tasks (NTK eigenvectors, eigenfunction labels, NADs, NAD tasks), eigen_alignment and the study's
architectures, each against an independent computation: numpy's eigh of the empirical NTK, the closed form of
one hidden relu layer, finite differences of the network's outputs, hand counts of parameters."""

import math
import subprocess
import sys

import numpy as np
import pytest

import nnpk
from nnpk.architectures._params import network_outputs

pytestmark = pytest.mark.timeout(300)

SMALL = nnpk.Network([nnpk.Dense(32, 1.4, 0.3), "relu", nnpk.Dense(16, 1.4, 0.3), "tanh", nnpk.Dense(1, 1.0, 0.2)])
X = np.random.default_rng(0).standard_normal((120, 5))


def reference_eigenpairs(x, arch, k, seed=0, index=0):
    theta = nnpk.empirical(x, arch=arch, params=nnpk.sample_params(arch, x.shape[1:], seed, index))
    values, vectors = np.linalg.eigh(theta)
    return theta, values[::-1][:k], vectors[:, ::-1][:, :k]


def assert_same_vectors(got, expected, atol):
    """Equal up to the sign of each column; the returned sign has the largest-magnitude entry positive."""
    signs = np.sign(np.sum(got * expected, axis=0))
    np.testing.assert_allclose(got, expected * signs, atol=atol)
    top = np.argmax(np.abs(got), axis=0)
    assert np.all(got[top, np.arange(got.shape[1])] > 0)


@pytest.mark.parametrize("method", ["dense", "krylov"])
def test_eigenvectors_equal_numpy_eigh_of_the_empirical_ntk(method):
    theta, values, vectors = reference_eigenpairs(X, SMALL, 8, seed=3, index=2)
    got_values, got_vectors, residuals = nnpk.tasks.ntk_eigenvectors(X, SMALL, 8, seed=3, index=2, method=method,
                                                                     tol=1e-10, return_residuals=True)
    np.testing.assert_allclose(got_values, values, rtol=1e-9)
    assert_same_vectors(got_vectors, vectors, 1e-6)
    np.testing.assert_allclose(residuals, np.linalg.norm(theta @ got_vectors - got_vectors * got_values, axis=0),
                               atol=1e-9 * values[0])
    assert np.all(residuals <= 1e-8 * values[0])


@pytest.mark.parametrize("float32_products", [True, False])
def test_krylov_solver_with_locking_equals_numpy_eigh(float32_products):
    x = np.random.default_rng(4).standard_normal((300, 5))
    theta, values, vectors = reference_eigenpairs(x, SMALL, 24, seed=1)
    got_values, got_vectors, residuals = nnpk.tasks.ntk_eigenvectors(
        x, SMALL, 24, seed=1, method="krylov", tol=1e-10, block_size=30, depth=3, float32_products=float32_products,
        return_residuals=True)
    np.testing.assert_allclose(got_values, values, rtol=1e-9)
    assert_same_vectors(got_vectors, vectors, 1e-6)
    np.testing.assert_allclose(residuals, np.linalg.norm(theta @ got_vectors - got_vectors * got_values, axis=0),
                               atol=1e-9 * values[0])
    assert np.all(residuals <= 1e-10 * got_values + 64 * np.finfo(float).eps * np.sqrt(300) * values[0])


def test_block_krylov_eigensolver_on_a_known_spectrum():
    """A matrix with eigenvalues i^-2 (spread as a kernel's) and random eigenvectors: the solver's float32 restarts,
    then float64 restarts with locking, give the eigenpairs to the tolerance, the residuals recomputed."""
    from nnpk.tasks._eigensolver import top_eigenpairs

    n, k = 600, 60
    rng = np.random.default_rng(5)
    basis, _ = np.linalg.qr(rng.standard_normal((n, n)))
    spectrum = np.arange(1, n + 1, dtype=float) ** -2.0
    matrix = (basis * spectrum) @ basis.T
    matrix32 = matrix.astype(np.float32)
    lines = []
    result = top_eigenpairs(lambda v: matrix @ v, n, k, tol=1e-9, max_restarts=40, block_size=72, depth=3, seed=0,
                            what="the test matrix", log=lines.append,
                            fast_matmul=lambda v: (matrix32 @ v.astype(np.float32)).astype(np.float64))
    assert result.converged
    assert "fast products" in lines[0] and "exact products" in lines[-1]
    assert any(" 0 locked" not in line for line in lines)
    np.testing.assert_allclose(result.values, spectrum[:k], rtol=1e-8)
    assert_same_vectors(result.vectors, basis[:, :k], 1e-6)
    np.testing.assert_allclose(result.residuals, np.linalg.norm(matrix @ result.vectors - result.vectors
                                                                * result.values, axis=0), atol=1e-13)
    assert np.all(result.residuals <= 1e-9 * result.values + 64 * np.finfo(float).eps * np.sqrt(n))
    np.testing.assert_allclose(result.vectors.T @ result.vectors, np.eye(k), atol=1e-12)


def test_eigenvectors_of_given_params_and_of_a_conv_net():
    arch = nnpk.Network([nnpk.Conv(4, 3, b_std=0.1), "relu", nnpk.AvgPool(2), nnpk.Flatten(), nnpk.Dense(1)])
    x = np.random.default_rng(1).standard_normal((60, 8, 2))
    params = nnpk.sample_params(arch, (8, 2), 5, 1)
    theta = nnpk.empirical(x, arch=arch, params=params)
    values, vectors = np.linalg.eigh(theta)
    got_values, got_vectors = nnpk.tasks.ntk_eigenvectors(x, arch, 3, params=params)
    np.testing.assert_allclose(got_values, values[::-1][:3], rtol=1e-10)
    assert_same_vectors(got_vectors, vectors[:, ::-1][:, :3], 1e-8)


def test_eigenfunction_labels_are_the_signs_of_the_kth_eigenvector_counted_from_one():
    _, _, vectors = reference_eigenpairs(X, SMALL, 5)
    for k in (1, 2, 5):
        phi = vectors[:, k - 1]
        phi = phi * np.sign(phi[np.argmax(np.abs(phi))])
        labels = nnpk.tasks.ntk_eigenfunction(X, SMALL, k)
        assert labels.dtype == np.int64 and set(np.unique(labels)) <= {0, 1}
        np.testing.assert_array_equal(labels, (phi > 0).astype(int))
    from nnpk.tasks._eigenvectors import sign_labels

    np.testing.assert_array_equal(sign_labels([-1.0, 0.0, 2.0]), [0, 1, 1])


def test_store_eigensolver_equals_the_in_memory_one(tmp_path):
    pytest.importorskip("zarr")
    x = np.random.default_rng(2).standard_normal((230, 5))
    store = nnpk.compute_to_store(tmp_path / "ntk", x, arch=SMALL, kernel="ntk", n_networks=1, seed=7, tile_size=96)
    assert store.grid == (3, 3)
    values, vectors = nnpk.tasks.ntk_eigenvectors(x, SMALL, 6, seed=7, index=0, method="dense")
    got_values, got_vectors, residuals = nnpk.tasks.ntk_eigenvectors_from_store(
        str(tmp_path / "ntk"), 6, tol=1e-10, return_residuals=True, depth=3)
    np.testing.assert_allclose(got_values, values, rtol=1e-9)
    assert_same_vectors(got_vectors, vectors, 1e-6)
    assert np.all(residuals <= 1e-8 * values[0])
    with pytest.warns(RuntimeWarning, match="did not converge in 1 restarts"):
        nnpk.tasks.ntk_eigenvectors_from_store(store, 6, tol=1e-14, max_restarts=1, depth=2)


def one_hidden_relu_gram(params, d, m, parameterization, w_std):
    """M^T M at x = 0 for f(x) = sum_i v_i relu(w_i . x + b_i) + c, derived by hand.

    "standard": d/dv_i f = relu(w_i . x + b_i) gives d^2/dx dv_i = 1[b_i > 0] w_i; d/dW_ji f = v_i 1[.] x_j gives
    d^2/dx_k dW_ji = v_i 1[b_i > 0] delta_jk; b and c contribute nothing (constant in x near 0). So
    M^T M = sum_active w_i w_i^T + (sum_active v_i^2) I. "ntk": the stored draws enter as (w_std/sqrt(d)) W and
    (w_std/sqrt(m)) v, and each derivative carries both factors: (w_std^4 / (d m)) times the same sum."""
    (W, b), (V, _) = params
    v = V[:, 0]
    active = b > 0  # both parameterizations: the sign of the pre-activation at 0 is the sign of the bias draw
    gram = W[:, active] @ W[:, active].T + np.sum(v[active] ** 2) * np.eye(d)
    return gram * (w_std**4 / (d * m) if parameterization == "ntk" else 1.0)


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_nads_of_one_hidden_relu_layer_equal_the_closed_form(parameterization):
    d, m, w_std = 6, 200, 1.3
    arch = nnpk.Network([nnpk.Dense(m, w_std, 0.5), "relu", nnpk.Dense(1, w_std, 0.5)],
                        parameterization=parameterization)
    params = nnpk.sample_params(arch, d, 4, 1)
    gram = one_hidden_relu_gram(params, d, m, parameterization, w_std)
    values, vectors = np.linalg.eigh(gram)
    values, vectors = values[::-1], vectors[:, ::-1]
    from nnpk.tasks._nads import input_gram

    np.testing.assert_allclose(input_gram(arch, (d,), 4, 1), gram, rtol=1e-6, atol=1e-7 * values[0])
    singular, directions = nnpk.tasks.nads(arch, d, 4, seed=4, index=1)
    assert directions.shape == (4, d)
    np.testing.assert_allclose(singular, np.sqrt(values[:4]), rtol=1e-6)
    assert_same_vectors(directions.T, vectors[:, :4], 1e-5)


def test_nads_of_a_conv_net_equal_finite_differences_of_its_outputs():
    """M by mixed central differences of f itself (in x and in each parameter), from the engine's forward pass."""
    arch = nnpk.Network([nnpk.Conv(3, 3, W_std=1.2, b_std=0.4), "tanh", nnpk.Conv(2, 2, stride=2, W_std=1.2,
                         b_std=0.4), "tanh", nnpk.Flatten(), nnpk.Dense(1, 1.0, 0.3)], parameterization="standard")
    shape = (6, 2)
    d = 12
    params = nnpk.sample_params(arch, shape, 2, 0)
    flat = [(a, "W", k) for k, (W, b) in enumerate(params) for a in range(W.size)]
    flat += [(a, "b", k) for k, (W, b) in enumerate(params) for a in range(b.size)]
    hx, hp = 1e-3, 1e-3
    points = np.concatenate([hx * np.eye(d), -hx * np.eye(d)]).reshape((2 * d,) + shape)
    rows = []
    for a, which, k in flat:
        outputs = []
        for sign in (1, -1):
            perturbed = [(W.copy(), b.copy()) for W, b in params]
            target = perturbed[k][0] if which == "W" else perturbed[k][1]
            target.reshape(-1)[a] += sign * hp
            outputs.append(network_outputs(points, arch, 0, 0, params=perturbed)[:, 0])
        grad = (outputs[0] - outputs[1]) / (2 * hp)  # d f / d theta_a at +-hx e_i
        rows.append((grad[:d] - grad[d:]) / (2 * hx))
    M = np.array(rows)
    _, s, vt = np.linalg.svd(M, full_matrices=False)
    singular, directions = nnpk.tasks.nads(arch, shape, 3, seed=2)
    np.testing.assert_allclose(singular, s[:3], rtol=1e-4)
    assert_same_vectors(directions.reshape(3, d).T, vt[:3].T, 1e-3)


def test_nad_task_statistics():
    v = np.random.default_rng(3).standard_normal((4, 3))
    X_, y = nnpk.tasks.nad_task(v, 4000, eps=0.6, sigma=0.5, seed=1)
    assert X_.shape == (4000, 4, 3) and y.dtype == np.int64
    unit = v.reshape(-1) / np.linalg.norm(v)
    flat = X_.reshape(4000, -1)
    np.testing.assert_allclose(flat @ unit, 0.3 * (2 * y - 1), atol=1e-12)  # the noise has no part along v
    assert abs(y.mean() - 0.5) < 0.03
    noise = flat - np.outer(flat @ unit, unit)
    # Orthogonal noise: total variance sigma^2 (D - 1) per point, each coordinate sigma^2 (1 - v_j^2)
    np.testing.assert_allclose(noise.var(axis=0), 0.25 * (1 - unit**2), rtol=0.1)
    assert np.array_equal(X_, nnpk.tasks.nad_task(v, 4000, eps=0.6, sigma=0.5, seed=1)[0])


def test_eigen_alignment_equals_direct_computation():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((30, 30))
    K = A @ A.T
    phi = rng.standard_normal((30, 4))
    expected = [phi[:, i] @ K @ phi[:, i] / (phi[:, i] @ phi[:, i]) for i in range(4)]
    np.testing.assert_allclose(nnpk.eigen_alignment(K, phi), expected, rtol=1e-12)
    assert nnpk.eigen_alignment(K, phi[:, 0]) == pytest.approx(expected[0], rel=1e-12)
    values, vectors = np.linalg.eigh(K)
    np.testing.assert_allclose(nnpk.eigen_alignment(K, vectors), values, rtol=1e-9, atol=1e-9 * values[-1])


def count(arch, shape):
    return sum(W.size + (0 if b is None else b.size) for W, b in nnpk.sample_params(arch, shape, 0, 0))


def test_lenet_shapes_and_parameter_counts():
    a1 = nnpk.lenet(dims=1)
    assert a1.shapes((40, 1))[6] == (112,)  # 40 -5+1-> 36 /2-> 18 -5+1-> 14 /2-> 7, x 16 channels
    # conv 5*1*6+6, conv 5*6*16+16, dense 112*120+120, 120*84+84, 84*1+1
    assert count(a1, (40, 1)) == 36 + 496 + 13560 + 10164 + 85
    a2 = nnpk.lenet(out=10)
    assert a2.shapes((32, 32, 3))[-1] == (10,) and a2.shapes((32, 32, 3))[6] == (400,)
    assert count(a2, (32, 32, 3)) == 62006  # LeNet-5 on 32 x 32 x 3 images with 10 classes
    assert count(nnpk.lenet(), (28, 28, 1)) == 156 + 2416 + 256 * 120 + 120 + 10164 + 85


def test_mlp_100_parameter_count():
    arch = nnpk.mlp_100()
    assert isinstance(arch, nnpk.MLP) and arch.parameterization == "standard"
    assert count(arch, 40) == 40 * 100 + 100 + 100 * 100 + 100 + 100 + 1


def resnet_count(w, out, in_channels, window):
    """Stem conv + BN; stage 0: two basic blocks (two convs and two BNs each); stages 1-3: 1x1 projection + BN, two
    basic blocks at c channels; readout."""
    basic = lambda c: 2 * (window * c * c + 2 * c)
    total = window * in_channels * w + 2 * w + 2 * basic(w)
    for s in (1, 2, 3):
        c = w * 2**s
        total += (c // 2) * c + 2 * c + 2 * basic(c)
    return total + 8 * w * out + out


def test_resnet18_shapes_and_parameter_counts():
    arch = nnpk.resnet18(width=4)
    shapes = arch.shapes((32, 32, 3))
    assert shapes[-2] == (32,) and shapes[-1] == (1,)
    assert (4, 4, 32) in shapes and (16, 16, 8) in shapes
    assert count(arch, (32, 32, 3)) == resnet_count(4, 1, 3, 9)
    assert count(nnpk.resnet18(width=3, out=2, dims=1), (20, 2)) == resnet_count(3, 2, 2, 3)
    assert resnet_count(64, 1, 3, 9) == 12717633  # as documented
    assert not nnpk.resnet18(width=2, batch_norm=False).has_batch_norm
    # BatchNorm's gamma and beta: stem 2w, stage 0 four of 2w, stages 1-3 five of 2c each: 150 w in all
    assert count(nnpk.resnet18(width=2, batch_norm=False), (8, 8, 1)) == resnet_count(2, 1, 1, 9) - 150 * 2


def test_study_networks_draw_the_same_weights_wherever_built():
    code = ("import nnpk, hashlib, numpy as np; p = nnpk.sample_params(nnpk.lenet(dims=1), (40, 1), 3, 5); "
            "print(hashlib.sha256(b''.join(W.tobytes() + b.tobytes() for W, b in p)).hexdigest())")
    import hashlib

    here = nnpk.sample_params(nnpk.lenet(dims=1), (40, 1), 3, 5)
    digest = hashlib.sha256(b"".join(W.tobytes() + b.tobytes() for W, b in here)).hexdigest()
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == digest
    again = nnpk.sample_params(nnpk.lenet(dims=1), (40, 1), 3, 5)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(here, again))
    other = nnpk.sample_params(nnpk.lenet(dims=1), (40, 1), 3, 6)
    assert not np.array_equal(here[0][0], other[0][0])
    assert nnpk.lenet().layers[0].W_std == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("call, error, match", [
    (lambda: nnpk.tasks.ntk_eigenvectors(X, SMALL, 0), ValueError, "n_vectors"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X, SMALL, 121), ValueError, "n_vectors"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X, SMALL, 2.5), TypeError, "n_vectors"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X, nnpk.MLP(hidden=[8], out=2), 2), ValueError, "out=1"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X, "mlp", 2), TypeError, "arch"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X, SMALL, 2, method="lanczos"), ValueError, "method"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X, SMALL, 2, tol=0), ValueError, "tol"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X, SMALL, 2, depth=1), ValueError, "depth"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X, SMALL, 4, block_size=3), ValueError, "block_size"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X, SMALL, 4, float32_products=1), TypeError, "float32_products"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X, SMALL, 2, seed=-1), ValueError, "seed"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X, SMALL, 2, index=-1), ValueError, "index"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X[:, :3], SMALL, 2, params=nnpk.sample_params(SMALL, 5, 0, 0)),
     ValueError, "params"),
    (lambda: nnpk.tasks.ntk_eigenvectors(X, nnpk.resnet18(width=2, dims=1), 2), ValueError, "BatchNorm"),
    (lambda: nnpk.tasks.ntk_eigenfunction(X, SMALL, 0), ValueError, "k counts"),
    (lambda: nnpk.tasks.ntk_eigenfunction(X, SMALL, 121), ValueError, "k must"),
    (lambda: nnpk.tasks.ntk_eigenfunction(X, SMALL, 1.0), TypeError, "k must"),
    (lambda: nnpk.tasks.ntk_eigenvectors_from_store(3, 2), TypeError, "store"),
    (lambda: nnpk.tasks.nads(SMALL, 5, 6), ValueError, "n_directions"),
    (lambda: nnpk.tasks.nads(SMALL, (5, 1), 2), ValueError, "input_shape"),
    (lambda: nnpk.tasks.nads(SMALL, "5", 2), TypeError, "input_shape"),
    (lambda: nnpk.tasks.nads(SMALL, 5, 2, step=0), ValueError, "step"),
    (lambda: nnpk.tasks.nads(nnpk.MLP(hidden=[8], out=3), 5, 2), ValueError, "out=1"),
    (lambda: nnpk.tasks.nad_task(np.zeros(3), 10, 1.0, 1.0), ValueError, "direction is zero"),
    (lambda: nnpk.tasks.nad_task(np.array([1.0, np.nan]), 10, 1.0, 1.0), ValueError, "direction"),
    (lambda: nnpk.tasks.nad_task(np.ones(3), 0, 1.0, 1.0), ValueError, "n must"),
    (lambda: nnpk.tasks.nad_task(np.ones(3), 10, -1.0, 1.0), ValueError, "eps"),
    (lambda: nnpk.tasks.nad_task(np.ones(3), 10, 1.0, "a"), TypeError, "sigma"),
    (lambda: nnpk.eigen_alignment(np.eye(3), np.zeros(3)), ValueError, "zero"),
    (lambda: nnpk.eigen_alignment(np.eye(3), np.ones(4)), ValueError, "vectors"),
    (lambda: nnpk.eigen_alignment(np.ones((3, 2)), np.ones(3)), ValueError, "K"),
    (lambda: nnpk.lenet(dims=3), ValueError, "dims"),
    (lambda: nnpk.lenet(out=0), ValueError, "out"),
    (lambda: nnpk.resnet18(width=0), ValueError, "width"),
    (lambda: nnpk.resnet18(batch_norm=1), TypeError, "batch_norm"),
    (lambda: nnpk.mlp_100(out=1.5), TypeError, "out"),
])
def test_bad_inputs_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_too_large_a_kernel_is_refused_before_it_is_computed(monkeypatch):
    monkeypatch.setenv("NNPK_MEMORY_LIMIT", str(8 * 120 * 120))
    with pytest.raises(MemoryError, match="NTK of 120 points.*compute_to_store"):
        nnpk.tasks.ntk_eigenvectors(X, SMALL, 2)


def test_store_of_two_point_sets_is_refused(tmp_path):
    pytest.importorskip("zarr")
    store = nnpk.compute_to_store(tmp_path / "s", X[:20], X[:10], arch=SMALL, kernel="ntk", n_networks=1,
                                  tile_size=96)
    with pytest.raises(ValueError, match="two sets of points"):
        nnpk.tasks.ntk_eigenvectors_from_store(store, 2)
