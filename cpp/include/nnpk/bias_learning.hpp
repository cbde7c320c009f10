// Training a random network's biases (and optionally its readout weights) while
// its hidden weights stay fixed: the mean loss of a minibatch and its gradients
// with respect to the trainable stored parameters only. The backward pass carries
// the output gradient down through the fixed weights to the lowest layer with a
// trainable bias; a hidden layer's weight gradient is never formed.
//
// Derivatives are with respect to the stored parameters (CONVENTIONS.md): under
// "ntk" the bias enters as b_std * b and the readout as (W_std / sqrt(n_L)) h W,
// so d loss / d b = b_std * d loss / d z; under "standard" d loss / d b = d loss / d z.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "nnpk/forward.hpp"
#include "nnpk/mlp.hpp"
#include "nnpk/monte_carlo.hpp"
#include "nnpk/parallel.hpp"
#include "nnpk/learning/trainer.hpp"

namespace nnpk {

// Which stored parameters are trained.
struct TrainableSet {
  std::vector<char> biases;  // per layer (hidden layers, then the readout)
  bool readout = false;      // the readout weights W^{L+1}
};

// Loss and gradients with respect to the trainable parameters, in float64: one
// chunk's sums, or (after scale) their mean over the rows.
struct TrainableGradients {
  double loss = 0.0;
  std::vector<std::vector<double>> biases;  // per layer: (fan_out,), empty where not trained
  std::vector<double> readout;              // (n_L, C) row-major, empty unless trained

  TrainableGradients() = default;
  TrainableGradients(const MLPSpec& spec, const TrainableSet& trainable) {
    for (std::size_t l = 0; l < spec.layers.size(); ++l)
      biases.emplace_back(trainable.biases[l] ? static_cast<std::size_t>(spec.layers[l].fan_out) : 0, 0.0);
    const DenseLayer& top = spec.layers.back();
    if (trainable.readout) readout.assign(static_cast<std::size_t>(top.fan_in * top.fan_out), 0.0);
  }

  void add(const TrainableGradients& other) {
    loss += other.loss;
    for (std::size_t l = 0; l < biases.size(); ++l)
      for (std::size_t j = 0; j < biases[l].size(); ++j) biases[l][j] += other.biases[l][j];
    for (std::size_t k = 0; k < readout.size(); ++k) readout[k] += other.readout[k];
  }

  void zero() {
    loss = 0.0;
    for (auto& b : biases) std::fill(b.begin(), b.end(), 0.0);
    std::fill(readout.begin(), readout.end(), 0.0);
  }

  void scale(double factor) {
    loss *= factor;
    for (auto& b : biases)
      for (double& v : b) v *= factor;
    for (double& v : readout) v *= factor;
  }
};

namespace detail {

// Per-thread buffers of one row chunk.
template <class T>
struct BackwardWorkspace {
  ForwardWorkspace<T> forward;
  std::vector<RowMatrix<T>> grads;  // per layer: d loss / d z^l of the chunk's rows (kept: no reallocation)
  RowMatrix<T> readout;             // (n_L, C) product of one chunk
};

// Loss and gradient sums of one row chunk into `out`.
template <class T>
void chunk_gradients(const MLPSpec& spec, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                     const TrainableSet& trainable, std::int64_t lowest, const T* x, std::int64_t row0,
                     std::int64_t rows, const LossTargets& targets, BackwardWorkspace<T>& ws,
                     TrainableGradients& out) {
  const std::int64_t L = spec.n_hidden();
  const std::int64_t d = spec.input_dim();
  const T* input = forward_rows(spec, scales, net, x + row0 * d, rows, lowest < L, ws.forward);
  const std::size_t top = static_cast<std::size_t>(L);
  ws.grads.resize(top + 1);
  const RowMatrix<T>& grad = ws.grads[top];
  trainer_detail::loss_gradient(ws.forward.outputs[top], row0, rows, targets, out.loss, ws.grads[top]);
  if (trainable.biases[top]) trainer_detail::add_column_sums(grad, rows, scales[top].bias, out.biases[top]);
  if (trainable.readout) {
    const DenseLayer& readout = spec.layers[top];
    const T* h = L == 0 ? input : ws.forward.outputs[top - 1].data();
    ws.readout.noalias() = Eigen::Map<const RowMatrix<T>>(h, grad.rows(), readout.fan_in).transpose() * grad;
    const double forward = scales[top].forward;
    const T* p = ws.readout.data();
    for (std::size_t k = 0; k < out.readout.size(); ++k) out.readout[k] += forward * double(p[k]);
  }
  // d loss / d z^l = ((d loss / d z^{l+1}) W^{l+1}^T) * forward_{l+1} * phi'(z^l), down to the lowest trained bias.
  for (std::int64_t l = L - 1; l >= lowest; --l) {
    const std::size_t lu = static_cast<std::size_t>(l);
    const DenseLayer& above = spec.layers[lu + 1];
    Eigen::Map<const RowMatrix<T>> W(net.weights[lu + 1], above.fan_in, above.fan_out);
    ws.grads[lu].noalias() = ws.grads[lu + 1] * W.transpose();
    const T forward = static_cast<T>(scales[lu + 1].forward);
    ws.grads[lu].array() *= forward * ws.forward.derivatives[lu].array();
    if (trainable.biases[lu]) trainer_detail::add_column_sums(ws.grads[lu], rows, scales[lu].bias, out.biases[lu]);
  }
}

}  // namespace detail

// Mean loss and gradients of minibatches for one network and one trainable set,
// keeping its buffers from call to call (a training loop makes many small calls).
// Rows are split into fixed chunks of chunk_rows (a multiple of kRowQuantum); each
// chunk's float64 partial sums are added in chunk order, so a result is bitwise
// the same for any n_threads.
template <class T>
class TrainableBackprop {
 public:
  // scales: spec.scales(true) for stored parameters.
  TrainableBackprop(MLPSpec spec, std::vector<LayerScales> scales, TrainableSet trainable, int n_threads,
                    std::int64_t chunk_rows = kRowQuantum)
      : spec_(std::move(spec)), scales_(std::move(scales)), trainable_(std::move(trainable)),
        n_threads_(std::max(1, n_threads)), chunk_rows_(chunk_rows) {
    spec_.validate();
    const std::size_t n_layers = spec_.layers.size();
    if (trainable_.biases.size() != n_layers) throw std::invalid_argument("trainable biases need one flag per layer");
    for (std::size_t l = 0; l < n_layers; ++l)
      if (trainable_.biases[l] && !spec_.layers[l].has_bias)
        throw std::invalid_argument("layer " + std::to_string(l) + " has no bias to train");
    L_ = spec_.n_hidden();
    lowest_ = L_;
    for (std::int64_t l = L_ - 1; l >= 0; --l)
      if (trainable_.biases[static_cast<std::size_t>(l)]) lowest_ = l;
    workspaces_.resize(static_cast<std::size_t>(n_threads_));
    total_ = TrainableGradients(spec_, trainable_);
  }

