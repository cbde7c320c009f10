// Training any sequential network's chosen parameters: the mean loss of a minibatch and its
// gradients with respect to the trainable stored parameters (docs/definitions.rst: under "ntk" a
// layer computes z = forward * (h @ W) + bias * b, so d loss / d W = forward h^T (d loss / d z)
// and d loss / d b = bias sum (d loss / d z)). The backward pass carries the loss gradient down
// through every node, only as far as the lowest trainable layer; a weight's gradient is the
// product of its layer's input patches and the back-propagated errors of the whole row chunk,
// never per-example Jacobians. Batch normalisation in training normalises by the statistics of
// the whole minibatch: the forward and backward passes then stop at each normalisation to gather
// sums over the batch (network/batch_norm.hpp), and its input error is the full batch-norm
// gradient, through the statistics.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "nnpk/network/backward.hpp"
#include "nnpk/network/batch_norm.hpp"
#include "nnpk/network/forward.hpp"
#include "nnpk/network/jvp.hpp"
#include "nnpk/network/layers.hpp"
#include "nnpk/packed.hpp"
#include "nnpk/parallel.hpp"

namespace nnpk {

enum class LossKind : int { cross_entropy = 0, squared = 1, logistic = 2 };

// One minibatch's targets for the first n_outputs logits: class indices in
// [0, n_outputs) for softmax cross-entropy, or (rows, n_outputs) row-major values
// for the squared loss 0.5 * sum_c (f_c - y_c)^2, or labels 0/1 for the logistic loss
// (sigmoid cross-entropy on the first logit, log(1 + exp(-s f)) with s = 2 y - 1). All are
// averaged over rows.
struct LossTargets {
  LossKind kind = LossKind::cross_entropy;
  std::int64_t n_outputs = 1;
  const std::int64_t* labels = nullptr;  // (rows,)
  const double* values = nullptr;        // (rows, n_outputs)
};

// Which stored parameters are trained, one flag per parametrised layer, and per batch
// normalisation for gamma and beta (empty: none).
struct TrainableParams {
  std::vector<char> weights, biases;
  std::vector<char> gammas, betas;
};

// Loss and gradients with respect to the trainable parameters, in float64: one chunk's sums,
// or (after scale) their mean over the rows.
struct ParamGradients {
  double loss = 0.0;
  double correct = 0.0;  // rows whose largest logit (of the first n_outputs) is their label (cross-entropy only)
  std::vector<std::vector<double>> weights;  // per layer: (fan_in, fan_out) row-major, empty where not trained
  std::vector<std::vector<double>> biases;   // per layer: (fan_out,), empty where not trained
  std::vector<std::vector<double>> gammas, betas;  // per batch normalisation: (channels,), empty where not trained

  ParamGradients() = default;
  // norm_channels: each batch normalisation's channel count.
  ParamGradients(const std::vector<DenseLayer>& layers, const TrainableParams& trainable,
                 const std::vector<std::int64_t>& norm_channels = {}) {
    for (std::size_t l = 0; l < layers.size(); ++l) {
      weights.emplace_back(trainable.weights[l] ? static_cast<std::size_t>(layers[l].fan_in * layers[l].fan_out) : 0, 0.0);
      biases.emplace_back(trainable.biases[l] ? static_cast<std::size_t>(layers[l].fan_out) : 0, 0.0);
    }
    for (std::size_t b = 0; b < norm_channels.size(); ++b) {
      const auto c = static_cast<std::size_t>(norm_channels[b]);
      gammas.emplace_back(b < trainable.gammas.size() && trainable.gammas[b] ? c : 0, 0.0);
      betas.emplace_back(b < trainable.betas.size() && trainable.betas[b] ? c : 0, 0.0);
    }
  }

  template <class F>
  void for_each(F&& f) {
    for (auto& v : weights) f(v);
    for (auto& v : biases) f(v);
    for (auto& v : gammas) f(v);
    for (auto& v : betas) f(v);
  }
  void add(const ParamGradients& other) {
    loss += other.loss;
    correct += other.correct;
    const auto add_to = [](std::vector<std::vector<double>>& dst, const std::vector<std::vector<double>>& src) {
      for (std::size_t l = 0; l < dst.size(); ++l)
        for (std::size_t j = 0; j < dst[l].size(); ++j) dst[l][j] += src[l][j];
    };
    add_to(weights, other.weights);
    add_to(biases, other.biases);
    add_to(gammas, other.gammas);
    add_to(betas, other.betas);
  }
  void zero() {
    loss = 0.0;
    correct = 0.0;
    for_each([](std::vector<double>& v) { std::fill(v.begin(), v.end(), 0.0); });
  }
  void scale(double factor) {
    loss *= factor;
    correct *= factor;
    for_each([factor](std::vector<double>& v) {
      for (double& x : v) x *= factor;
    });
  }
};

enum class OptimizerKind : int { sgd = 0, adam = 1 };

// One update rule, as torch.optim.SGD / Adam apply it: weight decay adds weight_decay * p to the
// gradient g; SGD keeps buf = momentum * buf + g (buf starts at 0, so its first value is g) and
// steps p -= lr * buf; Adam keeps m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g^2 and
// steps p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) at step t = 1, 2, ...
struct OptimizerSettings {
  OptimizerKind kind = OptimizerKind::sgd;
  double lr = 0.01, momentum = 0.0, weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  // > 0: the minibatch's gradient (all trained arrays together, before weight decay) is scaled by
  // clip_norm / ||g|| where its norm exceeds clip_norm, as torch.nn.utils.clip_grad_norm_ does.
  double clip_norm = 0.0;
};

enum class ParamPart : int { weight = 0, bias = 1, gamma = 2, beta = 3 };

// One trainable array updated in place: its float64 value, its optimizer state (first: SGD's
// momentum buffer or Adam's m, null when unused; second: Adam's v), and its copy in the
// engine's precision T (null when the engine reads `value` itself). `part` and `layer` (the
// index of the Dense/Conv layer, or of the batch normalisation) say which gradient it takes.
template <class T>
struct OptimizedArray {
  double* value = nullptr;
  double* first = nullptr;
  double* second = nullptr;
  T* copy = nullptr;
  // Training a linearisation: the copy holds the direction value - origin[i] (theta - theta_0).
  const double* origin = nullptr;
  std::int64_t size = 0;
  std::size_t layer = 0;
  ParamPart part = ParamPart::weight;
};

namespace trainer_detail {

// Elements [i0, i1) of one array: the update rule of `s` at Adam step t, with gradient
// g_i = sum_c parts[c][i] * factor (the chunks' partial sums added in chunk order).
template <class T>
void update_range(const OptimizerSettings& s, std::int64_t t, const OptimizedArray<T>& a,
                  const std::vector<const double*>& parts, double factor, std::int64_t i0, std::int64_t i1) {
  const double m_scale = 1 / (1 - std::pow(s.beta1, double(t))), v_scale = 1 / (1 - std::pow(s.beta2, double(t)));
  for (std::int64_t i = i0; i < i1; ++i) {
    double g = 0.0;
    for (const double* part : parts) g += part[i];
    g *= factor;
    double& p = a.value[i];
    if (s.weight_decay != 0.0) g += s.weight_decay * p;
    if (s.kind == OptimizerKind::adam) {
      double& m = a.first[i];
      double& v = a.second[i];
      m = m * s.beta1 + (1 - s.beta1) * g;
      v = v * s.beta2 + (1 - s.beta2) * g * g;
      p -= s.lr * (m * m_scale) / (std::sqrt(v * v_scale) + s.eps);
    } else {
      if (a.first) {
        double& buf = a.first[i];
        buf = buf * s.momentum + g;
        g = buf;
      }
      p -= s.lr * g;
    }
    if (a.copy) a.copy[i] = static_cast<T>(a.origin ? p - a.origin[i] : p);
  }
}


// Adds each valid row's loss to `loss` (and, for cross-entropy, 1 to `correct` when the row's
// first largest logit is its label) and writes d loss_row / d logits into grad (padded rows and
// logits beyond n_outputs stay zero).
template <class T>
void loss_gradient(const RowMatrix<T>& logits, std::int64_t row0, std::int64_t rows, const LossTargets& targets,
                   double& loss, double& correct, RowMatrix<T>& grad) {
  const std::int64_t k = targets.n_outputs;
  grad.setZero(logits.rows(), logits.cols());
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* f = logits.data() + r * logits.cols();
    T* g = grad.data() + r * grad.cols();
    if (targets.kind == LossKind::squared) {
      const double* y = targets.values + (row0 + r) * k;
      for (std::int64_t c = 0; c < k; ++c) {
        const double e = double(f[c]) - y[c];
        loss += 0.5 * e * e;
        g[c] = static_cast<T>(e);
      }
      continue;
    }
    if (targets.kind == LossKind::logistic) {
      const double z = double(f[0]), s = targets.labels[row0 + r] == 1 ? 1.0 : -1.0;
      const double margin = s * z;  // log(1 + exp(-margin)), and its derivative, without overflow
      loss += margin > 0 ? std::log1p(std::exp(-margin)) : -margin + std::log1p(std::exp(margin));
      const double sigmoid = z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z));
      g[0] = static_cast<T>(sigmoid - (s > 0 ? 1.0 : 0.0));
      if ((z > 0) == (s > 0)) correct += 1.0;
      continue;
    }
    // Softmax over the first k logits, shifted by their maximum so exp cannot overflow.
    const double top = double(*std::max_element(f, f + k));
    double total = 0.0;
    for (std::int64_t c = 0; c < k; ++c) total += std::exp(double(f[c]) - top);
    const std::int64_t label = targets.labels[row0 + r];
    if (std::max_element(f, f + k) - f == label) correct += 1.0;
    loss += top + std::log(total) - double(f[label]);
    for (std::int64_t c = 0; c < k; ++c) g[c] = static_cast<T>(std::exp(double(f[c]) - top) / total);
    g[label] -= T(1);
  }
}

