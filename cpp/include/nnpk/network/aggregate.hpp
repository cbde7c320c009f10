// Graph aggregation (Aggregate): a point's positions are the nodes of a graph, and each output node
// is the weighted sum of the input nodes with an edge into it, per column:
//   out[v] = sum_u pattern[u][v] in[u]      (forward, and the tangent: the map is linear)
//   in[u] += sum_v pattern[u][v] g[v]       (backward: the transpose)
// Each entry is one sum over u (or v) ascending from zero, skipping zero weights, so it does not depend
// on the tile or the thread.
#pragma once

#include <algorithm>
#include <cstdint>

#include "nnpk/network/spec.hpp"

namespace nnpk {

// Rows (point, position) of `points` points, `cols` values each. transpose = false: dst = the
// aggregation of src (dst overwritten); true: dst += its transpose applied to src.
template <class T>
void aggregate_rows(const SeqNode& node, const T* src, std::int64_t points, std::int64_t cols, T* dst,
                    bool transpose) {
  const std::int64_t P = node.in.positions();
  const double* A = node.pattern.data();
  for (std::int64_t p = 0; p < points; ++p) {
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