  // Over `rows` rows of x (row-major, d columns) through `net`, which holds the
  // current values of the trainable parameters. The result lives until the next call.
  const TrainableGradients& gradients(const NetworkView<T>& net, const T* x, std::int64_t rows,
                                      const LossTargets& targets) {
    check_targets(rows, targets);
    const std::vector<RowTile<T>> chunks = row_tiles<T>(x, rows, nullptr, 0, chunk_rows_);
    while (partial_.size() < chunks.size()) partial_.emplace_back(spec_, trainable_);
    for (std::size_t c = 0; c < chunks.size(); ++c) partial_[c].zero();
    parallel_for(static_cast<std::int64_t>(chunks.size()), n_threads_, [&](std::int64_t c, int thread) {
      const RowTile<T>& chunk = chunks[static_cast<std::size_t>(c)];
      detail::chunk_gradients(spec_, scales_, net, trainable_, lowest_, x, chunk.row0, chunk.rows, targets,
                              workspaces_[static_cast<std::size_t>(thread)], partial_[static_cast<std::size_t>(c)]);
    });
    total_.zero();
    for (std::size_t c = 0; c < chunks.size(); ++c) total_.add(partial_[c]);
    total_.scale(1.0 / static_cast<double>(rows));
    return total_;
  }

 private:
  void check_targets(std::int64_t rows, const LossTargets& targets) const {
    if (rows < 1) throw std::invalid_argument("the minibatch has no rows");
    const std::int64_t C = spec_.layers.back().fan_out;
    if (targets.n_outputs < 1 || targets.n_outputs > C)
      throw std::invalid_argument("n_outputs must be in [1, " + std::to_string(C) + "]");
    if (targets.kind == LossKind::squared) {
      if (!targets.values) throw std::invalid_argument("the squared loss needs target values");
      return;
    }
    if (!targets.labels) throw std::invalid_argument("cross-entropy needs labels");
    for (std::int64_t r = 0; r < rows; ++r)
      if (targets.labels[r] < 0 || targets.labels[r] >= targets.n_outputs)
        throw std::invalid_argument("label " + std::to_string(targets.labels[r]) + " at row " + std::to_string(r) +
                                    " is outside [0, " + std::to_string(targets.n_outputs) + ")");
  }

  MLPSpec spec_;
  std::vector<LayerScales> scales_;
  TrainableSet trainable_;
  int n_threads_;
  std::int64_t chunk_rows_;
  std::int64_t L_ = 0, lowest_ = 0;  // lowest: the lowest hidden layer the backward pass must reach
  std::vector<detail::BackwardWorkspace<T>> workspaces_;
  std::vector<TrainableGradients> partial_;  // one per chunk
  TrainableGradients total_;
};

// The logits (rows, C) of x through `net`, in float64, one row chunk per item.
template <class T>
void network_outputs(const MLPSpec& spec, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                     const T* x, std::int64_t rows, int n_threads, double* out,
                     std::int64_t chunk_rows = 2 * kRowQuantum) {
  spec.validate();
  const std::int64_t d = spec.input_dim(), C = spec.layers.back().fan_out;
  const std::vector<RowTile<T>> chunks = row_tiles<T>(x, rows, nullptr, 0, chunk_rows);
  std::vector<ForwardWorkspace<T>> workspaces(static_cast<std::size_t>(std::max(1, n_threads)));
  parallel_for(static_cast<std::int64_t>(chunks.size()), n_threads, [&](std::int64_t c, int thread) {
    const RowTile<T>& chunk = chunks[static_cast<std::size_t>(c)];
    ForwardWorkspace<T>& ws = workspaces[static_cast<std::size_t>(thread)];
    forward_rows(spec, scales, net, x + chunk.row0 * d, chunk.rows, false, ws);
    const T* f = ws.outputs.back().data();
    std::transform(f, f + chunk.rows * C, out + chunk.row0 * C, [](T v) { return double(v); });
  });
}

}  // namespace nnpk