// acc[j] += factor * sum over the first `rows` rows of m[:, j], in float64.
template <class T>
void add_column_sums(const RowMatrix<T>& m, std::int64_t rows, double factor, std::vector<double>& acc,
                     int threads = 0) {
  const std::int64_t cols = m.cols();
  std::vector<double> sums(static_cast<std::size_t>(cols), 0.0);
  // Each column's sum runs down its rows in order, whichever block of columns (and thread) it is in.
  const auto block = [&](std::int64_t j0, std::int64_t j1) {
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* row = m.data() + r * cols;
      for (std::int64_t j = j0; j < j1; ++j) sums[static_cast<std::size_t>(j)] += double(row[j]);
    }
  };
  constexpr std::int64_t kCols = 64;
  if (threads > 1 && cols > kCols) {
    parallel_ranges((cols + kCols - 1) / kCols, threads,
                    [&](std::int64_t b) { block(b * kCols, std::min(cols, (b + 1) * kCols)); });
  } else {
    block(0, cols);
  }
  for (std::int64_t j = 0; j < cols; ++j) acc[static_cast<std::size_t>(j)] += factor * sums[static_cast<std::size_t>(j)];
}

// m becomes rows x cols of zeros, written by fixed blocks of rows on `threads` threads (0: this one).
template <class T>
void set_zero(RowMatrix<T>& m, std::int64_t rows, std::int64_t cols, int threads) {
  m.resize(rows, cols);
  constexpr std::int64_t kRows = 256;
  if (threads <= 1 || rows <= kRows) {
    m.setZero();
    return;
  }
  parallel_ranges((rows + kRows - 1) / kRows, threads, [&](std::int64_t b) {
    const std::int64_t r0 = b * kRows;
    std::fill(m.data() + r0 * cols, m.data() + std::min(rows, r0 + kRows) * cols, T(0));
  });
}

// s1[j] += sum of g[r, j] and s2[j] += sum of g[r, j] xhat[r, j] over the first `rows` rows, with
// xhat = (x - mean) inv_std the normalised input of a batch normalisation: d loss / d beta and
// d loss / d gamma.
template <class T>
void add_norm_sums(const BatchNormView<T>& bn, const RowMatrix<T>& x, const RowMatrix<T>& g, std::int64_t rows,
                   std::vector<double>& s1, std::vector<double>& s2) {
  const std::int64_t c = x.cols();
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x.data() + r * c;
    const T* gr = g.data() + r * c;
    for (std::int64_t j = 0; j < c; ++j) {
      const T xhat = (xr[j] - bn.mean[j]) * bn.inv_std[j];
      s1[static_cast<std::size_t>(j)] += double(gr[j]);
      s2[static_cast<std::size_t>(j)] += double(gr[j]) * double(xhat);
    }
  }
}

// Per-thread buffers of one row chunk.
template <class T>
struct Workspace {
  SequentialWorkspace<T> forward;
  TangentWorkspace<T> tangent;    // training a linearisation: J d theta node by node
  std::vector<RowMatrix<T>> cot;  // per node: d loss / d (its output), rows (point, position)
  std::vector<RowMatrix<T>> pre;  // per recurrent node: d loss / d z_t, time-major (backward.hpp)
  RowMatrix<T> back, product;
  // step() on recurrent networks: per parametrised layer, its input rows packed once for all the
  // blocks of its weight gradient (empty: not packed), and a block's errors packed.
  std::vector<PackedLeft<T>> inputs;
  PackedRight<T> errors;
};

// Parametrised layer l's gradient as sum over rows of patches^T errors (forward scale aside): its
// input patches (rows (point, position)), the errors of its output (the same rows), and how many rows
// are valid. A recurrent layer's rows are its steps, time-major: the patches are x_t for (U, b) and
// h_{t-1} for W, the errors d loss / d z_t; padding rows hold zero errors.
template <class T>
struct ParamRows {
  const T* patches;
  std::int64_t patch_cols;
  const RowMatrix<T>* errors;
  std::int64_t rows;
};

