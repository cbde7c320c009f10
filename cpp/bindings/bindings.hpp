// Shared pieces of the binding files.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "nnpk/kernels/monte_carlo.hpp"
#include "nnpk/network/activations.hpp"
#include "nnpk/kernels/tangent.hpp"
#include "nnpk/network/batch_norm.hpp"
#include "nnpk/network/jvp.hpp"
#include "nnpk/network/layers.hpp"
#include "nnpk/parallel.hpp"

namespace nnpk::bind {

namespace py = pybind11;

void bind_network(py::module_& m);
void bind_monte_carlo(py::module_& m);
void bind_tangent(py::module_& m);
void bind_analytic(py::module_& m);
void bind_learning(py::module_& m);

// A poll for the engine: checks for Ctrl-C and reports progress to `progress`
// (a Python callable taking the number of networks done, or None). A Python
// error raised there is kept in `pending` and the engine is asked to stop.
inline std::function<bool(std::uint64_t)> make_poll(py::object progress,
                                                    std::optional<py::error_already_set>& pending) {
  return [progress, &pending](std::uint64_t done) -> bool {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) {
      pending.emplace();
      return true;
    }
    if (!progress.is_none()) {
      try {
        progress(done);
      } catch (py::error_already_set& e) {
        pending.emplace(std::move(e));
        return true;
      }
    }
    return false;
  };
}

// An activation from its settings, checked (the Python layer has named the layer already):
// degree for monomial and rectified_monomial, Hermite coefficients a_0..a_d for polynomial.
inline Activation make_activation(ActivationKind kind, double slope, double shift, double scale, int degree,
                                  double gamma, const std::vector<double>& coefficients) {
  Activation act{kind, slope, shift, scale};
  act.gamma = gamma;
  if (!(gamma > 0) || !std::isfinite(gamma)) throw py::value_error("gamma must be finite and > 0");
  if (kind == ActivationKind::elementwise) {
    // The table travels as coefficients = (lo, hi, values..., derivatives...).
    if (coefficients.size() < 6 || coefficients.size() % 2 != 0)
      throw py::value_error("elementwise: coefficients must be (lo, hi, n values, n derivatives), n >= 2");
    const std::size_t n = (coefficients.size() - 2) / 2;
    for (double v : coefficients)
      if (!std::isfinite(v)) throw py::value_error("elementwise: the table must be finite");
    if (!(coefficients[1] > coefficients[0])) throw py::value_error("elementwise: the table needs lo < hi");
    act.table = std::make_shared<const ActivationTable>(
        coefficients[0], coefficients[1], std::vector<double>(coefficients.begin() + 2, coefficients.begin() + 2 + n),
        std::vector<double>(coefficients.begin() + 2 + n, coefficients.end()));
    act.degree = 1;
    return act;
  }
  if (coefficients.size() > act.coefficients.size())
    throw py::value_error("polynomial: at most " + std::to_string(kMaxActivationDegree + 1) +
                          " Hermite coefficients (degree " + std::to_string(kMaxActivationDegree) + "), got " +
                          std::to_string(coefficients.size()));
  if (kind == ActivationKind::polynomial) {
    if (coefficients.empty()) throw py::value_error("polynomial needs at least one Hermite coefficient");
    std::copy(coefficients.begin(), coefficients.end(), act.coefficients.begin());
    act.degree = static_cast<int>(coefficients.size()) - 1;
  } else {
    if (degree < 1 || degree > kMaxActivationDegree)
      throw py::value_error("degree must be in [1, " + std::to_string(kMaxActivationDegree) + "], got " +
                            std::to_string(degree));
    act.degree = degree;
  }
  return act;
}

// Checks a C-contiguous 2-D array and returns its shape.
inline std::pair<std::int64_t, std::int64_t> matrix_shape(const py::array& a, const char* name) {
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D");
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
  return {a.shape(0), a.shape(1)};
}

// x1 and optional x2 (null data when None), checked against each other and the input width.
struct Points {
  const void* x1 = nullptr;
  const void* x2 = nullptr;
  std::int64_t n1 = 0, n2 = 0;
};

