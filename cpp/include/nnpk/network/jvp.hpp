// The forward-mode tangent of a sequential network: given a forward pass at parameters theta_0 (its
// outputs and activation derivatives kept) and a parameter direction d theta, the directional
// derivative of every node's output, J(x; theta_0) d theta, node by node. The linearised network
// f(x; theta_0) + J(x; theta_0) (theta - theta_0) trains on it (learning/trainer.hpp).
//
// Each node's tangent is linear in its input's tangent and in its own parameters' direction:
//   dense, conv: dz = forward (da W + a dW) + bias db (a the layer's input patches);
//   activation: dh = phi'(z) dz; pooling, flattening, residual sums: the same linear map;
//   max pooling: the tangent of the maximum the forward pass kept;
//   batch normalisation by fixed statistics: dy = gamma inv_std dx + d gamma (x - mean) inv_std + d beta;
//   layer normalisation: its Jacobian (network/layer_norm.hpp) times dx;
//   recurrent: dz_t = forward_U (dx_t U + x_t dU) + bias db + forward_W (dh_{t-1} W + h_{t-1} dW),
//              dh_t = (1 - a) dh_{t-1} + a phi'(z_t) dz_t.
// Nodes whose tangent is zero (no direction below them) are skipped. Products see whole row quanta,
// as the forward pass's: each row is the same whatever the tile.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "nnpk/network/forward.hpp"

