#include <pybind11/stl.h>

#include "bindings.hpp"
#include "nnpk/sequential.hpp"
#include "nnpk/sequential_conditional.hpp"

namespace nnpk::bind {

using Pair = std::pair<std::int64_t, std::int64_t>;

static SeqNode make_node(NodeKind kind, std::int64_t input, std::int64_t skip, std::int64_t width, Pair window,
                         Pair stride, bool same, double w_std, std::optional<double> b_std, ActivationKind activation,
                         double slope, double shift, double activation_scale, double scale) {
  SeqNode node;
  node.kind = kind;
  node.input = input;
  node.skip = skip;
  node.width = width;
  std::tie(node.window_h, node.window_w) = window;
  std::tie(node.stride_h, node.stride_w) = stride;
  node.same = same;
  node.w_std = w_std;
  node.has_bias = b_std.has_value();
  node.b_std = b_std.value_or(0.0);
  node.activation = Activation{activation, slope, shift, activation_scale};
  node.scale = scale;
  return node;
}

// input_shape is one point's shape: (features,), (length, channels) or (height, width, channels).
static SequentialSpec make_spec(const std::vector<std::int64_t>& input_shape, std::vector<SeqNode> nodes,
                                Parameterization parameterization, Init init) {
  SequentialSpec spec;
  switch (input_shape.size()) {
    case 1: spec.input = Shape{1, 1, input_shape[0], false}; break;
    case 2: spec.input = Shape{input_shape[0], 1, input_shape[1], true}; break;
    case 3: spec.input = Shape{input_shape[0], input_shape[1], input_shape[2], true}; break;
    default: throw py::value_error("input_shape must have 1 to 3 entries");
  }
  spec.nodes = std::move(nodes);
  spec.parameterization = parameterization;
  spec.init = init;
  spec.build();
  return spec;
}

template <class T>
static py::list sequential_sums_typed(const py::array& x1, const py::object& x2, const SequentialSpec& spec,
                                      MonteCarloOptions opt, const py::object& progress, const py::object& initial,
                                      bool in_place) {
  const Points p = check_points(x1, x2, spec.input.size());
  auto outs = make_outputs(opt.layers.empty() ? 1 : opt.layers.size(), {p.n1, p.n2}, initial, in_place);
  const std::vector<double*> sums = data_pointers(outs);
  run_without_gil(progress, [&](auto poll) {
    opt.poll = poll;
    sequential_monte_carlo<T>(spec, static_cast<const T*>(p.x1), p.n1, static_cast<const T*>(p.x2), p.n2, opt, sums);
  });
  return as_list(outs);
}

template <class T>
static py::array_t<double> outputs_typed(const py::array& x, const SequentialSpec& spec, const py::list& params,
                                         int n_threads) {
  const auto [rows, d] = matrix_shape(x, "x");
  if (d != spec.input.size()) throw py::value_error("x has a different feature count from the architecture");
  std::vector<py::array_t<T, py::array::c_style>> keep;
  const NetworkView<T> net = network_view<T>(spec.params, params, keep);
  py::array_t<double> out({rows, spec.n_outputs()});
  double* dst = out.mutable_data();
  const T* data = static_cast<const T*>(x.data());
  const std::vector<LayerScales> scales = spec.scales(true);
  // Safe without the GIL: the engine reads x and the parameters, held alive above,
  // and writes only `out`, which no other code has seen yet.
  py::gil_scoped_release release;
  sequential_outputs<T>(spec, scales, net, data, rows, n_threads, dst);
  return out;
}

void bind_sequential(py::module_& m) {
  py::enum_<NodeKind>(m, "NodeKind")
      .value("dense", NodeKind::dense)
      .value("conv", NodeKind::conv)
      .value("avg_pool", NodeKind::avg_pool)
      .value("max_pool", NodeKind::max_pool)
      .value("global_avg_pool", NodeKind::global_avg_pool)
      .value("flatten", NodeKind::flatten)
      .value("activation", NodeKind::activation)
      .value("residual", NodeKind::residual);

  py::enum_<Init>(m, "Init")
      .value("gaussian", Init::gaussian)
      .value("uniform", Init::uniform)
      .value("truncated_normal", Init::truncated_normal)
      .value("orthogonal", Init::orthogonal);

  py::class_<SeqNode>(m, "SeqNode", "One node of a sequential network as the engine sees it (built by nnpk.Network)")
      .def(py::init(&make_node), py::arg("kind"), py::arg("input"), py::arg("skip") = -1, py::arg("width") = 0,
           py::arg("window") = Pair{1, 1}, py::arg("stride") = Pair{1, 1}, py::arg("same") = false,
           py::arg("w_std") = 1.0, py::arg("b_std") = py::none(), py::arg("activation") = ActivationKind::identity,
           py::arg("slope") = 0.01, py::arg("shift") = 0.0, py::arg("activation_scale") = 1.0,
           py::arg("scale") = 1.0);

  py::class_<SequentialSpec>(m, "SequentialSpec", "A sequential network as the engine sees it (built by nnpk.Network)")
      .def(py::init(&make_spec), py::arg("input_shape"), py::arg("nodes"), py::arg("parameterization"),
           py::arg("init"))
      .def_property_readonly("param_shapes", [](const SequentialSpec& s) {
        std::vector<Pair> out;
        for (const DenseLayer& l : s.params) out.emplace_back(l.fan_in, l.fan_out);
        return out;
      });

  m.def(
      "sequential_sums",
      [](const py::array& x1, const py::object& x2, const SequentialSpec& spec, std::uint64_t seed, std::uint64_t start,
         std::uint64_t stop, const std::vector<std::int64_t>& nodes, int n_threads, std::int64_t tile_rows,
         std::int64_t gram_tile, std::int64_t panel_cols, const py::object& progress, const py::object& initial,
         bool in_place) {
        const MonteCarloOptions opt =
            monte_carlo_options(seed, start, stop, nodes, n_threads, tile_rows, gram_tile, panel_cols);
        if (x1.dtype().is(py::dtype::of<float>())) return sequential_sums_typed<float>(x1, x2, spec, opt, progress, initial, in_place);
        if (x1.dtype().is(py::dtype::of<double>())) return sequential_sums_typed<double>(x1, x2, spec, opt, progress, initial, in_place);
        throw py::type_error("x1 must be float32 or float64");
      },
      py::arg("x1"), py::arg("x2"), py::arg("spec"), py::arg("seed"), py::arg("start"), py::arg("stop"),
      py::arg("nodes"), py::arg("n_threads"), py::arg("tile_rows"), py::arg("gram_tile"), py::arg("panel_cols"),
      py::arg("progress"), py::arg("initial"), py::arg("in_place") = false,
      "Sums over networks [start, stop) of the un-normalised Gram of each node's features in `nodes` (its\n"
      "output, averaged over positions when spatial; empty: the logits), in float64, continued from `initial`");

  m.def(
      "sequential_conditional_sums",
      [](const py::array& x1, const py::object& x2, const SequentialSpec& spec, const std::vector<Pair>& pairs,
         const std::vector<bool>& unit_second_moment, std::uint64_t seed, std::uint64_t start, std::uint64_t stop,
         int n_threads, std::int64_t tile_rows, std::int64_t gram_tile, const py::object& progress,
         const py::object& initial, bool in_place) {
        if (pairs.empty()) throw py::value_error("pairs must name at least one (dense, activation) pair");
        if (unit_second_moment.size() != pairs.size())
          throw py::value_error("unit_second_moment needs one flag per pair (" + std::to_string(pairs.size()) +
                                "), got " + std::to_string(unit_second_moment.size()));
        std::vector<ConditionalPair> engine_pairs;
        for (std::size_t k = 0; k < pairs.size(); ++k)
          engine_pairs.push_back({pairs[k].first, pairs[k].second, unit_second_moment[k]});
        MonteCarloOptions opt = monte_carlo_options(seed, start, stop, {}, n_threads, tile_rows, gram_tile, 0);
        auto run = [&](auto tag) {
          using T = decltype(tag);
          const Points p = check_points(x1, x2, spec.input.size());
          auto outs = make_outputs(pairs.size(), {p.n1, p.n2}, initial, in_place);
          const std::vector<double*> sums = data_pointers(outs);
          run_without_gil(progress, [&](auto poll) {
            opt.poll = poll;
            sequential_conditional<T>(spec, engine_pairs, static_cast<const T*>(p.x1), p.n1,
                                      static_cast<const T*>(p.x2), p.n2, opt, sums);
          });
          return as_list(outs);
        };
        if (x1.dtype().is(py::dtype::of<float>())) return run(float{});
        if (x1.dtype().is(py::dtype::of<double>())) return run(double{});
        throw py::type_error("x1 must be float32 or float64");
      },
      py::arg("x1"), py::arg("x2"), py::arg("spec"), py::arg("pairs"), py::arg("unit_second_moment"),
      py::arg("seed"), py::arg("start"), py::arg("stop"), py::arg("n_threads"), py::arg("tile_rows"),
      py::arg("gram_tile"), py::arg("progress"), py::arg("initial"), py::arg("in_place") = false,
      "Sums over networks [start, stop) of the conditional kernel of each (dense node, activation node) pair:\n"
      "the activation's output kernel integrated over the dense layer's weights given its input (float64),\n"
      "continued from `initial` (copied, or with in_place accumulated into those very arrays)");

  m.def(
      "sequential_draw",
      [](const SequentialSpec& spec, std::uint64_t seed, std::uint64_t network, std::size_t param) {
        if (param >= spec.params.size()) throw py::index_error("parameter layer index out of range");
        const DenseLayer& l = spec.params[param];
        py::array_t<double> w({l.fan_in, l.fan_out});
        layer_weights(spec.init, seed, network, param, l.fan_in, l.fan_out, w.mutable_data());
        py::object beta = py::none();
        if (l.has_bias) {
          py::array_t<double> b(l.fan_out);
          GaussianStream(seed, network, param, Stream::biases).fill(0, static_cast<std::uint64_t>(l.fan_out), b.mutable_data());
          beta = b;
        }
        return py::make_tuple(w, beta);
      },
      py::arg("spec"), py::arg("seed"), py::arg("network"), py::arg("param"),
      "Unit-variance (eps as a (fan_in, fan_out) matrix, beta) of one parametrised layer: the engine's draws");

  m.def(
      "sequential_outputs",
      [](const py::array& x, const SequentialSpec& spec, const py::list& params, int n_threads) {
        if (n_threads < 1) throw py::value_error("n_threads must be positive");
        if (x.dtype().is(py::dtype::of<float>())) return outputs_typed<float>(x, spec, params, n_threads);
        if (x.dtype().is(py::dtype::of<double>())) return outputs_typed<double>(x, spec, params, n_threads);
        throw py::type_error("x must be float32 or float64");
      },
      py::arg("x"), py::arg("spec"), py::arg("params"), py::arg("n_threads"),
      "The logits (rows, C) in float64 of a network with the given stored parameters ((fan_in, fan_out) weights)");
}

}  // namespace nnpk::bind
