// The backward pass of a sequential network through one node: cotangents of a node's output,
// rows (point, position) and columns (cotangent c, channel) for C cotangents per point (C = 1
// for a loss; one per logit for the tangent kernels), handed to the nodes it reads.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "nnpk/network/forward.hpp"

namespace nnpk {

namespace backward_detail {

template <class T>
void add_scaled(RowMatrix<T>& dst, const RowMatrix<T>& src, T scale) {
  const std::int64_t n = dst.size();
  for (std::int64_t i = 0; i < n; ++i) dst.data()[i] += scale * src.data()[i];
}

// Average pooling hands each window's cotangent to its positions inside the input, divided by
// their count; max pooling to the first maximum of the window (the one the forward pass kept).
template <class T>
void pool_backward(const SeqNode& node, const RowMatrix<T>& g, const RowMatrix<T>& x, std::int64_t points,
                   std::int64_t C, RowMatrix<T>& in) {
  const Shape &si = node.in, &so = node.out;
  const std::int64_t ch_n = si.channels;
  for (std::int64_t p = 0; p < points; ++p)
    for (std::int64_t oh = 0; oh < so.height; ++oh)
      for (std::int64_t ow = 0; ow < so.width; ++ow) {
        std::int64_t h0, h1, w0, w1;
        sequential_detail::window_range(oh, node.stride_h, node.pad_h, node.window_h, si.height, h0, h1);
        sequential_detail::window_range(ow, node.stride_w, node.pad_w, node.window_w, si.width, w0, w1);
        const std::int64_t out_row = (p * so.height + oh) * so.width + ow;
        if (node.kind == NodeKind::avg_pool) {
          const T inv = node.pool_sum ? T(1) : T(1) / static_cast<T>((h1 - h0) * (w1 - w0));
          for (std::int64_t ih = h0; ih < h1; ++ih)
            for (std::int64_t iw = w0; iw < w1; ++iw) {
              const std::int64_t in_row = (p * si.height + ih) * si.width + iw;
              for (std::int64_t j = 0; j < C * ch_n; ++j) in(in_row, j) += inv * g(out_row, j);
            }
          continue;
        }
        for (std::int64_t ch = 0; ch < ch_n; ++ch) {
          std::int64_t best = (p * si.height + h0) * si.width + w0;
          for (std::int64_t ih = h0; ih < h1; ++ih)
            for (std::int64_t iw = (ih == h0 ? w0 + 1 : w0); iw < w1; ++iw) {
              const std::int64_t row = (p * si.height + ih) * si.width + iw;
              if (x(row, ch) > x(best, ch)) best = row;
            }
          for (std::int64_t c = 0; c < C; ++c) in(best, c * ch_n + ch) += g(out_row, c * ch_n + ch);
        }
      }
}

// Back-propagation through time of recurrent node `node` for C cotangents per point: from its output
// cotangent g (rows (point) of h_T, or rows (point, step) of every h_t; columns (cotangent c, unit))
// to `pre`, d/dz_t time-major (step t's rows [t P C, (t + 1) P C) ordered (point, c), P the points
// padded (step_rows), width columns; zero in the padding), and, if `in` is not null, adds the input
// cotangent (rows (point, step), columns (c, feature)) to it. With a = leak and delta_h the cotangent of h_t:
// dz_t = a phi'(z_t) delta_h, and delta_h of h_{t-1} = (1 - a) delta_h + forward_W dz_t W^T (+ the
// output's own cotangent of h_{t-1}); x_t's is forward_U dz_t U^T. `carry`, `back` and `packs` are
// buffers.
template <class T>
void recurrent_backward(const SeqNode& node, const LayerScales& input_scales, const LayerScales& recurrent_scales,
                        const T* U, const T* W, const RowMatrix<T>& derivative, const RowMatrix<T>& g,
                        std::int64_t points, std::int64_t C, RowMatrix<T>& pre, RowMatrix<T>* in,
                        RowMatrix<T>& carry, RowMatrix<T>& back, RecurrentPacks<T>& packs, int step_threads = 0) {
  const std::int64_t steps = node.steps(), d = node.in.channels, m = node.width;
  const std::int64_t P = step_rows(points), cols = C * m;
  const T a = static_cast<T>(node.leak), keep = T(1) - a;
  const T w_forward = static_cast<T>(recurrent_scales.forward);
  carry.setZero(P, cols);  // delta_h of the current step, rows (point), columns (c, unit)
  if (!node.return_sequences)
    for (std::int64_t p = 0; p < points; ++p) std::copy(g.data() + p * cols, g.data() + (p + 1) * cols, carry.data() + p * cols);
  pre.resize(steps * P * C, m);
  // W^T packed once for the pass (b(k, n) = W[n][k]) and each step's errors once: the same packed
  // product on any number of threads (a plain product would pack W again at every step).
  if (steps > 1) packs.weights.pack(W, m, m, m, true, step_threads);
  for (std::int64_t t = steps; t >= 1; --t) {
    T* dz = pre.data() + (t - 1) * P * cols;
    // delta_h += the output's own cotangent of h_t; dz_t = a phi'(z_t) delta_h, each thread the units
    // whose delta_h its product computed (long runs of each row).
    sequential_detail::for_column_ranges<T>(m, step_threads, [&](std::int64_t j0, std::int64_t nj) {
      for (std::int64_t p = 0; p < P; ++p) {
        const T* phi = derivative.data() + ((t - 1) * P + p) * m + j0;
        for (std::int64_t c = 0; c < C; ++c) {
          T* h = carry.data() + p * cols + c * m + j0;
          if (node.return_sequences && p < points) {
            const T* src = g.data() + (p * steps + t - 1) * cols + c * m + j0;
            for (std::int64_t j = 0; j < nj; ++j) h[j] += src[j];
          }
          T* z = dz + p * cols + c * m + j0;
          for (std::int64_t j = 0; j < nj; ++j) z[j] = a * (phi[j] * h[j]);
        }
      }
    });
    if (t == 1) break;
    // delta_h of h_{t-1} = (1 - a) delta_h + forward_W dz_t W^T, rows (point, c).
    packs.states.pack(dz, P * C, m, m, false, step_threads);
    // With leak 1 the product overwrites delta_h (no pass zeroing it first).
    const bool overwrite = node.leak == 1.0;
    sequential_detail::for_column_ranges<T>(m, step_threads, [&](std::int64_t j0, std::int64_t nj) {
      for (std::int64_t r = 0; !overwrite && r < P * C; ++r) {
        T* h = carry.data() + r * m + j0;
        for (std::int64_t j = 0; j < nj; ++j) h[j] *= keep;
      }
      packed_product(packs.states, packs.weights, carry.data(), m, w_forward, 0, P * C, j0, nj, overwrite);
    });
  }
  if (!in) return;
  back.resize(steps * P * C, d);
  back.noalias() = pre * Eigen::Map<const RowMatrix<T>>(U, d, m).transpose();
  const T u_forward = static_cast<T>(input_scales.forward);
  for (std::int64_t t = 0; t < steps; ++t)
    for (std::int64_t p = 0; p < points; ++p) {
      const T* src = back.data() + (t * P + p) * C * d;
      T* dst = in->data() + (p * steps + t) * C * d;
      for (std::int64_t j = 0; j < C * d; ++j) dst[j] += u_forward * src[j];
    }
}

}  // namespace backward_detail

// Adds node k's output cotangent cot[k], through the node, to the cotangents of the nodes it
// reads that are at or above `lowest` (the others are not needed). `fwd` holds the forward
// pass of the same points (with derivatives if an activation node is crossed); `back` is a
// buffer. A dense or convolutional layer's input cotangent is the product with W^T, a
// convolution's handed back to the positions under each window (the transpose of im2col). A
// recurrent node back-propagates through time, leaving d/dz_t in `pre` (see recurrent_backward),
// whether or not its input's cotangent is needed; `pre` is needed for recurrent nodes only. With
// `overwrite` (a pointwise dense layer on row blocks, fwd.step_threads > 0, the only reader of its
// input) the input's cotangent is written, its valid rows, rather than added to.
template <class T>
void backward_node(const SequentialSpec& spec, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                   const SequentialWorkspace<T>& fwd, std::int64_t k, std::int64_t points, std::int64_t C,
                   std::int64_t lowest, std::vector<RowMatrix<T>>& cot, RowMatrix<T>& back,
                   RowMatrix<T>* pre = nullptr, bool overwrite = false) {
  const SeqNode& node = spec.nodes[static_cast<std::size_t>(k)];
  const RowMatrix<T>& g = cot[static_cast<std::size_t>(k)];
  const auto target = [&](std::int64_t j) -> RowMatrix<T>* {
    return j >= lowest ? &cot[static_cast<std::size_t>(j)] : nullptr;
  };
  if (node.kind == NodeKind::recurrent) {
    if (!pre) throw std::logic_error("a recurrent node's backward step needs a buffer for d/dz");
    const auto l = static_cast<std::size_t>(node.param);
    RowMatrix<T> carry;
    backward_detail::recurrent_backward(node, scales[l], scales[l + 1], net.weights[l], net.weights[l + 1],
                                        fwd.derivatives[static_cast<std::size_t>(k)], g, points, C, *pre,
                                        target(node.input), carry, back, fwd.packs, fwd.step_threads);
    return;
  }
  if (node.kind == NodeKind::attention) {  // its errors go to fwd.attention[k] whether or not its input's is needed
    attention_backward(node, scales, net, fwd.attention[static_cast<std::size_t>(k)], g, points, C, target(node.input),
                       back);
    return;
  }
  if (node.kind == NodeKind::residual) {
    if (RowMatrix<T>* skip = target(node.skip)) backward_detail::add_scaled(*skip, g, T(1));
    if (RowMatrix<T>* in = target(node.input)) backward_detail::add_scaled(*in, g, static_cast<T>(node.scale));
    return;
  }
  if (node.kind == NodeKind::fan_in_prod || node.kind == NodeKind::fan_in_concat) {
    RowMatrix<T>* a = target(node.input);
    RowMatrix<T>* b = target(node.skip);
    fan_in::backward(node, g.data(), fwd.output(node.input).data(), fwd.output(node.skip).data(),
                     points * node.out.positions(), C, a ? a->data() : nullptr, b ? b->data() : nullptr);
    return;
  }
  RowMatrix<T>* in_ptr = target(node.input);
  if (!in_ptr) return;
  RowMatrix<T>& in = *in_ptr;
  if (overwrite && !(node.kind == NodeKind::dense && node.pointwise() && fwd.step_threads > 0))
    throw std::logic_error("only a pointwise dense layer's row-block products overwrite their input's cotangent");
  const Shape &si = node.in, &so = node.out;
  const std::int64_t ci = si.channels, co = so.channels;
  switch (node.kind) {
    case NodeKind::dense:
    case NodeKind::conv: {
      const DenseLayer& layer = spec.params[static_cast<std::size_t>(node.param)];
      const Eigen::Map<const RowMatrix<T>> W(net.weights[static_cast<std::size_t>(node.param)], layer.fan_in,
                                             layer.fan_out);
      // Rows (point, position, cotangent) of the cotangent times W^T: the cotangent of each patch.
      const T forward = static_cast<T>(scales[static_cast<std::size_t>(node.param)].forward);
      if (node.pointwise() && fwd.step_threads > 0) {
        // By fixed blocks of rows on the threads, packed products added straight into the input's
        // cotangent: the cotangent's rows and W^T packed once (the pass's scratch packs).
        const std::int64_t valid = points * so.positions() * C, block = 4 * kRowQuantum;
        PackedLeft<T>& rows = fwd.packs.inputs;
        PackedRight<T>& Wt = fwd.packs.input_weights;
        rows.pack(g.data(), valid, co, co, false, fwd.step_threads);
        Wt.pack(W.data(), co, layer.fan_in, co, true);
        // Overwriting: the valid rows written, the padding rows (never read) left as they are.
        if (overwrite) in.resize(std::max<Eigen::Index>(g.rows() * C, valid), layer.fan_in);
        parallel_ranges((valid + block - 1) / block, fwd.step_threads, [&](std::int64_t b) {
          const std::int64_t r0 = b * block, nr = std::min(block, valid - r0);
          packed_product(rows, Wt, in.data(), layer.fan_in, forward, r0, nr, 0, layer.fan_in, overwrite);
        });
        break;
      }
      back.resize(g.rows() * C, layer.fan_in);
      back.noalias() = Eigen::Map<const RowMatrix<T>>(g.data(), g.rows() * C, co) * W.transpose();
      if (node.pointwise()) {
        const std::int64_t n = points * so.positions() * C * layer.fan_in;
        for (std::int64_t i = 0; i < n; ++i) in.data()[i] += forward * back.data()[i];
        break;
      }
      for (std::int64_t p = 0; p < points; ++p)
        for (std::int64_t oh = 0; oh < so.height; ++oh)
          for (std::int64_t ow = 0; ow < so.width; ++ow)
            for (std::int64_t c = 0; c < C; ++c) {
              const T* src = back.data() + (((p * so.height + oh) * so.width + ow) * C + c) * layer.fan_in;
              for (std::int64_t i = 0; i < node.window_h; ++i) {
                const std::int64_t ih = node.source_h(oh, i);
                if (ih < 0) continue;
                for (std::int64_t j = 0; j < node.window_w; ++j) {
                  const std::int64_t iw = node.source_w(ow, j);
                  if (iw < 0) continue;
                  T* dst = in.data() + ((p * si.height + ih) * si.width + iw) * C * ci + c * ci;
                  const T* s = src + (i * node.window_w + j) * ci;
                  for (std::int64_t ch = 0; ch < ci; ++ch) dst[ch] += forward * s[ch];
                }
              }
            }
      break;
    }
    case NodeKind::avg_pool:
    case NodeKind::max_pool: backward_detail::pool_backward(node, g, fwd.output(node.input), points, C, in); break;
    case NodeKind::global_avg_pool: {
      const std::int64_t P = si.positions(), cols = C * ci;
      const T inv = node.pool_sum ? T(1) : T(1) / static_cast<T>(P);
      for (std::int64_t p = 0; p < points; ++p)
        for (std::int64_t q = 0; q < P; ++q)
          for (std::int64_t j = 0; j < cols; ++j) in(p * P + q, j) += inv * g(p, j);
      break;
    }
    case NodeKind::aggregate: aggregate_rows(node, g.data(), points, C * ci, in.data(), true, fwd.graphs.data()); break;
    case NodeKind::flatten: {
      // Output column (c, q, ch) of a point is input row (point, q), column (c, ch).
      const std::int64_t P = si.positions();
      for (std::int64_t p = 0; p < points; ++p)
        for (std::int64_t c = 0; c < C; ++c)
          for (std::int64_t q = 0; q < P; ++q)
            for (std::int64_t ch = 0; ch < ci; ++ch) in(p * P + q, c * ci + ch) += g(p, (c * P + q) * ci + ch);
      break;
    }
    case NodeKind::activation: {
      const RowMatrix<T>& d = fwd.derivatives[static_cast<std::size_t>(k)];
      const std::int64_t rows = points * si.positions();
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < C; ++c)
          for (std::int64_t ch = 0; ch < ci; ++ch) in(r, c * ci + ch) += g(r, c * ci + ch) * d(r, ch);
      break;
    }
    case NodeKind::batch_norm: {
      // With the statistics held fixed (evaluation): d y / d x = gamma inv_std per channel. In
      // training the statistics depend on the whole batch; the trainer adds their terms.
      const BatchNormView<T>& bn = net.norms.at(static_cast<std::size_t>(node.norm));
      const std::int64_t rows = points * si.positions();
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < C; ++c)
          for (std::int64_t ch = 0; ch < ci; ++ch) in(r, c * ci + ch) += g(r, c * ci + ch) * (bn.gamma[ch] * bn.inv_std[ch]);
      break;
    }
    case NodeKind::layer_norm:
      layer_norm_add_jacobian(node, fwd.output(node.input).data(), g.data(), points, C, in.data());
      break;
    case NodeKind::residual:
    case NodeKind::fan_in_prod:
    case NodeKind::fan_in_concat:
    case NodeKind::recurrent:
    case NodeKind::attention: break;
  }
}