inline Points check_points(const py::array& x1, const py::object& x2, std::int64_t input_dim) {
  Points p;
  std::int64_t d;
  std::tie(p.n1, d) = matrix_shape(x1, "x1");
  if (d != input_dim) throw py::value_error("x1 has a different feature count from the architecture");
  p.x1 = x1.data();
  p.n2 = p.n1;
  if (!x2.is_none()) {
    const py::array x2a = x2.cast<py::array>();
    const auto shape2 = matrix_shape(x2a, "x2");
    if (!x2a.dtype().is(x1.dtype())) throw py::type_error("x2 must have the dtype of x1");
    if (shape2.second != d) throw py::value_error("x2 and x1 have different feature counts");
    p.n2 = shape2.first;
    p.x2 = x2a.data();
  }
  return p;
}

// One network's stored parameters from a list of (W, b) pairs, one per parametrised layer
// ((fan_in, fan_out) W; b None where the layer has no bias), converted to T where needed;
// `keep` holds the arrays the view points into.
// params[i] = (W, b) of `layer` added to net.
template <class T>
void add_layer_view(const DenseLayer& layer, const py::handle& pair, std::size_t i, NetworkView<T>& net,
                    std::vector<py::array_t<T, py::array::c_style>>& keep) {
  const py::tuple wb = pair.cast<py::tuple>();
  const auto W = wb[0].cast<py::array_t<T, py::array::c_style>>();
  if (W.ndim() != 2 || W.shape(0) != layer.fan_in || W.shape(1) != layer.fan_out)
    throw py::value_error("params[" + std::to_string(i) + "] W has the wrong shape");
  keep.push_back(W);
  net.weights.push_back(W.data());
  if (layer.has_bias) {
    const auto b = wb[1].cast<py::array_t<T, py::array::c_style>>();
    if (b.ndim() != 1 || b.shape(0) != layer.fan_out)
      throw py::value_error("params[" + std::to_string(i) + "] b has the wrong shape");
    keep.push_back(b);
    net.biases.push_back(b.data());
  } else {
    net.biases.push_back(nullptr);
  }
}

template <class T>
NetworkView<T> network_view(const std::vector<DenseLayer>& layers, const py::list& params,
                            std::vector<py::array_t<T, py::array::c_style>>& keep) {
  if (params.size() != layers.size()) throw py::value_error("params needs one (W, b) per layer");
  NetworkView<T> net;
  for (std::size_t l = 0; l < layers.size(); ++l) add_layer_view(layers[l], params[l], l, net, keep);
  return net;
}

// A sequential network's parameters in sample_params' layout: one pair per parametrised layer in
// network order, (W, b) of a dense or convolutional layer and (gamma, beta) of a batch
// normalisation (each of shape (channels,)).
template <class T>
NetworkView<T> sequential_view(const SequentialSpec& spec, const py::list& params,
                               std::vector<py::array_t<T, py::array::c_style>>& keep) {
  if (params.size() != spec.entries.size())
    throw py::value_error("params needs one pair per parametrised layer (" + std::to_string(spec.entries.size()) +
                          "), got " + std::to_string(params.size()));
  NetworkView<T> net;
  for (std::size_t i = 0; i < spec.entries.size(); ++i) {
    const ParamEntry& e = spec.entries[i];
    if (!e.norm) {
      add_layer_view(spec.params[static_cast<std::size_t>(e.index)], params[i], i, net, keep);
      continue;
    }
    const py::tuple pair = params[i].cast<py::tuple>();
    const std::int64_t channels = spec.norm_node(static_cast<std::size_t>(e.index)).in.channels;
    BatchNormView<T> bn;
    for (int j = 0; j < 2; ++j) {
      const auto a = pair[static_cast<std::size_t>(j)].cast<py::array_t<T, py::array::c_style>>();
      if (a.ndim() != 1 || a.shape(0) != channels)
        throw py::value_error("params[" + std::to_string(i) + "] " + (j == 0 ? "gamma" : "beta") +
                              " must have shape (" + std::to_string(channels) + ",)");
      keep.push_back(a);
      (j == 0 ? bn.gamma : bn.beta) = a.data();
    }
    net.norms.push_back(bn);
  }
  return net;
}

