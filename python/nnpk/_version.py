"""The installed package's version (one place: pyproject.toml)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nnpk")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["__version__"]
