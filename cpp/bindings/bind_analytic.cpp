#include <pybind11/stl.h>

#include "bindings.hpp"
#include "nnpk/kernels/analytic.hpp"
#include "nnpk/kernels/analytic_conv.hpp"
#include "nnpk/network/spec.hpp"

namespace nnpk::bind {

// Checks the points, allocates the outputs and runs engine(x1, n1, x2, n2, opt, nngp_out, ntk_out)
// without the GIL.
template <class Engine>
static py::tuple analytic_kernels_py(const py::array& x1, const py::object& x2, std::int64_t d, AnalyticOptions opt,
                                     Engine&& engine) {
  const auto [n1, d1] = matrix_shape(x1, "x1");
  if (!x1.dtype().is(py::dtype::of<double>())) throw py::type_error("x1 must be float64");
  if (d1 != d) throw py::value_error("x1 has a different feature count from the architecture");
  std::int64_t n2 = n1;
  const double* x2_data = nullptr;
  if (!x2.is_none()) {
    const py::array x2a = x2.cast<py::array>();
    const auto shape2 = matrix_shape(x2a, "x2");
    if (!x2a.dtype().is(py::dtype::of<double>())) throw py::type_error("x2 must be float64");
    if (shape2.second != d1) throw py::value_error("x2 and x1 have different feature counts");
    n2 = shape2.first;
    x2_data = static_cast<const double*>(x2a.data());
  }
  py::list nngp, ntk;
  std::vector<double*> nngp_out, ntk_out;
  for (std::size_t k = 0; k < opt.layers.size(); ++k) {
    for (int kind = 0; kind < 2; ++kind) {
      if (!(kind == 0 ? opt.nngp : opt.ntk)) continue;
      py::array_t<double> a(std::vector<py::ssize_t>{n1, n2});
      (kind == 0 ? nngp_out : ntk_out).push_back(a.mutable_data());
      (kind == 0 ? nngp : ntk).append(a);
    }
  }
  std::optional<py::error_already_set> pending;
  const auto poll = make_poll(py::none(), pending);
  opt.poll = [&poll] { return poll(0); };
  const double* x1_data = static_cast<const double*>(x1.data());
  try {
    // Safe without the GIL: the engine reads x1/x2 and writes only the arrays made above;
    // Python is entered again only through the poll, which takes the GIL.
    py::gil_scoped_release release;
    engine(x1_data, n1, x2_data, n2, opt, nngp_out, ntk_out);
  } catch (const Cancelled&) {
    if (pending) throw std::move(*pending);
    throw;
  }
  return py::make_tuple(nngp, ntk);
}

static AnalyticOptions make_options(Parameterization parameterization, bool nngp, bool ntk,
                                    std::vector<std::int64_t> layers, bool closed_form, int quadrature_order,
                                    int n_threads, std::int64_t tile) {
  if (n_threads < 1) throw py::value_error("n_threads must be positive");
  if (quadrature_order < 1) throw py::value_error("quadrature_order must be positive");
  AnalyticOptions opt;
  opt.parameterization = parameterization;
  opt.nngp = nngp;
  opt.ntk = ntk;
  opt.layers = std::move(layers);
  opt.closed_form = closed_form;
  opt.quadrature_order = quadrature_order;
  opt.n_threads = n_threads;
  opt.tile = tile;
  return opt;
}

void bind_analytic(py::module_& m) {
  py::enum_<AnalyticNodeKind>(m, "AnalyticNodeKind")
      .value("dense", AnalyticNodeKind::dense)
      .value("activation", AnalyticNodeKind::activation)
      .value("residual", AnalyticNodeKind::residual)
      .value("identity", AnalyticNodeKind::identity)
      .value("recurrent", AnalyticNodeKind::recurrent)
      .value("layer_norm", AnalyticNodeKind::layer_norm)
      .value("fan_in_prod", AnalyticNodeKind::fan_in_prod)
      .value("fan_in_concat", AnalyticNodeKind::fan_in_concat);

  py::class_<AnalyticNode>(m, "AnalyticNode", "One node of a network's analytic recursion (built by nnpk.analytic)")
      .def(py::init([](AnalyticNodeKind kind, std::int64_t input, std::int64_t skip, std::int64_t fan_in, double w_std,
                       std::optional<double> b_std, ActivationKind activation, double slope, double shift,
                       double activation_scale, bool unit_second_moment, double scale, std::int64_t steps,
                       std::int64_t width, double u_std, double leak, int degree, double gamma,
                       const std::vector<double>& coefficients, double eps) {
             AnalyticNode node;
             node.kind = kind;
             node.input = input;
             node.skip = skip;
             node.fan_in = fan_in;
             node.w_std = w_std;
             node.has_bias = b_std.has_value();
             node.b_std = b_std.value_or(0.0);
             node.activation = make_activation(activation, slope, shift, activation_scale, degree, gamma, coefficients);
             node.unit_second_moment = unit_second_moment;
             node.scale = scale;
             node.steps = steps;
             node.width = width;
             node.u_std = u_std;
             node.leak = leak;
             node.eps = eps;
             return node;
           }),
           py::kw_only(), py::arg("kind"), py::arg("input"), py::arg("skip") = -1, py::arg("fan_in") = 1,
           py::arg("w_std") = 1.0, py::arg("b_std") = py::none(), py::arg("activation") = ActivationKind::identity,
           py::arg("slope") = 0.0, py::arg("shift") = 0.0, py::arg("activation_scale") = 1.0,
           py::arg("unit_second_moment") = false, py::arg("scale") = 1.0, py::arg("steps") = 1, py::arg("width") = 1,
           py::arg("u_std") = 1.0, py::arg("leak") = 1.0, py::arg("degree") = 1, py::arg("gamma") = 1.0,
           py::arg("coefficients") = std::vector<double>{}, py::arg("eps") = 1e-12);

  m.def(
      "analytic_network_kernels",
      [](const py::array& x1, const py::object& x2, std::vector<AnalyticNode> nodes, Parameterization parameterization,
         bool nngp, bool ntk, std::vector<std::int64_t> layers, bool closed_form, int quadrature_order, int n_threads,
         std::int64_t tile) {
        AnalyticOptions opt = make_options(parameterization, nngp, ntk, std::move(layers), closed_form,
                                           quadrature_order, n_threads, tile);
        const std::int64_t d = x1.ndim() == 2 ? x1.shape(1) : -1;
        return analytic_kernels_py(x1, x2, d, std::move(opt), [&nodes, d](auto&&... args) {
          analytic_network_kernels(nodes, d, args...);
        });
      },
      py::arg("x1"), py::arg("x2"), py::arg("nodes"), py::arg("parameterization"), py::arg("nngp"), py::arg("ntk"),
      py::arg("layers"), py::arg("closed_form"), py::arg("quadrature_order"), py::arg("n_threads"), py::arg("tile"),
      "Infinite-width kernels (float64) of a network of dense, activation, residual and recurrent nodes: a list\n"
      "of NNGP and a list of NTK matrices, one per requested node (`layers`: ascending node indices)");

  m.def(
      "analytic_conv_kernels",
      [](const py::array& x1, const py::object& x2, const SequentialSpec& spec, std::vector<bool> unit_second_moment,
         bool nngp, bool ntk, std::vector<std::int64_t> layers, bool closed_form, int quadrature_order, int n_threads,
         std::int64_t tile) {
        AnalyticOptions opt = make_options(spec.parameterization, nngp, ntk, std::move(layers), closed_form,
                                           quadrature_order, n_threads, tile);
        return analytic_kernels_py(x1, x2, spec.input_dim(), std::move(opt), [&](auto&&... args) {
          analytic_conv_kernels(spec, unit_second_moment, args...);
        });
      },
      py::arg("x1"), py::arg("x2"), py::arg("spec"), py::arg("unit_second_moment"), py::arg("nngp"), py::arg("ntk"),
      py::arg("layers"), py::arg("closed_form"), py::arg("quadrature_order"), py::arg("n_threads"), py::arg("tile"),
      "Infinite-width kernels (float64) of a network with convolutions or pooling: a list of NNGP and a list of\n"
      "NTK matrices, one per requested spec node (`layers`: ascending node indices)");

  m.def(
      "analytic_conv_workspace_bytes",
      [](const SequentialSpec& spec, const std::vector<std::int64_t>& layers, bool ntk) {
        return 8 * analytic_conv_workspace_doubles(spec, layers, ntk);
      },
      py::arg("spec"), py::arg("layers"), py::arg("ntk"),
      "Bytes of scratch analytic_conv_kernels holds per thread");
}

}  // namespace nnpk::bind
