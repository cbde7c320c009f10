// The forward pass of a sequential network over a row tile of points (convolutions as one
// matrix product over the tile's patches), and the logits of given parameters.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "nnpk/network/attention.hpp"
#include "nnpk/network/aggregate.hpp"
#include "nnpk/network/conv.hpp"
#include "nnpk/network/layer_norm.hpp"
#include "nnpk/network/fan_in.hpp"
#include "nnpk/network/layers.hpp"
#include "nnpk/network/spec.hpp"
#include "nnpk/packed.hpp"
#include "nnpk/packed_rows.hpp"
#include "nnpk/parallel.hpp"

namespace nnpk {

// Per-thread buffers for one row tile: node k's output of the tile's points is the matrix
// (points x positions rows, padded to a multiple of kRowQuantum, channels columns), rows
// ordered (point, position). Padding rows are zero where a product reads them.
template <class T>
struct SequentialWorkspace {
  RowMatrix<T> input;
  std::vector<RowMatrix<T>> outputs;
  std::vector<RowMatrix<T>> derivatives;  // activation nodes, when kept: phi'(z); recurrent nodes: phi'(z_t)
  // Recurrent nodes, time-major (step t's rows are rows [t P, (t + 1) P) for P = step_rows(points)):
  // `states` h_0 = 0, h_1, ..., h_T ((T + 1) P rows); `step_inputs` x_1..x_T (T P rows).
  std::vector<RowMatrix<T>> states, step_inputs;
  // Per node, set by the caller: a recurrent node's h_0 for the pass's points (rows point, width
  // columns), null or absent for zero.
  std::vector<const T*> initial_states;
  // Set by the caller: > 0 computes each recurrent step's products by fixed blocks of columns, and
  // the other layers' products by fixed blocks of rows, on this many threads (the trainer, which runs
  // a recurrent network's chunks one after the other); 0: whole rows on the calling thread.
  // Either way a result does not depend on the threads; the two ways may differ in the last bits.
  int step_threads = 0;
  // Recurrent nodes' packed factors (packed.hpp), reused node after node; the backward pass of the
  // same points uses them too.
  mutable RecurrentPacks<T> packs;
  // Attention nodes' intermediate values (attention.hpp); their backward step writes its errors here.
  mutable std::vector<AttentionCache<T>> attention;
  RowMatrix<T> patches;
  // Graph points (SequentialSpec::graph): the pass's adjacencies, P x P per point (aggregate.hpp).
  std::vector<double> graphs;
  std::vector<float> zeros;  // a zero input row for the direct convolution's padding
  std::int64_t points = 0;
  // Set by the caller when it reads no node's output after a pass but those in `kept` (a Monte Carlo
  // pass): each node's output buffer then goes to `spare` once its last reader has run and the next nodes
  // take their buffers from there (one of the size they need), and the attention nodes share one cache, so
  // that a pass's buffers stay few (and in cache) however deep the network.
  bool recycle = false;
  std::vector<RowMatrix<T>> spare;