namespace nnpk {

// A parameter direction: per parametrised layer dW (fan_in x fan_out) and db, per batch
// normalisation d gamma and d beta; null where the direction is zero.
template <class T>
using Direction = NetworkView<T>;

template <class T>
struct TangentWorkspace {
  std::vector<RowMatrix<T>> outputs;  // each node's output tangent, laid out as the forward pass's outputs
  std::vector<char> live;             // whether a node's tangent is nonzero
  RowMatrix<T> patches, patch_tangents, product, state;
};

namespace jvp_detail {

// dst (rows x cols) += A * B (row-major views).
template <class T>
void add_product(RowMatrix<T>& dst, const T* a, std::int64_t rows, std::int64_t inner, const T* b,
                 std::int64_t cols, T scale) {
  dst.noalias() += scale * (Eigen::Map<const RowMatrix<T>>(a, rows, inner) * Eigen::Map<const RowMatrix<T>>(b, inner, cols));
}

// The tangent of max pooling: each window's output takes the tangent of the position the forward
// pass kept (the first maximum).
template <class T>
void max_pool_tangent(const SeqNode& node, const RowMatrix<T>& x, const RowMatrix<T>& dx, std::int64_t points,
                      RowMatrix<T>& out) {
  const Shape &s = node.in, &o = node.out;
  const std::int64_t c = s.channels;
  sequential_detail::shape_rows(out, points * o.positions(), c);
  for (std::int64_t p = 0; p < points; ++p)
    for (std::int64_t oh = 0; oh < o.height; ++oh)
      for (std::int64_t ow = 0; ow < o.width; ++ow) {
        std::int64_t h0, h1, w0, w1;
        sequential_detail::window_range(oh, node.stride_h, node.pad_h, node.window_h, s.height, h0, h1);
        sequential_detail::window_range(ow, node.stride_w, node.pad_w, node.window_w, s.width, w0, w1);
        T* dst = out.data() + ((p * o.height + oh) * o.width + ow) * c;
        for (std::int64_t ch = 0; ch < c; ++ch) {
          std::int64_t best = (p * s.height + h0) * s.width + w0;
          for (std::int64_t ih = h0; ih < h1; ++ih)
            for (std::int64_t iw = (ih == h0 ? w0 + 1 : w0); iw < w1; ++iw) {
              const std::int64_t row = (p * s.height + ih) * s.width + iw;
              if (x(row, ch) > x(best, ch)) best = row;
            }
          dst[ch] = dx(best, ch);
        }
      }
}

// The recurrent node's tangent (see the top of the file), from the forward pass's states h_0..h_T,
// step inputs and derivatives (time-major).
template <class T>
void recurrent_tangent(const SeqNode& node, const LayerScales& input_scales, const LayerScales& recurrent_scales,
                       const T* U, const T* W, const T* dU, const T* db, const T* dW, const RowMatrix<T>& step_inputs,
                       const RowMatrix<T>& states, const RowMatrix<T>& derivative, const RowMatrix<T>* dx,
                       std::int64_t points, RowMatrix<T>& step_tangents, RowMatrix<T>& dh, RowMatrix<T>& out) {
  const std::int64_t steps = node.steps(), d = node.in.channels, m = node.width;
  const std::int64_t P = step_rows(points);
  const T u_forward = static_cast<T>(input_scales.forward), b_scale = static_cast<T>(input_scales.bias);
  const T w_forward = static_cast<T>(recurrent_scales.forward);
  const T a = static_cast<T>(node.leak), keep = T(1) - a;
  if (dx) {  // the input's tangent, time-major like the step inputs
    step_tangents.setZero(steps * P, d);
    for (std::int64_t p = 0; p < points; ++p)
      for (std::int64_t t = 0; t < steps; ++t)
        std::copy(dx->data() + (p * steps + t) * d, dx->data() + (p * steps + t + 1) * d,
                  step_tangents.data() + (t * P + p) * d);
  }
  if (node.return_sequences) {
    sequential_detail::shape_rows(out, points * steps, m);
  } else {
    sequential_detail::shape_rows(out, points, m);
  }
  dh.setZero(2 * P, m);  // dh_{t-1} and dh_t in turn
  RowMatrix<T> dz(P, m);
  for (std::int64_t t = 1; t <= steps; ++t) {
    auto previous = dh.middleRows(((t - 1) % 2) * P, P);
    auto current = dh.middleRows((t % 2) * P, P);
    dz.setZero();
    const T* x_t = step_inputs.data() + (t - 1) * P * d;
    if (dU) dz.noalias() += u_forward * (Eigen::Map<const RowMatrix<T>>(x_t, P, d) * Eigen::Map<const RowMatrix<T>>(dU, d, m));
    if (dx)
      dz.noalias() += u_forward * (step_tangents.middleRows((t - 1) * P, P) * Eigen::Map<const RowMatrix<T>>(U, d, m));
    if (db)
      for (std::int64_t r = 0; r < P; ++r)
        for (std::int64_t j = 0; j < m; ++j) dz(r, j) += b_scale * db[j];
    if (t > 1) {  // h_0 = 0 and dh_0 = 0: nothing comes through the recurrent weights at the first step
      dz.noalias() += w_forward * (previous * Eigen::Map<const RowMatrix<T>>(W, m, m));
      if (dW)
        dz.noalias() += w_forward * (states.middleRows((t - 1) * P, P) * Eigen::Map<const RowMatrix<T>>(dW, m, m));
    }
    const T* phi = derivative.data() + (t - 1) * P * m;
    for (std::int64_t i = 0; i < P * m; ++i) current.data()[i] = keep * previous.data()[i] + a * (phi[i] * dz.data()[i]);
    if (node.return_sequences) {
      for (std::int64_t p = 0; p < points; ++p)
        std::copy(current.data() + p * m, current.data() + (p + 1) * m, out.data() + (p * steps + t - 1) * m);
    } else if (t == steps) {
      std::copy(current.data(), current.data() + points * m, out.data());
    }
  }
}

}  // namespace jvp_detail

// The tangents of every node for `points` points whose forward pass at `net` (theta_0), made with
// keep_derivatives, is in `fwd` (a node's tangent reads only its input's output, which the forward
// pass keeps, and the derivatives). `dir` is the direction; afterwards tan.outputs[k] is node k's
// output tangent where tan.live[k].
template <class T>
void sequential_jvp(const SequentialSpec& spec, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                    const Direction<T>& dir, const SequentialWorkspace<T>& fwd, std::int64_t points,
                    TangentWorkspace<T>& tan) {
  using namespace sequential_detail;
  const std::size_t n_nodes = spec.nodes.size();
  tan.outputs.resize(n_nodes);
  tan.live.assign(n_nodes, 0);
  const auto live = [&](std::int64_t node) { return node >= 0 && tan.live[static_cast<std::size_t>(node)]; };
  for (std::size_t k = 0; k < n_nodes; ++k) {
    const SeqNode& node = spec.nodes[k];
    const std::int64_t rows = points * node.out.positions();
    RowMatrix<T>& out = tan.outputs[k];
    const bool input_live = live(node.input);
    const RowMatrix<T>* din = input_live ? &tan.outputs[static_cast<std::size_t>(node.input)] : nullptr;
    switch (node.kind) {
      case NodeKind::dense:
      case NodeKind::conv: {
        const auto l = static_cast<std::size_t>(node.param);
        const DenseLayer& layer = spec.params[l];
        const T* dW = dir.weights[l];
        const T* db = dir.biases[l];
        if (!input_live && !dW && !db) break;
        tan.live[k] = 1;
        const LayerScales& sc = scales[l];
        const std::int64_t padded = round_up(rows, kRowQuantum);
        out.setZero(padded, layer.fan_out);
        const RowMatrix<T>& in = fwd.output(node.input);
        if (dW) {
          if (!node.pointwise()) im2col(node, in.data(), points, tan.patches);
          const T* a = node.pointwise() ? in.data() : tan.patches.data();
          jvp_detail::add_product(out, a, padded, layer.fan_in, dW, layer.fan_out, static_cast<T>(sc.forward));
        }
        if (din) {
          if (!node.pointwise()) im2col(node, din->data(), points, tan.patch_tangents);
          const T* da = node.pointwise() ? din->data() : tan.patch_tangents.data();
          jvp_detail::add_product(out, da, padded, layer.fan_in, net.weights[l], layer.fan_out,
                                  static_cast<T>(sc.forward));
        }
        if (db) {
          const T bias = static_cast<T>(sc.bias);
          for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t j = 0; j < layer.fan_out; ++j) out(r, j) += bias * db[j];
        }
        break;
      }
      case NodeKind::activation: {
        if (!input_live) break;
        tan.live[k] = 1;
        const RowMatrix<T>& deriv = fwd.derivatives[k];
        shape_rows(out, rows, node.out.channels);
        const std::int64_t n = rows * node.out.channels;
        for (std::int64_t i = 0; i < n; ++i) out.data()[i] = deriv.data()[i] * din->data()[i];
        break;
      }
      case NodeKind::avg_pool:
        if (!input_live) break;
        tan.live[k] = 1;
        pool(node, *din, points, out);
        break;
      case NodeKind::max_pool:
        if (!input_live) break;
        tan.live[k] = 1;
        jvp_detail::max_pool_tangent(node, fwd.output(node.input), *din, points, out);
        break;
      case NodeKind::global_avg_pool:
        if (!input_live) break;
        tan.live[k] = 1;
        global_average(node, *din, points, out);
        break;
      case NodeKind::aggregate:
        if (!input_live) break;
        tan.live[k] = 1;
        shape_rows(out, rows, node.out.channels);
        aggregate_rows(node, din->data(), points, node.out.channels, out.data(), false, fwd.graphs.data());
        break;
      case NodeKind::flatten:
        if (!input_live) break;
        tan.live[k] = 1;
        shape_rows(out, points, node.out.channels);
        std::copy(din->data(), din->data() + points * node.out.channels, out.data());
        break;
      case NodeKind::residual: {
        const bool skip_live = live(node.skip);
        if (!input_live && !skip_live) break;
        tan.live[k] = 1;
        const std::int64_t n = rows * node.out.channels;
        out.setZero(round_up(rows, kRowQuantum), node.out.channels);
        const T scale = static_cast<T>(node.scale);
        if (skip_live) {
          const RowMatrix<T>& s = tan.outputs[static_cast<std::size_t>(node.skip)];
          for (std::int64_t i = 0; i < n; ++i) out.data()[i] = s.data()[i];
        }
        if (input_live)
          for (std::int64_t i = 0; i < n; ++i) out.data()[i] += scale * din->data()[i];
        break;
      }
      case NodeKind::fan_in_prod:
      case NodeKind::fan_in_concat: {
        const bool skip_live = live(node.skip);
        if (!input_live && !skip_live) break;
        tan.live[k] = 1;
        shape_rows(out, rows, node.out.channels);
        fan_in::tangent(node, fwd.output(node.input).data(), fwd.output(node.skip).data(),
                        input_live ? din->data() : nullptr,
                        skip_live ? tan.outputs[static_cast<std::size_t>(node.skip)].data() : nullptr, rows, out.data());
        break;
      }
      case NodeKind::batch_norm: {
        const auto b = static_cast<std::size_t>(node.norm);
        const BatchNormView<T>& bn = net.norms.at(b);
        const BatchNormView<T>* d = b < dir.norms.size() ? &dir.norms[b] : nullptr;
        const T* dgamma = d ? d->gamma : nullptr;
        const T* dbeta = d ? d->beta : nullptr;
        if (!input_live && !dgamma && !dbeta) break;
        tan.live[k] = 1;
        const RowMatrix<T>& x = fwd.output(node.input);
        const std::int64_t c = node.out.channels;
        out.setZero(round_up(rows, kRowQuantum), c);
        for (std::int64_t r = 0; r < rows; ++r)
          for (std::int64_t j = 0; j < c; ++j) {
            T v = 0;
            if (din) v += bn.gamma[j] * bn.inv_std[j] * (*din)(r, j);
            if (dgamma) v += dgamma[j] * ((x(r, j) - bn.mean[j]) * bn.inv_std[j]);
            if (dbeta) v += dbeta[j];
            out(r, j) = v;
          }
        break;
      }
      case NodeKind::layer_norm:
        if (!input_live) break;
        tan.live[k] = 1;
        out.setZero(round_up(rows, kRowQuantum), node.out.channels);
        layer_norm_add_jacobian(node, fwd.output(node.input).data(), din->data(), points, 1, out.data());
        break;
      case NodeKind::recurrent: {
        const auto l = static_cast<std::size_t>(node.param);
        const T *dU = dir.weights[l], *db = dir.biases[l], *dW = dir.weights[l + 1];
        if (!input_live && !dU && !db && !dW) break;
        tan.live[k] = 1;
        jvp_detail::recurrent_tangent(node, scales[l], scales[l + 1], net.weights[l], net.weights[l + 1], dU, db, dW,
                                      fwd.step_inputs[k], fwd.states[k], fwd.derivatives[k], din, points,
                                      tan.patch_tangents, tan.state, out);
        break;
      }
      case NodeKind::attention: {
        bool any = input_live;
        for (std::int64_t j = 0; j < node.n_layers(); ++j) {
          const auto l = static_cast<std::size_t>(node.param + j);
          any = any || dir.weights[l] || dir.biases[l];
        }
        if (!any) break;
        tan.live[k] = 1;
        attention_tangent(node, scales, net, dir, fwd.attention[k], fwd.output(node.input), din, points, out);
        break;
      }
    }
  }
}