// A linearisation's direction theta - theta_0 as the engine reads it: per parametrised layer a
// (dW or None, db or None) pair (a batch normalisation's (d gamma, d beta)) of writable C-contiguous
// arrays of T, which `direction` holds.
template <class T>
Direction<T> direction_view(const SequentialSpec& spec, const py::list& direction) {
  Direction<T> d;
  d.weights.assign(spec.params.size(), nullptr);
  d.biases.assign(spec.params.size(), nullptr);
  d.norms.assign(spec.norms.size(), BatchNormView<T>{});
  if (direction.size() != spec.entries.size())
    throw py::value_error("direction needs one pair per parametrised layer (" + std::to_string(spec.entries.size()) +
                          "), got " + std::to_string(direction.size()));
  for (std::size_t l = 0; l < spec.entries.size(); ++l) {
    const ParamEntry& e = spec.entries[l];
    const auto index = static_cast<std::size_t>(e.index);
    const py::tuple pair = direction[l].cast<py::tuple>();
    if (pair.size() != 2) throw py::value_error("direction[" + std::to_string(l) + "] must be a pair");
    for (std::size_t j = 0; j < 2; ++j) {
      if (pair[j].is_none()) continue;
      std::int64_t size;
      if (e.norm) {
        size = spec.norm_node(index).in.channels;
      } else {
        const DenseLayer& layer = spec.params[index];
        size = j == 0 ? layer.fan_in * layer.fan_out : layer.fan_out;
      }
      auto a = py::reinterpret_borrow<py::array>(pair[j]);
      if (!py::isinstance<py::array_t<T>>(a) || a.size() != size || !(a.flags() & py::array::c_style) || !a.writeable())
        throw py::value_error("direction[" + std::to_string(l) + "][" + std::to_string(j) + "] must be a writable " +
                              "C-contiguous array of the engine's dtype with " + std::to_string(size) + " values");
      const T* ptr = static_cast<const T*>(a.data());
      if (e.norm) {
        (j == 0 ? d.norms[index].gamma : d.norms[index].beta) = ptr;
      } else {
        (j == 0 ? d.weights[index] : d.biases[index]) = ptr;
      }
    }
  }
  return d;
}

// The running statistics of a sequential network's batch normalisations: one (running_mean,
// running_var) pair of C-contiguous float64 (channels,) arrays per normalisation (writeable ones
// when they are to be updated in place).
inline std::vector<std::pair<py::array_t<double>, py::array_t<double>>> norm_buffers(const SequentialSpec& spec,
                                                                                     const py::object& buffers,
                                                                                     bool writeable) {
  const py::list list = buffers.cast<py::list>();
  if (list.size() != spec.norms.size())
    throw py::value_error("buffers needs one (running_mean, running_var) per batch normalisation (" +
                          std::to_string(spec.norms.size()) + "), got " + std::to_string(list.size()));
  std::vector<std::pair<py::array_t<double>, py::array_t<double>>> out;
  for (std::size_t b = 0; b < list.size(); ++b) {
    const py::tuple pair = list[b].cast<py::tuple>();
    if (pair.size() != 2) throw py::value_error("buffers[" + std::to_string(b) + "] must be a (mean, var) pair");
    const auto channels = static_cast<py::ssize_t>(spec.norm_node(b).in.channels);
    std::array<py::array_t<double>, 2> arrays;
    for (std::size_t j = 0; j < 2; ++j) {
      const std::string what = "buffers[" + std::to_string(b) + "] " + (j == 0 ? "running_mean" : "running_var");
      if (!py::isinstance<py::array_t<double, py::array::c_style>>(pair[j]))
        throw py::value_error(what + " must be a C-contiguous float64 array");
      auto a = py::reinterpret_borrow<py::array_t<double>>(pair[j]);
      if (a.ndim() != 1 || a.shape(0) != channels)
        throw py::value_error(what + " must have shape (" + std::to_string(channels) + ",)");
      if (writeable && !a.writeable()) throw py::value_error(what + " must be writeable (it is updated in place)");
      arrays[j] = std::move(a);
    }
    out.emplace_back(std::move(arrays[0]), std::move(arrays[1]));
  }
  return out;
}

// Batch normalisation in a sequential forward pass: out of training, net's statistics set (in
// `norm`) from the running ones of `buffers`, which are needed; in training, `buffers` (None or
// the running statistics, to be updated after the pass) checked.
template <class T>
std::vector<std::pair<py::array_t<double>, py::array_t<double>>> prepare_norms(const SequentialSpec& spec,
                                                                               const py::object& buffers,
                                                                               bool training, NetworkView<T>& net,
                                                                               NormStatistics<T>& norm) {
  if (spec.norms.empty()) return {};
  if (buffers.is_none()) {
    if (!training)
      throw py::value_error("buffers (the running statistics of the batch normalisations) are needed out of training");
    return {};
  }
  auto out = norm_buffers(spec, buffers, training);
  if (!training) {
    norm.attach(spec, net);
    for (std::size_t b = 0; b < out.size(); ++b) norm.set(spec, b, out[b].first.data(), out[b].second.data());
  }
  return out;
}

