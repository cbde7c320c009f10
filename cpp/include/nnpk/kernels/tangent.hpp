// Tangent kernels of sequential networks, layer by layer (docs/definitions.rst),
// never a per-parameter Jacobian of all points. For a parametrised layer with input scale s
// (LayerScales::input) and output positions p, the gradient of logit c with respect to its
// weights is s sum_p patch_p(x)^T delta_p,c(x) (fan_in x channels), so its share of Theta is
//   s^2 sum_c sum_{p,q} (patch_p(x) . patch_q(x')) (delta_p,c(x) . delta_q,c(x')),
// computed either as the Gram of those per-example gradients, formed for a chunk of points at
// a time, or in this position-pair form, whichever costs less for the layer's sizes (a dense
// layer is one position: the MLP's (a . a')(delta . delta')). The biases' share is the Gram of
// sum_p delta_p. The cotangents delta come from an exact backward pass through every node.
//
// Dense layers (one position in and out) take the MLP's path: their shares are products of whole
// output tiles, (a . a' scaled) times (delta . delta'), the readout's delta being the identity, and
// traced, a hidden layer read by the activation the readout reads has the n_L features
// phi'(z_j) forward_L |W_L[j, :]| (sum_c delta_c . delta_c' = sum_j phi'_j phi'_j' forward_L^2
// sum_c W_L[j, c]^2). A dense layer read only by an activation read only by a dense layer hands
// its cotangent down in one step, (g W^T) * (forward phi'(z)).
//
// Determinism: chunks are fixed runs of points (a divisor of kRowQuantum, aligned at 0, so
// they never straddle an output tile), every product has a shape fixed by the layer alone,
// and each output entry adds its layers in a fixed order: results do not depend on threads,
// row tiles or output tiles.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "nnpk/kernels/gram.hpp"
#include "nnpk/kernels/monte_carlo.hpp"
#include "nnpk/network/backward.hpp"
#include "nnpk/network/forward.hpp"

namespace nnpk {

// Which kernels one pass computes.
struct TangentRequest {
  bool nngp = false;               // also the output kernel f . f' (sum over logits)
  std::vector<char> weights;       // per layer: include its weights
  std::vector<char> biases;        // per layer: include its biases (if it has any)
  bool per_layer = false;          // one output per included (layer, part) instead of their sum
  bool per_logit = false;          // (n1, n2, C, C) instead of the sum over logits

  // Included (layer, part) pairs in output order; part 0 = weights, 1 = biases.
  std::vector<std::pair<std::int64_t, int>> parts(const std::vector<DenseLayer>& layers) const {
    std::vector<std::pair<std::int64_t, int>> out;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      if (weights[l]) out.emplace_back(static_cast<std::int64_t>(l), 0);
      if (biases[l] && layers[l].has_bias) out.emplace_back(static_cast<std::int64_t>(l), 1);
    }
    return out;
  }
  std::size_t n_tangent_outputs(const std::vector<DenseLayer>& layers) const {
    return per_layer ? parts(layers).size() : 1;
  }
};

// K[i0 .. i0+ni, j0 .. j0+nj] += tile (ni x nj x cc entries), K with n2 columns of cc entries.
inline void add_tile(double* K, std::int64_t n2, const double* tile, std::int64_t i0, std::int64_t ni, std::int64_t j0,
                     std::int64_t nj, std::int64_t cc) {
  for (std::int64_t i = 0; i < ni; ++i) {
    double* row = K + ((i0 + i) * n2 + j0) * cc;
    const double* src = tile + i * nj * cc;
    for (std::int64_t k = 0; k < nj * cc; ++k) row[k] += src[k];
  }
}

// Lower triangle of a symmetric tangent kernel (n x n, of C x C blocks per logit) from the upper
// one; per logit K[j, i, c', c] = K[i, j, c, c'].
inline void mirror_tangent(double* K, std::int64_t n, std::int64_t C, bool per_logit, int n_threads) {
  if (!per_logit) return mirror_upper(K, n, n_threads);
  const std::int64_t cc = C * C;
  parallel_for(n, n_threads, [&](std::int64_t i, int) {
    for (std::int64_t j = 0; j < i; ++j)
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t c2 = 0; c2 < C; ++c2) K[(i * n + j) * cc + c * C + c2] = K[(j * n + i) * cc + c2 * C + c];
  });
}

struct TangentOptions {
  std::uint64_t seed = 0, start = 0, stop = 1;
  int n_threads = 1;
  std::int64_t tile_rows = 2 * kRowQuantum;  // forward/backward row tile, a multiple of kRowQuantum
  std::int64_t gram_tile = 4 * kRowQuantum;  // output tile edge, a multiple of kRowQuantum
  std::int64_t panel_cols = 128;              // for the nngp stream
  std::function<bool(std::uint64_t)> poll;
};

// What every tangent accumulator shares: the request checked against the parametrised layers,
// the output sums ([nngp sum if requested], then the tangent sums: n1 x n2, or n1 x n2 x C x C
// per logit), the nngp stream, the output tiles of the Gram pass and the final mirror.
class TangentStream {
 public:
  TangentStream(const TangentStream&) = delete;
  TangentStream& operator=(const TangentStream&) = delete;

