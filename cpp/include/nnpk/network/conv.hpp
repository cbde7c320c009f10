// A direct convolution for narrow channel counts: each output row (point, position) is one
// chain of multiply-adds over the kernel taps and input channels in the order of the weights'
// rows (kernel row, kernel column, input channel), read straight from the input rows under the
// window: no patch matrix is built and no operand is repacked. With 64 channels the packing of
// the patch matrix for a general matrix product costs about as much as the product itself.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "nnpk/network/spec.hpp"

namespace nnpk {

namespace conv_kernel {

constexpr int kLanes = 16;  // floats per vector (a zmm register; two ymm or four xmm elsewhere)
constexpr int kMaxVectors = 4;  // output channels per column group: 64
#if defined(__AVX512F__)
constexpr int kRows = 6;  // output rows sharing each weight load: 6 x 4 accumulators + 4 weights in 32 registers
#else
constexpr int kRows = 2;  // (unused: see direct_conv_applies)
#endif

typedef float Vec __attribute__((vector_size(kLanes * sizeof(float)), aligned(sizeof(float))));

// out[r][0 : 16 V] = sum over taps t and channels c of rows[r][t][c] * w[t * c_in + c][0 : 16 V],
// each entry one chain in (t, c) order (the same for every R: rows are independent).
template <int R, int V>
void block(const float* const* rows, std::int64_t taps, std::int64_t c_in, const float* w, std::int64_t ldw,
           float* out, std::int64_t ldo) {
  Vec acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = Vec{};
  for (std::int64_t t = 0; t < taps; ++t) {
    const float* src[R];
    for (int r = 0; r < R; ++r) src[r] = rows[r * taps + t];
    const float* wt = w + t * c_in * ldw;
    for (std::int64_t c = 0; c < c_in; ++c) {
      Vec wv[V];
      for (int v = 0; v < V; ++v) std::memcpy(&wv[v], wt + c * ldw + v * kLanes, sizeof(Vec));
      for (int r = 0; r < R; ++r) {
        const float a = src[r][c];
        for (int v = 0; v < V; ++v) acc[r][v] += a * wv[v];
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) std::memcpy(out + r * ldo + v * kLanes, &acc[r][v], sizeof(Vec));
}

template <int V>
void block_rows(int rows_in_block, const float* const* rows, std::int64_t taps, std::int64_t c_in, const float* w,
                std::int64_t ldw, float* out, std::int64_t ldo) {
  switch (rows_in_block) {
#if defined(__AVX512F__)
    case 6: return block<6, V>(rows, taps, c_in, w, ldw, out, ldo);
    case 5: return block<5, V>(rows, taps, c_in, w, ldw, out, ldo);
    case 4: return block<4, V>(rows, taps, c_in, w, ldw, out, ldo);
    case 3: return block<3, V>(rows, taps, c_in, w, ldw, out, ldo);
#endif
    case 2: return block<2, V>(rows, taps, c_in, w, ldw, out, ldo);
    default: return block<1, V>(rows, taps, c_in, w, ldw, out, ldo);
  }
}

}  // namespace conv_kernel

// Whether direct_conv computes this layer: float data and whole vectors of output channels, on
// AVX-512 (the blocks are sized for its 32 vector registers; elsewhere the general product stays).
template <class T>
bool direct_conv_applies(const SeqNode& node) {
#if defined(__AVX512F__)
  return std::is_same<T, float>::value && node.kind == NodeKind::conv && node.out.channels % conv_kernel::kLanes == 0;
#else
  (void)node;
  return false;
#endif
}

// z (rows (point, output position), output channels; at least points x positions rows) = the
// convolution of `in` (rows (point, input position), input channels) with w (fan_in x fan_out,
// rows (kernel row, kernel column, input channel)); positions in the padding read zeros.
// `zeros` is scratch of at least the input's channel count.
inline void direct_conv(const SeqNode& node, const float* in, std::int64_t points, const float* w, float* z,
                        std::vector<float>& zeros) {
  using namespace conv_kernel;
  const Shape &s = node.in, &o = node.out;
  const std::int64_t c_in = s.channels, c_out = o.channels, taps = node.window_h * node.window_w;
  const std::int64_t rows = points * o.positions();
  if (static_cast<std::int64_t>(zeros.size()) < c_in) zeros.assign(static_cast<std::size_t>(c_in), 0.0f);
  const float* rows_ptr[kRows * 64];
  std::vector<const float*> heap;
  const float** table = rows_ptr;
  if (taps > 64) {
    heap.resize(static_cast<std::size_t>(kRows * taps));
    table = heap.data();
  }
  std::int64_t p = 0, oh = 0, ow = 0;  // the next row's point and output position
  for (std::int64_t g0 = 0; g0 < rows; g0 += kRows) {
    const int nr = static_cast<int>(std::min<std::int64_t>(kRows, rows - g0));
    for (int r = 0; r < nr; ++r) {
      for (std::int64_t i = 0, t = 0; i < node.window_h; ++i) {
        const std::int64_t ih = node.source_h(oh, i);
        for (std::int64_t j = 0; j < node.window_w; ++j, ++t) {
          const std::int64_t iw = node.source_w(ow, j);
          const bool inside = ih >= 0 && iw >= 0;
          table[r * taps + t] = inside ? in + ((p * s.height + ih) * s.width + iw) * c_in : zeros.data();
        }
      }
      if (++ow == o.width) {
        ow = 0;
        if (++oh == o.height) {
          oh = 0;
          ++p;
        }
      }
    }
    for (std::int64_t col = 0; col < c_out; col += kMaxVectors * kLanes) {
      const int v = static_cast<int>(std::min<std::int64_t>(kMaxVectors, (c_out - col) / kLanes));
      float* out = z + g0 * c_out + col;
      const float* wc = w + col;
      switch (v) {
        case 4: block_rows<4>(nr, table, taps, c_in, wc, c_out, out, c_out); break;
        case 3: block_rows<3>(nr, table, taps, c_in, wc, c_out, out, c_out); break;
        case 2: block_rows<2>(nr, table, taps, c_in, wc, c_out, out, c_out); break;
        default: block_rows<1>(nr, table, taps, c_in, wc, c_out, out, c_out); break;
      }
    }
  }
}

}  // namespace nnpk
