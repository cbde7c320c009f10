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
  if (loss == "logistic") return LossKind::logistic;
  throw py::value_error("loss must be 'cross_entropy', 'squared' or 'logistic'");
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
    trainable_.weights.assign(spec.params.size(), 0);
    trainable_.biases.assign(spec.params.size(), 0);
    trainable_.gammas.assign(spec.norms.size(), 0);
    trainable_.betas.assign(spec.norms.size(), 0);
    for (std::size_t l = 0; l < n; ++l) {
      const ParamEntry& e = spec.entries[l];
      const auto i = static_cast<std::size_t>(e.index);
      if (e.norm) {
        trainable_.gammas[i] = train_weights[l];
        trainable_.betas[i] = train_biases[l];
        continue;
      }
      if (train_biases[l] && !spec.params[i].has_bias)
        throw py::value_error("train_biases[" + std::to_string(l) + "]: that layer has no bias");
      trainable_.weights[i] = train_weights[l];
      trainable_.biases[i] = train_biases[l];
    }
    // Recurrent layers run a chunk's steps one after the other, each step's products split over the
    // threads: larger chunks make larger products and fewer passes over the recurrent weights per
    // step (a network's chunks are fixed, so sums stay bitwise the same for any thread count).
    const std::int64_t chunk = spec.has_recurrent() ? 4 * kRowQuantum : kRowQuantum;
    if (dtype == "float32") {
      f32_.emplace(spec, trainable_, n_threads, chunk);
    } else if (dtype == "float64") {
      f64_.emplace(spec, trainable_, n_threads, chunk);
    } else {
      throw py::value_error("dtype must be 'float32' or 'float64'");
    }
  }

  // Train the linearisation around the calls' params (theta_0) in the direction `direction` (theta -
  // theta_0: per parametrised layer a (dW or None, db or None) pair of writable arrays of the
  // trainer's dtype, which steps refresh), or the network itself with None.
  void linearize(const py::object& direction, bool offset) {
    if (direction.is_none()) {
      direction_ = py::list();
      if (f32_) f32_->linearize(nullptr, offset);
      if (f64_) f64_->linearize(nullptr, offset);
      return;
    }
    direction_ = direction.cast<py::list>();
    if (f32_) f32_->linearize(&direction_view(dir32_), offset);
    if (f64_) f64_->linearize(&direction_view(dir64_), offset);
  }

  py::tuple gradients(const py::array& x, const py::list& params, const std::string& loss, std::int64_t n_outputs,
                      const py::object& targets, const py::object& buffers, bool training, bool accuracy) {
    py::tuple out = gradients_of(x, params, loss, n_outputs, targets, buffers, training);
    if (!accuracy) return out;
    return py::make_tuple(out[0], out[1], out[2], last_accuracy_);
  }

  py::tuple gradients_of(const py::array& x, const py::list& params, const std::string& loss, std::int64_t n_outputs,
                         const py::object& targets, const py::object& buffers, bool training) {
    if (f32_) return gradients_typed<float>(*f32_, x, params, loss, n_outputs, targets, buffers, training);
    return gradients_typed<double>(*f64_, x, params, loss, n_outputs, targets, buffers, training);
  }

  py::tuple step(const py::array& x, const py::list& params, const std::string& loss, std::int64_t n_outputs,
                 const py::object& targets, const py::list& values, const py::list& firsts, const py::list& seconds,
                 const std::string& optimizer, double lr, double momentum, double weight_decay, std::int64_t t,
                 const py::object& buffers, double clip_norm, const py::object& origins) {
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
    if (!(clip_norm >= 0)) throw py::value_error("clip_norm must be >= 0 (0: no clipping)");
    s.clip_norm = clip_norm;
    if (t < 1) throw py::value_error("the step count t starts at 1");
    if (!direction_.empty() && origins.is_none())
      throw py::value_error("a linearisation's step needs origins: theta_0 of every trained array");
    if (f32_)
      return step_typed<float>(*f32_, x, params, loss, n_outputs, targets, values, firsts, seconds, s, t, buffers, origins);
    return step_typed<double>(*f64_, x, params, loss, n_outputs, targets, values, firsts, seconds, s, t, buffers,
                              origins);
  }

 private:
  template <class T>
  py::tuple gradients_typed(SequentialBackprop<T>& engine, const py::array& x, const py::list& params,
                            const std::string& loss, std::int64_t n_outputs, const py::object& target_values,
                            const py::object& buffers, bool training) {
    Call<T> call(*this, x, params, loss, n_outputs, target_values, buffers, training);
    const NetworkView<T>& net = call.net;
    const std::int64_t rows = call.rows;
    const LossTargets& targets = call.targets;
    auto& running = call.running;
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
    last_accuracy_ = result->correct;
    return py::make_tuple(result->loss, weights, biases);
  }

  // One call's inputs as the engine reads them, checked: the rows of x, the parameters (and batch
  // normalisations' statistics: the running ones out of training), the targets; the arrays they
  // point into are held here. Not copyable: the view points into `norm`.
  template <class T>
  struct Call {
    std::int64_t rows = 0;
    std::vector<py::array_t<T, py::array::c_style>> keep;
    NetworkView<T> net;
    NormStatistics<T> norm;
    std::vector<std::pair<py::array_t<double>, py::array_t<double>>> running;
    py::array_t<std::int64_t, py::array::c_style> labels;
    py::array_t<double, py::array::c_style> values;
    LossTargets targets;

    Call(const SequentialTrainer& trainer, const py::array& x, const py::list& params, const std::string& loss,
         std::int64_t n_outputs, const py::object& target_values, const py::object& buffers, bool training) {
      if (!x.dtype().is(py::dtype::of<T>())) throw py::type_error("x must have the trainer's dtype");
      const auto shape = matrix_shape(x, "x");
      rows = shape.first;
      const SequentialSpec& spec = trainer.spec_;
      if (shape.second != spec.input.size())
        throw py::value_error("x has " + std::to_string(shape.second) + " features, the network's input has " +
                              std::to_string(spec.input.size()));
      net = sequential_view<T>(spec, params, keep);
      running = prepare_norms(spec, buffers, training, net, norm);
      targets.kind = loss_kind(loss);
      targets.n_outputs = n_outputs;
      if (targets.kind != LossKind::squared) {
        labels = target_values.cast<py::array_t<std::int64_t, py::array::c_style>>();
        if (labels.ndim() != 1 || labels.shape(0) != rows)
          throw py::value_error("targets (labels) need one entry per row of x");
        targets.labels = labels.data();
      } else {
        values = target_values.cast<py::array_t<double, py::array::c_style>>();
        if (values.ndim() != 2 || values.shape(0) != rows || values.shape(1) != n_outputs)
          throw py::value_error("targets (values) must have shape (rows of x, n_outputs)");
        targets.values = values.data();
      }
    }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;
  };

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
                       const OptimizerSettings& s, std::int64_t t, const py::object& buffers,
                       const py::object& origins) {
    const bool linear = !direction_.empty();
    // A linearisation evaluates batch normalisations by the running statistics in buffers (theta_0's).
    Call<T> call(*this, x, params, loss, n_outputs, target_values, buffers, !linear);
    const NetworkView<T>& net = call.net;
    const std::int64_t rows = call.rows;
    const LossTargets& targets = call.targets;
    auto& running = call.running;
    // The trainable arrays in order: per parametrised layer its weight (a batch normalisation's
    // gamma), then its bias (beta), where trained.
    std::vector<OptimizedArray<T>> arrays;
    for (std::size_t l = 0; l < spec_.entries.size(); ++l) {
      const ParamEntry& e = spec_.entries[l];
      const auto index = static_cast<std::size_t>(e.index);
      for (const int second : {0, 1}) {
        OptimizedArray<T> a;
        a.layer = index;
        const T* engine_copy = nullptr;
        if (e.norm) {
          if (!(second ? trainable_.betas[index] : trainable_.gammas[index])) continue;
          a.part = second ? ParamPart::beta : ParamPart::gamma;
          a.size = spec_.norm_node(index).in.channels;
          engine_copy = second ? net.norms[index].beta : net.norms[index].gamma;
        } else {
          if (!(second ? trainable_.biases[index] : trainable_.weights[index])) continue;
          const DenseLayer& layer = spec_.params[index];
          a.part = second ? ParamPart::bias : ParamPart::weight;
          a.size = second ? layer.fan_out : layer.fan_in * layer.fan_out;
          engine_copy = second ? net.biases[index] : net.weights[index];
        }
        const std::size_t i = arrays.size();
        if (i >= values.size()) throw py::value_error("values needs one array per trainable parameter");
        a.value = writable(values[i], a.size, "values[" + std::to_string(i) + "]");
        if (s.kind == OptimizerKind::adam || s.momentum != 0.0) {
          if (i >= firsts.size()) throw py::value_error("firsts needs one array per trainable parameter");
          a.first = writable(firsts[i], a.size, "firsts[" + std::to_string(i) + "]");
        }
        if (s.kind == OptimizerKind::adam) {
          if (i >= seconds.size()) throw py::value_error("seconds needs one array per trainable parameter");
          a.second = writable(seconds[i], a.size, "seconds[" + std::to_string(i) + "]");
        }
        if (linear) {
          // The engine's copy is the direction theta - theta_0, refreshed from the value and its origin.
          const py::handle pair = direction_[l];
          const py::handle given = pair.cast<py::tuple>()[static_cast<std::size_t>(second)];
          if (given.is_none() || !py::isinstance<py::array_t<T>>(given))
            throw py::value_error("direction[" + std::to_string(l) + "][" + std::to_string(second) +
                                  "] is trained: it must be an array of the trainer's dtype");
          a.copy = static_cast<T*>(py::reinterpret_borrow<py::array>(given).mutable_data());
          const py::list origin_list = origins.cast<py::list>();
          if (i >= origin_list.size()) throw py::value_error("origins needs one array per trainable parameter");
          a.origin = writable(origin_list[i], a.size, "origins[" + std::to_string(i) + "]");
        } else if (static_cast<const void*>(engine_copy) != static_cast<const void*>(a.value)) {
          // The engine reads a copy in its own precision, refreshed in place: the caller's array itself.
          const py::handle given = params[l].cast<py::tuple>()[static_cast<std::size_t>(second)];
          if (!py::isinstance<py::array_t<T>>(given) ||
              static_cast<const void*>(py::reinterpret_borrow<py::array>(given).data()) != engine_copy ||
              !py::reinterpret_borrow<py::array>(given).writeable())
            throw py::value_error("params[" + std::to_string(l) + "][" + std::to_string(second) +
                                  "] is trained: it must be a writable C-contiguous array of the trainer's dtype");
          a.copy = const_cast<T*>(engine_copy);
        }
        arrays.push_back(a);
      }
    }
    if (arrays.size() != values.size()) throw py::value_error("values needs one array per trainable parameter");
    const T* data = static_cast<const T*>(x.data());
    std::pair<double, double> result;
    std::vector<BatchStats> stats;
    {
      py::gil_scoped_release release;
      const std::lock_guard<std::mutex> lock(mutex_);
      result = engine.step(net, data, rows, targets, s, t, arrays);
      stats = engine.batch_statistics();
    }
    update_running(spec_, stats, running);
    return py::make_tuple(result.first, result.second);
  }

  SequentialSpec spec_;
  TrainableParams trainable_;
  std::mutex mutex_;
  template <class T>
  Direction<T>& direction_view(std::optional<Direction<T>>& view) {
    view = nnpk::bind::direction_view<T>(spec_, direction_);
    return *view;
  }

  double last_accuracy_ = 0.0;  // the fraction of rows right in the last gradients() call
  py::list direction_;
  std::optional<Direction<float>> dir32_;
  std::optional<Direction<double>> dir64_;
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
           py::arg("accuracy") = false,
           "(mean loss, [d loss / d W (fan_in, fan_out) or None per parametrised layer], [d loss / d b or None per\n"
           "parametrised layer]) over the rows of x, in float64; targets are int64 labels (cross_entropy; 0/1 for logistic) or\n"
           "(rows, n_outputs) float64 values (squared); params are the current stored (W, b) of every\n"
           "parametrised layer in network order, in the trainer's dtype, a batch normalisation's (gamma, beta)\n"
           "(whose gradients take its place in the weight and bias lists). With training=True batch\n"
           "normalisations normalise by the statistics of the rows of x, the gradients go through those\n"
           "statistics, and the running statistics in buffers (one (running_mean, running_var) float64 pair per\n"
           "batch normalisation, or None) are updated in place as torch does; with training=False buffers are\n"
           "needed and normalise. With accuracy=True a fourth entry: the fraction of rows whose largest logit is\n"
           "their label (cross-entropy; by sign for the logistic loss; 0 for the squared loss).")
      .def("step", &SequentialTrainer::step, py::arg("x"), py::arg("params"), py::arg("loss"), py::arg("n_outputs"),
           py::arg("targets"), py::arg("values"), py::arg("firsts"), py::arg("seconds"), py::arg("optimizer"),
           py::arg("lr"), py::arg("momentum"), py::arg("weight_decay"), py::arg("t"), py::arg("buffers") = py::none(),
           py::arg("clip_norm") = 0.0, py::arg("origins") = py::none(),
           "One optimizer step in place on the rows of x; returns (mean loss, fraction of rows whose largest\n"
           "logit is their label, 0 for the squared loss). values: the float64 trainable arrays (per\n"
           "parametrised layer its W (fan_in, fan_out) or gamma, then its b or beta, where trained); firsts:\n"
           "SGD's momentum buffers or Adam's m (needed with momentum or Adam), seconds: Adam's v, one per\n"
           "value. Where params (in the trainer's dtype) are not the values themselves, the trained ones are\n"
           "refreshed in place from them. t: Adam's step count, from 1. Batch normalisations normalise by the\n"
           "rows' statistics and update the running ones in buffers in place. clip_norm > 0 scales the\n"
           "gradient (all trained arrays, before weight decay) to that norm where it is larger. A linearisation's\n"
           "steps (see linearize) need origins: theta_0 of each value, float64; its direction is refreshed\n"
           "to value - origin")
      .def("linearize", &SequentialTrainer::linearize, py::arg("direction"), py::arg("offset") = true,
           "Train the linearisation f(x; theta_0) (if offset) + J(x; theta_0) (theta - theta_0) around the calls'\n"
           "params (theta_0): direction holds theta - theta_0, per parametrised layer a (dW or None, db or None)\n"
           "pair of writable arrays of the trainer's dtype (None where zero and untrained). None: the network");
}

}  // namespace nnpk::bind