  void finish() {
    for (auto& s : nngp_) s.finish(gopt_);
    if (!symmetric_) return;
    for (std::size_t k = req_.nngp ? 1 : 0; k < outputs_.size(); ++k)
      mirror_tangent(outputs_[k], n1_, C_, req_.per_logit, opt_.n_threads);
  }

 protected:
  TangentStream(const std::vector<DenseLayer>& layers, std::int64_t n_logits, std::int64_t n1, std::int64_t n2,
                bool symmetric, TangentRequest req, const TangentOptions& opt, std::vector<double*> outputs)
      : req_(std::move(req)), opt_(opt), n1_(n1), n2_(n2), symmetric_(symmetric), outputs_(std::move(outputs)),
        C_(n_logits) {
    if (req_.weights.size() != layers.size() || req_.biases.size() != layers.size())
      throw std::invalid_argument("weights and biases flags need one entry per parametrised layer");
    if (opt_.gram_tile <= 0 || opt_.gram_tile % kRowQuantum != 0)
      throw std::invalid_argument("gram_tile must be a positive multiple of " + std::to_string(kRowQuantum));
    parts_ = req_.parts(layers);
    const std::size_t expected = (req_.nngp ? 1 : 0) + req_.n_tangent_outputs(layers);
    if (outputs_.size() != expected) throw std::invalid_argument("wrong number of output sums");
    if (req_.nngp) nngp_.emplace_back(n1_, n2_, symmetric_, C_, opt_.panel_cols, outputs_[0]);
    gopt_.tile = 256;
    gopt_.n_threads = opt_.n_threads;
    if (opt_.poll) gopt_.poll = [this] { return opt_.poll(done_); };
  }

  // One network: rows(t, thread) for each of n_row_tiles row tiles (which write the nngp
  // panels), then tile(i0, ni, j0, nj, thread) for every output tile (on or above the diagonal
  // of a symmetric kernel).
  template <class Rows, class Tile>
  void accumulate(std::int64_t n_row_tiles, Rows&& rows, Tile&& tile) {
    for (auto& s : nngp_) s.reserve(gopt_);
    parallel_for(n_row_tiles, opt_.n_threads, rows);
    for (auto& s : nngp_) s.commit();
    for_each_output_tile(n1_, n2_, opt_.gram_tile, symmetric_, opt_.n_threads, gopt_.poll, tile);
    ++done_;
    if (opt_.poll && opt_.poll(done_)) throw Cancelled();
  }

  TangentRequest req_;
  TangentOptions opt_;
  std::int64_t n1_, n2_;
  bool symmetric_;
  std::vector<double*> outputs_;
  std::vector<std::pair<std::int64_t, int>> parts_;
  std::int64_t C_;
  std::vector<PanelStream> nngp_;
  GramOptions gopt_;
  std::uint64_t done_ = 0;
};

namespace sequential_tangent_detail {

// Entries one chunk product may hold.
constexpr std::int64_t kChunkEntries = std::int64_t(1) << 21;

// The largest divisor of kRowQuantum not above `limit` (at least 1).
inline std::int64_t chunk_points(std::int64_t limit) {
  std::int64_t best = 1;
  for (std::int64_t d = 1; d <= kRowQuantum; ++d)
    if (kRowQuantum % d == 0 && d <= limit) best = d;
  return best;
}

}  // namespace sequential_tangent_detail

// Accumulates a sequential network's tangent kernels network by network (outputs as
// TangentStream's).
template <class T>
class SequentialTangent : public TangentStream {
 public:
  SequentialTangent(const SequentialSpec& spec, std::vector<LayerScales> scales, const T* x1, std::int64_t n1,
                    const T* x2, std::int64_t n2, TangentRequest req, const TangentOptions& opt,
                    std::vector<double*> outputs)
      : TangentStream(spec.params, spec.n_outputs(), n1, x2 ? n2 : n1, x2 == nullptr, std::move(req), opt,
                      std::move(outputs)),
        spec_(spec), scales_(std::move(scales)), x1_(x1), x2_(x2) {
    tiles_ = row_tiles(x1_, n1_, x2_, n2_, opt_.tile_rows);
    const std::int64_t n_nodes = static_cast<std::int64_t>(spec_.nodes.size());
    param_node_ = spec_.param_nodes;
    plan_dense();
    lowest_node_ = n_nodes;
    for (const auto& part : parts_) {
      const std::int64_t l = part.first;
      if (l == readout_ || shortcut_[static_cast<std::size_t>(l)]) continue;  // no backward pass needed for these
      lowest_node_ = std::min(lowest_node_, param_node_[static_cast<std::size_t>(l)]);
    }
    plan_fused();
    plan_layers();
    first_ = make_features(n1_);
    if (!symmetric_) second_ = make_features(n2_);
    workspaces_.resize(static_cast<std::size_t>(std::max(1, opt_.n_threads)));
  }

  // Adds one network's kernels.
  void add_network(const NetworkView<T>& net) {
    accumulate(
        static_cast<std::int64_t>(tiles_.size()),
        [&](std::int64_t t, int thread) {
          rows_pass(net, tiles_[static_cast<std::size_t>(t)], workspaces_[static_cast<std::size_t>(thread)]);
        },
        [&](std::int64_t i0, std::int64_t ni, std::int64_t j0, std::int64_t nj, int thread) {
          tile_pass(i0, ni, j0, nj, workspaces_[static_cast<std::size_t>(thread)]);
        });
  }

