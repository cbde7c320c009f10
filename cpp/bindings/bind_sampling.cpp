#include <pybind11/stl.h>

#include "bindings.hpp"
#include "nnpk/mlp.hpp"
#include "nnpk/random/philox.hpp"

namespace nnpk::bind {

void bind_sampling(py::module_& m) {
  m.def(
      "draw_layer",
      [](const MLPSpec& spec, std::uint64_t seed, std::uint64_t network, std::size_t layer) {
        if (layer >= spec.layers.size()) throw py::index_error("layer index out of range");
        const DenseLayer& l = spec.layers[layer];
        py::array_t<double> eps({l.fan_in, l.fan_out});
        GaussianStream(seed, network, layer, Stream::weights)
            .fill(0, static_cast<std::uint64_t>(l.fan_in * l.fan_out), eps.mutable_data());
        py::object beta = py::none();
        if (l.has_bias) {
          py::array_t<double> b(l.fan_out);
          GaussianStream(seed, network, layer, Stream::biases).fill(0, static_cast<std::uint64_t>(l.fan_out), b.mutable_data());
          beta = b;
        }
        return py::make_tuple(eps, beta);
      },
      py::arg("spec"), py::arg("seed"), py::arg("network"), py::arg("layer"),
      "Standard-normal (eps, beta) of one layer: the engine's draws in float64");
}

}  // namespace nnpk::bind