template <class T>
ParamRows<T> param_rows(const SequentialSpec& spec, std::size_t l, std::int64_t k, std::int64_t points,
                        const Workspace<T>& ws, RowMatrix<T>& patches) {
  const SeqNode& node = spec.nodes[static_cast<std::size_t>(k)];
  const auto ku = static_cast<std::size_t>(k);
  if (node.kind == NodeKind::recurrent) {
    const std::int64_t rows = node.steps() * step_rows(points);
    const RowMatrix<T>& a = spec.recurrent_weights(l) ? ws.forward.states[ku] : ws.forward.step_inputs[ku];
    return {a.data(), a.cols(), &ws.pre[ku], rows};
  }
  if (node.kind == NodeKind::attention) {  // K, Q, V read the input, O the heads; their errors (attention.hpp)
    const auto li = static_cast<std::int64_t>(l);
    const AttentionCache<T>& cache = ws.forward.attention[ku];
    const RowMatrix<T>& a = attention_layer_input(node, li, cache, ws.forward.output(node.input));
    const RowMatrix<T>* errors =
        attention_role(node, li) == AttentionRole::out ? &ws.cot[ku] : &attention_layer_errors(node, li, cache);
    return {a.data(), a.cols(), errors, points * node.out.positions()};
  }
  const RowMatrix<T>& in = ws.forward.output(node.input);
  if (!node.pointwise()) sequential_detail::im2col(node, in.data(), points, patches);
  const RowMatrix<T>& a = node.pointwise() ? in : patches;
  return {a.data(), a.cols(), &ws.cot[ku], points * node.out.positions()};
}

}  // namespace trainer_detail

// Mean loss and gradients of minibatches for one network and one trainable set, keeping its
// buffers from call to call (a training loop makes many small calls). Rows are split into
// fixed chunks of chunk_rows points (a multiple of kRowQuantum); each chunk's float64 partial
// sums are added in chunk order, so a result is bitwise the same for any n_threads.
template <class T>
class SequentialBackprop {
 public:
  // scales: spec.scales(true) for stored parameters.
  SequentialBackprop(SequentialSpec spec, TrainableParams trainable, int n_threads, std::int64_t chunk_rows = kRowQuantum)
      : spec_(std::move(spec)), scales_(spec_.scales(true)), trainable_(std::move(trainable)),
        n_threads_(std::max(1, n_threads)), chunk_rows_(chunk_rows) {
    const std::size_t n_params = spec_.params.size(), n_norms = spec_.norms.size();
    if (trainable_.weights.size() != n_params || trainable_.biases.size() != n_params)
      throw std::invalid_argument("trainable weights and biases need one flag per parametrised layer");
    trainable_.gammas.resize(n_norms, 0);
    trainable_.betas.resize(n_norms, 0);
    if (trainable_.gammas.size() != n_norms || trainable_.betas.size() != n_norms)
      throw std::invalid_argument("trainable gammas and betas need one flag per batch normalisation");
    for (std::size_t b = 0; b < n_norms; ++b) norm_channels_.push_back(spec_.norm_node(b).in.channels);
    const auto n_nodes = static_cast<std::int64_t>(spec_.nodes.size());
    lowest_ = n_nodes;
    for (std::int64_t k = n_nodes - 1; k >= 0; --k) {
      const SeqNode& node = spec_.nodes[static_cast<std::size_t>(k)];
      if (node.norm >= 0) {
        const std::size_t b = static_cast<std::size_t>(node.norm);
        if (trainable_.gammas[b] || trainable_.betas[b]) lowest_ = k;
      }
      if (node.param < 0) continue;
      const std::size_t first = static_cast<std::size_t>(node.param);
      for (std::size_t l = first; l < first + static_cast<std::size_t>(node.n_layers()); ++l) {
        if (trainable_.biases[l] && !spec_.params[l].has_bias)
          throw std::invalid_argument("parametrised layer " + std::to_string(l) + " has no bias to train");
        if (trainable_.weights[l] || trainable_.biases[l]) lowest_ = k;
      }
    }
    {
      FusedBackward plan(spec_, lowest_);
      fused_ = std::move(plan.fused);
      written_ = std::move(plan.written);
      skipped_ = std::move(plan.skipped);
    }
    workspaces_.resize(static_cast<std::size_t>(n_threads_));
    total_ = ParamGradients(spec_.params, trainable_, norm_channels_);
    recurrent_ = spec_.has_recurrent();
    // In a recurrent network (products by row blocks on the threads, see backward_node), a pointwise
    // dense layer that alone reads its input writes its input's error whole (no zeroing pass first).
    overwrites_.assign(spec_.nodes.size(), false);
    for (std::size_t k = 0; recurrent_ && k < spec_.nodes.size(); ++k) {
      const SeqNode& node = spec_.nodes[k];
      if (node.kind != NodeKind::dense || !node.pointwise() || fused_[k] || node.input < lowest_) continue;
      const auto in = static_cast<std::size_t>(node.input);
      if (spec_.nodes[in].readers != 1 || written_[in] || skipped_[in]) continue;
      overwrites_[k] = true;
      written_[in] = true;
    }
  }

  // Trains the linearisation f(x; theta_0) (if offset) + J(x; theta_0) (theta - theta_0) instead of the
  // network: the calls' `net` is then theta_0 and `direction` (held by the caller) theta - theta_0,
  // each trained array's copy being its direction (OptimizedArray::origin). Null: the network itself.
  void linearize(const Direction<T>* direction, bool offset) {
    direction_ = direction;
    offset_ = offset;
  }

  // Over `rows` points of x (input.size() values each) through `net`, which holds the current
  // values of the parameters (and, out of training, each batch normalisation's running mean and
  // 1 / sqrt(running var + eps)). With batch normalisation in training, the minibatch's
  // statistics normalise it, and batch_statistics() gives them afterwards. The result lives until
  // the next call.
  const ParamGradients& gradients(const NetworkView<T>& net, const T* x, std::int64_t rows, const LossTargets& targets,
                                  bool training = true) {
    check_targets(rows, targets);
    if (net.norms.size() != spec_.norms.size())
      throw std::invalid_argument("the parameters need one (gamma, beta) per batch normalisation");
    if (training && !spec_.norms.empty()) return batch_gradients(net, x, rows, targets);
    const std::vector<RowTile<T>> chunks = row_tiles<T>(x, rows, nullptr, 0, chunk_rows_);
    while (partial_.size() < chunks.size()) partial_.emplace_back(spec_.params, trainable_, norm_channels_);
    for (std::size_t c = 0; c < chunks.size(); ++c) partial_[c].zero();
    if (recurrent_) {
      // A recurrent layer's steps follow one another within a chunk: chunks one after the other, each
      // step's products split over the threads by columns.
      for (std::size_t c = 0; c < chunks.size(); ++c)
        chunk_gradients(net, x, chunks[c].row0, chunks[c].rows, targets, workspaces_[0], partial_[c]);
    } else {
      parallel_for(static_cast<std::int64_t>(chunks.size()), n_threads_, [&](std::int64_t c, int thread) {
        const RowTile<T>& chunk = chunks[static_cast<std::size_t>(c)];
        chunk_gradients(net, x, chunk.row0, chunk.rows, targets, workspaces_[static_cast<std::size_t>(thread)],
                        partial_[static_cast<std::size_t>(c)]);
      });
    }
    total_.zero();
    for (std::size_t c = 0; c < chunks.size(); ++c) total_.add(partial_[c]);
    total_.scale(1.0 / static_cast<double>(rows));
    return total_;
  }

