#include <pybind11/stl.h>

#include <mutex>
#include <optional>

#include "bindings.hpp"
#include "nnpk/learning/trainer.hpp"
#include "nnpk/network/spec.hpp"

namespace nnpk::bind {

static LossKind loss_kind(const std::string& loss) {
  if (loss == "cross_entropy") return LossKind::cross_entropy;
  if (loss == "squared") return LossKind::squared;
  throw py::value_error("loss must be 'cross_entropy' or 'squared'");
}

// A float64 array of `shape` from v, or None where v is empty (not trained).
static py::object as_array_or_none(const std::vector<double>& v, std::vector<py::ssize_t> shape) {
  if (v.empty()) return py::none();
  py::array_t<double> out(shape);
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

// The trainer of one sequential network and trainable set, in float32 or float64 (fixed at
// construction). Flags and parameters are laid out as sample_params: one per parametrised layer
// in network order, a batch normalisation's gamma counted as a weight and its beta as a bias.
class SequentialTrainer {
 public:
  SequentialTrainer(const SequentialSpec& spec, const std::vector<bool>& train_weights,
                    const std::vector<bool>& train_biases, int n_threads, const std::string& dtype)
      : spec_(spec) {
    if (n_threads < 1) throw py::value_error("n_threads must be positive");
    const std::size_t n = spec.entries.size();
    if (train_weights.size() != n)
      throw py::value_error("train_weights needs one flag per parametrised layer (" + std::to_string(n) + "), got " +
                            std::to_string(train_weights.size()));
    if (train_biases.size() != n)
      throw py::value_error("train_biases needs one flag per parametrised layer (" + std::to_string(n) + "), got " +
                            std::to_string(train_biases.size()));
    TrainableParams trainable;
    trainable.weights.assign(spec.params.size(), 0);
    trainable.biases.assign(spec.params.size(), 0);
    trainable.gammas.assign(spec.norms.size(), 0);
    trainable.betas.assign(spec.norms.size(), 0);
    for (std::size_t l = 0; l < n; ++l) {
      const ParamEntry& e = spec.entries[l];
      const auto i = static_cast<std::size_t>(e.index);
      if (e.norm) {
        trainable.gammas[i] = train_weights[l];
        trainable.betas[i] = train_biases[l];
        continue;
      }
      if (train_biases[l] && !spec.params[i].has_bias)
        throw py::value_error("train_biases[" + std::to_string(l) + "]: that layer has no bias");
      trainable.weights[i] = train_weights[l];
      trainable.biases[i] = train_biases[l];
    }
    if (dtype == "float32") {
      f32_.emplace(spec, trainable, n_threads);
    } else if (dtype == "float64") {
      f64_.emplace(spec, trainable, n_threads);
    } else {
      throw py::value_error("dtype must be 'float32' or 'float64'");
    }
  }

  py::tuple gradients(const py::array& x, const py::list& params, const std::string& loss, std::int64_t n_outputs,
                      const py::object& targets, const py::object& buffers, bool training) {
    if (f32_) return gradients_typed<float>(*f32_, x, params, loss, n_outputs, targets, buffers, training);
    return gradients_typed<double>(*f64_, x, params, loss, n_outputs, targets, buffers, training);
  }

 private:
  template <class T>
  py::tuple gradients_typed(SequentialBackprop<T>& engine, const py::array& x, const py::list& params,
                            const std::string& loss, std::int64_t n_outputs, const py::object& target_values,
                            const py::object& buffers, bool training) {
    if (!x.dtype().is(py::dtype::of<T>())) throw py::type_error("x must have the trainer's dtype");
    const auto [rows, d] = matrix_shape(x, "x");
    if (d != spec_.input.size())
      throw py::value_error("x has " + std::to_string(d) + " features, the network's input has " +
                            std::to_string(spec_.input.size()));
    std::vector<py::array_t<T, py::array::c_style>> keep;
    NetworkView<T> net = sequential_view<T>(spec_, params, keep);
    NormStatistics<T> norm;
    auto running = prepare_norms(spec_, buffers, training, net, norm);
    LossTargets targets;
    targets.kind = loss_kind(loss);
    targets.n_outputs = n_outputs;
    py::array_t<std::int64_t, py::array::c_style> labels;
    py::array_t<double, py::array::c_style> values;
    if (targets.kind == LossKind::cross_entropy) {
      labels = target_values.cast<py::array_t<std::int64_t, py::array::c_style>>();
      if (labels.ndim() != 1 || labels.shape(0) != rows) throw py::value_error("targets (labels) need one entry per row of x");
      targets.labels = labels.data();
    } else {
      values = target_values.cast<py::array_t<double, py::array::c_style>>();
      if (values.ndim() != 2 || values.shape(0) != rows || values.shape(1) != n_outputs)
        throw py::value_error("targets (values) must have shape (rows of x, n_outputs)");
      targets.values = values.data();
    }
    const T* data = static_cast<const T*>(x.data());
    const ParamGradients* result = nullptr;
    std::vector<BatchStats> stats;
    {
      // Safe without the GIL: the engine reads x, the parameters and the targets, all held
      // alive above, and writes only its own buffers, which the mutex keeps to one call at a time.
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      result = &engine.gradients(net, data, rows, targets, training);
      if (training) stats = engine.batch_statistics();
    }
    if (training) update_running(spec_, stats, running);
    py::list weights, biases;
    for (const ParamEntry& e : spec_.entries) {
      const auto i = static_cast<std::size_t>(e.index);
      if (e.norm) {
        const py::ssize_t channels = spec_.norm_node(i).in.channels;
        weights.append(as_array_or_none(result->gammas[i], {channels}));
        biases.append(as_array_or_none(result->betas[i], {channels}));
        continue;
      }
      const DenseLayer& layer = spec_.params[i];
      weights.append(as_array_or_none(result->weights[i], {layer.fan_in, layer.fan_out}));
      biases.append(as_array_or_none(result->biases[i], {layer.fan_out}));
    }
    return py::make_tuple(result->loss, weights, biases);
  }

  SequentialSpec spec_;
  std::mutex mutex_;
  std::optional<SequentialBackprop<float>> f32_;
  std::optional<SequentialBackprop<double>> f64_;
};

void bind_learning(py::module_& m) {
  py::class_<SequentialTrainer>(m, "SequentialTrainer",
                                "Loss and gradients w.r.t. the trainable stored parameters of one sequential network")
      .def(py::init<const SequentialSpec&, const std::vector<bool>&, const std::vector<bool>&, int, const std::string&>(),
           py::arg("spec"), py::arg("train_weights"), py::arg("train_biases"), py::arg("n_threads"), py::arg("dtype"))
      .def("gradients", &SequentialTrainer::gradients, py::arg("x"), py::arg("params"), py::arg("loss"),
           py::arg("n_outputs"), py::arg("targets"), py::arg("buffers") = py::none(), py::arg("training") = true,
           "(mean loss, [d loss / d W (fan_in, fan_out) or None per parametrised layer], [d loss / d b or None per\n"
           "parametrised layer]) over the rows of x, in float64; targets are int64 labels (cross_entropy) or\n"
           "(rows, n_outputs) float64 values (squared); params are the current stored (W, b) of every\n"
           "parametrised layer in network order, in the trainer's dtype, a batch normalisation's (gamma, beta)\n"
           "(whose gradients take its place in the weight and bias lists). With training=True batch\n"
           "normalisations normalise by the statistics of the rows of x, the gradients go through those\n"
           "statistics, and the running statistics in buffers (one (running_mean, running_var) float64 pair per\n"
           "batch normalisation, or None) are updated in place as torch does; with training=False buffers are\n"
           "needed and normalise.");
}

}  // namespace nnpk::bind
