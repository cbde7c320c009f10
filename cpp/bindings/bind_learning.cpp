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
// construction).
class SequentialTrainer {
 public:
  SequentialTrainer(const SequentialSpec& spec, const std::vector<bool>& train_weights,
                    const std::vector<bool>& train_biases, int n_threads, const std::string& dtype)
      : spec_(spec) {
    if (n_threads < 1) throw py::value_error("n_threads must be positive");
    const std::size_t n = spec.params.size();
    if (train_weights.size() != n)
      throw py::value_error("train_weights needs one flag per parametrised layer (" + std::to_string(n) + "), got " +
                            std::to_string(train_weights.size()));
    if (train_biases.size() != n)
      throw py::value_error("train_biases needs one flag per parametrised layer (" + std::to_string(n) + "), got " +
                            std::to_string(train_biases.size()));
    for (std::size_t l = 0; l < n; ++l)
      if (train_biases[l] && !spec.params[l].has_bias)
        throw py::value_error("train_biases[" + std::to_string(l) + "]: that layer has no bias");
    trainable_.weights.assign(train_weights.begin(), train_weights.end());
    trainable_.biases.assign(train_biases.begin(), train_biases.end());
    if (dtype == "float32") {
      f32_.emplace(spec, trainable_, n_threads);
    } else if (dtype == "float64") {
      f64_.emplace(spec, trainable_, n_threads);
    } else {
      throw py::value_error("dtype must be 'float32' or 'float64'");
    }
  }

  py::tuple gradients(const py::array& x, const py::list& params, const std::string& loss, std::int64_t n_outputs,
                      const py::object& targets) {
    if (f32_) return gradients_typed<float>(*f32_, x, params, loss, n_outputs, targets);
    return gradients_typed<double>(*f64_, x, params, loss, n_outputs, targets);
  }

  py::tuple step(const py::array& x, const py::list& params, const std::string& loss, std::int64_t n_outputs,
                 const py::object& targets, const py::list& values, const py::list& firsts, const py::list& seconds,
                 const std::string& optimizer, double lr, double momentum, double weight_decay, std::int64_t t) {
    OptimizerSettings s;
    if (optimizer == "sgd") {
      s.kind = OptimizerKind::sgd;
    } else if (optimizer == "adam") {
      s.kind = OptimizerKind::adam;
    } else {
      throw py::value_error("optimizer must be 'adam' or 'sgd'");
    }
    s.lr = lr;
    s.momentum = momentum;
    s.weight_decay = weight_decay;
    if (t < 1) throw py::value_error("the step count t starts at 1");
    if (f32_) return step_typed<float>(*f32_, x, params, loss, n_outputs, targets, values, firsts, seconds, s, t);
    return step_typed<double>(*f64_, x, params, loss, n_outputs, targets, values, firsts, seconds, s, t);
  }

 private:
  template <class T>
  py::tuple gradients_typed(SequentialBackprop<T>& engine, const py::array& x, const py::list& params,
                            const std::string& loss, std::int64_t n_outputs, const py::object& target_values) {
    const std::int64_t rows = checked_rows<T>(x);
    std::vector<py::array_t<T, py::array::c_style>> keep;
    const NetworkView<T> net = network_view<T>(spec_.params, params, keep);
    py::array_t<std::int64_t, py::array::c_style> labels;
    py::array_t<double, py::array::c_style> values;
    const LossTargets targets = loss_targets(loss, n_outputs, target_values, rows, labels, values);
    const T* data = static_cast<const T*>(x.data());
    const ParamGradients* result = nullptr;
    {
      // Safe without the GIL: the engine reads x, the parameters and the targets, all held
      // alive above, and writes only its own buffers, which the mutex keeps to one call at a time.
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      result = &engine.gradients(net, data, rows, targets);
    }
    py::list weights, biases;
    for (std::size_t l = 0; l < spec_.params.size(); ++l) {
      const DenseLayer& layer = spec_.params[l];
      weights.append(as_array_or_none(result->weights[l], {layer.fan_in, layer.fan_out}));
      biases.append(as_array_or_none(result->biases[l], {layer.fan_out}));
    }
    return py::make_tuple(result->loss, weights, biases);
  }

  // The minibatch's targets as the engine reads them; `labels` and `values` keep the arrays alive.
  LossTargets loss_targets(const std::string& loss, std::int64_t n_outputs, const py::object& target_values,
                           std::int64_t rows, py::array_t<std::int64_t, py::array::c_style>& labels,
                           py::array_t<double, py::array::c_style>& values) const {
    LossTargets targets;
    targets.kind = loss_kind(loss);
    targets.n_outputs = n_outputs;
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
    return targets;
  }

  template <class T>
  std::int64_t checked_rows(const py::array& x) const {
    if (!x.dtype().is(py::dtype::of<T>())) throw py::type_error("x must have the trainer's dtype");
    const auto [rows, d] = matrix_shape(x, "x");
    if (d != spec_.input.size())
      throw py::value_error("x has " + std::to_string(d) + " features, the network's input has " +
                            std::to_string(spec_.input.size()));
    return rows;
  }

