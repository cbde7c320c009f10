#include "bindings.hpp"
#include "nnpk/kernels/tangent.hpp"

namespace nnpk::bind {

void bind_tangent(py::module_& m) {
  def_tangent<SequentialSpec>(
      m, "sequential_tangent_sums",
      "Sums over networks [start, stop) of a sequential network's tangent kernels (and the nngp): [nngp],\n"
      "then one total or one sum per included (parametrised layer, part); traced sums are over logits\n"
      "(divide by C for the kernel)",
      "sequential_empirical_sums",
      "Tangent kernels (and the nngp) of one sequential network with the given stored parameters\n"
      "((fan_in, fan_out) weight matrices)");
}

}  // namespace nnpk::bind
