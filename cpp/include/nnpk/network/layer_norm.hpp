// Layer normalisation: each point normalised on its own, y = (x - mean) / sqrt(var + eps), the mean and
// the biased variance taken over the node's chosen axes of the point (its channels, its positions or
// both), one pair per group of the other axes' indices. The layer has no parameters. Per group of N
// values, with r = 1 / sqrt(var + eps), its Jacobian r (I - 1 1^T / N - y y^T / N) is symmetric, so the
// backward pass (cotangents) and the forward-mode tangent apply the same map.
// A point's statistics are float64 sums in memory order: the same whatever the tile or thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "nnpk/network/layers.hpp"
#include "nnpk/network/spec.hpp"

namespace nnpk {

namespace layer_norm_detail {

// The groups of one point's values: value (position p, channel ch) belongs to group
// position_group(p) + (per_channel() ? ch : 0).
struct Groups {
  std::int64_t width = 1, channels = 1, positions = 1;
  std::int64_t gh = 1, gw = 1, gc = 1;  // groups along each axis (1 where it is normalised over)
  std::int64_t count = 1;               // values per group

  explicit Groups(const SeqNode& node)
      : width(node.in.width), channels(node.in.channels), positions(node.in.positions()),
        gh(node.norm_height ? 1 : node.in.height), gw(node.norm_width ? 1 : node.in.width),
        gc(node.norm_channels ? 1 : node.in.channels) {
    count = node.in.size() / size();
  }
  std::int64_t size() const { return gh * gw * gc; }
  bool per_channel() const { return gc > 1; }
  std::int64_t position_group(std::int64_t p) const {
    const std::int64_t h = gh > 1 ? p / width : 0, w = gw > 1 ? p % width : 0;
    return (h * gw + w) * gc;
  }
};

// mean[g] and inv_std[g] = 1 / sqrt(var[g] + eps) of one point's values x (positions x channels).
template <class T>
void statistics(const Groups& g, const T* x, double eps, double* mean, double* inv_std) {
  const std::int64_t G = g.size(), C = g.channels;
  std::fill(mean, mean + G, 0.0);
  std::fill(inv_std, inv_std + G, 0.0);
  for (std::int64_t p = 0; p < g.positions; ++p) {
    const T* row = x + p * C;
    double* m = mean + g.position_group(p);
    if (g.per_channel()) {
      for (std::int64_t ch = 0; ch < C; ++ch) m[ch] += double(row[ch]);
    } else {
      for (std::int64_t ch = 0; ch < C; ++ch) m[0] += double(row[ch]);
    }
  }
  const double inv_count = 1.0 / static_cast<double>(g.count);
  for (std::int64_t k = 0; k < G; ++k) mean[k] *= inv_count;
  // The mean squared deviation (a second pass: no cancellation of large means).
  for (std::int64_t p = 0; p < g.positions; ++p) {
    const T* row = x + p * C;
    const std::int64_t base = g.position_group(p);
    for (std::int64_t ch = 0; ch < C; ++ch) {
      const std::int64_t k = base + (g.per_channel() ? ch : 0);
      const double e = double(row[ch]) - mean[k];
      inv_std[k] += e * e;
    }
  }
  for (std::int64_t k = 0; k < G; ++k) inv_std[k] = 1.0 / std::sqrt(inv_std[k] * inv_count + eps);
}

}  // namespace layer_norm_detail

// out = the normalisation of `points` points of `in` (rows (point, position), channels columns; row-major,
// both with the node's input layout).
template <class T>
void layer_norm_forward(const SeqNode& node, const T* in, std::int64_t points, T* out) {
  const layer_norm_detail::Groups g(node);
  const std::int64_t G = g.size(), C = g.channels, n = node.in.size();
  std::vector<double> stats(static_cast<std::size_t>(2 * G));
  double *mean = stats.data(), *inv_std = stats.data() + G;
  for (std::int64_t i = 0; i < points; ++i) {
    const T* x = in + i * n;
    T* y = out + i * n;
    layer_norm_detail::statistics(g, x, node.eps, mean, inv_std);
    for (std::int64_t p = 0; p < g.positions; ++p) {
      const std::int64_t base = g.position_group(p);
      for (std::int64_t ch = 0; ch < C; ++ch) {
        const std::int64_t k = base + (g.per_channel() ? ch : 0);
        y[p * C + ch] = static_cast<T>((double(x[p * C + ch]) - mean[k]) * inv_std[k]);
      }
    }
  }
}

// out += J v for C vectors v per point (rows (point, position), columns (vector c, channel), as the
// backward pass lays out cotangents), J the Jacobian of the normalisation at the points' inputs x:
// per group, r (v - mean(v) - y mean(y v)). J is symmetric, so this is both the backward step
// (v a cotangent of the output) and the forward-mode tangent (v the input's tangent, C = 1).
template <class T>
void layer_norm_add_jacobian(const SeqNode& node, const T* x, const T* v, std::int64_t points, std::int64_t C, T* out) {
  const layer_norm_detail::Groups g(node);
  const std::int64_t G = g.size(), ch_n = g.channels, n = node.in.size(), cols = C * ch_n;
  std::vector<double> buffer(static_cast<std::size_t>(4 * G));
  double *mean = buffer.data(), *inv_std = mean + G, *sum_v = inv_std + G, *sum_yv = sum_v + G;
  const double inv_count = 1.0 / static_cast<double>(g.count);
  for (std::int64_t i = 0; i < points; ++i) {
    const T* xi = x + i * n;
    layer_norm_detail::statistics(g, xi, node.eps, mean, inv_std);
    for (std::int64_t c = 0; c < C; ++c) {
      std::fill(sum_v, sum_v + 2 * G, 0.0);
      for (std::int64_t p = 0; p < g.positions; ++p) {
        const T* vp = v + (i * g.positions + p) * cols + c * ch_n;
        const std::int64_t base = g.position_group(p);
        for (std::int64_t ch = 0; ch < ch_n; ++ch) {
          const std::int64_t k = base + (g.per_channel() ? ch : 0);
          const double y = (double(xi[p * ch_n + ch]) - mean[k]) * inv_std[k];
          sum_v[k] += double(vp[ch]);
          sum_yv[k] += y * double(vp[ch]);
        }
      }
      for (std::int64_t k = 0; k < G; ++k) {
        sum_v[k] *= inv_count;
        sum_yv[k] *= inv_count;
      }
      for (std::int64_t p = 0; p < g.positions; ++p) {
        const T* vp = v + (i * g.positions + p) * cols + c * ch_n;
        T* op = out + (i * g.positions + p) * cols + c * ch_n;
        const std::int64_t base = g.position_group(p);
        for (std::int64_t ch = 0; ch < ch_n; ++ch) {
          const std::int64_t k = base + (g.per_channel() ? ch : 0);
          const double y = (double(xi[p * ch_n + ch]) - mean[k]) * inv_std[k];
          op[ch] += static_cast<T>(inv_std[k] * (double(vp[ch]) - sum_v[k] - y * sum_yv[k]));
        }
      }
    }
  }
}

}  // namespace nnpk