  // A writable C-contiguous float64 array of `size` values (no conversion: it is updated in place).
  static double* writable(const py::handle& h, std::int64_t size, const std::string& name) {
    auto a = py::reinterpret_borrow<py::array>(h);
    if (!py::isinstance<py::array_t<double>>(h) || !(a.flags() & py::array::c_style) || !a.writeable() ||
        a.size() != size)
      throw py::value_error(name + " must be a writable C-contiguous float64 array of " + std::to_string(size) +
                            " values");
    return static_cast<double*>(a.mutable_data());
  }

  template <class T>
  py::tuple step_typed(SequentialBackprop<T>& engine, const py::array& x, const py::list& params,
                       const std::string& loss, std::int64_t n_outputs, const py::object& target_values,
                       const py::list& values, const py::list& firsts, const py::list& seconds,
                       const OptimizerSettings& s, std::int64_t t) {
    const std::int64_t rows = checked_rows<T>(x);
    std::vector<py::array_t<T, py::array::c_style>> keep;
    const NetworkView<T> net = network_view<T>(spec_.params, params, keep);
    py::array_t<std::int64_t, py::array::c_style> labels;
    py::array_t<double, py::array::c_style> target_array;
    const LossTargets targets = loss_targets(loss, n_outputs, target_values, rows, labels, target_array);
    // The trainable arrays in order: per layer its weight, then its bias, where trained.
    std::vector<OptimizedArray<T>> arrays;
    for (std::size_t l = 0; l < spec_.params.size(); ++l) {
      const DenseLayer& layer = spec_.params[l];
      for (const bool bias : {false, true}) {
        if (!(bias ? trainable_.biases[l] : trainable_.weights[l])) continue;
        OptimizedArray<T> a;
        a.layer = l;
        a.bias = bias;
        a.size = bias ? layer.fan_out : layer.fan_in * layer.fan_out;
        const std::size_t i = arrays.size();
        const std::string name = "values[" + std::to_string(i) + "]";
        if (i >= values.size()) throw py::value_error("values needs one array per trainable parameter");
        a.value = writable(values[i], a.size, name);
        const bool momentum = s.kind == OptimizerKind::adam || s.momentum != 0.0;
        if (momentum) {
          if (i >= firsts.size()) throw py::value_error("firsts needs one array per trainable parameter");
          a.first = writable(firsts[i], a.size, "firsts[" + std::to_string(i) + "]");
        }
        if (s.kind == OptimizerKind::adam) {
          if (i >= seconds.size()) throw py::value_error("seconds needs one array per trainable parameter");
          a.second = writable(seconds[i], a.size, "seconds[" + std::to_string(i) + "]");
        }
        const T* engine_copy = bias ? net.biases[l] : net.weights[l];
        if (static_cast<const void*>(engine_copy) != static_cast<const void*>(a.value)) {
          // The engine reads a copy in its own precision, refreshed in place: the caller's array itself.
          const py::handle given = params[l].cast<py::tuple>()[bias ? 1 : 0];
          if (!py::isinstance<py::array_t<T>>(given) ||
              static_cast<const void*>(py::reinterpret_borrow<py::array>(given).data()) != engine_copy ||
              !py::reinterpret_borrow<py::array>(given).writeable())
            throw py::value_error("params[" + std::to_string(l) + "] " + (bias ? "b" : "W") +
                                  " is trained: it must be a writable C-contiguous array of the trainer's dtype");
          a.copy = const_cast<T*>(engine_copy);
        }
        arrays.push_back(a);
      }
    }
    if (arrays.size() != values.size()) throw py::value_error("values needs one array per trainable parameter");
    const T* data = static_cast<const T*>(x.data());
    std::pair<double, double> result;
    {
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      result = engine.step(net, data, rows, targets, s, t, arrays);
    }
    return py::make_tuple(result.first, result.second);
  }

  SequentialSpec spec_;
  TrainableParams trainable_;
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
           py::arg("n_outputs"), py::arg("targets"),
           "(mean loss, [d loss / d W (fan_in, fan_out) or None per parametrised layer], [d loss / d b or None per\n"
           "parametrised layer]) over the rows of x, in float64; targets are int64 labels (cross_entropy) or\n"
           "(rows, n_outputs) float64 values (squared); params are the current stored (W, b) of every\n"
           "parametrised layer, in the trainer's dtype")
      .def("step", &SequentialTrainer::step, py::arg("x"), py::arg("params"), py::arg("loss"), py::arg("n_outputs"),
           py::arg("targets"), py::arg("values"), py::arg("firsts"), py::arg("seconds"), py::arg("optimizer"),
           py::arg("lr"), py::arg("momentum"), py::arg("weight_decay"), py::arg("t"),
           "One optimizer step in place on the rows of x; returns (mean loss, fraction of rows whose largest logit is\n"
           "their label, 0 for the squared loss). values: the float64 trainable arrays (per parametrised layer its W\n"
           "(fan_in, fan_out) then its b, where trained); firsts: SGD's momentum buffers or Adam's m (needed with\n"
           "momentum or Adam), seconds: Adam's v, one per value. Where params (in the trainer's dtype) are not the\n"
           "values themselves, the trained ones are refreshed in place from them. t: Adam's step count, from 1");
}

}  // namespace nnpk::bind
