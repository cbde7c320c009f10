// Merges of parallel branches (nnpk.Parallel followed by FanInProd or FanInConcat): a node reading two
// earlier nodes, `input` and `skip`, of one point's rows (point, position). The product multiplies
// them entry by entry; the concatenation puts the input's entries first, then the skip's, along the
// channels or along a spatial axis (node.concat_axis: 0 height, 1 width, 2 channels). A merge
// of k branches is a chain of k - 1 such nodes; a sum of branches is the engine's residual node
// with scale 1. The forward pass, the backward pass (each branch's cotangent: the product's times
// the other branch, the concatenation's its own channels) and the forward-mode tangent.
#pragma once

#include <algorithm>
#include <cstdint>

#include "nnpk/network/layers.hpp"
#include "nnpk/network/spec.hpp"

namespace nnpk::fan_in {

// Output position `pos` of a concatenation along a spatial axis: from the skip (b) or the input (a),
// at position `src` of that branch.
inline void position_source(const SeqNode& node, std::int64_t pos, bool& from_b, std::int64_t& src) {
  const Shape &a = node.in, &o = node.out;
  const std::int64_t h = pos / o.width, w = pos % o.width;
  if (node.concat_axis == 0) {
    from_b = h >= a.height;
    src = from_b ? (h - a.height) * o.width + w : h * o.width + w;
  } else {
    const std::int64_t wb = o.width - a.width;
    from_b = w >= a.width;
    src = from_b ? h * wb + (w - a.width) : h * a.width + w;
  }
}

// Positions of the skip's output (the second branch of a concatenation along a spatial axis).
inline std::int64_t skip_positions(const SeqNode& node) { return node.out.positions() - node.in.positions(); }

// A concatenation along a spatial axis, `cols` values per row: calls f(out_row, from_b, branch_row)
// for every row of the output (points x positions rows; a branch's rows are its points x positions).
template <class F>
void for_positions(const SeqNode& node, std::int64_t points, F&& f) {
  const std::int64_t P = node.out.positions(), Pa = node.in.positions(), Pb = skip_positions(node);
  for (std::int64_t p = 0; p < points; ++p)
    for (std::int64_t pos = 0; pos < P; ++pos) {
      bool from_b;
      std::int64_t src;
      position_source(node, pos, from_b, src);
      f(p * P + pos, from_b, from_b ? p * Pb + src : p * Pa + src);
    }
}

// out's rows from a's and b's (a null branch gives zeros).
template <class T>
void gather_positions(const SeqNode& node, std::int64_t points, std::int64_t cols, const T* a, const T* b, T* out) {
  for_positions(node, points, [&](std::int64_t row, bool from_b, std::int64_t src) {
    const T* branch = from_b ? b : a;
    T* dst = out + row * cols;
    if (branch)
      std::copy(branch + src * cols, branch + (src + 1) * cols, dst);
    else
      std::fill(dst, dst + cols, T(0));
  });
}

// The transpose: a's and b's rows (where not null) receive g's.
template <class T>
void scatter_positions(const SeqNode& node, std::int64_t points, std::int64_t cols, const T* g, T* ga, T* gb) {
  for_positions(node, points, [&](std::int64_t row, bool from_b, std::int64_t src) {
    T* branch = from_b ? gb : ga;
    if (!branch) return;
    const T* from = g + row * cols;
    T* into = branch + src * cols;
    for (std::int64_t j = 0; j < cols; ++j) into[j] += from[j];
  });
}

// out (rows x out channels) from a (rows x node.in.channels) and b (rows x the skip's channels);
// the padding rows of out are left as the caller shaped them (zero).
template <class T>
void forward(const SeqNode& node, const T* a, const T* b, std::int64_t rows, T* out) {
  const std::int64_t ca = node.in.channels, co = node.out.channels;
  if (node.kind == NodeKind::fan_in_prod) {
    const std::int64_t n = rows * co;
    for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
    return;
  }
  if (node.concat_axis != 2) {
    gather_positions(node, rows / node.out.positions(), co, a, b, out);
    return;
  }
  const std::int64_t cb = co - ca;
  for (std::int64_t r = 0; r < rows; ++r) {
    std::copy(a + r * ca, a + (r + 1) * ca, out + r * co);
    std::copy(b + r * cb, b + (r + 1) * cb, out + r * co + ca);
  }
}

// Adds the output cotangent g (rows x (C cotangents x out channels)) through the merge to the
// input's (ga) and the skip's (gb) cotangents (either may be null: not needed). a, b are the
// forward pass's input and skip outputs (read by the product only).
template <class T>
void backward(const SeqNode& node, const T* g, const T* a, const T* b, std::int64_t rows, std::int64_t C, T* ga,
              T* gb) {
  const std::int64_t ca = node.in.channels, co = node.out.channels, cb = co - ca;
  if (node.kind == NodeKind::fan_in_concat && node.concat_axis != 2) {
    scatter_positions(node, rows / node.out.positions(), C * co, g, ga, gb);
    return;
  }
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < C; ++c) {
      const T* src = g + (r * C + c) * co;
      if (node.kind == NodeKind::fan_in_prod) {
        if (ga)
          for (std::int64_t j = 0; j < co; ++j) ga[(r * C + c) * co + j] += src[j] * b[r * co + j];
        if (gb)
          for (std::int64_t j = 0; j < co; ++j) gb[(r * C + c) * co + j] += src[j] * a[r * co + j];
        continue;
      }
      if (ga)
        for (std::int64_t j = 0; j < ca; ++j) ga[(r * C + c) * ca + j] += src[j];
      if (gb)
        for (std::int64_t j = 0; j < cb; ++j) gb[(r * C + c) * cb + j] += src[ca + j];
    }
}

// The tangent of the merge: da, db the branches' tangents (null: zero), a, b their values.
template <class T>
void tangent(const SeqNode& node, const T* a, const T* b, const T* da, const T* db, std::int64_t rows, T* out) {
  const std::int64_t ca = node.in.channels, co = node.out.channels, cb = co - ca;
  if (node.kind == NodeKind::fan_in_prod) {
    const std::int64_t n = rows * co;
    for (std::int64_t i = 0; i < n; ++i) {
      T v = 0;
      if (da) v += da[i] * b[i];
      if (db) v += a[i] * db[i];
      out[i] = v;
    }
    return;
  }
  if (node.concat_axis != 2) {
    gather_positions(node, rows / node.out.positions(), co, da, db, out);
    return;
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    T* dst = out + r * co;
    if (da) std::copy(da + r * ca, da + (r + 1) * ca, dst);
    else std::fill(dst, dst + ca, T(0));
    if (db) std::copy(db + r * cb, db + (r + 1) * cb, dst + ca);
    else std::fill(dst + ca, dst + co, T(0));
  }
}

}  // namespace nnpk::fan_in
