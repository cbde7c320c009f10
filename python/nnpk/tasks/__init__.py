"""Tasks built from a network's own kernel at initialisation: binary labels from the NTK's eigenvectors
(eigenfunction tasks) and linearly separable tasks along its neural anisotropy directions (NADs)."""

from ._eigenvectors import ntk_eigenfunction, ntk_eigenvectors, ntk_eigenvectors_from_store
from ._nads import nad_task, nads

__all__ = ["nad_task", "nads", "ntk_eigenfunction", "ntk_eigenvectors", "ntk_eigenvectors_from_store"]