// Updates running statistics in place from a training pass's batch statistics (none out of
// training, or without batch normalisation).
inline void update_running(const SequentialSpec& spec, const std::vector<BatchStats>& stats,
                           std::vector<std::pair<py::array_t<double>, py::array_t<double>>>& buffers) {
  for (std::size_t b = 0; b < std::min(buffers.size(), stats.size()); ++b)
    stats[b].update_running(spec.norm_node(b).momentum, buffers[b].first.mutable_data(),
                            buffers[b].second.mutable_data());
}

// The arrays of `initial` themselves, continued in place: each a writeable C-contiguous
// float64 array of `shapes[k]` (checked, so that nothing is copied or cast on the way).
inline std::vector<py::array_t<double>> in_place_outputs(const std::vector<std::vector<py::ssize_t>>& shapes,
                                                         const py::object& initial) {
  if (initial.is_none()) throw py::value_error("in_place needs the partial sums in initial");
  const py::list starts = initial.cast<py::list>();
  if (starts.size() != shapes.size()) throw py::value_error("initial needs one partial sum per output");
  std::vector<py::array_t<double>> outs;
  for (std::size_t k = 0; k < shapes.size(); ++k) {
    const py::handle h = starts[k];
    if (!py::isinstance<py::array_t<double, py::array::c_style>>(h))
      throw py::value_error("in-place partial sums must be C-contiguous float64 arrays");
    auto a = py::reinterpret_borrow<py::array_t<double>>(h);
    if (!a.writeable()) throw py::value_error("in-place partial sums must be writeable");
    if (std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()) != shapes[k])
      throw py::value_error("initial partial sums must have the output's shape");
    outs.push_back(std::move(a));
  }
  return outs;
}

// Float64 outputs of one shape, zero-filled or copied from `initial` (a list of arrays or
// None), or with in_place the arrays of `initial` themselves. The fill (the first touch of what
// may be gigabytes) runs on n_threads threads without the GIL.
inline std::vector<py::array_t<double>> make_outputs(std::size_t count, const std::vector<py::ssize_t>& shape,
                                                     const py::object& initial, bool in_place = false,
                                                     int n_threads = 1) {
  if (in_place) return in_place_outputs(std::vector<std::vector<py::ssize_t>>(count, shape), initial);
  std::vector<py::array_t<double, py::array::c_style>> starts;
  if (!initial.is_none()) {
    for (const py::handle& h : initial.cast<py::list>()) starts.push_back(h.cast<py::array_t<double, py::array::c_style>>());
    if (starts.size() != count) throw py::value_error("initial needs one partial sum per output");
    for (const auto& s : starts)
      if (std::vector<py::ssize_t>(s.shape(), s.shape() + s.ndim()) != shape)
        throw py::value_error("initial partial sums must have the output's shape");
  }
  std::vector<py::array_t<double>> outs;
  for (std::size_t k = 0; k < count; ++k) {
    outs.emplace_back(shape);
    double* p = outs.back().mutable_data();
    const std::int64_t size = outs.back().size();
    const double* from = starts.empty() ? nullptr : starts[k].data();
    constexpr std::int64_t kChunk = 1 << 18;  // 2 MiB
    py::gil_scoped_release release;
    parallel_for((size + kChunk - 1) / kChunk, n_threads, [&](std::int64_t c, int) {
      const std::int64_t lo = c * kChunk, hi = std::min(size, lo + kChunk);
      if (from) {
        std::copy(from + lo, from + hi, p + lo);
      } else {
        std::fill(p + lo, p + hi, 0.0);
      }
    });
  }
  return outs;
}

inline std::vector<double*> data_pointers(std::vector<py::array_t<double>>& outs) {
  std::vector<double*> ptrs;
  for (auto& o : outs) ptrs.push_back(o.mutable_data());
  return ptrs;
}

inline py::list as_list(const std::vector<py::array_t<double>>& outs) {
  py::list result;
  for (const auto& o : outs) result.append(o);
  return result;
}

// Runs engine(poll) without the GIL. Ctrl-C or an error raised by `progress`
// stops the engine and is re-raised here.
template <class Engine>
void run_without_gil(const py::object& progress, Engine&& engine) {
  std::optional<py::error_already_set> pending;
  auto poll = make_poll(progress, pending);
  try {
    // Safe without the GIL: engines read their inputs and write only the output
    // arrays made by the caller; Python is entered only through `poll`, which
    // takes the GIL.
    py::gil_scoped_release release;
    engine(poll);
  } catch (const Cancelled&) {
    if (pending) throw std::move(*pending);
    throw;
  }
}