// Which backward steps fuse, for nodes from `lowest` on: a dense layer reading an activation that
// reads another node, each read by no other node, forms its input error as (g W^T) * phi'(z) in
// one pass (`fused`), written whole into the activation's input (`written`); the activation's
// own error is never formed (`skipped`). One flag per node of `spec`.
struct FusedBackward {
  std::vector<bool> fused, written, skipped;

  FusedBackward() = default;
  FusedBackward(const SequentialSpec& spec, std::int64_t lowest)
      : fused(spec.nodes.size(), false), written(spec.nodes.size(), false), skipped(spec.nodes.size(), false) {
    const auto n_nodes = static_cast<std::int64_t>(spec.nodes.size());
    for (std::int64_t k = lowest; k < n_nodes; ++k) {
      const SeqNode& node = spec.nodes[static_cast<std::size_t>(k)];
      if (node.kind != NodeKind::dense || node.input < 0) continue;
      const std::size_t a = static_cast<std::size_t>(node.input);
      const SeqNode& act = spec.nodes[a];
      if (act.kind != NodeKind::activation || act.input < lowest || act.readers != 1 ||
          spec.nodes[static_cast<std::size_t>(act.input)].readers != 1)
        continue;
      fused[static_cast<std::size_t>(k)] = true;
      skipped[a] = true;
      written[static_cast<std::size_t>(act.input)] = true;
    }
  }
};

}  // namespace nnpk