  const RowMatrix<T>& output(std::int64_t node) const {
    return node < 0 ? input : outputs[static_cast<std::size_t>(node)];
  }
};

namespace sequential_detail {

// m becomes (round_up(valid, kRowQuantum), cols) with its padding rows zero.
template <class T>
void shape_rows(RowMatrix<T>& m, std::int64_t valid, std::int64_t cols) {
  m.resize(round_up(valid, kRowQuantum), cols);
  m.bottomRows(m.rows() - valid).setZero();
}

// Row (point, oh, ow) of `patches` holds the inputs under the window at (oh, ow), ordered
// (kernel row, kernel column, channel) like the rows of the (kh, kw, c_in, c_out) weights;
// positions in the padding are zero. `in` holds the points' inputs, rows (point, position).
template <class T>
void im2col(const SeqNode& node, const T* in, std::int64_t points, RowMatrix<T>& patches) {
  const Shape &s = node.in, &o = node.out;
  const std::int64_t c = s.channels, kh = node.window_h, kw = node.window_w;
  shape_rows(patches, points * o.positions(), kh * kw * c);
  for (std::int64_t p = 0; p < points; ++p)
    for (std::int64_t oh = 0; oh < o.height; ++oh)
      for (std::int64_t ow = 0; ow < o.width; ++ow) {
        T* dst = patches.data() + ((p * o.height + oh) * o.width + ow) * patches.cols();
        for (std::int64_t i = 0; i < kh; ++i) {
          const std::int64_t ih = node.source_h(oh, i);
          for (std::int64_t j = 0; j < kw; ++j, dst += c) {
            const std::int64_t iw = node.source_w(ow, j);
            if (ih < 0 || iw < 0) {
              std::fill(dst, dst + c, T(0));
            } else {
              const T* src = in + ((p * s.height + ih) * s.width + iw) * c;
              std::copy(src, src + c, dst);
            }
          }
        }
      }
}

// The valid part [lo, hi) of a pooling window's axis at output index `o`.
inline void window_range(std::int64_t o, std::int64_t stride, std::int64_t pad, std::int64_t window, std::int64_t n,
                         std::int64_t& lo, std::int64_t& hi) {
  lo = std::max<std::int64_t>(o * stride - pad, 0);
  hi = std::min<std::int64_t>(o * stride - pad + window, n);
}

// Average (over the window's positions inside the input: padding is not counted) or maximum
// pooling.
template <class T>
void pool(const SeqNode& node, const RowMatrix<T>& in, std::int64_t points, RowMatrix<T>& out) {
  const Shape &s = node.in, &o = node.out;
  const std::int64_t c = s.channels;
  const bool average = node.kind == NodeKind::avg_pool;
  shape_rows(out, points * o.positions(), c);
  for (std::int64_t p = 0; p < points; ++p)
    for (std::int64_t oh = 0; oh < o.height; ++oh)
      for (std::int64_t ow = 0; ow < o.width; ++ow) {
        std::int64_t h0, h1, w0, w1;
        window_range(oh, node.stride_h, node.pad_h, node.window_h, s.height, h0, h1);
        window_range(ow, node.stride_w, node.pad_w, node.window_w, s.width, w0, w1);
        T* dst = out.data() + ((p * o.height + oh) * o.width + ow) * c;
        const T* first = in.data() + ((p * s.height + h0) * s.width + w0) * c;
        std::copy(first, first + c, dst);
        for (std::int64_t ih = h0; ih < h1; ++ih)
          for (std::int64_t iw = (ih == h0 ? w0 + 1 : w0); iw < w1; ++iw) {
            const T* src = in.data() + ((p * s.height + ih) * s.width + iw) * c;
            if (average) {
              for (std::int64_t ch = 0; ch < c; ++ch) dst[ch] += src[ch];
            } else {
              for (std::int64_t ch = 0; ch < c; ++ch) dst[ch] = src[ch] > dst[ch] ? src[ch] : dst[ch];
            }
          }
        if (average && !node.pool_sum) {
          const T inv = T(1) / static_cast<T>((h1 - h0) * (w1 - w0));
          for (std::int64_t ch = 0; ch < c; ++ch) dst[ch] *= inv;
        }
      }
}

template <class T>
void global_average(const SeqNode& node, const RowMatrix<T>& in, std::int64_t points, RowMatrix<T>& out) {
  const std::int64_t c = node.in.channels, positions = node.in.positions();
  shape_rows(out, points, c);
  const T inv = node.pool_sum ? T(1) : T(1) / static_cast<T>(positions);
  for (std::int64_t p = 0; p < points; ++p) {
    T* dst = out.data() + p * c;
    const T* src = in.data() + p * positions * c;
    std::copy(src, src + c, dst);
    for (std::int64_t q = 1; q < positions; ++q)
      for (std::int64_t ch = 0; ch < c; ++ch) dst[ch] += src[q * c + ch];
    for (std::int64_t ch = 0; ch < c; ++ch) dst[ch] *= inv;
  }
}

// h = phi(z) and, if d is not null, d = phi'(z) for n entries (h may be z itself). Plain relu and
// tanh take vectorised paths: tanh in float32 by Eigen's vectorised rational approximation (within
// a few units in the last place of the correctly rounded value), its derivative 1 - tanh^2 from it.
template <class T>
void activate_entries(const Activation& act, const T* z, std::int64_t n, T* h, T* d) {
  const bool plain = act.shift == 0.0 && act.scale == 1.0;
  if (plain && act.kind == ActivationKind::tanh) {
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> out(h, n);
    out = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(z, n).tanh();
    if (d) Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(d, n) = T(1) - out * out;
    return;
  }
  const bool relu = act.kind == ActivationKind::relu && plain;
  if (d) {
    if (relu) {
      for (std::int64_t i = 0; i < n; ++i) d[i] = z[i] > T(0) ? T(1) : T(0);
    } else {
      for (std::int64_t i = 0; i < n; ++i) d[i] = act.derivative(z[i]);
    }
  }
  if (relu) {
    for (std::int64_t i = 0; i < n; ++i) h[i] = z[i] > T(0) ? z[i] : T(0);
  } else {
    for (std::int64_t i = 0; i < n; ++i) h[i] = act(z[i]);
  }
}

template <class T>
void activate(const Activation& act, const RowMatrix<T>& in, std::int64_t rows, RowMatrix<T>& out, RowMatrix<T>* derivative) {
  shape_rows(out, rows, in.cols());
  if (derivative) shape_rows(*derivative, rows, in.cols());
  activate_entries(act, in.data(), rows * in.cols(), out.data(), derivative ? derivative->data() : nullptr);
}

// Batch normalisation of `rows` rows by given statistics: y = gamma ((x - mean) inv_std) + beta
// per channel (column).
template <class T>
void normalize(const BatchNormView<T>& bn, const RowMatrix<T>& in, std::int64_t rows, RowMatrix<T>& out) {
  const std::int64_t c = in.cols();
  shape_rows(out, rows, c);
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* x = in.data() + r * c;
    T* y = out.data() + r * c;
    for (std::int64_t j = 0; j < c; ++j) y[j] = bn.gamma[j] * ((x[j] - bn.mean[j]) * bn.inv_std[j]) + bn.beta[j];
  }
}

// range(j0, nj) once per thread over the thread's contiguous columns: whole blocks of
// packed_block_cols(), the same columns on every call (what a thread computes at one step stays in its
// cache for the next), all of them on one call with threads 0. A packed product over the range keeps
// its left tile in cache across the range's panels; row-wise work over the range reads long runs.
template <class T, class Range>
void for_column_ranges(std::int64_t width, int threads, Range&& range) {
  if (threads <= 0) return range(std::int64_t(0), width);
  constexpr std::int64_t cols = packed_block_cols<T>();
  const std::int64_t blocks = (width + cols - 1) / cols;
  const int n = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, blocks)));
  parallel_ranges(n, n, [&](std::int64_t t) {
    const std::int64_t b0 = t * blocks / n, b1 = (t + 1) * blocks / n;
    if (b0 == b1) return;
    const std::int64_t j0 = b0 * cols, j1 = std::min(width, b1 * cols);
    range(j0, j1 - j0);
  });
}