  // One optimizer step on a minibatch, applied to `arrays` in place by the rule of `s` at step t;
  // returns the minibatch's (mean loss, fraction of rows predicted right). Per group of at most
  // kGroup chunks: each chunk's forward pass and back-propagated errors (bias sums and the loss per
  // chunk), and each weight gradient by blocks of kBlockCols columns, a block's products of its
  // layer's input (patches) and errors added chunk by chunk in order in float64, as soon as the
  // chunk is done (threads without a chunk left work on the blocks); after the last chunk a block
  // is updated at once. Every sum has a fixed order and every element's update one formula, so a
  // step is bitwise the same for any n_threads (its weight gradients may differ from
  // gradients()'s in the last bits: there each product spans all the columns).
  std::pair<double, double> step(const NetworkView<T>& net, const T* x, std::int64_t rows, const LossTargets& targets,
                                 const OptimizerSettings& s, std::int64_t t,
                                 const std::vector<OptimizedArray<T>>& arrays) {
    check_targets(rows, targets);
    if (!spec_.norms.empty() || s.clip_norm > 0) return whole_step(net, x, rows, targets, s, t, arrays);
    const std::size_t n_params = spec_.params.size();
    std::vector<const OptimizedArray<T>*> weight_array(n_params, nullptr);
    std::vector<const OptimizedArray<T>*> bias_array;
    for (const OptimizedArray<T>& a : arrays) {
      const bool bias = a.part == ParamPart::bias;
      const bool trained = (bias || a.part == ParamPart::weight) && a.layer < n_params &&
                           (bias ? trainable_.biases[a.layer] : trainable_.weights[a.layer]);
      const DenseLayer& layer = spec_.params[std::min(a.layer, n_params - 1)];
      if (!trained || a.size != (bias ? layer.fan_out : layer.fan_in * layer.fan_out))
        throw std::invalid_argument("an optimized array does not match a trainable parameter");
      if (bias) {
        bias_array.push_back(&a);
      } else {
        weight_array[a.layer] = &a;
      }
    }
    for (std::size_t l = 0; l < n_params; ++l)
      if (trainable_.weights[l] && !weight_array[l]) throw std::invalid_argument("a trainable weight has no array");
    if (bias_array.size() != static_cast<std::size_t>(std::count(trainable_.biases.begin(), trainable_.biases.end(), 1)))
      throw std::invalid_argument("a trainable bias has no array");

    const std::vector<RowTile<T>> chunks = row_tiles<T>(x, rows, nullptr, 0, chunk_rows_);
    const auto n_chunks = static_cast<std::int64_t>(chunks.size());
    TrainableParams biases_only{std::vector<char>(n_params, 0), trainable_.biases};
    while (static_cast<std::int64_t>(bias_sums_.size()) < n_chunks) bias_sums_.emplace_back(spec_.params, biases_only);
    for (std::int64_t c = 0; c < n_chunks; ++c) bias_sums_[static_cast<std::size_t>(c)].zero();
    if (weight_sums_.weights.empty()) weight_sums_ = ParamGradients(spec_.params, TrainableParams{trainable_.weights,
                                                                                           std::vector<char>(n_params, 0)});
    // The weight blocks: (layer, first column -- first row if by_inputs), in layer order; a recurrent
    // layer's input and recurrent weights share their errors, one block of both (see shares_errors).
    std::vector<std::pair<std::size_t, std::int64_t>> blocks;
    for (std::size_t l = 0; l < n_params; ++l)
      if (trainable_.weights[l] && !(l > 0 && shares_errors(l - 1)))
        for (std::int64_t j = 0; j < block_extent(l); j += kBlockCols) blocks.emplace_back(l, j);
    const double factor = 1.0 / static_cast<double>(rows);
    const std::int64_t group = std::min<std::int64_t>(kGroup, n_chunks);
    while (static_cast<std::int64_t>(chunk_workspaces_.size()) < group) chunk_workspaces_.emplace_back();
    for (std::int64_t c0 = 0; c0 < n_chunks; c0 += group) {
      // The group's work items, handed out in this order (an atomic counter): each chunk's forward
      // pass and errors, then for each chunk in order each block's products from it. A block item
      // waits for its chunk and for the same block's item of the chunk before (both handed out
      // earlier, so never waiting in a cycle): threads without a chunk left start on the blocks.
      const std::int64_t c1 = std::min(n_chunks, c0 + group), n_first = c1 - c0;
      const auto n_blocks = static_cast<std::int64_t>(blocks.size());
      const std::int64_t n_items = n_first + n_first * n_blocks;
      const bool last = c1 == n_chunks;
      std::unique_ptr<std::atomic<std::int64_t>[]> ready(new std::atomic<std::int64_t>[std::size_t(n_first)]);
      std::unique_ptr<std::atomic<std::int64_t>[]> done(new std::atomic<std::int64_t>[std::size_t(n_blocks)]);
      for (std::int64_t i = 0; i < n_first; ++i) ready[std::size_t(i)].store(0);
      for (std::int64_t b = 0; b < n_blocks; ++b) done[std::size_t(b)].store(0);
      std::atomic<std::int64_t> next{0};
      if (recurrent_) {  // the chunks first, one after the other (see gradients()), then the blocks in parallel
        for (std::int64_t i = 0; i < n_first; ++i) {
          const RowTile<T>& chunk = chunks[static_cast<std::size_t>(c0 + i)];
          trainer_detail::Workspace<T>& ws = chunk_workspaces_[static_cast<std::size_t>(i)];
          chunk_gradients(net, x, chunk.row0, chunk.rows, targets, ws, bias_sums_[static_cast<std::size_t>(c0 + i)],
                          false);
          pack_recurrent_inputs(chunk.rows, ws);
          ready[std::size_t(i)].store(1, std::memory_order_release);
        }
        next.store(n_first);
      }
      std::atomic<bool> failed{false};
      const auto wait = [&](const std::atomic<std::int64_t>& value, std::int64_t target) {
        while (value.load(std::memory_order_acquire) != target) {
          if (failed.load()) return false;
          std::this_thread::yield();
        }
        return true;
      };
      parallel_for(n_threads_, n_threads_, [&](std::int64_t, int thread) {
        try {
          for (std::int64_t item = next++; item < n_items; item = next++) {
            if (item < n_first) {
              const RowTile<T>& chunk = chunks[static_cast<std::size_t>(c0 + item)];
              chunk_gradients(net, x, chunk.row0, chunk.rows, targets, chunk_workspaces_[static_cast<std::size_t>(item)],
                              bias_sums_[static_cast<std::size_t>(c0 + item)], false);
              ready[std::size_t(item)].store(1, std::memory_order_release);
              continue;
            }
            const std::int64_t i = (item - n_first) / n_blocks, b = (item - n_first) % n_blocks;
            if (!wait(ready[std::size_t(i)], 1) || !wait(done[std::size_t(b)], i)) return;
            const auto [first_layer, j0] = blocks[static_cast<std::size_t>(b)];
            const std::size_t end_layer = first_layer + (shares_errors(first_layer) ? 2 : 1);
            for (std::size_t l = first_layer; l < end_layer; ++l) {
              const DenseLayer& layer = spec_.params[l];
              const std::int64_t cols = std::min(kBlockCols, block_extent(l) - j0);
              std::vector<double>& sums = weight_sums_.weights[l];
              add_weight_block(l, j0, cols, chunks[static_cast<std::size_t>(c0 + i)].rows,
                               chunk_workspaces_[static_cast<std::size_t>(i)],
                               workspaces_[static_cast<std::size_t>(thread)], c0 + i == 0, sums, l > first_layer);
              if (last && i == n_first - 1) {
                const std::vector<const double*> parts{sums.data()};
                if (by_inputs(l)) {  // the block's rows of W, whole
                  trainer_detail::update_range(s, t, *weight_array[l], parts, factor, j0 * layer.fan_out,
                                               (j0 + cols) * layer.fan_out);
                } else {
                  for (std::int64_t r = 0; r < layer.fan_in; ++r)
                    trainer_detail::update_range(s, t, *weight_array[l], parts, factor, r * layer.fan_out + j0,
                                                 r * layer.fan_out + j0 + cols);
                }
              }
            }
            done[std::size_t(b)].store(i + 1, std::memory_order_release);
          }
        } catch (...) {
          failed.store(true);
          throw;
        }
      });
    }
    double loss = 0.0, correct = 0.0;
    for (std::int64_t c = 0; c < n_chunks; ++c) {
      loss += bias_sums_[static_cast<std::size_t>(c)].loss;
      correct += bias_sums_[static_cast<std::size_t>(c)].correct;
    }
    for (const OptimizedArray<T>* a : bias_array) {
      std::vector<const double*> parts(static_cast<std::size_t>(n_chunks));
      for (std::int64_t c = 0; c < n_chunks; ++c)
        parts[static_cast<std::size_t>(c)] = bias_sums_[static_cast<std::size_t>(c)].biases[a->layer].data();
      trainer_detail::update_range(s, t, *a, parts, factor, 0, a->size);
    }
    return {loss * factor, correct * factor};
  }

