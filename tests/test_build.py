"""The engine's instruction-set levels: the choice at import, NNPK_ISA, build_info and `nnpk info`,
and every level this CPU runs giving the same results to rounding, bitwise the same across threads
and tiles within the level."""

import importlib.machinery
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nnpk
from nnpk import _build, _core
from nnpk.cli import main

INFO = nnpk.build_info()
# The compiled levels this CPU runs (one, the level in use, for a native build).
LEVELS = [level for level in INFO["isa_levels"] if level in INFO["cpu_isa_levels"] or level not in _build.X86_LEVELS]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code, isa=None, *args):
    env = {k: v for k, v in os.environ.items() if k != "NNPK_ISA"}
    if isa is not None:
        env["NNPK_ISA"] = isa
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def test_the_best_level_the_cpu_runs_is_chosen():
    compiled = ["x86-64", "x86-64-v3", "x86-64-v4"]
    assert _build.choose_level(compiled, ["x86-64", "x86-64-v3", "x86-64-v4"], None) == "x86-64-v4"
    assert _build.choose_level(compiled, ["x86-64", "x86-64-v3"], None) == "x86-64-v3"
    assert _build.choose_level(compiled, ["x86-64"], None) == "x86-64"
    assert _build.choose_level(["x86-64", "x86-64-v3"], ["x86-64", "x86-64-v3", "x86-64-v4"], None) == "x86-64-v3"
    assert _build.choose_level(["aarch64"], [], None) == "aarch64"  # another processor's baseline


def test_nnpk_isa_forces_a_lower_level():
    compiled = ["x86-64", "x86-64-v3", "x86-64-v4"]
    assert _build.choose_level(compiled, compiled, "x86-64-v3") == "x86-64-v3"
    assert _build.choose_level(compiled, compiled, "x86-64") == "x86-64"


@pytest.mark.parametrize("forced, compiled, cpu, why", [
    ("x86-64-v4", ["x86-64", "x86-64-v3", "x86-64-v4"], ["x86-64", "x86-64-v3"], "does not support x86-64-v4"),
    ("x86-64-v4", ["x86-64", "x86-64-v3"], ["x86-64", "x86-64-v3", "x86-64-v4"], "not compiled for x86-64-v4"),
    ("avx9000", ["x86-64", "x86-64-v3"], ["x86-64", "x86-64-v3"], "not an instruction-set level"),
    ("x86-64-v3", ["native"], [], "not compiled for x86-64-v3"),
])
def test_an_unusable_nnpk_isa_is_refused_naming_the_valid_levels(forced, compiled, cpu, why):
    with pytest.raises(ImportError, match="NNPK_ISA") as e:
        _build.choose_level(compiled, cpu, forced)
    runnable = [level for level in compiled if level in cpu or level not in _build.X86_LEVELS]
    assert why in str(e.value) and f"runs are {', '.join(runnable)}" in str(e.value)


def test_no_compiled_level_running_here_is_an_import_error():
    with pytest.raises(ImportError, match="x86-64-v3, x86-64-v4"):
        _build.choose_level(["x86-64-v3", "x86-64-v4"], ["x86-64"], None)


def test_import_under_a_bad_nnpk_isa_fails_with_the_message():
    out = _run("import nnpk", "avx9000")
    assert out.returncode != 0
    assert "NNPK_ISA='avx9000' cannot be used" in out.stderr and LEVELS[-1] in out.stderr


def test_build_info_describes_the_loaded_engine():
    assert INFO["version"] == nnpk.__version__
    assert INFO["isa_level"] in INFO["isa_levels"] and INFO["isa_level"] == _core.isa_level()
    assert INFO["isa_level"] == LEVELS[-1]  # the best one (the tests run without NNPK_ISA)
    assert INFO["openmp"] == _core.has_openmp() and INFO["eigen"].count(".") == 2
    assert INFO["compiler"].split()[0] in ("gcc", "clang")
    assert os.path.samefile(INFO["extension"], _core.__file__)
    assert sys.modules["nnpk._core"] is _core
    if INFO["isa_level"] != "native":  # a dispatching build: loaded from nnpk/_isa/<level>/
        assert os.path.basename(os.path.dirname(_core.__file__)) == INFO["isa_level"]
    if INFO["isa_level"] in ("x86-64-v3", "x86-64-v4"):
        assert "AVX2" in INFO["simd"] and "FMA" in INFO["simd"]
    if INFO["isa_level"] == "x86-64-v4":
        assert "AVX512" in INFO["simd"]