 private:
  // Every parametrised layer's stored rows for all points (padded to whole kRowQuantum points,
  // zero there): its input, rows (point, input position); its output cotangents, rows (point,
  // output position), columns (logit, channel); their sum over positions, rows point.
  struct Features {
    std::vector<RowMatrix<T>> inputs, deltas, delta_sums;
  };
  struct Workspace {
    SequentialWorkspace<T> forward;
    std::vector<RowMatrix<T>> cot;  // each node's output cotangent, laid out as Features::deltas
    std::vector<RowMatrix<T>> pre;  // each recurrent node's d logit / d z_t, time-major (backward.hpp)
    RowMatrix<T> back, patches_a, patches_b, grads_a, grads_b, gram, gram_delta, gram_input;
    std::vector<double> theta, single;
  };
  // How a layer's weight share is computed: per-example gradients or position pairs, and the
  // points per chunk.
  struct LayerPlan {
    bool per_example = false;
    std::int64_t chunk = 1;
  };

  const SeqNode& node_of(std::int64_t l) const {
    return spec_.nodes[static_cast<std::size_t>(param_node_[static_cast<std::size_t>(l)])];
  }
  bool wants_weights(std::int64_t l) const { return req_.weights[static_cast<std::size_t>(l)] != 0; }
  bool wants_biases(std::int64_t l) const {
    return req_.biases[static_cast<std::size_t>(l)] != 0 && spec_.params[static_cast<std::size_t>(l)].has_bias;
  }

  // Which parametrised layers are dense, which is the readout (the last node, dense: its delta is
  // the identity) and which take the traced shortcut (see the top of the file).
  void plan_dense() {
    const std::size_t n_params = spec_.params.size();
    const auto n_nodes = static_cast<std::int64_t>(spec_.nodes.size());
    dense_.assign(n_params, false);
    shortcut_.assign(n_params, false);
    readout_ = -1;
    for (std::size_t l = 0; l < n_params; ++l) dense_[l] = node_of(static_cast<std::int64_t>(l)).kind == NodeKind::dense;
    const SeqNode& last = spec_.nodes.back();
    if (last.kind != NodeKind::dense) return;
    readout_ = last.param;
    if (req_.per_logit || last.input < 1) return;
    const SeqNode& act = spec_.nodes[static_cast<std::size_t>(last.input)];
    if (act.kind != NodeKind::activation || act.readers != 1 || act.input < 0) return;
    const SeqNode& below = spec_.nodes[static_cast<std::size_t>(act.input)];
    if (below.kind == NodeKind::dense && below.readers == 1) shortcut_[static_cast<std::size_t>(below.param)] = true;
  }

  // Dense nodes whose backward step is fused with the activation they read (see the top of the file).
  void plan_fused() {
    FusedBackward plan(spec_, lowest_node_);
    fused_ = std::move(plan.fused);
    written_ = std::move(plan.written);
    skipped_ = std::move(plan.skipped);
  }

  // Per pair of points, the per-example form costs about C F (+ forming the gradients, once
  // per chunk pair) against P^2 (fan_in + C channels) for position pairs (C^2 channels and C^2 F
  // per logit).
  void plan_layers() {
    using sequential_tangent_detail::chunk_points;
    using sequential_tangent_detail::kChunkEntries;
    plans_.resize(spec_.params.size());
    const double logits = req_.per_logit ? double(C_) * double(C_) : double(C_);
    for (std::size_t l = 0; l < spec_.params.size(); ++l) {
      const DenseLayer& layer = spec_.params[l];
      const double P = double(spec_.param_positions(l));
      const double F = double(layer.fan_in) * double(layer.fan_out);
      LayerPlan& plan = plans_[l];
      const std::int64_t pe_chunk = chunk_points(kChunkEntries / (C_ * layer.fan_in * layer.fan_out));
      const std::int64_t pp_chunk =
          chunk_points(static_cast<std::int64_t>(std::sqrt(double(kChunkEntries)) / P));
      const double per_example = logits * F + 2.0 * double(C_) * P * F / double(pe_chunk);
      const double pairs = P * P * (double(layer.fan_in) + logits * double(layer.fan_out));
      plan.per_example = per_example < pairs;
      plan.chunk = plan.per_example ? pe_chunk : pp_chunk;
    }
  }

  Features make_features(std::int64_t n) const {
    const std::int64_t padded = round_up(n, kRowQuantum);
    Features f;
    const std::size_t n_params = spec_.params.size();
    f.inputs.resize(n_params);
    f.deltas.resize(n_params);
    f.delta_sums.resize(n_params);
    for (std::size_t l = 0; l < n_params; ++l) {
      const SeqNode& node = node_of(static_cast<std::int64_t>(l));
      const auto li = static_cast<std::int64_t>(l);
      if (dense_[l]) {
        if (wants_weights(li)) f.inputs[l].setZero(padded, node.in.channels);
        if ((wants_weights(li) || wants_biases(li)) && li != readout_)
          f.deltas[l].setZero(padded, shortcut_[l] ? node.out.channels : C_ * node.out.channels);
        continue;
      }
      const std::int64_t fan_out = spec_.params[l].fan_out;
      if (wants_weights(li)) {
        const bool own = node.kind == NodeKind::recurrent || node.kind == NodeKind::attention;
        const std::int64_t in_cols = own ? spec_.params[l].fan_in : node.in.channels;
        f.inputs[l].setZero(padded * (spec_.param_input_size(l) / in_cols), in_cols);
        f.deltas[l].setZero(padded * spec_.param_positions(l), C_ * fan_out);
      }
      if (wants_biases(static_cast<std::int64_t>(l))) f.delta_sums[l].setZero(padded, C_ * fan_out);
    }
    return f;
  }