  // step() through batch normalisations in training, or with gradient clipping: the minibatch's
  // whole gradient (gradients()), its norm if clipped, then every array's update from it, spread
  // over the threads in blocks of elements.
  std::pair<double, double> whole_step(const NetworkView<T>& net, const T* x, std::int64_t rows,
                                      const LossTargets& targets, const OptimizerSettings& s, std::int64_t t,
                                      const std::vector<OptimizedArray<T>>& arrays) {
    // A linearisation evaluates its batch normalisations by the fixed statistics of theta_0.
    const ParamGradients& g = gradients(net, x, rows, targets, direction_ == nullptr);
    std::vector<const double*> sources;
    for (const OptimizedArray<T>& a : arrays) {
      const std::vector<std::vector<double>>& part = a.part == ParamPart::weight ? g.weights
                                                     : a.part == ParamPart::bias ? g.biases
                                                     : a.part == ParamPart::gamma ? g.gammas
                                                                                  : g.betas;
      if (a.layer >= part.size() || static_cast<std::int64_t>(part[a.layer].size()) != a.size)
        throw std::invalid_argument("an optimized array does not match a trainable parameter");
      sources.push_back(part[a.layer].data());
    }
    double factor = 1.0;
    if (s.clip_norm > 0) {
      double squares = 0.0;
      for (std::size_t a = 0; a < arrays.size(); ++a)
        for (std::int64_t i = 0; i < arrays[a].size; ++i) squares += sources[a][i] * sources[a][i];
      const double norm = std::sqrt(squares);
      if (norm > s.clip_norm) factor = s.clip_norm / norm;
    }
    constexpr std::int64_t kBlock = 1 << 15;
    std::vector<std::pair<std::size_t, std::int64_t>> blocks;
    for (std::size_t a = 0; a < arrays.size(); ++a)
      for (std::int64_t i = 0; i < arrays[a].size; i += kBlock) blocks.emplace_back(a, i);
    parallel_for(static_cast<std::int64_t>(blocks.size()), n_threads_, [&](std::int64_t item, int) {
      const auto [a, i0] = blocks[static_cast<std::size_t>(item)];
      trainer_detail::update_range(s, t, arrays[a], {sources[a]}, factor, i0, std::min(arrays[a].size, i0 + kBlock));
    });
    return {g.loss, g.correct};
  }

  // Each batch normalisation's statistics over the minibatch of the last call in training.
  const std::vector<BatchStats>& batch_statistics() const { return stats_; }

 private:
  // Gradients with batch normalisation in training: the whole minibatch's forward pass is kept
  // (one workspace per chunk); the backward pass stops at each batch normalisation for the sums
  // over the batch that its parameters' gradients and its input error need.
  const ParamGradients& batch_gradients(const NetworkView<T>& given, const T* x, std::int64_t rows,
                                        const LossTargets& targets) {
    const std::vector<RowTile<T>> chunks = row_tiles<T>(x, rows, nullptr, 0, chunk_rows_);
    const auto n_chunks = static_cast<std::int64_t>(chunks.size());
    if (chunk_ws_.size() < chunks.size()) chunk_ws_.resize(chunks.size());
    while (partial_.size() < chunks.size()) partial_.emplace_back(spec_.params, trainable_, norm_channels_);
    for (std::size_t c = 0; c < chunks.size(); ++c) partial_[c].zero();
    total_.zero();
    NetworkView<T> net = given;
    const auto n_nodes = static_cast<std::int64_t>(spec_.nodes.size());
    batch_forward(spec_, scales_, net, chunks, needs_derivatives(), n_threads_, norm_, stats_,
                  [&](std::size_t c) -> SequentialWorkspace<T>& { return chunk_ws_[c].forward; });
    parallel_for(n_chunks, n_threads_, [&](std::int64_t c, int) {
      const RowTile<T>& chunk = chunks[static_cast<std::size_t>(c)];
      start_backward(chunk.row0, chunk.rows, targets, chunk_ws_[static_cast<std::size_t>(c)],
                     partial_[static_cast<std::size_t>(c)]);
    });
    std::int64_t top = n_nodes - 1;
    const auto backward = [&](std::int64_t lo) {
      parallel_for(n_chunks, n_threads_, [&](std::int64_t c, int) {
        backward_range(net, chunks[static_cast<std::size_t>(c)].rows, top, lo, chunk_ws_[static_cast<std::size_t>(c)],
                       partial_[static_cast<std::size_t>(c)]);
      });
    };
    for (std::size_t b = spec_.norms.size(); b-- > 0;) {
      const std::int64_t kb = spec_.norms[b];
      if (kb < lowest_ || lowest_ >= n_nodes) break;
      backward(kb + 1);
      norm_backward(net, b, chunks);
      top = kb - 1;
    }
    if (lowest_ < n_nodes) backward(lowest_);
    for (std::size_t c = 0; c < chunks.size(); ++c) total_.add(partial_[c]);
    total_.scale(1.0 / static_cast<double>(rows));
    return total_;
  }