// The linearisation's logits (rows x n_outputs, float64): f(x; theta_0) (if offset) + J(x; theta_0) dir.
template <class T>
void sequential_linearized_outputs(const SequentialSpec& spec, const std::vector<LayerScales>& scales,
                                   const NetworkView<T>& net, const Direction<T>& dir, bool offset, const T* x,
                                   std::int64_t rows, int n_threads, double* out) {
  const std::vector<RowTile<T>> tiles = row_tiles<T>(x, rows, nullptr, 0, 2 * kRowQuantum);
  const auto n = static_cast<std::size_t>(std::max(1, n_threads));
  std::vector<SequentialWorkspace<T>> workspaces(n);
  std::vector<TangentWorkspace<T>> tangents(n);
  const std::int64_t d = spec.input.size(), c = spec.n_outputs();
  parallel_for(static_cast<std::int64_t>(tiles.size()), n_threads, [&](std::int64_t t, int thread) {
    const RowTile<T>& tile = tiles[static_cast<std::size_t>(t)];
    SequentialWorkspace<T>& ws = workspaces[static_cast<std::size_t>(thread)];
    TangentWorkspace<T>& tan = tangents[static_cast<std::size_t>(thread)];
    sequential_forward(spec, scales, net, tile.x + tile.row0 * d, tile.rows, true, ws);
    sequential_jvp(spec, scales, net, dir, ws, tile.rows, tan);
    const T* f = ws.outputs.back().data();
    const T* df = tan.live.back() ? tan.outputs.back().data() : nullptr;
    for (std::int64_t i = 0; i < tile.rows * c; ++i)
      out[tile.row0 * c + i] = (offset ? double(f[i]) : 0.0) + (df ? double(df[i]) : 0.0);
  });
}

}  // namespace nnpk
