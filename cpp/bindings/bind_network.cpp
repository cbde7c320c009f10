#include <pybind11/eigen.h>
#include <pybind11/stl.h>

#include <tuple>
#include <cmath>

#include "bindings.hpp"
#include <Eigen/Core>

#include "nnpk/network/activations.hpp"
#include "nnpk/network/forward.hpp"
#include "nnpk/network/spec.hpp"
#include "nnpk/packed.hpp"
#include "nnpk/parallel.hpp"
#include "nnpk/random/init.hpp"
#include "nnpk/random/philox.hpp"

namespace nnpk::bind {

using Pair = std::pair<std::int64_t, std::int64_t>;

static SeqNode make_node(NodeKind kind, std::int64_t input, std::int64_t skip, std::int64_t width, Pair window,
                         Pair stride, bool same, double w_std, std::optional<double> b_std, ActivationKind activation,
                         double slope, double shift, double activation_scale, double scale, double eps,
                         double momentum, double u_std, double leak, bool return_sequences, int init, int degree,
                         double gamma, const std::vector<double>& coefficients, bool pool_sum,
                         std::tuple<bool, bool, bool> norm_axes, bool transposed,
                         const std::vector<double>& pattern, int concat_axis, bool per_point, bool mean) {
  SeqNode node;
  node.kind = kind;
  node.input = input;
  node.skip = skip;
  node.width = width;
  std::tie(node.window_h, node.window_w) = window;
  std::tie(node.stride_h, node.stride_w) = stride;
  node.same = same;
  node.pool_sum = pool_sum;
  node.transposed = transposed;
  for (double w : pattern)
    if (!std::isfinite(w)) throw py::value_error("pattern must be finite");
  node.pattern = pattern;
  node.per_point = per_point;
  node.mean = mean;
  node.w_std = w_std;
  node.has_bias = b_std.has_value();
  node.b_std = b_std.value_or(0.0);
  node.activation = make_activation(activation, slope, shift, activation_scale, degree, gamma, coefficients);
  node.scale = scale;
  node.eps = eps;
  node.momentum = momentum;
  node.u_std = u_std;
  node.leak = leak;
  node.return_sequences = return_sequences;
  node.init = init;
  std::tie(node.norm_height, node.norm_width, node.norm_channels) = norm_axes;
  node.concat_axis = concat_axis;
  return node;
}

// input_shape is one point's shape: (features,), (length, channels) or (height, width, channels).
static SequentialSpec make_spec(const std::vector<std::int64_t>& input_shape, std::vector<SeqNode> nodes,
                                Parameterization parameterization, Init init, bool graph) {
  SequentialSpec spec;
  spec.graph = graph;
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
static py::array_t<double> outputs_typed(const py::array& x, const SequentialSpec& spec, const py::list& params,
                                         int n_threads, const py::object& buffers, bool training) {
  const auto [rows, d] = matrix_shape(x, "x");
  if (d != spec.input.size()) throw py::value_error("x has a different feature count from the architecture");
  std::vector<py::array_t<T, py::array::c_style>> keep;
  NetworkView<T> net = sequential_view<T>(spec, params, keep);
  NormStatistics<T> norm;
  auto running = prepare_norms(spec, buffers, training, net, norm);
  py::array_t<double> out({rows, spec.n_outputs()});
  double* dst = out.mutable_data();
  const T* data = static_cast<const T*>(x.data());
  const std::vector<LayerScales> scales = spec.scales(true);
  std::vector<BatchStats> stats;
  {
    // Safe without the GIL: the engine reads x, the parameters and the running statistics, held
    // alive above, and writes only `out`, which no other code has seen yet.
    py::gil_scoped_release release;
    if (training && !spec.norms.empty()) {
      sequential_batch_outputs<T>(spec, scales, net, data, rows, n_threads, dst, stats);
    } else {
      sequential_outputs<T>(spec, scales, net, data, rows, n_threads, dst);
    }
  }
  if (training) update_running(spec, stats, running);
  return out;
}

template <class T>
static py::tuple state_outputs_typed(const py::array& x, const SequentialSpec& spec, const py::list& params,
                                     int n_threads, const py::list& initial) {
  const auto [rows, d] = matrix_shape(x, "x");
  if (d != spec.input.size()) throw py::value_error("x has a different feature count from the architecture");
  if (!spec.norms.empty()) throw py::value_error("states are not carried through batch normalisation");
  std::vector<std::int64_t> widths;
  for (const SeqNode& node : spec.nodes)
    if (node.kind == NodeKind::recurrent) widths.push_back(node.width);
  if (static_cast<std::size_t>(py::len(initial)) != widths.size())
    throw py::value_error("initial_states needs one entry (None or (rows, width)) per recurrent layer");
  std::vector<py::array_t<T, py::array::c_style>> keep;
  NetworkView<T> net = sequential_view<T>(spec, params, keep);
  std::vector<const T*> h0;
  std::vector<py::array_t<T, py::array::c_style>> given;
  py::list finals;
  std::vector<T*> hT;
  for (std::size_t i = 0; i < widths.size(); ++i) {
    py::object entry = initial[i];
    if (entry.is_none()) {
      h0.push_back(nullptr);
    } else {
      auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(entry);
      if (!a || a.ndim() != 2 || a.shape(0) != rows || a.shape(1) != widths[i])
        throw py::value_error("initial_states[" + std::to_string(i) + "] must be (" + std::to_string(rows) + ", " +
                              std::to_string(widths[i]) + ")");
      given.push_back(a);
      h0.push_back(a.data());
    }
    py::array_t<T> f({rows, widths[i]});
    hT.push_back(f.mutable_data());
    finals.append(f);
  }
  py::array_t<double> out({rows, spec.n_outputs()});
  double* dst = out.mutable_data();
  const T* data = static_cast<const T*>(x.data());
  const std::vector<LayerScales> scales = spec.scales(true);
  {
    // Safe without the GIL: the engine reads x, the parameters and the given states, held alive here,
    // and writes only `out` and the final states, which no other code has seen yet.
    py::gil_scoped_release release;
    sequential_state_outputs<T>(spec, scales, net, data, rows, n_threads, h0, hT, dst);
  }
  return py::make_tuple(out, finals);
}

template <class T>
static py::array_t<double> linearized_outputs_typed(const py::array& x, const SequentialSpec& spec,
                                                    const py::list& params, const py::list& direction, bool offset,
                                                    int n_threads, const py::object& buffers) {
  const auto [rows, d] = matrix_shape(x, "x");
  if (d != spec.input.size()) throw py::value_error("x has a different feature count from the architecture");
  std::vector<py::array_t<T, py::array::c_style>> keep;
  NetworkView<T> net = sequential_view<T>(spec, params, keep);
  NormStatistics<T> norm;
  prepare_norms(spec, buffers, false, net, norm);
  const Direction<T> dir = direction_view<T>(spec, direction);
  py::array_t<double> out({rows, spec.n_outputs()});
  double* dst = out.mutable_data();
  const T* data = static_cast<const T*>(x.data());
  const std::vector<LayerScales> scales = spec.scales(true);
  {
    // Safe without the GIL: the engine reads x, the parameters, the direction and the statistics, held
    // alive by the caller's lists and `keep`, and writes only `out`, which no other code has seen yet.
    py::gil_scoped_release release;
    sequential_linearized_outputs<T>(spec, scales, net, dir, offset, data, rows, n_threads, dst);
  }
  return out;
}

void bind_network(py::module_& m) {
  py::enum_<ActivationKind>(m, "ActivationKind")
      .value("relu", ActivationKind::relu)
      .value("leaky_relu", ActivationKind::leaky_relu)
      .value("abs", ActivationKind::abs)
      .value("erf", ActivationKind::erf)
      .value("tanh", ActivationKind::tanh)
      .value("sigmoid", ActivationKind::sigmoid)
      .value("gelu", ActivationKind::gelu)
      .value("softplus", ActivationKind::softplus)
      .value("sin", ActivationKind::sin)
      .value("identity", ActivationKind::identity)
      .value("relu_normalized", ActivationKind::relu_normalized)
      .value("cos", ActivationKind::cos)
      .value("gaussian", ActivationKind::gaussian)
      .value("exp", ActivationKind::exp)
      .value("rbf", ActivationKind::rbf)
      .value("sign", ActivationKind::sign)
      .value("monomial", ActivationKind::monomial)
      .value("rectified_monomial", ActivationKind::rectified_monomial)
      .value("polynomial", ActivationKind::polynomial)
      .value("elementwise", ActivationKind::elementwise);

  m.def("product_kernel", [](const std::string& dtype) {
    return std::string(dtype == "float64" ? packed_kernel<double>() : packed_kernel<float>());
  }, py::arg("dtype") = "float32", "What computes the engine's packed products of `dtype` in this build");
  // Tests only: C = alpha a b by the engine's packed products, in blocks of row_block rows (a multiple of
  // 4) and col_block columns (a multiple of the packed panel, 48 or 24), the blocks spread over `threads`;
  // with `transposed`, each factor packed from its transpose stored row-major (as weight gradients are).
  const auto packed = [](auto tag) {
    using T = decltype(tag);
    using M = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;
    return [](const Array& a_in, const Array& b_in, T alpha, std::int64_t row_block, std::int64_t col_block,
              int threads, bool transposed) {
      if (a_in.ndim() != 2 || b_in.ndim() != 2) throw std::invalid_argument("a and b must be matrices");
      const Eigen::Map<const M> a(a_in.data(), a_in.shape(0), a_in.shape(1)), b(b_in.data(), b_in.shape(0), b_in.shape(1));
      if (a.cols() != b.rows()) throw std::invalid_argument("a's columns and b's rows differ");
      if (row_block < 1 || row_block % PackedLeft<T>::kPanel || col_block < 1 || col_block % PackedRight<T>::kPanel)
        throw std::invalid_argument("row_block and col_block must be positive multiples of the panels (" +
                                    std::to_string(PackedLeft<T>::kPanel) + ", " +
                                    std::to_string(PackedRight<T>::kPanel) + ")");
      const M A = a, B = b;
      M C = M::Zero(A.rows(), B.cols());
      {
        py::gil_scoped_release release;
        PackedLeft<T> pa;
        PackedRight<T> pb;
        if (transposed) {
          const M At = A.transpose(), Bt = B.transpose();
          pa.pack(At.data(), A.rows(), A.cols(), A.rows(), true, threads);
          pb.pack(Bt.data(), B.rows(), B.cols(), B.rows(), true, threads);
        } else {
          pa.pack(A.data(), A.rows(), A.cols(), A.cols(), false, threads);
          pb.pack(B.data(), B.rows(), B.cols(), B.cols(), false, threads);
        }
        const std::int64_t rb = (A.rows() + row_block - 1) / row_block, cb = (B.cols() + col_block - 1) / col_block;
        parallel_for(rb * cb, threads, [&](std::int64_t blk, int) {
          const std::int64_t i0 = blk / cb * row_block, j0 = blk % cb * col_block;
          packed_product(pa, pb, C.data(), C.cols(), alpha, i0, std::min(row_block, A.rows() - i0), j0,
                         std::min(col_block, B.cols() - j0));
        });
      }
      return C;
    };
  };
  m.def("_packed_product_float32", packed(float{}), py::arg("a"), py::arg("b"), py::arg("alpha"),
        py::arg("row_block"), py::arg("col_block"), py::arg("threads"), py::arg("transposed") = false);
  m.def("_packed_product_float64", packed(double{}), py::arg("a"), py::arg("b"), py::arg("alpha"),
        py::arg("row_block"), py::arg("col_block"), py::arg("threads"), py::arg("transposed") = false);
  m.def("has_openmp", &has_openmp, "Whether the engine was built with OpenMP");
  m.def("simd_instruction_sets", [] { return std::string(Eigen::SimdInstructionSetsInUse()); });
  m.def("eigen_version", [] {
    return std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
           std::to_string(EIGEN_MINOR_VERSION);
  });
#ifndef NNPK_ISA_LEVEL
#define NNPK_ISA_LEVEL "native"
#endif
  m.def("isa_level", [] { return std::string(NNPK_ISA_LEVEL); },
        "The instruction-set level this extension was compiled for (\"native\": the building machine's)");
  m.def("compiler", [] {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#else
    return std::string("unknown");
#endif
  }, "The C++ compiler that built the extension");
  m.def(
      "activation_value",
      [](ActivationKind kind, double slope, double shift, double scale, py::array_t<double, py::array::c_style> z,
         bool derivative, int degree, double gamma, const std::vector<double>& coefficients) {
        const Activation act = make_activation(kind, slope, shift, scale, degree, gamma, coefficients);
        py::array_t<double> out(z.request().shape);
        const double* in = z.data();
        double* o = out.mutable_data();
        for (py::ssize_t i = 0; i < z.size(); ++i) o[i] = derivative ? act.derivative(in[i]) : act(in[i]);
        return out;
      },
      py::arg("kind"), py::arg("slope"), py::arg("shift"), py::arg("scale"), py::arg("z"), py::arg("derivative"),
      py::arg("degree") = 1, py::arg("gamma") = 1.0, py::arg("coefficients") = std::vector<double>{},
      "The engine's activation (or its derivative) elementwise, in float64");

  py::enum_<Parameterization>(m, "Parameterization")
      .value("ntk", Parameterization::ntk)
      .value("standard", Parameterization::standard);

  py::enum_<NodeKind>(m, "NodeKind")
      .value("dense", NodeKind::dense)
      .value("conv", NodeKind::conv)
      .value("avg_pool", NodeKind::avg_pool)
      .value("max_pool", NodeKind::max_pool)
      .value("global_avg_pool", NodeKind::global_avg_pool)
      .value("flatten", NodeKind::flatten)
      .value("activation", NodeKind::activation)
      .value("residual", NodeKind::residual)
      .value("batch_norm", NodeKind::batch_norm)
      .value("recurrent", NodeKind::recurrent)
      .value("attention", NodeKind::attention)
      .value("layer_norm", NodeKind::layer_norm)
      .value("aggregate", NodeKind::aggregate)
      .value("fan_in_prod", NodeKind::fan_in_prod)
      .value("fan_in_concat", NodeKind::fan_in_concat);

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
           py::arg("scale") = 1.0, py::arg("eps") = 1e-5, py::arg("momentum") = 0.1, py::arg("u_std") = 1.0,
           py::arg("leak") = 1.0, py::arg("return_sequences") = false, py::arg("init") = -1, py::arg("degree") = 1,
           py::arg("gamma") = 1.0, py::arg("coefficients") = std::vector<double>{}, py::arg("pool_sum") = false,
           py::arg("norm_axes") = std::make_tuple(false, false, true),
           py::arg("transposed") = false, py::arg("pattern") = std::vector<double>{},
           py::arg("concat_axis") = 2, py::arg("per_point") = false, py::arg("mean") = false);

  m.def(
      "attention_node",
      [](std::int64_t input, std::int64_t width, std::int64_t heads, std::int64_t key_width, std::int64_t value_width,
         bool tied, int mechanism, double k_std, double q_std, double v_std, double w_std, std::optional<double> b_std,
         int init, int pos_emb, std::int64_t pos_channels, bool val_pos_emb, double pe_std, std::vector<double> pos_basis) {
        SeqNode node;
        node.kind = NodeKind::attention;
        node.input = input;
        node.width = width;
        node.heads = heads;
        node.key_width = key_width;
        node.value_width = value_width;
        node.tied = tied;
        node.mechanism = mechanism;
        node.k_std = k_std;
        node.q_std = q_std;
        node.v_std = v_std;
        node.w_std = w_std;
        node.has_bias = b_std.has_value();
        node.b_std = b_std.value_or(0.0);
        node.init = init;
        node.pos_emb = pos_emb;
        node.pos_channels = pos_channels;
        node.val_pos_emb = val_pos_emb;
        node.pe_std = pe_std;
        node.pos_basis = std::move(pos_basis);
        return node;
      },
      py::arg("input"), py::arg("width"), py::arg("heads"), py::arg("key_width"), py::arg("value_width"),
      py::arg("tied"), py::arg("mechanism"), py::arg("k_std"), py::arg("q_std"), py::arg("v_std"), py::arg("w_std"),
      py::arg("b_std") = py::none(), py::arg("init") = -1, py::arg("pos_emb") = 0, py::arg("pos_channels") = 0,
      py::arg("val_pos_emb") = false, py::arg("pe_std") = 1.0, py::arg("pos_basis") = std::vector<double>{},
      "A self-attention node (nnpk.SelfAttention): parameters K, Q (untied only), V, O with O's bias, then the\n"
      "positional embedding E (pos_emb 1 summed, 2 concatenated; pos_basis positions x positions, empty: identity);\n"
      "mechanism 0 softmax, 1 identity, 2 abs, 3 relu");

  py::class_<SequentialSpec>(m, "SequentialSpec", "A sequential network as the engine sees it (built by nnpk.Network)")
      .def(py::init(&make_spec), py::arg("input_shape"), py::arg("nodes"), py::arg("parameterization"),
           py::arg("init"), py::arg("graph") = false,
           "graph: the points are graphs, each position's features followed by its row of the point's adjacency")
      .def_property_readonly("param_shapes", [](const SequentialSpec& s) {
        std::vector<Pair> out;
        for (const DenseLayer& l : s.params) out.emplace_back(l.fan_in, l.fan_out);
        return out;
      });

  m.def(
      "sequential_draw",
      [](const SequentialSpec& spec, std::uint64_t seed, std::uint64_t network, std::size_t param) {
        if (param >= spec.params.size()) throw py::index_error("parameter layer index out of range");
        const DenseLayer& l = spec.params[param];
        check_stream_limits(param, static_cast<std::uint64_t>(l.fan_in * l.fan_out));
        py::array_t<double> w({l.fan_in, l.fan_out});
        layer_weights(l.init, seed, network, param, l.fan_in, l.fan_out, w.mutable_data());
        py::object beta = py::none();
        if (l.has_bias) {
          py::array_t<double> b(l.fan_out);
          fill_gaussian(seed, network, param, Stream::biases, 0, static_cast<std::uint64_t>(l.fan_out), b.mutable_data());
          beta = b;
        }
        return py::make_tuple(w, beta);
      },
      py::arg("spec"), py::arg("seed"), py::arg("network"), py::arg("param"),
      "Unit-variance (eps as a (fan_in, fan_out) matrix, beta) of one parametrised layer: the engine's draws");

  m.def(
      "sequential_outputs",
      [](const py::array& x, const SequentialSpec& spec, const py::list& params, int n_threads,
         const py::object& buffers, bool training) {
        if (n_threads < 1) throw py::value_error("n_threads must be positive");
        if (x.dtype().is(py::dtype::of<float>()))
          return outputs_typed<float>(x, spec, params, n_threads, buffers, training);
        if (x.dtype().is(py::dtype::of<double>()))
          return outputs_typed<double>(x, spec, params, n_threads, buffers, training);
        throw py::type_error("x must be float32 or float64");
      },
      py::arg("x"), py::arg("spec"), py::arg("params"), py::arg("n_threads"), py::arg("buffers") = py::none(),
      py::arg("training") = false,
      "The logits (rows, C) in float64 of a network with the given stored parameters: one pair per parametrised\n"
      "layer in network order, (W, b) with (fan_in, fan_out) W, or a batch normalisation's (gamma, beta).\n"
      "Batch normalisations use buffers, one (running_mean, running_var) float64 pair each, out of training\n"
      "(training=False); with training=True they normalise by the statistics of the rows of x, and the\n"
      "running statistics in buffers (if given) are updated in place as torch does: running = (1 - momentum)\n"
      "running + momentum batch, with the batch's unbiased variance.");

  m.def(
      "sequential_state_outputs",
      [](const py::array& x, const SequentialSpec& spec, const py::list& params, int n_threads,
         const py::list& initial_states) {
        if (n_threads < 1) throw py::value_error("n_threads must be positive");
        if (x.dtype().is(py::dtype::of<float>())) return state_outputs_typed<float>(x, spec, params, n_threads, initial_states);
        if (x.dtype().is(py::dtype::of<double>()))
          return state_outputs_typed<double>(x, spec, params, n_threads, initial_states);
        throw py::type_error("x must be float32 or float64");
      },
      py::arg("x"), py::arg("spec"), py::arg("params"), py::arg("n_threads"), py::arg("initial_states"),
      "(logits (rows, C) float64, [h_T (rows, width) per recurrent layer]) of a network with the given stored\n"
      "parameters, each recurrent layer starting from initial_states[i] (rows, width), or from zero where None");

  m.def(
      "sequential_linearized_outputs",
      [](const py::array& x, const SequentialSpec& spec, const py::list& params, const py::list& direction,
         bool offset, int n_threads, const py::object& buffers) {
        if (n_threads < 1) throw py::value_error("n_threads must be positive");
        if (x.dtype().is(py::dtype::of<float>()))
          return linearized_outputs_typed<float>(x, spec, params, direction, offset, n_threads, buffers);
        if (x.dtype().is(py::dtype::of<double>()))
          return linearized_outputs_typed<double>(x, spec, params, direction, offset, n_threads, buffers);
        throw py::type_error("x must be float32 or float64");
      },
      py::arg("x"), py::arg("spec"), py::arg("params"), py::arg("direction"), py::arg("offset"), py::arg("n_threads"),
      py::arg("buffers") = py::none(),
      "The linearisation's logits (rows, C) in float64: f(x; theta_0) (if offset) + J(x; theta_0) direction, theta_0\n"
      "the stored params (batch normalisations by the running statistics in buffers), direction per parametrised\n"
      "layer a (dW or None, db or None) pair of writable arrays of x's dtype");

  m.def("philox4x32_10", &philox4x32_10, py::arg("counter"), py::arg("key"),
        "One Philox4x32-10 block (for checking against the Random123 known answers)");
  m.def(
      "gaussian_stream",
      [](std::uint64_t seed, std::uint64_t network, std::uint64_t layer, std::uint32_t stream, std::uint64_t begin,
         std::uint64_t end, const py::object& out_arg) {
        if (stream > static_cast<std::uint32_t>(Stream::biases))
          throw py::value_error("stream must be 0 (weights) or 1 (biases)");
        if (begin > end) throw py::value_error("begin must not exceed end");
        check_stream_limits(layer, end);
        if (end - begin > (std::uint64_t{1} << 31)) throw py::value_error("at most 2^31 values at once");
        const auto size = static_cast<py::ssize_t>(end - begin);
        py::array_t<float> out;
        if (out_arg.is_none()) {
          out = py::array_t<float>(size);
        } else {
          if (py::isinstance<py::array_t<float>>(out_arg)) out = py::reinterpret_borrow<py::array_t<float>>(out_arg);
          if (!out || out.ndim() != 1 || out.size() != size || !(out.flags() & py::array::c_style) || !out.writeable())
            throw py::value_error("out must be a writeable contiguous float32 array of end - begin = " +
                                  std::to_string(size) + " values");
        }
        float* dst = out.mutable_data();
        // Safe without the GIL: only `out` is written, which the caller does not touch meanwhile.
        py::gil_scoped_release release;
        fill_gaussian(seed, network, layer, static_cast<Stream>(stream), begin, end, dst);
        return out;
      },
      py::arg("seed"), py::arg("network"), py::arg("layer"), py::arg("stream"), py::arg("begin"), py::arg("end"),
      py::arg("out") = py::none(),
      "Elements [begin, end) of the Gaussian stream (seed, network, layer, stream) as float32, on one thread\n"
      "(into `out`, a float32 array of end - begin values, if given)");
  m.attr("ROW_QUANTUM") = kRowQuantum;
}

}  // namespace nnpk::bind