  // Forward and backward pass of one row tile; stores its points' features.
  void rows_pass(const NetworkView<T>& net, const RowTile<T>& tile, Workspace& ws) {
    const std::int64_t n_nodes = static_cast<std::int64_t>(spec_.nodes.size());
    const bool backward = lowest_node_ < n_nodes;
    const bool shortcut = std::find(shortcut_.begin(), shortcut_.end(), true) != shortcut_.end();
    const std::int64_t rows = tile.rows;
    sequential_forward(spec_, scales_, net, tile.x + tile.row0 * spec_.input.size(), rows, backward || shortcut,
                       ws.forward);
    Features& feats = tile.second ? second_ : first_;
    if (req_.nngp) nngp_[0].panel(tile.second).write(tile.row0, rows, C_, ws.forward.outputs.back().data(), C_);
    if (backward) backward_pass(net, rows, ws);
    for (std::size_t l = 0; l < spec_.params.size(); ++l) {
      const auto li = static_cast<std::int64_t>(l);
      if (!wants_weights(li) && !wants_biases(li)) continue;
      if (dense_[l]) {
        store_dense(net, l, tile, ws, feats);
        continue;
      }
      const SeqNode& node = node_of(static_cast<std::int64_t>(l));
      const auto k = static_cast<std::size_t>(param_node_[l]);
      const bool recurrent = node.kind == NodeKind::recurrent;
      const std::int64_t P = spec_.param_positions(l), cols = C_ * spec_.params[l].fan_out;
      const std::int64_t padded = step_rows(rows);  // a recurrent node's rows per step
      // An attention node's layer: its errors (attention.hpp), the output's cotangent for O.
      const RowMatrix<T>& errors = node.kind == NodeKind::attention ? attention_errors(l, ws) : ws.cot[k];
      // Point r's delta at position q: a recurrent node's d/dz_q, time-major, else the output cotangent.
      const auto delta_row = [&](std::int64_t r, std::int64_t q) -> const T* {
        return recurrent ? ws.pre[k].data() + (q * padded + r) * cols : errors.data() + (r * P + q) * cols;
      };
      if (wants_weights(static_cast<std::int64_t>(l))) {
        const std::int64_t in_size = spec_.param_input_size(l);
        T* dst = feats.inputs[l].data() + tile.row0 * in_size;
        if (spec_.recurrent_weights(l)) {  // h_{t-1} at step t, from the time-major states
          const std::int64_t m = node.width;
          for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t q = 0; q < P; ++q) {
              const T* src = ws.forward.states[k].data() + (q * padded + r) * m;
              std::copy(src, src + m, dst + (r * P + q) * m);
            }
        } else {
          const T* in = attention_input(l, ws).data();
          std::copy(in, in + rows * in_size, dst);
        }
        T* deltas = feats.deltas[l].data() + tile.row0 * P * cols;
        for (std::int64_t r = 0; r < rows; ++r)
          for (std::int64_t q = 0; q < P; ++q) std::copy(delta_row(r, q), delta_row(r, q) + cols, deltas + (r * P + q) * cols);
      }
      if (wants_biases(static_cast<std::int64_t>(l))) {
        std::vector<double> sum(static_cast<std::size_t>(cols));
        for (std::int64_t r = 0; r < rows; ++r) {
          std::fill(sum.begin(), sum.end(), 0.0);
          for (std::int64_t q = 0; q < P; ++q)
            for (std::int64_t j = 0; j < cols; ++j) sum[static_cast<std::size_t>(j)] += double(delta_row(r, q)[j]);
          T* dst = feats.delta_sums[l].data() + (tile.row0 + r) * cols;
          for (std::int64_t j = 0; j < cols; ++j) dst[j] = static_cast<T>(sum[static_cast<std::size_t>(j)]);
        }
      }
    }
  }

  // Layer l's input rows: its node's input, or an attention node's layer's (attention.hpp).
  const RowMatrix<T>& attention_input(std::size_t l, const Workspace& ws) const {
    const auto k = static_cast<std::size_t>(param_node_[l]);
    const SeqNode& node = spec_.nodes[k];
    if (node.kind == NodeKind::attention)
      return attention_layer_input(node, static_cast<std::int64_t>(l), ws.forward.attention[k], ws.forward.output(node.input));
    return ws.forward.output(node.input);
  }
  // An attention node's layer l's errors: K's, Q's (untied), V's, E's, or O's (the output's cotangent).
  const RowMatrix<T>& attention_errors(std::size_t l, const Workspace& ws) const {
    const auto k = static_cast<std::size_t>(param_node_[l]);
    const SeqNode& node = spec_.nodes[k];
    if (attention_role(node, static_cast<std::int64_t>(l)) == AttentionRole::out) return ws.cot[k];
    return attention_layer_errors(node, static_cast<std::int64_t>(l), ws.forward.attention[k]);
  }

  // A dense layer's rows: its input (if its weights are wanted) and its delta (the readout's is
  // the identity, not stored; the shortcut layer's is its n_L features).
  void store_dense(const NetworkView<T>& net, std::size_t l, const RowTile<T>& tile, const Workspace& ws,
                   Features& feats) const {
    const SeqNode& node = node_of(static_cast<std::int64_t>(l));
    const std::int64_t rows = tile.rows, fan_in = node.in.channels, width = node.out.channels;
    if (wants_weights(static_cast<std::int64_t>(l))) {
      const T* in = ws.forward.output(node.input).data();
      std::copy(in, in + rows * fan_in, feats.inputs[l].data() + tile.row0 * fan_in);
    }
    if (static_cast<std::int64_t>(l) == readout_) return;
    if (!shortcut_[l]) {
      const RowMatrix<T>& delta = ws.cot[static_cast<std::size_t>(param_node_[l])];
      std::copy(delta.data(), delta.data() + rows * delta.cols(), feats.deltas[l].data() + tile.row0 * delta.cols());
      return;
    }
    const SeqNode& last = spec_.nodes.back();
    const T forward = static_cast<T>(scales_[static_cast<std::size_t>(readout_)].forward);
    const T* W = net.weights[static_cast<std::size_t>(readout_)];
    const RowMatrix<T>& dz = ws.forward.derivatives[static_cast<std::size_t>(last.input)];
    std::vector<T> norm(static_cast<std::size_t>(width));
    for (std::int64_t j = 0; j < width; ++j) {
      double s = 0;
      for (std::int64_t c = 0; c < C_; ++c) s += double(W[j * C_ + c]) * double(W[j * C_ + c]);
      norm[static_cast<std::size_t>(j)] = forward * static_cast<T>(std::sqrt(s));
    }
    T* out = feats.deltas[l].data() + tile.row0 * width;
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < width; ++j) out[r * width + j] = dz(r, j) * norm[static_cast<std::size_t>(j)];
  }

  // ws.cot[k] for nodes k >= lowest_node_: d logit_c / d (node k's output), rows (point,
  // position), columns (logit c, channel), zero in the padding (not formed for an activation a
  // fused layer steps over).
  void backward_pass(const NetworkView<T>& net, std::int64_t points, Workspace& ws) const {
    const std::int64_t n_nodes = static_cast<std::int64_t>(spec_.nodes.size());
    ws.cot.resize(static_cast<std::size_t>(n_nodes));
    ws.pre.resize(static_cast<std::size_t>(n_nodes));
    for (std::int64_t k = lowest_node_; k < n_nodes; ++k) {
      const Shape& s = spec_.nodes[static_cast<std::size_t>(k)].out;
      const std::size_t ku = static_cast<std::size_t>(k);
      if (!written_[ku] && !skipped_[ku]) ws.cot[ku].setZero(round_up(points * s.positions(), kRowQuantum), C_ * s.channels);
    }
    RowMatrix<T>& top = ws.cot.back();
    for (std::int64_t p = 0; p < points; ++p)
      for (std::int64_t c = 0; c < C_; ++c) top(p, c * C_ + c) = T(1);
    for (std::int64_t k = n_nodes - 1; k >= lowest_node_; --k) {
      if (skipped_[static_cast<std::size_t>(k)]) continue;
      if (fused_[static_cast<std::size_t>(k)]) {
        fused_backward(net, k, points, ws);
      } else {
        backward_node(spec_, scales_, net, ws.forward, k, points, C_, lowest_node_, ws.cot, ws.back,
                      &ws.pre[static_cast<std::size_t>(k)]);
      }
    }
  }

  // Dense node k reading activation a reading node z: cot[z] = (cot[k] W^T) * (forward phi'(z)),
  // per logit; from the readout (cotangent the identity) directly forward W[j, c] phi'(z_j).
  void fused_backward(const NetworkView<T>& net, std::int64_t k, std::int64_t points, Workspace& ws) const {
    const SeqNode& node = spec_.nodes[static_cast<std::size_t>(k)];
    const std::size_t a = static_cast<std::size_t>(node.input);
    const std::size_t z = static_cast<std::size_t>(spec_.nodes[a].input);
    const DenseLayer& layer = spec_.params[static_cast<std::size_t>(node.param)];
    const T forward = static_cast<T>(scales_[static_cast<std::size_t>(node.param)].forward);
    const T* W = net.weights[static_cast<std::size_t>(node.param)];
    const RowMatrix<T>& dz = ws.forward.derivatives[a];
    const std::int64_t padded = round_up(points, kRowQuantum), fan_in = layer.fan_in;
    RowMatrix<T>& g = ws.cot[z];
    if (k + 1 == static_cast<std::int64_t>(spec_.nodes.size())) {
      g.setZero(padded, C_ * fan_in);
      for (std::int64_t r = 0; r < points; ++r)
        for (std::int64_t c = 0; c < C_; ++c)
          for (std::int64_t j = 0; j < fan_in; ++j) g(r, c * fan_in + j) = forward * W[j * C_ + c] * dz(r, j);
      return;
    }
    g.resize(padded, C_ * fan_in);
    Eigen::Map<RowMatrix<T>> back(g.data(), padded * C_, fan_in);
    back.noalias() = Eigen::Map<const RowMatrix<T>>(ws.cot[static_cast<std::size_t>(k)].data(), padded * C_,
                                                    layer.fan_out) *
                     Eigen::Map<const RowMatrix<T>>(W, fan_in, layer.fan_out).transpose();
    for (std::int64_t r = 0; r < padded; ++r)
      for (std::int64_t c = 0; c < C_; ++c)
        for (std::int64_t j = 0; j < fan_in; ++j) back(r * C_ + c, j) *= forward * dz(r, j);
  }

  // An output tile: rows [i0, i0 + ni), columns [j0, j0 + nj), cc entries each.
  struct Tile {
    std::int64_t i0, ni, j0, nj, cc;
    double* out;
    double* at(std::int64_t i, std::int64_t j) const { return out + ((i - i0) * nj + (j - j0)) * cc; }
  };

  // f(a, na, b, nb) for each pair of chunks of `chunk` points covering the tile (on a diagonal
  // tile of a symmetric kernel, those on or above the diagonal).
  template <class F>
  void for_chunk_pairs(const Tile& t, std::int64_t chunk, F&& f) const {
    const bool diagonal = symmetric_ && t.i0 == t.j0;
    for (std::int64_t a = t.i0; a < t.i0 + t.ni; a += chunk)
      for (std::int64_t b = diagonal ? a : t.j0; b < t.j0 + t.nj; b += chunk)
        f(a, std::min(chunk, t.i0 + t.ni - a), b, std::min(chunk, t.j0 + t.nj - b));
  }

  void tile_pass(std::int64_t i0, std::int64_t ni, std::int64_t j0, std::int64_t nj, Workspace& ws) {
    const std::int64_t cc = req_.per_logit ? C_ * C_ : 1;
    const std::size_t first_out = req_.nngp ? 1 : 0;
    const std::size_t size = static_cast<std::size_t>(ni * nj * cc);
    if (!req_.per_layer) ws.theta.assign(size, 0.0);
    std::int64_t delta_layer = -1;  // the dense layer whose delta Gram ws.gram_delta holds
    for (std::size_t k = 0; k < parts_.size(); ++k) {
      const auto [l, part] = parts_[k];
      if (req_.per_layer) ws.single.assign(size, 0.0);
      const Tile t{i0, ni, j0, nj, cc, req_.per_layer ? ws.single.data() : ws.theta.data()};
      if (dense_[static_cast<std::size_t>(l)]) {
        add_dense_share(l, part, t, ws, delta_layer);
      } else if (part == 1) {
        add_bias_share(l, t, ws);
      } else if (plans_[static_cast<std::size_t>(l)].per_example) {
        add_per_example_share(l, t, ws);
      } else {
        add_position_pair_share(l, t, ws);
      }
      if (req_.per_layer) add_tile(outputs_[first_out + k], n2_, ws.single.data(), i0, ni, j0, nj, cc);
    }
    if (!req_.per_layer) add_tile(outputs_[first_out], n2_, ws.theta.data(), i0, ni, j0, nj, cc);
  }

  const Features& second_side() const { return symmetric_ ? first_ : second_; }

  // A dense layer's share of a whole output tile: factor (a . a') (delta . delta') for the
  // weights, factor (delta . delta') for the biases.
  void add_dense_share(std::int64_t l, int part, const Tile& t, Workspace& ws, std::int64_t& delta_layer) const {
    const std::size_t lu = static_cast<std::size_t>(l);
    const Features& a = first_;
    const Features& b = second_side();
    const std::int64_t pi = round_up(t.ni, kRowQuantum), pj = round_up(t.nj, kRowQuantum);
    const bool readout = l == readout_;
    if (!readout && delta_layer != l) {
      // Per logit, each point has C rows of delta; traced, its C rows are one feature vector.
      const std::int64_t rows_per_point = req_.per_logit ? C_ : 1;
      const auto view = [&](const RowMatrix<T>& m) {
        const std::int64_t rows = m.rows() * rows_per_point;
        return Eigen::Map<const RowMatrix<T>>(m.data(), rows, m.size() / rows);
      };
      ws.gram_delta.resize(pi * rows_per_point, pj * rows_per_point);
      ws.gram_delta.noalias() = view(a.deltas[lu]).middleRows(t.i0 * rows_per_point, pi * rows_per_point) *
                                view(b.deltas[lu]).middleRows(t.j0 * rows_per_point, pj * rows_per_point).transpose();
      delta_layer = l;
    }
    const bool traced_delta = !req_.per_logit && !readout;
    const double factor = part == 0 ? scales_[lu].input * scales_[lu].input : scales_[lu].bias_tangent;
    if (part == 0) {
      ws.gram_input.resize(pi, pj);
      ws.gram_input.noalias() = a.inputs[lu].middleRows(t.i0, pi) * b.inputs[lu].middleRows(t.j0, pj).transpose();
    }
    for (std::int64_t i = 0; i < t.ni; ++i)
      for (std::int64_t j = 0; j < t.nj; ++j) {
        const double g = part == 0 ? factor * double(ws.gram_input(i, j)) : factor;
        double* o = t.at(t.i0 + i, t.j0 + j);
        if (traced_delta) {
          o[0] += g * double(ws.gram_delta(i, j));
        } else if (!req_.per_logit) {
          o[0] += g * double(C_);  // readout: sum_c delta_c . delta_c = C
        } else if (readout) {
          for (std::int64_t c = 0; c < C_; ++c) o[c * C_ + c] += g;
        } else {
          for (std::int64_t c = 0; c < C_; ++c)
            for (std::int64_t c2 = 0; c2 < C_; ++c2) o[c * C_ + c2] += g * double(ws.gram_delta(i * C_ + c, j * C_ + c2));
        }
      }
  }

  // Rows of `m` (`rows_per_point` per point, `cols` columns) for points [a, a + chunk), per logit
  // (rows split into C rows of cols / C) or traced.
  static Eigen::Map<const RowMatrix<T>> chunk_rows(const RowMatrix<T>& m, std::int64_t a, std::int64_t chunk,
                                                   std::int64_t rows_per_point) {
    return Eigen::Map<const RowMatrix<T>>(m.data() + a * rows_per_point * m.cols(), chunk * rows_per_point, m.cols());
  }

  // o[(i, j)] += factor * gram(i, j) traced, or factor * gram((i, c), (j, c')) per logit, where
  // per logit the gram has C rows and columns per point.
  void add_gram(const Tile& t, std::int64_t a, std::int64_t na, std::int64_t b, std::int64_t nb,
                const RowMatrix<T>& gram, double factor) const {
    for (std::int64_t i = 0; i < na; ++i)
      for (std::int64_t j = 0; j < nb; ++j) {
        double* o = t.at(a + i, b + j);
        if (!req_.per_logit) {
          o[0] += factor * double(gram(i, j));
          continue;
        }
        for (std::int64_t c = 0; c < C_; ++c)
          for (std::int64_t c2 = 0; c2 < C_; ++c2) o[c * C_ + c2] += factor * double(gram(i * C_ + c, j * C_ + c2));
      }
  }

  // The Gram of sum_p delta_p (traced: a point's C x channels as one row; per logit: C rows).
  void add_bias_share(std::int64_t l, const Tile& t, Workspace& ws) const {
    const std::size_t lu = static_cast<std::size_t>(l);
    const std::int64_t rows_per_point = req_.per_logit ? C_ : 1;
    const auto view = [&](const RowMatrix<T>& m) {
      return Eigen::Map<const RowMatrix<T>>(m.data(), m.rows() * rows_per_point, m.cols() / rows_per_point);
    };
    const auto sa = view(first_.delta_sums[lu]), sb = view(second_side().delta_sums[lu]);
    for_chunk_pairs(t, kRowQuantum, [&](std::int64_t a, std::int64_t na, std::int64_t b, std::int64_t nb) {
      const std::int64_t rows = kRowQuantum * rows_per_point;
      ws.gram.resize(rows, rows);
      ws.gram.noalias() = sa.middleRows(a * rows_per_point, rows) * sb.middleRows(b * rows_per_point, rows).transpose();
      add_gram(t, a, na, b, nb, ws.gram, scales_[lu].bias_tangent);
    });
  }

  // The patches (rows (point, output position), fan_in columns) of points [a, a + chunk).
  const T* patches(std::int64_t l, const Features& f, std::int64_t a, std::int64_t chunk, RowMatrix<T>& buffer) const {
    const SeqNode& node = node_of(l);
    const T* in = f.inputs[static_cast<std::size_t>(l)].data() + a * spec_.param_input_size(static_cast<std::size_t>(l));
    if (node.pointwise()) return in;
    sequential_detail::im2col(node, in, chunk, buffer);
    return buffer.data();
  }

  // Per-example weight gradients of points [a, a + chunk): rows (point, logit), columns
  // (fan_in, channel), without the input scale.
  void gradients(std::int64_t l, const Features& f, std::int64_t a, std::int64_t chunk, RowMatrix<T>& patch_buffer,
                 RowMatrix<T>& grads) const {
    const DenseLayer& layer = spec_.params[static_cast<std::size_t>(l)];
    const std::int64_t P = spec_.param_positions(static_cast<std::size_t>(l)), co = layer.fan_out;
    const Eigen::Map<const RowMatrix<T>> A(patches(l, f, a, chunk, patch_buffer), chunk * P, layer.fan_in);
    const auto D = chunk_rows(f.deltas[static_cast<std::size_t>(l)], a, chunk, P);
    grads.resize(chunk * C_, layer.fan_in * co);
    for (std::int64_t p = 0; p < chunk; ++p)
      for (std::int64_t c = 0; c < C_; ++c) {
        Eigen::Map<RowMatrix<T>> g(grads.data() + (p * C_ + c) * grads.cols(), layer.fan_in, co);
        g.noalias() = A.middleRows(p * P, P).transpose() * D.block(p * P, c * co, P, co);
      }
  }

  // The Gram of per-example weight gradients, each chunk's formed once per row of chunk pairs.
  void add_per_example_share(std::int64_t l, const Tile& t, Workspace& ws) const {
    const std::size_t lu = static_cast<std::size_t>(l);
    const std::int64_t chunk = plans_[lu].chunk;
    const double factor = scales_[lu].input * scales_[lu].input;
    const std::int64_t rows_per_point = req_.per_logit ? C_ : 1;
    const auto view = [&](const RowMatrix<T>& m) {
      return Eigen::Map<const RowMatrix<T>>(m.data(), chunk * rows_per_point, m.size() / (chunk * rows_per_point));
    };
    const bool diagonal = symmetric_ && t.i0 == t.j0;
    for_chunk_pairs(t, chunk, [&](std::int64_t a, std::int64_t na, std::int64_t b, std::int64_t nb) {
      if (b == (diagonal ? a : t.j0)) gradients(l, first_, a, chunk, ws.patches_a, ws.grads_a);
      const bool same = symmetric_ && a == b;
      if (!same) gradients(l, second_side(), b, chunk, ws.patches_b, ws.grads_b);
      ws.gram.resize(chunk * rows_per_point, chunk * rows_per_point);
      ws.gram.noalias() = view(ws.grads_a) * view(same ? ws.grads_a : ws.grads_b).transpose();
      add_gram(t, a, na, b, nb, ws.gram, factor);
    });
  }

  // sum_{p,q} (patch_p . patch_q') (delta_p . delta_q') per pair of points (per logit pair).
  void add_position_pair_share(std::int64_t l, const Tile& t, Workspace& ws) const {
    const std::size_t lu = static_cast<std::size_t>(l);
    const DenseLayer& layer = spec_.params[lu];
    const std::int64_t chunk = plans_[lu].chunk, P = spec_.param_positions(lu), co = layer.fan_out;
    const double factor = scales_[lu].input * scales_[lu].input;
    const Features& fb = second_side();
    for_chunk_pairs(t, chunk, [&](std::int64_t a, std::int64_t na, std::int64_t b, std::int64_t nb) {
      const Eigen::Map<const RowMatrix<T>> A(patches(l, first_, a, chunk, ws.patches_a), chunk * P, layer.fan_in);
      const Eigen::Map<const RowMatrix<T>> B(patches(l, fb, b, chunk, ws.patches_b), chunk * P, layer.fan_in);
      ws.gram.resize(chunk * P, chunk * P);
      ws.gram.noalias() = A * B.transpose();
      const auto Da = chunk_rows(first_.deltas[lu], a, chunk, P), Db = chunk_rows(fb.deltas[lu], b, chunk, P);
      const std::int64_t pairs = req_.per_logit ? C_ * C_ : 1;
      for (std::int64_t cp = 0; cp < pairs; ++cp) {
        ws.gram_delta.resize(chunk * P, chunk * P);
        if (req_.per_logit) {
          const std::int64_t c = cp / C_, c2 = cp % C_;
          ws.gram_delta.noalias() = Da.middleCols(c * co, co) * Db.middleCols(c2 * co, co).transpose();
        } else {
          ws.gram_delta.noalias() = Da * Db.transpose();
        }
        for (std::int64_t i = 0; i < na; ++i)
          for (std::int64_t j = 0; j < nb; ++j) {
            double s = 0;
            for (std::int64_t p = 0; p < P; ++p)
              for (std::int64_t q = 0; q < P; ++q)
                s += double(ws.gram(i * P + p, j * P + q)) * double(ws.gram_delta(i * P + p, j * P + q));
            t.at(a + i, b + j)[cp] += factor * s;
          }
      }
    });
  }

  SequentialSpec spec_;
  std::vector<LayerScales> scales_;
  const T *x1_, *x2_;
  std::vector<RowTile<T>> tiles_;
  std::int64_t lowest_node_ = 0;
  std::vector<std::int64_t> param_node_;
  std::vector<LayerPlan> plans_;
  std::vector<bool> dense_, shortcut_;          // per parametrised layer
  std::int64_t readout_ = -1;                   // the parametrised layer whose delta is the identity (-1: none)
  std::vector<bool> fused_, written_, skipped_;  // per node, as SequentialBackprop's
  Features first_, second_;
  std::vector<Workspace> workspaces_;
};