// Recurrent node `node` over `points` sequences, rows (point, step) of `in`: with P = step_rows(points),
// step_inputs = x time-major, z_t = forward_U x_t U + bias b + forward_W h_{t-1} W, h_t = (1 - a)
// h_{t-1} + a phi(z_t), and `out` the node's output: h_T (rows point) or every h_t (rows (point,
// step)), zero in the padding. With `derivative` (the backward pass needs them), states keeps h_0..h_T
// time-major ((T + 1) P rows) and derivative phi'(z_t) time-major; without, states holds two blocks
// of P rows used in turn (h_t in block t % 2), small enough to stay in cache. Each step's products
// run over whole panels of rows (and, split over threads, fixed blocks of columns): rows do not
// depend on the tile, nor on the number of threads.
template <class T>
void recurrent_forward(const SeqNode& node, const LayerScales& input_scales, const LayerScales& recurrent_scales,
                       const T* U, const T* bias, const T* W, const RowMatrix<T>& in, std::int64_t points,
                       const T* initial, RowMatrix<T>& step_inputs, RowMatrix<T>& states, RowMatrix<T>* derivative,
                       RowMatrix<T>& out, RecurrentPacks<T>& packs, int step_threads = 0,
                       const PackedRight<T>* packed_U = nullptr, const PackedRight<T>* packed_W = nullptr) {
  const std::int64_t steps = node.steps(), d = node.in.channels, m = node.width;
  const std::int64_t P = step_rows(points);
  step_inputs.setZero(steps * P, d);
  for (std::int64_t p = 0; p < points; ++p)
    for (std::int64_t t = 0; t < steps; ++t)
      std::copy(in.data() + (p * steps + t) * d, in.data() + (p * steps + t + 1) * d, step_inputs.data() + (t * P + p) * d);
  const bool all = derivative != nullptr;
  states.resize((all ? steps + 1 : 2) * P, m);
  const auto block = [&](std::int64_t t) { return states.middleRows((all ? t : t % 2) * P, P); };
  block(0).setZero();
  if (initial) std::copy(initial, initial + points * m, states.data());
  const T u_forward = static_cast<T>(input_scales.forward), b_scale = static_cast<T>(input_scales.bias);
  const T w_forward = static_cast<T>(recurrent_scales.forward);
  const T a = static_cast<T>(node.leak), keep = T(1) - a;
  if (derivative) derivative->resize(steps * P, m);
  if (node.return_sequences) {
    shape_rows(out, points * steps, m);
  } else {
    shape_rows(out, points, m);
  }
  // Every step's products run on U and W packed once: per network by the caller (packed_U, packed_W,
  // shared by every tile's pass), else here once for the pass (a plain product would pack them again
  // at every step and block). The same packed products whatever the threads, tile or caller.
  const PackedRight<T>* Up = packed_U;
  if (!Up) {
    packs.input_weights.pack(U, d, m, m, false, step_threads);
    Up = &packs.input_weights;
  }
  const PackedRight<T>* Wp = packed_W;
  if (!Wp && (steps > 1 || initial)) {
    packs.weights.pack(W, m, m, m, false, step_threads);
    Wp = &packs.weights;
  }
  for (std::int64_t t = 1; t <= steps; ++t) {
    auto previous = block(t - 1);
    auto z = block(t);
    T* dr = derivative ? derivative->data() + (t - 1) * P * m : nullptr;
    // h_0 = 0 adds nothing through W.
    const bool recur = t > 1 || initial;
    packs.inputs.pack(step_inputs.data() + (t - 1) * P * d, P, d, d, false);
    if (recur) packs.states.pack(previous.data(), P, m, m, false, step_threads);
    // z_t = forward_U x_t U (written), + forward_W h_{t-1} W, + the bias in the pass that activates it.
    for_column_ranges<T>(m, step_threads, [&](std::int64_t jr, std::int64_t njr) {
      packed_product(packs.inputs, *Up, z.data(), m, u_forward, 0, P, jr, njr, true);
      if (recur) packed_product(packs.states, *Wp, z.data(), m, w_forward, 0, P, jr, njr);
      // The thread's columns row by row (long runs): bias, activation, leak, and the node's output
      // (every h_t, rows (point, step), or h_T).
      const bool output = node.return_sequences || t == steps;
      for (std::int64_t r = 0; r < P; ++r) {
        T* zr = z.data() + r * m + jr;
        if (bias)
          for (std::int64_t j = 0; j < njr; ++j) zr[j] += b_scale * bias[jr + j];
        activate_entries(node.activation, zr, njr, zr, dr ? dr + r * m + jr : nullptr);
        if (node.leak != 1.0) {
          const T* hp = previous.data() + r * m + jr;
          for (std::int64_t j = 0; j < njr; ++j) zr[j] = keep * hp[j] + a * zr[j];
        }
        if (output && r < points)
          std::copy(zr, zr + njr, out.data() + (node.return_sequences ? r * steps + t - 1 : r) * m + jr);
      }
    });
  }
}
// Where recurrent_forward left h_T of a pass of P padded points.
template <class T>
const T* final_state(const SeqNode& node, const RowMatrix<T>& states, std::int64_t P) {
  const std::int64_t blocks = states.rows() / P;
  return states.data() + (blocks == 2 ? node.steps() % 2 : node.steps()) * P * node.width;
}

}  // namespace sequential_detail