// A tangent-kernel request checked against the parametrised layers.
inline TangentRequest make_request(const std::vector<DenseLayer>& layers, const std::vector<bool>& weights,
                                   const std::vector<bool>& biases, bool nngp, bool per_layer, bool per_logit) {
  if (weights.size() != layers.size() || biases.size() != layers.size())
    throw py::value_error("weights and biases need one flag per layer");
  TangentRequest req;
  req.nngp = nngp;
  req.weights.assign(weights.begin(), weights.end());
  req.biases.assign(biases.begin(), biases.end());
  req.per_layer = per_layer;
  req.per_logit = per_logit;
  return req;
}

// Options of a Monte Carlo run over networks [start, stop) of the kernels of `layers`.
inline MonteCarloOptions monte_carlo_options(std::uint64_t seed, std::uint64_t start, std::uint64_t stop,
                                             const std::vector<std::int64_t>& layers, int n_threads,
                                             std::int64_t tile_rows, std::int64_t gram_tile, std::int64_t panel_cols) {
  if (stop < start) throw py::value_error("stop must not be below start");
  if (n_threads < 1) throw py::value_error("n_threads must be positive");
  MonteCarloOptions opt;
  opt.seed = seed;
  opt.start = start;
  opt.stop = stop;
  opt.layers = layers;
  opt.n_threads = n_threads;
  opt.tile_rows = tile_rows;
  opt.gram_tile = gram_tile;
  opt.panel_cols = panel_cols;
  return opt;
}

inline TangentOptions make_tangent_options(int n_threads, std::int64_t tile_rows, std::int64_t gram_tile,
                                           std::int64_t panel_cols) {
  if (n_threads < 1) throw py::value_error("n_threads must be positive");
  TangentOptions opt;
  opt.n_threads = n_threads;
  opt.tile_rows = tile_rows;
  opt.gram_tile = gram_tile;
  opt.panel_cols = panel_cols;
  return opt;
}

// Tangent outputs: [nngp (n1, n2)] then the tangent sums ((n1, n2), or (n1, n2, C, C) per logit),
// continued from `initial` when given, filled by engine(x1, n1, x2, n2, poll, sums) without the GIL.
template <class T, class Spec, class Engine>
py::list tangent_outputs(const py::array& x1, const py::object& x2, const Spec& spec, const TangentRequest& req,
                         const py::object& progress, const py::object& initial, Engine&& engine,
                         bool in_place = false) {
  const Points p = check_points(x1, x2, spec.input_dim());
  const std::int64_t n_logits = spec.n_outputs();
  std::vector<py::array_t<double>> outs;
  const std::vector<py::ssize_t> shape = req.per_logit ? std::vector<py::ssize_t>{p.n1, p.n2, n_logits, n_logits}
                                                       : std::vector<py::ssize_t>{p.n1, p.n2};
  const std::size_t n_tangent = req.n_tangent_outputs(spec.param_layers());
  if (in_place) {
    std::vector<std::vector<py::ssize_t>> shapes;
    if (req.nngp) shapes.push_back({p.n1, p.n2});
    shapes.insert(shapes.end(), n_tangent, shape);
    outs = in_place_outputs(shapes, initial);
  } else {
    std::vector<py::array_t<double>> tangent = make_outputs(n_tangent, shape, py::none());
    if (req.nngp) outs = make_outputs(1, {p.n1, p.n2}, py::none());
    for (auto& t : tangent) outs.push_back(std::move(t));
  }
  if (!in_place && !initial.is_none()) {
    const py::list starts = initial.cast<py::list>();
    if (starts.size() != outs.size()) throw py::value_error("initial needs one partial sum per output");
    for (std::size_t k = 0; k < outs.size(); ++k) {
      const auto s = starts[k].cast<py::array_t<double, py::array::c_style>>();
      if (s.size() != outs[k].size()) throw py::value_error("initial partial sums must have the output's shape");
      std::copy(s.data(), s.data() + s.size(), outs[k].mutable_data());
    }
  }
  const std::vector<double*> sums = data_pointers(outs);
  run_without_gil(progress, [&](auto poll) {
    engine(static_cast<const T*>(p.x1), p.n1, static_cast<const T*>(p.x2), p.n2, poll, sums);
  });
  return as_list(outs);
}