// Monte Carlo: networks [start, stop) of `seed`, drawn as in sequential_monte_carlo.
template <class T>
void tangent_monte_carlo(const SequentialSpec& spec, const T* x1, std::int64_t n1, const T* x2, std::int64_t n2,
                         const TangentRequest& req, const TangentOptions& opt, const std::vector<double*>& outputs) {
  SequentialTangent<T> acc(spec, spec.scales(false), x1, n1, x2, n2, req, opt, outputs);
  NetworkDraw<T> draw(spec.params);
  const NetworkView<T> net = draw.view();
  for (std::uint64_t m = opt.start; m < opt.stop; ++m) {
    draw.draw(spec.params, opt.seed, m, opt.n_threads, spec.params.size());
    acc.add_network(net);
  }
  acc.finish();
}

// Given parameters (stored, as (fan_in, fan_out) matrices).
template <class T>
void tangent_empirical(const SequentialSpec& spec, const NetworkView<T>& net, const T* x1, std::int64_t n1, const T* x2,
                       std::int64_t n2, const TangentRequest& req, const TangentOptions& opt,
                       const std::vector<double*>& outputs) {
  SequentialTangent<T> acc(spec, spec.scales(true), x1, n1, x2, n2, req, opt, outputs);
  acc.add_network(net);
  acc.finish();
}

}  // namespace nnpk
