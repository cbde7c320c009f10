// Merges of parallel branches (nnpk.Parallel followed by FanInProd or FanInConcat): a node reading two
// earlier nodes, `input` and `skip`, of one point's rows (point, position). The product multiplies
// them entry by entry; the concatenation puts the input's channels first, then the skip's. A merge
// of k branches is a chain of k - 1 such nodes; a sum of branches is the engine's residual node
// with scale 1. The forward pass, the backward pass (each branch's cotangent: the product's times
// the other branch, the concatenation's its own channels) and the forward-mode tangent.
#pragma once

#include <algorithm>
#include <cstdint>

#include "nnpk/network/layers.hpp"
#include "nnpk/network/spec.hpp"

namespace nnpk::fan_in {

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
  for (std::int64_t r = 0; r < rows; ++r) {
    T* dst = out + r * co;
    if (da) std::copy(da + r * ca, da + (r + 1) * ca, dst);
    else std::fill(dst, dst + ca, T(0));
    if (db) std::copy(db + r * cb, db + (r + 1) * cb, dst + ca);
    else std::fill(dst + ca, dst + co, T(0));
  }
}

}  // namespace nnpk::fan_in