  // Batch normalisation b in training, its output error complete in every chunk: d loss / d gamma
  // and d loss / d beta (sums over the batch, added in chunk order), and its input error
  // gamma inv_std (g - mean(g) - xhat mean(g xhat)), the means over the batch's rows and positions.
  void norm_backward(const NetworkView<T>& net, std::size_t b, const std::vector<RowTile<T>>& chunks) {
    const std::int64_t kb = spec_.norms[b];
    const SeqNode& node = spec_.nodes[static_cast<std::size_t>(kb)];
    const BatchNormView<T>& bn = net.norms[b];
    const auto channels = static_cast<std::size_t>(node.in.channels);
    const std::int64_t positions = node.in.positions();
    const auto n_chunks = static_cast<std::int64_t>(chunks.size());
    norm_partial_.resize(chunks.size());
    parallel_for(n_chunks, n_threads_, [&](std::int64_t c, int) {
      auto& [s1, s2] = norm_partial_[static_cast<std::size_t>(c)];
      s1.assign(channels, 0.0);
      s2.assign(channels, 0.0);
      const trainer_detail::Workspace<T>& ws = chunk_ws_[static_cast<std::size_t>(c)];
      trainer_detail::add_norm_sums(bn, ws.forward.output(node.input), ws.cot[static_cast<std::size_t>(kb)],
                                    chunks[static_cast<std::size_t>(c)].rows * positions, s1, s2);
    });
    std::vector<double> s1(channels, 0.0), s2(channels, 0.0);
    for (const auto& [p1, p2] : norm_partial_)
      for (std::size_t j = 0; j < channels; ++j) {
        s1[j] += p1[j];
        s2[j] += p2[j];
      }
    add_norm_gradients(b, s1, s2, total_);
    if (node.input < lowest_) return;
    const double count = static_cast<double>(stats_[b].count);
    std::vector<T> mean_g(channels), mean_gx(channels), a(channels);
    for (std::size_t j = 0; j < channels; ++j) {
      mean_g[j] = static_cast<T>(s1[j] / count);
      mean_gx[j] = static_cast<T>(s2[j] / count);
      a[j] = bn.gamma[j] * bn.inv_std[j];
    }
    parallel_for(n_chunks, n_threads_, [&](std::int64_t c, int) {
      trainer_detail::Workspace<T>& ws = chunk_ws_[static_cast<std::size_t>(c)];
      const RowMatrix<T>& x = ws.forward.output(node.input);
      const RowMatrix<T>& g = ws.cot[static_cast<std::size_t>(kb)];
      RowMatrix<T>& in = ws.cot[static_cast<std::size_t>(node.input)];
      const std::int64_t n = chunks[static_cast<std::size_t>(c)].rows * positions;
      const auto C = static_cast<std::int64_t>(channels);
      for (std::int64_t r = 0; r < n; ++r)
        for (std::int64_t j = 0; j < C; ++j) {
          const auto u = static_cast<std::size_t>(j);
          const T xhat = (x(r, j) - bn.mean[u]) * bn.inv_std[u];
          in(r, j) += a[u] * (g(r, j) - mean_g[u] - xhat * mean_gx[u]);
        }
    });
  }

  void check_targets(std::int64_t rows, const LossTargets& targets) const {
    if (rows < 1) throw std::invalid_argument("the minibatch has no rows");
    const std::int64_t C = spec_.n_outputs();
    if (targets.n_outputs < 1 || targets.n_outputs > C)
      throw std::invalid_argument("n_outputs must be in [1, " + std::to_string(C) + "]");
    if (targets.kind == LossKind::squared) {
      if (!targets.values) throw std::invalid_argument("the squared loss needs target values");
      return;
    }
    if (!targets.labels) throw std::invalid_argument("cross-entropy needs labels");
    if (targets.kind == LossKind::logistic) {
      if (targets.n_outputs != 1) throw std::invalid_argument("the logistic loss reads one logit");
      for (std::int64_t r = 0; r < rows; ++r)
        if (targets.labels[r] != 0 && targets.labels[r] != 1)
          throw std::invalid_argument("label " + std::to_string(targets.labels[r]) + " at row " + std::to_string(r) +
                                      " is not 0 or 1 (the logistic loss)");
      return;
    }
    for (std::int64_t r = 0; r < rows; ++r)
      if (targets.labels[r] < 0 || targets.labels[r] >= targets.n_outputs)
        throw std::invalid_argument("label " + std::to_string(targets.labels[r]) + " at row " + std::to_string(r) +
                                    " is outside [0, " + std::to_string(targets.n_outputs) + ")");
  }

  // Loss and gradient sums of one chunk of points into `out`.
  void chunk_gradients(const NetworkView<T>& net, const T* x, std::int64_t row0, std::int64_t points,
                       const LossTargets& targets, trainer_detail::Workspace<T>& ws, ParamGradients& out,
                       bool weights = true) const {
    const auto n_nodes = static_cast<std::int64_t>(spec_.nodes.size());
    ws.forward.step_threads = recurrent_ ? n_threads_ : 0;
    sequential_forward(spec_, scales_, net, x + row0 * spec_.input.size(), points, needs_derivatives(), ws.forward);
    if (direction_) linearized_logits(net, points, ws);
    start_backward(row0, points, targets, ws, out);
    backward_range(net, points, n_nodes - 1, lowest_, ws, out, weights);
  }

  // The linearisation's logits in place of the network's (the last node's output, which no backward
  // step reads): offset f(x; theta_0) + J d theta, or J d theta alone.
  void linearized_logits(const NetworkView<T>& net, std::int64_t points, trainer_detail::Workspace<T>& ws) const {
    sequential_jvp(spec_, scales_, net, *direction_, ws.forward, points, ws.tangent);
    RowMatrix<T>& f = ws.forward.outputs.back();
    const std::int64_t n = points * spec_.n_outputs();
    if (!offset_) std::fill(f.data(), f.data() + n, T(0));
    if (!ws.tangent.live.back()) return;
    const T* df = ws.tangent.outputs.back().data();
    for (std::int64_t i = 0; i < n; ++i) f.data()[i] += df[i];
  }