def test_classes_keep_the_module_name_and_pickles_load():
    assert _core.ActivationKind.__module__ == "nnpk._core"
    arch = nnpk.MLP(hidden=[8], out=2)
    assert pickle.loads(pickle.dumps(arch)) == arch
    assert pickle.loads(pickle.dumps(_core.ActivationKind.relu)) == _core.ActivationKind.relu


def test_nnpk_info_prints_the_build(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert nnpk.__version__ in out and f"isa level     {INFO['isa_level']}" in out and INFO["eigen"] in out
    # The product kernels: the engine's (Eigen's at the level in use) and the BLAS numpy calls.
    assert f"products      Eigen {INFO['eigen']}'s kernels at {INFO['isa_level']}" in out and "numpy blas    " in out
    assert main(["info", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    products = got.pop("products")
    assert got == json.loads(json.dumps(INFO))
    # The packed products' kernel: this session's own AVX-512 tiles where the level has AVX-512, else Eigen's.
    own = "AVX512F" in INFO["simd"] or "AVX-512" in INFO["simd"] or "AVX512" in INFO["simd"]
    assert products["engine"] == {"library": f"Eigen {INFO['eigen']}", "isa_level": INFO["isa_level"],
                                  "simd": INFO["simd"], "float32": nnpk._core.product_kernel("float32"),
                                  "float64": "Eigen's GEBP kernel on packed panels"}
    assert products["engine"]["float32"].startswith("nnpk's AVX-512" if own else "Eigen's GEBP")
    assert f"packed f32    {products['engine']['float32']}" in out
    assert products["numpy"] and all(lib["user_api"] == "blas" for lib in products["numpy"])
    assert set(products["environment"]) == {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}


def test_levels_are_found_in_every_folder_of_the_package(tmp_path):
    """The package's folders are searched in order for _isa/<level>/_core.<suffix>; the first one with a level
    gives it, and a folder without _isa/ (an editable install's source tree) is passed over."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    made = {}
    for folder, level in (("compiled", "x86-64-v3"), ("compiled", "x86-64"), ("source", "x86-64"),
                          ("source", "x86-64-v4"), ("source", "not-a-level")):
        (tmp_path / folder / "_isa" / level).mkdir(parents=True)
        if level != "not-a-level":  # a folder without an extension is no level
            (tmp_path / folder / "_isa" / level / f"_core{suffix}").write_bytes(b"")
            made.setdefault(level, str(tmp_path / folder / "_isa" / level / f"_core{suffix}"))
    (tmp_path / "empty").mkdir()
    found = _build.compiled_levels([str(tmp_path / "empty"), str(tmp_path / "compiled"), str(tmp_path / "source")])
    assert list(found) == ["x86-64", "x86-64-v3", "x86-64-v4"] and found == made
    assert _build.compiled_levels([str(tmp_path / "empty")]) == {}
    assert _build.package_dirs() == list(nnpk.__path__)


@pytest.mark.skipif(INFO["isa_level"] == "native", reason="a dispatching build's levels")
def test_an_editable_install_loads_the_best_level(tmp_path):
    """An editable install (scikit-build-core's default mode) keeps the package's Python files in the source
    tree and its compiled extensions (nnpk/_cpu, nnpk/_isa/<level>/) in another folder; the package's
    __path__ has both, the compiled one first. Here that layout is made by hand: the Python files copied,
    the extensions linked, the package imported with that __path__."""
    source, compiled = tmp_path / "source" / "nnpk", tmp_path / "compiled" / "nnpk"
    shutil.copytree(os.path.dirname(nnpk.__file__), source,
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "_isa", "__pycache__"))
    compiled.mkdir(parents=True)
    os.symlink(os.path.dirname(os.path.dirname(_core.__file__)), compiled / "_isa")
    cpu = sys.modules["nnpk._cpu"].__file__
    os.symlink(cpu, compiled / os.path.basename(cpu))
    out = _run("""
        import importlib.util, json, sys
        compiled, source = sys.argv[1:]
        spec = importlib.util.spec_from_file_location("nnpk", source + "/__init__.py",
                                                      submodule_search_locations=[compiled, source])
        nnpk = importlib.util.module_from_spec(spec)
        sys.modules["nnpk"] = nnpk
        spec.loader.exec_module(nnpk)
        import numpy as np
        x = np.random.default_rng(0).standard_normal((6, 3))
        k = nnpk.monte_carlo(x, arch=nnpk.MLP(hidden=[16], out=1), n_networks=3, n_threads=1)
        print(json.dumps({"file": nnpk.__file__, "info": nnpk.build_info(), "k": k.tolist()}))
    """, None, str(compiled), str(source))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert os.path.dirname(got["file"]) == str(source)
    assert got["info"]["isa_level"] == INFO["isa_level"] and got["info"]["isa_levels"] == INFO["isa_levels"]
    assert got["info"]["extension"].startswith(str(compiled / "_isa"))
    x = np.random.default_rng(0).standard_normal((6, 3))
    expected = nnpk.monte_carlo(x, arch=nnpk.MLP(hidden=[16], out=1), n_networks=3, n_threads=1)
    assert np.array_equal(np.array(got["k"]), expected)  # the same level's engine: bitwise


# What every level computes: draws, Monte Carlo NNGP and NTK of an MLP and a CNN in float32 and
# float64 at 1 and 2 threads, an analytic kernel; bitwise checks within the level run in the child.
_LEVEL_RUN = """
    import sys
    import numpy as np
    import nnpk
    from nnpk import _core
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 7))
    img = rng.standard_normal((12, 6, 6, 2))
    mlp = nnpk.MLP(hidden=[48, 24], out=2, activation="gelu", b_std=0.2)
    cnn = nnpk.Network([nnpk.Conv(8, (3, 3)), "relu", nnpk.Conv(8, (3, 3)), "tanh", nnpk.GlobalAvgPool(),
                        nnpk.Dense(2)])
    out = {"level": np.array(nnpk.build_info()["isa_level"])}
    params = nnpk.sample_params(mlp, 7, seed=3, index=5) + nnpk.sample_params(cnn, (6, 6, 2), seed=3, index=5)
    out["draws"] = np.concatenate([np.ravel(a) for layer in params for a in layer if a is not None])
    for dtype in ("float32", "float64"):
        for name, arch, pts in (("mlp", mlp, x), ("cnn", cnn, img)):
            runs = [nnpk.monte_carlo(pts, arch=arch, n_networks=3, seed=1, get=("nngp", "ntk"), dtype=dtype,
                                     n_threads=t) for t in (1, 2)]
            for k in ("nngp", "ntk"):
                assert np.array_equal(runs[0][k], runs[1][k]), (name, dtype, k)
                out[f"{name}_{k}_{dtype}"] = runs[0][k]
    out["analytic_ntk"] = nnpk.analytic(x, arch=mlp, get="ntk")
    np.savez(sys.argv[1], **out)
"""


@pytest.fixture(scope="module")
def level_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("levels")
    results = {}
    for level in LEVELS:
        path = folder / f"{level}.npz"
        out = _run(_LEVEL_RUN, level, str(path))
        assert out.returncode == 0, out.stderr
        with np.load(path) as z:
            results[level] = dict(z)
    return results


def test_each_level_runs_when_forced_and_is_deterministic_across_threads(level_results):
    for level, result in level_results.items():
        assert str(result["level"]) == level


def test_levels_agree_to_rounding(level_results):
    reference = level_results[LEVELS[-1]]
    for level, result in level_results.items():
        for key, value in reference.items():
            if key == "level":
                continue
            # float32 products round differently; float64 runs use the float32 draws, which differ in
            # their last bits at the baseline (no FMA), so they agree to about 1e-8; analytic: float64 throughout.
            rtol = 1e-12 if key.startswith("analytic") else 1e-6 if "float64" in key else 1e-5
            np.testing.assert_allclose(result[key], value, rtol=rtol, atol=rtol * np.abs(value).max(),
                                       err_msg=f"{key} at {level}")


def test_draws_are_bitwise_the_same_at_the_levels_with_fma(level_results):
    """x86-64-v3 and x86-64-v4 draw the same bits (the baseline, without FMA, agrees to rounding above)."""
    fused = [level for level in level_results if level in ("x86-64-v3", "x86-64-v4")]
    if len(fused) < 2:
        pytest.skip("x86-64-v3 and x86-64-v4 are not both built and run here")
    assert np.array_equal(level_results[fused[0]]["draws"], level_results[fused[1]]["draws"])


# The suite's own bitwise-determinism tests, run again under each other level this CPU runs.
_DETERMINISM_TESTS = [  # tiles, panels and threads of the NNGP and NTK engines, chunks of the draws
    "tests/test_monte_carlo.py::test_bitwise_identical_across_threads_tiles_and_panels",
    "tests/test_architectures_ntk.py::test_bitwise_identical_across_threads_and_tiles",
    "tests/test_philox.py::test_any_chunking_offset_and_thread_gives_the_same_bits",
]


@pytest.mark.parametrize("level", [level for level in LEVELS if level != INFO["isa_level"]])
@pytest.mark.timeout(600)
def test_determinism_tests_pass_under_every_level(level):
    env = {**os.environ, "NNPK_ISA": level}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *_DETERMINISM_TESTS],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
