#include <pybind11/stl.h>

#include "bindings.hpp"
#include "nnpk/mlp.hpp"

namespace nnpk::bind {

static MLPSpec make_spec(const std::vector<std::int64_t>& widths, const std::vector<double>& w_std,
                         const std::vector<std::optional<double>>& b_std, int activation, double slope, double shift,
                         double scale, const std::string& parameterization) {
  if (widths.size() < 2) throw py::value_error("widths needs the input and the output width");
  const std::size_t n = widths.size() - 1;
  if (w_std.size() != n || b_std.size() != n) throw py::value_error("w_std and b_std need one entry per layer");
  if (activation < 0 || activation > static_cast<int>(ActivationKind::relu_normalized))
    throw py::value_error("unknown activation code " + std::to_string(activation));
  MLPSpec spec;
  for (std::size_t l = 0; l < n; ++l) {
    DenseLayer layer;
    layer.fan_in = widths[l];
    layer.fan_out = widths[l + 1];
    layer.w_std = w_std[l];
    layer.has_bias = b_std[l].has_value();
    layer.b_std = b_std[l].value_or(0.0);
    spec.layers.push_back(layer);
  }
  spec.activation = Activation{static_cast<ActivationKind>(activation), slope, shift, scale};
  if (parameterization == "ntk") {
    spec.parameterization = Parameterization::ntk;
  } else if (parameterization == "standard") {
    spec.parameterization = Parameterization::standard;
  } else {
    throw py::value_error("parameterization must be 'ntk' or 'standard'");
  }
  spec.validate();
  return spec;
}

void bind_arch(py::module_& m) {
  py::class_<MLPSpec>(m, "MLPSpec", "An MLP as the engine sees it (built by nnpk.MLP)")
      .def(py::init(&make_spec), py::arg("widths"), py::arg("w_std"), py::arg("b_std"), py::arg("activation"),
           py::arg("slope"), py::arg("shift"), py::arg("scale"), py::arg("parameterization"))
      .def_property_readonly("n_layers", [](const MLPSpec& s) { return s.layers.size(); });
}

}  // namespace nnpk::bind