  // The loss of a chunk whose forward pass is in ws, its logits' error, and the other errors zeroed
  // (nodes add into them; those of fused layers are written whole).
  void start_backward(std::int64_t row0, std::int64_t points, const LossTargets& targets,
                      trainer_detail::Workspace<T>& ws, ParamGradients& out) const {
    const auto n_nodes = static_cast<std::int64_t>(spec_.nodes.size());
    ws.cot.resize(spec_.nodes.size());
    ws.pre.resize(spec_.nodes.size());
    trainer_detail::loss_gradient(ws.forward.outputs.back(), row0, points, targets, out.loss, out.correct,
                                  ws.cot.back());
    for (std::int64_t k = lowest_; k < n_nodes - 1; ++k) {
      const Shape& s = spec_.nodes[static_cast<std::size_t>(k)].out;
      if (!written_[static_cast<std::size_t>(k)] && !skipped_[static_cast<std::size_t>(k)])
        trainer_detail::set_zero(ws.cot[static_cast<std::size_t>(k)], round_up(points * s.positions(), kRowQuantum),
                                 s.channels, ws.forward.step_threads);
    }
  }

  // The backward pass of a chunk through nodes hi down to lo (batch normalisations by their
  // frozen-statistics step: the staged pass in training never crosses one here), adding the
  // trainable parameters' gradient sums to `out`.
  void backward_range(const NetworkView<T>& net, std::int64_t points, std::int64_t hi, std::int64_t lo,
                      trainer_detail::Workspace<T>& ws, ParamGradients& out, bool weights = true) const {
    for (std::int64_t k = hi; k >= lo; --k) {
      const SeqNode& node = spec_.nodes[static_cast<std::size_t>(k)];
      if (skipped_[static_cast<std::size_t>(k)]) continue;
      if (node.kind == NodeKind::recurrent || node.kind == NodeKind::attention) {  // its errors come from its backward step
        backward_node(spec_, scales_, net, ws.forward, k, points, 1, lowest_, ws.cot, ws.back,
                      &ws.pre[static_cast<std::size_t>(k)]);
        add_param_gradients(k, points, ws, out, weights);
        continue;
      }
      if (node.param >= 0) add_param_gradients(k, points, ws, out, weights);
      if (node.norm >= 0) {
        const auto b = static_cast<std::size_t>(node.norm);
        std::vector<double> s1(static_cast<std::size_t>(norm_channels_[b]), 0.0), s2(s1.size(), 0.0);
        trainer_detail::add_norm_sums(net.norms[b], ws.forward.output(node.input), ws.cot[static_cast<std::size_t>(k)],
                                      points * node.in.positions(), s1, s2);
        add_norm_gradients(b, s1, s2, out);
      }
      if (fused_[static_cast<std::size_t>(k)]) {
        fused_backward(net, k, ws);
      } else {
        backward_node<T>(spec_, scales_, net, ws.forward, k, points, 1, lowest_, ws.cot, ws.back, nullptr,
                         overwrites_[static_cast<std::size_t>(k)]);
      }
    }
  }

  // Batch normalisation b's trainable gamma and beta from the sums of g xhat (s2) and g (s1).
  void add_norm_gradients(std::size_t b, const std::vector<double>& s1, const std::vector<double>& s2,
                          ParamGradients& out) const {
    if (trainable_.gammas[b])
      for (std::size_t j = 0; j < s2.size(); ++j) out.gammas[b][j] += s2[j];
    if (trainable_.betas[b])
      for (std::size_t j = 0; j < s1.size(); ++j) out.betas[b][j] += s1[j];
  }

  // Dense node k reading activation a reading node z: cot[z] = (cot[k] W^T) * (forward phi'(z)).
  void fused_backward(const NetworkView<T>& net, std::int64_t k, trainer_detail::Workspace<T>& ws) const {
    const SeqNode& node = spec_.nodes[static_cast<std::size_t>(k)];
    const std::size_t z = static_cast<std::size_t>(spec_.nodes[static_cast<std::size_t>(node.input)].input);
    const DenseLayer& layer = spec_.params[static_cast<std::size_t>(node.param)];
    const Eigen::Map<const RowMatrix<T>> W(net.weights[static_cast<std::size_t>(node.param)], layer.fan_in, layer.fan_out);
    RowMatrix<T>& g = ws.cot[z];
    g.noalias() = ws.cot[static_cast<std::size_t>(k)] * W.transpose();
    const T forward = static_cast<T>(scales_[static_cast<std::size_t>(node.param)].forward);
    g.array() *= forward * ws.forward.derivatives[static_cast<std::size_t>(node.input)].array();
  }

  // The trainable weights' and biases' gradient sums of the layers of parametrised node k (a
  // recurrent node has two) from its errors.
  void add_param_gradients(std::int64_t k, std::int64_t points, trainer_detail::Workspace<T>& ws,
                           ParamGradients& out, bool weights = true) const {
    const SeqNode& node = spec_.nodes[static_cast<std::size_t>(k)];
    const auto first = static_cast<std::size_t>(node.param);
    for (std::size_t l = first; l < first + static_cast<std::size_t>(node.n_layers()); ++l) {
      const bool want_weights = weights && trainable_.weights[l];
      if (!trainable_.biases[l] && !want_weights) continue;
      const trainer_detail::ParamRows<T> rows = trainer_detail::param_rows(spec_, l, k, points, ws, ws.forward.patches);
      const RowMatrix<T>& g = *rows.errors;
      const LayerScales& sc = scales_[l];
      if (trainable_.biases[l])
        trainer_detail::add_column_sums(g, rows.rows, sc.bias, out.biases[l], ws.forward.step_threads);
      if (!want_weights) continue;
      ws.product.noalias() =
          Eigen::Map<const RowMatrix<T>>(rows.patches, g.rows(), rows.patch_cols).transpose() * g;
      const double forward = sc.forward;
      const T* p = ws.product.data();
      std::vector<double>& dst = out.weights[l];
      for (std::size_t i = 0; i < dst.size(); ++i) dst[i] += forward * double(p[i]);
    }
  }

  // A chunk's layers whose weights are trained (in a recurrent network: its chunks run one after the
  // other, their rows many): their input rows (h_{t-1} for recurrent weights, x_t for a recurrent
  // layer's input weights, a readout's every h_t), packed once for all the blocks of their gradient
  // (a plain product would pack them once per block).
  // A layer narrowing its input (a readout) has its errors packed instead (see by_inputs).
  void pack_recurrent_inputs(std::int64_t points, trainer_detail::Workspace<T>& ws) const {
    ws.inputs.resize(spec_.params.size());
    for (std::size_t l = 0; l < spec_.params.size(); ++l) {
      if (!trainable_.weights[l]) continue;
      const trainer_detail::ParamRows<T> rows =
          trainer_detail::param_rows(spec_, l, spec_.param_nodes[l], points, ws, ws.forward.patches);
      if (by_inputs(l)) {
        const RowMatrix<T>& g = *rows.errors;
        ws.inputs[l].pack(g.data(), g.cols(), rows.rows, g.cols(), true, n_threads_);
      } else {
        ws.inputs[l].pack(rows.patches, rows.patch_cols, rows.rows, rows.patch_cols, true, n_threads_);
      }
    }
  }

