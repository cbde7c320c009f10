#include <pybind11/stl.h>

#include "bindings.hpp"
#include "nnpk/bias_learning.hpp"

namespace nnpk::bind {

static LossKind loss_kind(const std::string& loss) {
  if (loss == "cross_entropy") return LossKind::cross_entropy;
  if (loss == "squared") return LossKind::squared;
  throw py::value_error("loss must be 'cross_entropy' or 'squared'");
}

static py::array_t<double> as_array(const std::vector<double>& v, std::vector<py::ssize_t> shape) {
  py::array_t<double> out(shape);
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

// The trainer of one network and trainable set, in float32 or float64 (fixed at construction).
class BiasTrainer {
 public:
  BiasTrainer(const MLPSpec& spec, const std::vector<bool>& train_biases, bool train_readout, int n_threads,
              const std::string& dtype)
      : spec_(spec) {
    if (n_threads < 1) throw py::value_error("n_threads must be positive");
    if (train_biases.size() != spec.layers.size()) throw py::value_error("train_biases needs one flag per layer");
    TrainableSet trainable;
    trainable.biases.assign(train_biases.begin(), train_biases.end());
    trainable.readout = train_readout;
    if (dtype == "float32") {
      f32_.emplace(spec, spec.scales(true), trainable, n_threads);
    } else if (dtype == "float64") {
      f64_.emplace(spec, spec.scales(true), trainable, n_threads);
    } else {
      throw py::value_error("dtype must be 'float32' or 'float64'");
    }
  }

  py::tuple gradients(const py::array& x, const py::list& params, const std::string& loss, std::int64_t n_outputs,
                      const py::object& targets) {
    if (f32_) return gradients_typed<float>(*f32_, x, params, loss, n_outputs, targets);
    return gradients_typed<double>(*f64_, x, params, loss, n_outputs, targets);
  }

 private:
  template <class T>
  py::tuple gradients_typed(TrainableBackprop<T>& engine, const py::array& x, const py::list& params,
                            const std::string& loss, std::int64_t n_outputs, const py::object& target_values) {
    if (!x.dtype().is(py::dtype::of<T>())) throw py::type_error("x must have the trainer's dtype");
    const auto [rows, d] = matrix_shape(x, "x");
    if (d != spec_.input_dim()) throw py::value_error("x has a different feature count from the architecture");
    std::vector<py::array_t<T, py::array::c_style>> keep;
    const NetworkView<T> net = network_view<T>(spec_.layers, params, keep);
    LossTargets targets;
    targets.kind = loss_kind(loss);
    targets.n_outputs = n_outputs;
    py::array_t<std::int64_t, py::array::c_style> labels;
    py::array_t<double, py::array::c_style> values;
    if (targets.kind == LossKind::cross_entropy) {
      labels = target_values.cast<py::array_t<std::int64_t, py::array::c_style>>();
      if (labels.ndim() != 1 || labels.shape(0) != rows) throw py::value_error("labels need one entry per row of x");
      targets.labels = labels.data();
    } else {
      values = target_values.cast<py::array_t<double, py::array::c_style>>();
      if (values.ndim() != 2 || values.shape(0) != rows || values.shape(1) != n_outputs)
        throw py::value_error("target values must have shape (rows of x, n_outputs)");
      targets.values = values.data();
    }
    const T* data = static_cast<const T*>(x.data());
    const TrainableGradients* result = nullptr;
    {
      // Safe without the GIL: the engine reads x, the parameters and the targets,
      // all held alive above, and writes only its own buffers.
      py::gil_scoped_release release;
      result = &engine.gradients(net, data, rows, targets);
    }
    py::list biases;
    for (std::size_t l = 0; l < spec_.layers.size(); ++l) {
      if (result->biases[l].empty()) {
        biases.append(py::none());
      } else {
        biases.append(as_array(result->biases[l], {spec_.layers[l].fan_out}));
      }
    }
    const DenseLayer& top = spec_.layers.back();
    py::object readout = py::none();
    if (!result->readout.empty()) readout = as_array(result->readout, {top.fan_in, top.fan_out});
    return py::make_tuple(result->loss, biases, readout);
  }

  MLPSpec spec_;
  std::optional<TrainableBackprop<float>> f32_;
  std::optional<TrainableBackprop<double>> f64_;
};

template <class T>
static py::array_t<double> outputs_typed(const py::array& x, const MLPSpec& spec, const py::list& params,
                                         int n_threads) {
  const auto [rows, d] = matrix_shape(x, "x");
  if (d != spec.input_dim()) throw py::value_error("x has a different feature count from the architecture");
  std::vector<py::array_t<T, py::array::c_style>> keep;
  const NetworkView<T> net = network_view<T>(spec.layers, params, keep);
  py::array_t<double> out({rows, spec.layers.back().fan_out});
  double* dst = out.mutable_data();
  const T* data = static_cast<const T*>(x.data());
  const std::vector<LayerScales> scales = spec.scales(true);
  // Safe without the GIL: the engine reads x and the parameters, held alive above,
  // and writes only `out`, which no other code has seen yet.
  py::gil_scoped_release release;
  network_outputs<T>(spec, scales, net, data, rows, n_threads, dst);
  return out;
}

void bind_bias_learning(py::module_& m) {
  py::class_<BiasTrainer>(m, "BiasTrainer",
                          "Loss and gradients w.r.t. the trainable stored parameters of one network's minibatches")
      .def(py::init<const MLPSpec&, const std::vector<bool>&, bool, int, const std::string&>(), py::arg("spec"),
           py::arg("train_biases"), py::arg("train_readout"), py::arg("n_threads"), py::arg("dtype"))
      .def("gradients", &BiasTrainer::gradients, py::arg("x"), py::arg("params"), py::arg("loss"),
           py::arg("n_outputs"), py::arg("targets"),
           "(mean loss, [d loss / d b_l or None per layer], d loss / d W_readout or None) over the rows of x;\n"
           "targets are int64 labels (cross_entropy) or (rows, n_outputs) float64 values (squared); params are\n"
           "the current (W, b) of every layer, in the trainer's dtype");

  m.def(
      "network_outputs",
      [](const py::array& x, const MLPSpec& spec, const py::list& params, int n_threads) {
        if (n_threads < 1) throw py::value_error("n_threads must be positive");
        if (x.dtype().is(py::dtype::of<float>())) return outputs_typed<float>(x, spec, params, n_threads);
        if (x.dtype().is(py::dtype::of<double>())) return outputs_typed<double>(x, spec, params, n_threads);
        throw py::type_error("x must be float32 or float64");
      },
      py::arg("x"), py::arg("spec"), py::arg("params"), py::arg("n_threads"),
      "The logits (rows, C) in float64 of a network with the given stored parameters");
}

}  // namespace nnpk::bind