// Forward pass of `points` points of x (row-major, input.size() values each) through one
// network, nodes [0, depth) only (all by default); afterwards ws.output(k) holds node k's
// output and, with keep_derivatives, ws.derivatives[k] phi'(z) of each activation node k,
// except that a layer read only by the activation after it is activated in place, its own
// output not kept, unless it is in `kept`. Each output row is computed by the same operations
// whatever the tile (products see whole kRowQuantum blocks of rows), so the results do not
// depend on tiling or threads. With first > 0 the pass resumes at node `first` of a pass of the
// same points that stopped there (x is not read): batch normalisation in training stops at each
// normalisation to gather the batch's statistics. A batch normalisation node applies
// net.norms[node.norm].
template <class T>
void sequential_forward(const SequentialSpec& spec, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                        const T* x, std::int64_t points, bool keep_derivatives, SequentialWorkspace<T>& ws,
                        std::size_t depth = static_cast<std::size_t>(-1), const std::vector<std::int64_t>& kept = {},
                        std::size_t first = 0) {
  using namespace sequential_detail;
  const std::size_t n_nodes = std::min(depth, spec.nodes.size());
  if (first == 0) {
    ws.points = points;
    const Shape features = spec.features();
    shape_rows(ws.input, points * features.positions(), features.channels);
    if (spec.graph) {  // the features to the input, the adjacencies apart
      const std::int64_t P = features.positions(), c = spec.input.channels, f = features.channels;
      ws.graphs.resize(static_cast<std::size_t>(points * P * P));
      for (std::int64_t p = 0; p < points; ++p) {
        const T* row = x + p * spec.input.size();
        for (std::int64_t u = 0; u < P; ++u) std::copy(row + u * c, row + u * c + f, ws.input.data() + (p * P + u) * f);
        graph_adjacency(row, P, c, ws.graphs.data() + p * P * P);
      }
    } else {
      std::copy(x, x + points * spec.input.size(), ws.input.data());
    }
    ws.outputs.resize(spec.nodes.size());
    ws.derivatives.resize(keep_derivatives ? spec.nodes.size() : 0);
    ws.states.resize(spec.nodes.size());
    ws.step_inputs.resize(spec.nodes.size());
    ws.attention.resize(spec.nodes.size());
  }
  // With ws.recycle: the last node reading each node's output (-1: none).
  std::vector<std::int64_t> last_reader;
  if (ws.recycle) {
    last_reader.assign(spec.nodes.size(), -1);
    for (std::size_t f = 0; f < n_nodes; ++f) {
      const SeqNode& n = spec.nodes[f];
      if (n.input >= 0) last_reader[static_cast<std::size_t>(n.input)] = static_cast<std::int64_t>(f);
      if (n.merges() && n.skip >= 0) last_reader[static_cast<std::size_t>(n.skip)] = static_cast<std::int64_t>(f);
    }
  }
  for (std::size_t k = first; k < n_nodes; ++k) {
    const std::size_t step = k;  // this step's first node (a product also runs the one or two after it)
    if (ws.recycle)  // a spare of the size the output takes (another size would be allocated anew)
      for (std::size_t f = k; f < std::min(k + 3, n_nodes); ++f) {
        if (ws.outputs[f].size() != 0) continue;
        const Shape& o = spec.nodes[f].out;
        const std::int64_t size = round_up(points * o.positions(), kRowQuantum) * o.channels;
        for (std::size_t i = 0; i < ws.spare.size(); ++i)
          if (ws.spare[i].size() == size) {
            ws.outputs[f].swap(ws.spare[i]);
            ws.spare[i].swap(ws.spare.back());
            ws.spare.pop_back();
            break;
          }
      }
    const SeqNode& node = spec.nodes[k];
    const RowMatrix<T>& in = ws.output(node.input);
    RowMatrix<T>& out = ws.outputs[k];
    const std::int64_t rows = points * node.out.positions();
    switch (node.kind) {
      case NodeKind::dense:
      case NodeKind::conv: {
        const DenseLayer& layer = spec.params[static_cast<std::size_t>(node.param)];
        const std::int64_t cols = layer.fan_out;
        // An activation reading this layer next is applied row by row while the row is in cache,
        // in place (the product written straight into the activation's output) if nothing else
        // reads this layer.
        const SeqNode* act = k + 1 < n_nodes && spec.nodes[k + 1].kind == NodeKind::activation &&
                                     spec.nodes[k + 1].input == static_cast<std::int64_t>(k)
                                 ? &spec.nodes[k + 1]
                                 : nullptr;
        const bool in_place = act && node.readers == 1 &&
                              std::find(kept.begin(), kept.end(), static_cast<std::int64_t>(k)) == kept.end();
        RowMatrix<T>& z = in_place ? ws.outputs[k + 1] : out;
        RowMatrix<T>* derivative = act && keep_derivatives ? &ws.derivatives[k + 1] : nullptr;
        // A residual node reading this layer's output (or its activation's) next adds it to its skip row by
        // row too (the layer's output is written all the same).
        const std::size_t last = act ? k + 1 : k;
        const SeqNode* res = last + 1 < n_nodes && spec.nodes[last + 1].kind == NodeKind::residual &&
                                     spec.nodes[last + 1].input == static_cast<std::int64_t>(last)
                                 ? &spec.nodes[last + 1]
                                 : nullptr;
        const bool pointwise = node.pointwise();
        const T* weights = net.weights[static_cast<std::size_t>(node.param)];
        const LayerScales& sc = scales[static_cast<std::size_t>(node.param)];
        const T forward = static_cast<T>(sc.forward), bias = static_cast<T>(sc.bias);
        const T* beta = net.biases[static_cast<std::size_t>(node.param)];
        if (act && !in_place) shape_rows(ws.outputs[k + 1], rows, cols);
        if (derivative) shape_rows(*derivative, rows, cols);
        if (res) shape_rows(ws.outputs[last + 1], rows, cols);
        // The scale, bias, activation and residual sum of rows [r0, r0 + n) once their product is complete.
        const auto epilogue = [&](std::int64_t r0, std::int64_t n) {
          for (std::int64_t r = r0; r < std::min(rows, r0 + n); ++r) {
            T* row = z.data() + r * cols;
            if (beta) {
              for (std::int64_t j = 0; j < cols; ++j) row[j] = forward * row[j] + bias * beta[j];
            } else {
              for (std::int64_t j = 0; j < cols; ++j) row[j] = forward * row[j];
            }
            T* h = act && !in_place ? ws.outputs[k + 1].data() + r * cols : row;
            if (act) activate_entries(act->activation, row, cols, h, derivative ? derivative->data() + r * cols : nullptr);
            if (res) {
              const T scale = static_cast<T>(res->scale);
              const T* skip = ws.output(res->skip).data() + r * cols;
              T* sum = ws.outputs[last + 1].data() + r * cols;
              for (std::int64_t j = 0; j < cols; ++j) sum[j] = skip[j] + scale * h[j];
            }
          }
        };
        bool done = false;  // the epilogue has run
        if constexpr (std::is_same<T, float>::value) {
          if (!pointwise && direct_conv_applies<T>(node)) {
            shape_rows(z, rows, cols);
            direct_conv(node, in.data(), points, weights, z.data(), ws.zeros);
          }
        }
        if (pointwise || !direct_conv_applies<T>(node)) {
          if (!pointwise) im2col(node, in.data(), points, ws.patches);
          const RowMatrix<T>& a = pointwise ? in : ws.patches;
          const auto l = static_cast<std::size_t>(node.param);
          const PackedRight<T>* packed = l < net.packed.size() ? net.packed[l] : nullptr;
          if (packed) {  // the weights packed once per network (layers.hpp), the tile's rows here (packed_rows.hpp)
            z.resize(a.rows(), layer.fan_out);
            const T* held = nullptr;
            rows_product(a.data(), layer.fan_in, a.rows(), *packed, z.data(), layer.fan_out, T(1), ws.packs.states,
                         held, epilogue);
            done = true;
          } else if (ws.step_threads > 0) {
            // By fixed blocks of rows on the threads (see step_threads): the rows and the weights packed
            // once (the pass's scratch packs), each block's packed product written.
            z.resize(a.rows(), layer.fan_out);
            ws.packs.inputs.pack(a.data(), a.rows(), layer.fan_in, layer.fan_in, false, ws.step_threads);
            ws.packs.input_weights.pack(weights, layer.fan_in, layer.fan_out, layer.fan_out, false);
            const std::int64_t block = 4 * kRowQuantum, blocks = (a.rows() + block - 1) / block;
            parallel_ranges(blocks, ws.step_threads, [&](std::int64_t b) {
              const std::int64_t r0 = b * block, nr = std::min(block, a.rows() - r0);
              packed_product(ws.packs.inputs, ws.packs.input_weights, z.data(), layer.fan_out, T(1), r0, nr, 0,
                             layer.fan_out, true);
            });
          } else {
            z.resize(a.rows(), layer.fan_out);
            z.noalias() = a * Eigen::Map<const RowMatrix<T>>(weights, layer.fan_in, layer.fan_out);
          }
        }
        if (!done) epilogue(0, rows);
        if (res) ++k;
        if (act) ++k;
        break;
      }
      case NodeKind::avg_pool:
      case NodeKind::max_pool: pool(node, in, points, out); break;
      case NodeKind::global_avg_pool: global_average(node, in, points, out); break;
      case NodeKind::aggregate:
        shape_rows(out, rows, node.out.channels);
        aggregate_rows(node, in.data(), points, node.out.channels, out.data(), false, ws.graphs.data());
        break;
      case NodeKind::flatten:
        shape_rows(out, points, node.out.channels);
        std::copy(in.data(), in.data() + points * node.out.channels, out.data());
        break;
      case NodeKind::activation:
        activate(node.activation, in, rows, out, keep_derivatives ? &ws.derivatives[k] : nullptr);
        break;
      case NodeKind::residual: {
        const RowMatrix<T>& skip = ws.output(node.skip);
        shape_rows(out, rows, node.out.channels);
        const T scale = static_cast<T>(node.scale);
        const std::int64_t n = rows * node.out.channels;
        for (std::int64_t i = 0; i < n; ++i) out.data()[i] = skip.data()[i] + scale * in.data()[i];
        break;
      }
      case NodeKind::batch_norm: normalize(net.norms.at(static_cast<std::size_t>(node.norm)), in, rows, out); break;
      case NodeKind::layer_norm:
        shape_rows(out, rows, node.out.channels);
        layer_norm_forward(node, in.data(), points, out.data());
        break;
      case NodeKind::fan_in_prod:
      case NodeKind::fan_in_concat:
        shape_rows(out, rows, node.out.channels);
        fan_in::forward(node, in.data(), ws.output(node.skip).data(), rows, out.data());
        break;
      case NodeKind::recurrent: {
        const auto l = static_cast<std::size_t>(node.param);
        const T* initial = k < ws.initial_states.size() ? ws.initial_states[k] : nullptr;
        recurrent_forward(node, scales[l], scales[l + 1], net.weights[l], net.biases[l], net.weights[l + 1], in, points,
                          initial, ws.step_inputs[k], ws.states[k], keep_derivatives ? &ws.derivatives[k] : nullptr,
                          out, ws.packs, ws.step_threads, l < net.packed.size() ? net.packed[l] : nullptr,
                          l + 1 < net.packed.size() ? net.packed[l + 1] : nullptr);
        break;
      }
      case NodeKind::attention: {
        // A residual node reading the attention next adds its rows to its skip as they are done.
        const SeqNode* res = k + 1 < n_nodes && spec.nodes[k + 1].kind == NodeKind::residual &&
                                     spec.nodes[k + 1].input == static_cast<std::int64_t>(k)
                                 ? &spec.nodes[k + 1]
                                 : nullptr;
        const std::int64_t cols = node.out.channels;
        if (res) shape_rows(ws.outputs[k + 1], rows, cols);
        attention_forward(node, scales, net, in, points, ws.attention[ws.recycle ? 0 : k], out, keep_derivatives,
                          &ws.packs.states,
                          [&](std::int64_t r, const T* h) {
                            if (!res) return;
                            const T scale = static_cast<T>(res->scale);
                            const T* skip = ws.output(res->skip).data() + r * cols;
                            T* sum = ws.outputs[k + 1].data() + r * cols;
                            for (std::int64_t j = 0; j < cols; ++j) sum[j] = skip[j] + scale * h[j];
                          });
        if (res) ++k;
        break;
      }
    }
    if (ws.recycle)  // the outputs this step's nodes were the last to read go to the spares
      for (std::size_t f = step; f <= k; ++f) {
        const SeqNode& n = spec.nodes[f];
        for (const std::int64_t j : {n.input, n.merges() ? n.skip : std::int64_t(-1)}) {
          if (j < 0 || last_reader[static_cast<std::size_t>(j)] > static_cast<std::int64_t>(k) ||
              std::find(kept.begin(), kept.end(), j) != kept.end() || ws.outputs[static_cast<std::size_t>(j)].size() == 0)
            continue;
          ws.spare.emplace_back();
          ws.spare.back().swap(ws.outputs[static_cast<std::size_t>(j)]);
        }
      }
  }
}