  // Whether step() splits layer l's weight gradient into blocks of its input units (rows of W), each
  // block errors^T (inputs' block) with the errors packed once, rather than blocks of its output units
  // with the inputs packed once: for a layer whose inputs outnumber its outputs, in a recurrent network
  // (many rows: a block packs its inputs' columns in order, rather than all the inputs transposed).
  bool by_inputs(std::size_t l) const { return recurrent_ && spec_.params[l].fan_in > spec_.params[l].fan_out; }
  // Whether layer l and l + 1 are a recurrent layer's input and recurrent weights, both trained by
  // blocks of output units: their gradients' blocks share the same errors, packed once for both.
  bool shares_errors(std::size_t l) const {
    return recurrent_ && l + 1 < spec_.params.size() && spec_.recurrent_weights(l + 1) &&
           spec_.param_nodes[l] == spec_.param_nodes[l + 1] && trainable_.weights[l] && trainable_.weights[l + 1] &&
           !by_inputs(l) && !by_inputs(l + 1);
  }
  // The units step()'s weight-gradient blocks of layer l split (see by_inputs).
  std::int64_t block_extent(std::size_t l) const {
    return by_inputs(l) ? spec_.params[l].fan_in : spec_.params[l].fan_out;
  }

  // Columns [j0, j0 + cols) of layer l's weight gradient sums (rows, if by_inputs(l)) from one chunk of
  // `points` points whose forward pass and errors are in `ws`: sums (+)= forward * (input patches)^T
  // (errors), written when `first`. `scratch` holds the patches and the product, and the block's packed
  // errors, which `errors_packed` reuses (a block of the layer sharing them, just before).
  void add_weight_block(std::size_t l, std::int64_t j0, std::int64_t cols, std::int64_t points,
                        const trainer_detail::Workspace<T>& ws, trainer_detail::Workspace<T>& scratch, bool first,
                        std::vector<double>& sums, bool errors_packed = false) const {
    const trainer_detail::ParamRows<T> rows =
        trainer_detail::param_rows(spec_, l, spec_.param_nodes[l], points, ws, scratch.forward.patches);
    const RowMatrix<T>& g = *rows.errors;
    const std::int64_t valid = rows.rows;  // the padding rows would add zeros
    const std::int64_t fan_out = spec_.params[l].fan_out;
    const double forward = scales_[l].forward;
    if (by_inputs(l)) {  // rows [j0, j0 + cols) of W: (errors^T packed) times these input columns
      scratch.errors.pack(rows.patches + j0, valid, cols, rows.patch_cols, false);
      scratch.product.resize(fan_out, cols);
      packed_product(ws.inputs[l], scratch.errors, scratch.product.data(), cols, T(1), 0, fan_out, 0, cols, true);
      for (std::int64_t r = 0; r < cols; ++r) {
        double* dst = sums.data() + (j0 + r) * fan_out;
        for (std::int64_t j = 0; j < fan_out; ++j) {
          const double v = forward * double(scratch.product(j, r));
          dst[j] = first ? v : dst[j] + v;
        }
      }
      return;
    }
    if (l < ws.inputs.size() && ws.inputs[l].depth() == valid) {  // packed by pack_recurrent_inputs
      if (!errors_packed) scratch.errors.pack(g.data() + j0, valid, cols, g.cols(), false);
      scratch.product.resize(rows.patch_cols, cols);
      packed_product(ws.inputs[l], scratch.errors, scratch.product.data(), cols, T(1), 0, rows.patch_cols, 0, cols,
                     true);
    } else {
      scratch.product.noalias() =
          Eigen::Map<const RowMatrix<T>>(rows.patches, valid, rows.patch_cols).transpose() * g.block(0, j0, valid, cols);
    }
    for (std::int64_t r = 0; r < rows.patch_cols; ++r) {
      const T* p = scratch.product.data() + r * cols;
      double* dst = sums.data() + r * fan_out + j0;
      if (first) {
        for (std::int64_t j = 0; j < cols; ++j) dst[j] = forward * double(p[j]);
      } else {
        for (std::int64_t j = 0; j < cols; ++j) dst[j] += forward * double(p[j]);
      }
    }
  }

  // Whether the backward pass crosses an activation (a recurrent node holds its own), or the tangent
  // pass of a linearisation may.
  bool needs_derivatives() const {
    const auto n_nodes = static_cast<std::int64_t>(spec_.nodes.size());
    return direction_ || lowest_ < n_nodes - 1 ||
           (lowest_ < n_nodes && (spec_.nodes[static_cast<std::size_t>(lowest_)].kind == NodeKind::recurrent ||
                                  spec_.nodes[static_cast<std::size_t>(lowest_)].kind == NodeKind::attention));
  }

  static constexpr std::int64_t kGroup = 4;         // chunks whose errors are kept at once in step()
  static constexpr std::int64_t kBlockCols = 256;   // columns of a weight-gradient block in step()

  SequentialSpec spec_;
  std::vector<LayerScales> scales_;
  TrainableParams trainable_;
  int n_threads_;
  std::int64_t chunk_rows_;
  std::int64_t lowest_ = 0;    // the lowest node the backward pass must reach
  std::vector<bool> fused_;    // per node: a dense layer whose backward step is fused with its activation's
  std::vector<bool> written_;  // per node: its error is written whole by a fused layer (or an overwriting one)
  std::vector<bool> overwrites_;  // per node: a dense layer writing its input's error whole (see the constructor)
  std::vector<bool> skipped_;  // per node: an activation a fused layer steps over (its error never formed)
  bool recurrent_ = false;                   // the network has recurrent layers (see gradients())
  const Direction<T>* direction_ = nullptr;  // training a linearisation: theta - theta_0
  bool offset_ = true;                       // ... with f(x; theta_0) added
  std::vector<trainer_detail::Workspace<T>> workspaces_;
  std::vector<ParamGradients> partial_;  // one per chunk
  std::vector<trainer_detail::Workspace<T>> chunk_workspaces_;  // step(): one per chunk of a group
  std::vector<ParamGradients> bias_sums_;                       // step(): loss and bias sums, one per chunk
  ParamGradients weight_sums_;                                  // step(): the weight gradient sums
  ParamGradients total_;
  std::vector<std::int64_t> norm_channels_;                // per batch normalisation
  std::vector<trainer_detail::Workspace<T>> chunk_ws_;     // batch normalisation in training: one per chunk
  NormStatistics<T> norm_;                                 // ... the batch's statistics as the passes use them
  std::vector<BatchStats> stats_;                          // ... and in float64
  std::vector<std::pair<std::vector<double>, std::vector<double>>> norm_partial_;  // per chunk: sums of g, g xhat
};

}  // namespace nnpk
