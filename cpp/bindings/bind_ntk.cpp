#include "bindings.hpp"
#include "nnpk/ntk.hpp"

namespace nnpk::bind {

void bind_ntk(py::module_& m) {
  def_tangent<MLPSpec>(
      m, "tangent_sums",
      "Sums over networks [start, stop) of tangent kernels (and the nngp): [nngp], then one total or one\n"
      "sum per included (layer, part); traced sums are over logits (divide by C for the kernel)",
      "empirical_sums", "Tangent kernels (and the nngp) of one network with the given stored parameters");
}

}  // namespace nnpk::bind
