// Graph aggregation (Aggregate): a point's positions are the nodes of a graph, and each output node
// is the weighted sum of the input nodes with an edge into it, per column:
//   out[v] = sum_u pattern[u][v] in[u]      (forward, and the tangent: the map is linear)
//   in[u] += sum_v pattern[u][v] g[v]       (backward: the transpose)
// The pattern is the layer's (one graph for every point), or with per_point each point's own adjacency,
// carried by its input row after its features (SequentialSpec::graph), its columns divided by their
// sums for the mean. Each entry is one sum over u (or v) ascending from zero, skipping zero weights,
// so it does not depend on the tile or the thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "nnpk/network/spec.hpp"

namespace nnpk {

// A point's P x P adjacency from its input row x (P positions of `channels` values, the last P of each
// the position's row of the adjacency), row-major: A[u * P + v].
template <class T>
void graph_adjacency(const T* x, std::int64_t P, std::int64_t channels, double* A) {
  const std::int64_t features = channels - P;
  for (std::int64_t u = 0; u < P; ++u)
    for (std::int64_t v = 0; v < P; ++v) A[u * P + v] = static_cast<double>(x[u * channels + features + v]);
}

// The weights a per-point aggregation applies: the adjacency A (P x P), or for the mean each column
// divided by its sum (summed in ascending u; a column without edges stays 0).
inline void graph_weights(const double* A, std::int64_t P, bool mean, double* W) {
  std::copy(A, A + P * P, W);
  if (!mean) return;
  for (std::int64_t v = 0; v < P; ++v) {
    double total = 0.0;
    for (std::int64_t u = 0; u < P; ++u) total += A[u * P + v];
    for (std::int64_t u = 0; u < P; ++u) W[u * P + v] = total > 0.0 ? A[u * P + v] / total : 0.0;
  }
}

// Rows (point, position) of `points` points, `cols` values each. transpose = false: dst = the
// aggregation of src (dst overwritten); true: dst += its transpose applied to src. graphs: with a
// per-point node, the points' adjacencies (P x P each, row-major).
template <class T>
void aggregate_rows(const SeqNode& node, const T* src, std::int64_t points, std::int64_t cols, T* dst,
                    bool transpose, const double* graphs = nullptr) {
  const std::int64_t P = node.in.positions();
  std::vector<double> own;
  if (node.per_point) own.resize(static_cast<std::size_t>(P * P));
  for (std::int64_t p = 0; p < points; ++p) {
    const double* A = node.pattern.data();
    if (node.per_point) {
      graph_weights(graphs + p * P * P, P, node.mean, own.data());
      A = own.data();
    }
    const T* s = src + p * P * cols;
    T* d = dst + p * P * cols;
    for (std::int64_t a = 0; a < P; ++a) {
      T* out = d + a * cols;
      if (!transpose) std::fill(out, out + cols, T(0));
      for (std::int64_t b = 0; b < P; ++b) {
        // forward: out node a = sum over b of pattern[b][a] in[b]; backward: in[a] += pattern[a][b] g[b].
        const double w = transpose ? A[a * P + b] : A[b * P + a];
        if (w == 0.0) continue;
        const T wt = static_cast<T>(w);
        const T* row = s + b * cols;
        for (std::int64_t j = 0; j < cols; ++j) out[j] += wt * row[j];
      }
    }
  }
}

}  // namespace nnpk
