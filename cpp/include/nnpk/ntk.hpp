// Tangent kernels of MLPs, layer by layer (CONVENTIONS.md):
//   Theta(x, x') = sum_l sum_c (delta^l_c(x) . delta^l_c(x')) (a^{l-1}(x) . a^{l-1}(x') + beta_l^2),
// from the layer inputs a and the back-propagated output gradients delta of each
// network, never a per-parameter Jacobian. Sums are over logits c (traced) or kept
// per logit pair, float64 accumulators, one chain K += Theta_m per entry.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "nnpk/forward.hpp"
#include "nnpk/kernels/tangent.hpp"
#include "nnpk/monte_carlo.hpp"

namespace nnpk {

// Accumulates an MLP's tangent kernels network by network (outputs as TangentStream's).
template <class T>
class TangentAccumulator : public TangentStream {
 public:
  TangentAccumulator(const MLPSpec& spec, std::vector<LayerScales> scales, const T* x1, std::int64_t n1, const T* x2,
                     std::int64_t n2, TangentRequest req, const TangentOptions& opt, std::vector<double*> outputs)
      : TangentStream(validated(spec).layers, spec.layers.back().fan_out, n1, x2 ? n2 : n1, x2 == nullptr,
                      std::move(req), opt, std::move(outputs)),
        spec_(spec), scales_(std::move(scales)), x1_(x1), x2_(x2) {
    tiles_ = row_tiles(x1_, n1_, x2_, n2_, opt_.tile_rows);
    L_ = spec_.n_hidden();
    lowest_delta_ = L_;
    for (const auto& [l, part] : parts_) lowest_delta_ = std::min(lowest_delta_, l);
    first_ = make_features(n1_);
    if (!symmetric_) second_ = make_features(n2_);
    workspaces_.resize(static_cast<std::size_t>(std::max(1, opt_.n_threads)));
  }

  // Adds one network's kernels.
  void add_network(const NetworkView<T>& net) {
    const std::int64_t d = spec_.input_dim();
    accumulate(
        static_cast<std::int64_t>(tiles_.size()),
        [&](std::int64_t t, int thread) {
          rows_pass(net, tiles_[static_cast<std::size_t>(t)], d, workspaces_[static_cast<std::size_t>(thread)]);
        },
        [&](std::int64_t i0, std::int64_t ni, std::int64_t j0, std::int64_t nj, int thread) {
          tile_pass(i0, ni, j0, nj, workspaces_[static_cast<std::size_t>(thread)]);
        });
  }

 private:
  static const MLPSpec& validated(const MLPSpec& spec) {
    spec.validate();
    return spec;
  }

  struct Features {
    std::vector<RowMatrix<T>> inputs;  // layer l's input h^{l-1} (x for l = 0), unscaled
    std::vector<RowMatrix<T>> deltas;  // layer l's delta: (rows * C, fan_out), or (rows, fan_out) shortcut
  };
  struct Workspace {
    ForwardWorkspace<T> forward;
    RowMatrix<T> back, back_next;
    RowMatrix<T> gram_delta, gram_input;
    std::vector<double> theta;
  };

  bool wants_weights(std::int64_t l) const { return req_.weights[static_cast<std::size_t>(l)] != 0; }
  bool wants_layer(std::int64_t l) const {
    for (const auto& p : parts_)
      if (p.first == l) return true;
    return false;
  }
  // The top hidden layer's traced delta Gram needs only n_L features:
  // sum_c delta_c . delta_c' = sum_j phi'_j phi'_j' (forward_L^2 sum_c W_L[j, c]^2).
  bool shortcut(std::int64_t l) const { return !req_.per_logit && l == L_ - 1; }

  Features make_features(std::int64_t n) const {
    const std::int64_t padded = round_up(n, kRowQuantum);
    Features f;
    f.inputs.resize(spec_.layers.size());
    f.deltas.resize(spec_.layers.size());
    for (std::int64_t l = 0; l <= L_; ++l) {
      const DenseLayer& layer = spec_.layers[static_cast<std::size_t>(l)];
      if (wants_weights(l)) f.inputs[static_cast<std::size_t>(l)].setZero(padded, layer.fan_in);
      if (l < L_ && wants_layer(l))
        f.deltas[static_cast<std::size_t>(l)].setZero(shortcut(l) ? padded : padded * C_, layer.fan_out);
    }
    return f;
  }