// One network's tangent kernels with given parameters, in x1's dtype T.
template <class T, class Spec>
py::list empirical_typed(const py::array& x1, const py::object& x2, const Spec& spec, const py::list& params,
                         const TangentRequest& req, const TangentOptions& opt) {
  std::vector<py::array_t<T, py::array::c_style>> keep;
  const NetworkView<T> net = network_view<T>(spec.param_layers(), params, keep);
  return tangent_outputs<T>(x1, x2, spec, req, py::none(), py::none(),
                            [&](const T* a, std::int64_t n1, const T* b, std::int64_t n2, auto poll, const auto& sums) {
                              TangentOptions o = opt;
                              o.poll = poll;
                              tangent_empirical<T>(spec, net, a, n1, b, n2, req, o, sums);
                            });
}

// Registers `sums_name` (sums over networks [start, stop) of the tangent kernels) and
// `empirical_name` (one network with given stored parameters) for the network description
// Spec, whose engines are the overloads of tangent_monte_carlo and tangent_empirical.
template <class Spec>
void def_tangent(py::module_& m, const char* sums_name, const char* sums_doc, const char* empirical_name,
                 const char* empirical_doc) {
  m.def(
      sums_name,
      [](const py::array& x1, const py::object& x2, const Spec& spec, std::uint64_t seed, std::uint64_t start,
         std::uint64_t stop, const std::vector<bool>& weights, const std::vector<bool>& biases, bool nngp,
         bool per_layer, bool per_logit, int n_threads, std::int64_t tile_rows, std::int64_t gram_tile,
         std::int64_t panel_cols, const py::object& progress, const py::object& initial, bool in_place) {
        if (stop < start) throw py::value_error("stop must not be below start");
        const TangentRequest req = make_request(spec.param_layers(), weights, biases, nngp, per_layer, per_logit);
        TangentOptions opt = make_tangent_options(n_threads, tile_rows, gram_tile, panel_cols);
        opt.seed = seed;
        opt.start = start;
        opt.stop = stop;
        auto run = [&](auto tag) {
          using T = decltype(tag);
          return tangent_outputs<T>(x1, x2, spec, req, progress, initial,
                                    [&](const T* a, std::int64_t n1, const T* b, std::int64_t n2, auto poll,
                                        const auto& sums) {
                                      TangentOptions o = opt;
                                      o.poll = poll;
                                      tangent_monte_carlo<T>(spec, a, n1, b, n2, req, o, sums);
                                    },
                                    in_place);
        };
        if (x1.dtype().is(py::dtype::of<float>())) return run(float{});
        if (x1.dtype().is(py::dtype::of<double>())) return run(double{});
        throw py::type_error("x1 must be float32 or float64");
      },
      py::arg("x1"), py::arg("x2"), py::arg("spec"), py::arg("seed"), py::arg("start"), py::arg("stop"),
      py::arg("weights"), py::arg("biases"), py::arg("nngp"), py::arg("per_layer"), py::arg("per_logit"),
      py::arg("n_threads"), py::arg("tile_rows"), py::arg("gram_tile"), py::arg("panel_cols"), py::arg("progress"),
      py::arg("initial"), py::arg("in_place") = false, sums_doc);

  m.def(
      empirical_name,
      [](const py::array& x1, const py::object& x2, const Spec& spec, const py::list& params,
         const std::vector<bool>& weights, const std::vector<bool>& biases, bool nngp, bool per_layer,
         bool per_logit, int n_threads, std::int64_t tile_rows, std::int64_t gram_tile) {
        const TangentRequest req = make_request(spec.param_layers(), weights, biases, nngp, per_layer, per_logit);
        const TangentOptions opt = make_tangent_options(n_threads, tile_rows, gram_tile, 128);
        if (x1.dtype().is(py::dtype::of<float>())) return empirical_typed<float>(x1, x2, spec, params, req, opt);
        if (x1.dtype().is(py::dtype::of<double>())) return empirical_typed<double>(x1, x2, spec, params, req, opt);
        throw py::type_error("x1 must be float32 or float64");
      },
      py::arg("x1"), py::arg("x2"), py::arg("spec"), py::arg("params"), py::arg("weights"), py::arg("biases"),
      py::arg("nngp"), py::arg("per_layer"), py::arg("per_logit"), py::arg("n_threads"), py::arg("tile_rows"),
      py::arg("gram_tile"), empirical_doc);
}

}  // namespace nnpk::bind
