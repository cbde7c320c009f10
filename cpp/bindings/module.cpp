// The private extension nnpk._core: registration only.
#include <pybind11/pybind11.h>

#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "nnpk's C++ engine (private: use the nnpk package)";
  nnpk::bind::bind_network(m);
  nnpk::bind::bind_monte_carlo(m);
  nnpk::bind::bind_tangent(m);
  nnpk::bind::bind_analytic(m);
  nnpk::bind::bind_learning(m);
}