  // Forward and backward pass of one row tile; stores its rows' features.
  void rows_pass(const NetworkView<T>& net, const RowTile<T>& tile, std::int64_t d, Workspace& ws) {
    const bool backward = lowest_delta_ < L_;
    const T* input = forward_rows(spec_, scales_, net, tile.x + tile.row0 * d, tile.rows, backward, ws.forward);
    Features& feats = tile.second ? second_ : first_;
    const std::int64_t rows = tile.rows, padded = round_up(rows, kRowQuantum);
    if (req_.nngp) {
      const RowMatrix<T>& f = ws.forward.outputs.back();
      nngp_[0].panel(tile.second).write(tile.row0, rows, C_, f.data(), C_);
    }
    for (std::int64_t l = 0; l <= L_; ++l) {
      if (!wants_weights(l)) continue;
      const T* src = l == 0 ? input : ws.forward.outputs[static_cast<std::size_t>(l - 1)].data();
      const std::int64_t width = spec_.layers[static_cast<std::size_t>(l)].fan_in;
      std::copy(src, src + rows * width, feats.inputs[static_cast<std::size_t>(l)].data() + tile.row0 * width);
    }
    if (!backward) return;
    // delta of the top hidden layer: B[(r, c), j] = forward_L W_L[j, c] phi'(z[r, j]).
    const std::int64_t top = L_ - 1;
    const std::int64_t width_top = spec_.layers[static_cast<std::size_t>(top)].fan_out;
    const T forward_L = static_cast<T>(scales_[static_cast<std::size_t>(L_)].forward);
    const T* W_L = net.weights[static_cast<std::size_t>(L_)];
    const RowMatrix<T>& dz_top = ws.forward.derivatives[static_cast<std::size_t>(top)];
    if (shortcut(top) && wants_layer(top)) {
      T* out = feats.deltas[static_cast<std::size_t>(top)].data() + tile.row0 * width_top;
      std::vector<T> norm(static_cast<std::size_t>(width_top));
      for (std::int64_t j = 0; j < width_top; ++j) {
        double s = 0;
        for (std::int64_t c = 0; c < C_; ++c) s += double(W_L[j * C_ + c]) * double(W_L[j * C_ + c]);
        norm[static_cast<std::size_t>(j)] = forward_L * static_cast<T>(std::sqrt(s));
      }
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t j = 0; j < width_top; ++j)
          out[r * width_top + j] = dz_top(r, j) * norm[static_cast<std::size_t>(j)];
    }
    if (shortcut(top) && lowest_delta_ == top) return;
    ws.back.setZero(padded * C_, width_top);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < C_; ++c)
        for (std::int64_t j = 0; j < width_top; ++j)
          ws.back(r * C_ + c, j) = forward_L * W_L[j * C_ + c] * dz_top(r, j);
    store_delta(feats, top, ws.back, tile.row0, rows);
    for (std::int64_t l = top - 1; l >= lowest_delta_; --l) {
      const DenseLayer& above = spec_.layers[static_cast<std::size_t>(l + 1)];
      Eigen::Map<const RowMatrix<T>> W(net.weights[static_cast<std::size_t>(l + 1)], above.fan_in, above.fan_out);
      ws.back_next.resize(padded * C_, above.fan_in);
      ws.back_next.noalias() = ws.back * W.transpose();
      const T forward = static_cast<T>(scales_[static_cast<std::size_t>(l + 1)].forward);
      const RowMatrix<T>& dz = ws.forward.derivatives[static_cast<std::size_t>(l)];
      for (std::int64_t r = 0; r < padded; ++r)
        for (std::int64_t c = 0; c < C_; ++c)
          for (std::int64_t j = 0; j < above.fan_in; ++j) ws.back_next(r * C_ + c, j) *= forward * dz(r, j);
      std::swap(ws.back, ws.back_next);
      store_delta(feats, l, ws.back, tile.row0, rows);
    }
  }

  void store_delta(Features& feats, std::int64_t l, const RowMatrix<T>& back, std::int64_t row0, std::int64_t rows) {
    if (!wants_layer(l) || shortcut(l)) return;
    const std::int64_t cols = back.cols();
    std::copy(back.data(), back.data() + rows * C_ * cols, feats.deltas[static_cast<std::size_t>(l)].data() + row0 * C_ * cols);
  }

  void tile_pass(std::int64_t i0, std::int64_t ni, std::int64_t j0, std::int64_t nj, Workspace& ws) {
    const Features& a = first_;
    const Features& b = symmetric_ ? first_ : second_;
    const std::int64_t pi = round_up(ni, kRowQuantum), pj = round_up(nj, kRowQuantum);
    const std::int64_t cc = req_.per_logit ? C_ * C_ : 1;
    const std::size_t first_out = req_.nngp ? 1 : 0;
    const std::size_t tile_size = static_cast<std::size_t>(ni * nj * cc);
    if (!req_.per_layer) ws.theta.assign(tile_size, 0.0);
    std::int64_t delta_layer = -1;
    for (std::size_t p = 0; p < parts_.size(); ++p) {
      const auto [l, part] = parts_[p];
      const std::size_t lu = static_cast<std::size_t>(l);
      const bool readout = l == L_;
      if (!readout && delta_layer != l) {
        // Per logit, each point has C rows of delta; traced, its C rows are one
        // feature vector (the same memory seen as (rows, C * width)).
        const std::int64_t rows_per_point = req_.per_logit ? C_ : 1;
        const auto view = [&](const RowMatrix<T>& m) {
          const std::int64_t points = shortcut(l) ? m.rows() : m.rows() / C_;
          const std::int64_t rows = points * rows_per_point;
          return Eigen::Map<const RowMatrix<T>>(m.data(), rows, m.size() / rows);
        };
        ws.gram_delta.resize(pi * rows_per_point, pj * rows_per_point);
        ws.gram_delta.noalias() = view(a.deltas[lu]).middleRows(i0 * rows_per_point, pi * rows_per_point) *
                                  view(b.deltas[lu]).middleRows(j0 * rows_per_point, pj * rows_per_point).transpose();
        delta_layer = l;
      }
      const bool traced_delta = !req_.per_logit && !readout;
      const double factor = part == 0 ? scales_[lu].input * scales_[lu].input : scales_[lu].bias_tangent;
      if (part == 0) {
        ws.gram_input.resize(pi, pj);
        ws.gram_input.noalias() = a.inputs[lu].middleRows(i0, pi) * b.inputs[lu].middleRows(j0, pj).transpose();
      }
      std::vector<double>& dst = ws.theta;
      std::vector<double> single;
      double* out = nullptr;
      if (req_.per_layer) {
        single.assign(tile_size, 0.0);
        out = single.data();
      } else {
        out = dst.data();
      }
      for (std::int64_t i = 0; i < ni; ++i) {
        for (std::int64_t j = 0; j < nj; ++j) {
          const double g = part == 0 ? factor * double(ws.gram_input(i, j)) : factor;
          double* o = out + (i * nj + j) * cc;
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
      if (req_.per_layer) add_tile(outputs_[first_out + p], n2_, single.data(), i0, ni, j0, nj, cc);
    }
    if (!req_.per_layer) add_tile(outputs_[first_out], n2_, ws.theta.data(), i0, ni, j0, nj, cc);
  }

  MLPSpec spec_;
  std::vector<LayerScales> scales_;
  const T *x1_, *x2_;
  std::vector<RowTile<T>> tiles_;
  std::int64_t L_ = 0, lowest_delta_ = 0;
  Features first_, second_;
  std::vector<Workspace> workspaces_;
};

// Monte Carlo: networks [start, stop) of `seed`, drawn as in monte_carlo_accumulate.
template <class T>
void tangent_monte_carlo(const MLPSpec& spec, const T* x1, std::int64_t n1, const T* x2, std::int64_t n2,
                         const TangentRequest& req, const TangentOptions& opt, const std::vector<double*>& outputs) {
  TangentAccumulator<T> acc(spec, spec.scales(false), x1, n1, x2, n2, req, opt, outputs);
  NetworkDraw<T> draw(spec.layers);
  const NetworkView<T> net = draw.view();
  for (std::uint64_t m = opt.start; m < opt.stop; ++m) {
    draw.draw(spec.layers, opt.seed, m, opt.n_threads);
    acc.add_network(net);
  }
  acc.finish();
}

// Given parameters (stored, in the layout of sample_params).
template <class T>
void tangent_empirical(const MLPSpec& spec, const NetworkView<T>& net, const T* x1, std::int64_t n1, const T* x2,
                       std::int64_t n2, const TangentRequest& req, const TangentOptions& opt,
                       const std::vector<double*>& outputs) {
  TangentAccumulator<T> acc(spec, spec.scales(true), x1, n1, x2, n2, req, opt, outputs);
  acc.add_network(net);
  acc.finish();
}

}  // namespace nnpk