// The logits (rows x n_outputs, float64) of a network with the given parameters.
template <class T>
void sequential_outputs(const SequentialSpec& spec, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                        const T* x, std::int64_t rows, int n_threads, double* out) {
  const std::vector<RowTile<T>> tiles = row_tiles<T>(x, rows, nullptr, 0, 2 * kRowQuantum);
  std::vector<SequentialWorkspace<T>> workspaces(static_cast<std::size_t>(std::max(1, n_threads)));
  const std::int64_t d = spec.input.size(), c = spec.n_outputs();
  parallel_for(static_cast<std::int64_t>(tiles.size()), n_threads, [&](std::int64_t t, int thread) {
    const RowTile<T>& tile = tiles[static_cast<std::size_t>(t)];
    SequentialWorkspace<T>& ws = workspaces[static_cast<std::size_t>(thread)];
    sequential_forward(spec, scales, net, tile.x + tile.row0 * d, tile.rows, false, ws);
    const RowMatrix<T>& f = ws.outputs.back();
    for (std::int64_t i = 0; i < tile.rows * c; ++i) out[tile.row0 * c + i] = static_cast<double>(f.data()[i]);
  });
}

// sequential_outputs from given initial states of the recurrent nodes: initial[i] and final[i] are
// the i-th recurrent node's h_0 and h_T of the rows (rows x width, row-major); initial[i] may be null
// (zero). Closed-loop generation runs one step at a time this way.
template <class T>
void sequential_state_outputs(const SequentialSpec& spec, const std::vector<LayerScales>& scales,
                              const NetworkView<T>& net, const T* x, std::int64_t rows, int n_threads,
                              const std::vector<const T*>& initial, const std::vector<T*>& final, double* out) {
  std::vector<std::int64_t> recurrent;
  for (std::size_t k = 0; k < spec.nodes.size(); ++k)
    if (spec.nodes[k].kind == NodeKind::recurrent) recurrent.push_back(static_cast<std::int64_t>(k));
  if (initial.size() != recurrent.size() || final.size() != recurrent.size())
    throw std::invalid_argument("one initial and one final state per recurrent layer");
  const std::vector<RowTile<T>> tiles = row_tiles<T>(x, rows, nullptr, 0, 2 * kRowQuantum);
  std::vector<SequentialWorkspace<T>> workspaces(static_cast<std::size_t>(std::max(1, n_threads)));
  const std::int64_t d = spec.input.size(), c = spec.n_outputs();
  parallel_for(static_cast<std::int64_t>(tiles.size()), n_threads, [&](std::int64_t t, int thread) {
    const RowTile<T>& tile = tiles[static_cast<std::size_t>(t)];
    SequentialWorkspace<T>& ws = workspaces[static_cast<std::size_t>(thread)];
    ws.initial_states.assign(spec.nodes.size(), nullptr);
    for (std::size_t i = 0; i < recurrent.size(); ++i)
      if (initial[i])
        ws.initial_states[static_cast<std::size_t>(recurrent[i])] =
            initial[i] + tile.row0 * spec.nodes[static_cast<std::size_t>(recurrent[i])].width;
    sequential_forward(spec, scales, net, tile.x + tile.row0 * d, tile.rows, false, ws);
    const RowMatrix<T>& f = ws.outputs.back();
    for (std::int64_t i = 0; i < tile.rows * c; ++i) out[tile.row0 * c + i] = static_cast<double>(f.data()[i]);
    for (std::size_t i = 0; i < recurrent.size(); ++i) {
      const SeqNode& node = spec.nodes[static_cast<std::size_t>(recurrent[i])];
      const RowMatrix<T>& states = ws.states[static_cast<std::size_t>(recurrent[i])];
      const T* last = sequential_detail::final_state(node, states, step_rows(tile.rows));
      std::copy(last, last + tile.rows * node.width, final[i] + tile.row0 * node.width);
    }
  });
}

}  // namespace nnpk
