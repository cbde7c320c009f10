// Matrix products with their factors packed once and reused: C (+)= alpha A B for row-major C,
// computed by Eigen's GEBP micro-kernel on factors packed in its panel layout. A plain Eigen
// product repacks both factors at every call; a recurrent layer multiplies the same weights at
// every step (pack them once per pass), and a weight gradient's blocks share one factor (pack it
// once, not once per block). Any block of C is computed by the same arithmetic whichever thread
// computes it and whichever other blocks are computed: the depth is cut into fixed slices of
// kPackDepth, each slice's contribution added in order.
//
// In Eigen's column-major terms C^T = B^T A^T: B^T is the kernel's left-hand side (panels of mr
// columns of C), A^T its right-hand side (panels of nr rows of C).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "nnpk/parallel.hpp"

namespace nnpk {

constexpr std::int64_t kPackDepth = 256;  // depth of a slice of the packed factors

namespace packed_detail {

using Index = Eigen::Index;
template <class T>
using Traits = Eigen::internal::gebp_traits<T, T>;
template <class T, int Order>
using Mapper = Eigen::internal::const_blas_data_mapper<T, Index, Order>;
template <class T>
using ResMapper = Eigen::internal::blas_data_mapper<T, Index, Eigen::ColMajor, Eigen::Unaligned, 1>;

inline std::int64_t slices(std::int64_t depth) { return (depth + kPackDepth - 1) / kPackDepth; }
inline std::int64_t slice_depth(std::int64_t depth, std::int64_t s) {
  return std::min(kPackDepth, depth - s * kPackDepth);
}

// Runs body(s) for every depth slice, on `threads` threads (0: this one).
template <class Body>
void for_slices(std::int64_t depth, int threads, Body&& body) {
  const std::int64_t n = slices(depth);
  if (threads <= 0) {
    for (std::int64_t s = 0; s < n; ++s) body(s);
  } else {
    parallel_for(n, threads, [&](std::int64_t s, int) { body(s); });
  }
}

// Resizes `data` to depth x other values and fills it slice by slice: pack(dst, k0, slice depth) for each
// slice of the depth, on `threads` threads (0: this one).
template <class T, class Pack>
void pack_slices(std::vector<T, Eigen::aligned_allocator<T>>& data, std::int64_t depth, std::int64_t other,
                 int threads, Pack&& pack) {
  data.resize(static_cast<std::size_t>(depth * other));
  for_slices(depth, threads, [&](std::int64_t s) {
    const std::int64_t k0 = s * kPackDepth;
    pack(data.data() + k0 * other, k0, slice_depth(depth, s));
  });
}

}  // namespace packed_detail

// The right factor B (K x N): b(k, n) = transposed ? b[n * ld + k] : b[k * ld + n].
template <class T>
class PackedRight {
 public:
  // Columns of C in one kernel panel: a block of C's columns starts at a multiple of this.
  static constexpr std::int64_t kPanel = packed_detail::Traits<T>::mr;

  void pack(const T* b, std::int64_t K, std::int64_t N, std::int64_t ld, bool transposed, int threads = 0) {
    using namespace packed_detail;
    K_ = K;
    N_ = N;
    pack_slices(data_, K, N, threads, [&](T* dst, std::int64_t k0, std::int64_t depth) {
      if (transposed) {
        Eigen::internal::gemm_pack_lhs<T, Index, Mapper<T, Eigen::RowMajor>, Traits<T>::mr, Traits<T>::LhsProgress,
                                       typename Traits<T>::LhsPacket4Packing, Eigen::RowMajor>
            pack_lhs;
        pack_lhs(dst, Mapper<T, Eigen::RowMajor>(b, ld).getSubMapper(0, k0), depth, N);
      } else {
        Eigen::internal::gemm_pack_lhs<T, Index, Mapper<T, Eigen::ColMajor>, Traits<T>::mr, Traits<T>::LhsProgress,
                                       typename Traits<T>::LhsPacket4Packing, Eigen::ColMajor>
            pack_lhs;
        pack_lhs(dst, Mapper<T, Eigen::ColMajor>(b, ld).getSubMapper(0, k0), depth, N);
      }
    });
  }

  std::int64_t depth() const { return K_; }
  std::int64_t cols() const { return N_; }
  // Slice s from column j0 (a multiple of kPanel).
  const T* at(std::int64_t s, std::int64_t j0) const {
    return data_.data() + s * kPackDepth * N_ + j0 * packed_detail::slice_depth(K_, s);
  }

 private:
  std::int64_t K_ = 0, N_ = 0;
  std::vector<T, Eigen::aligned_allocator<T>> data_;
};

// The left factor A (M x K): a(m, k) = transposed ? a[k * ld + m] : a[m * ld + k].
template <class T>
class PackedLeft {
 public:
  // Rows of C in one kernel panel: a block of C's rows starts at a multiple of this.
  static constexpr std::int64_t kPanel = packed_detail::Traits<T>::nr;

  void pack(const T* a, std::int64_t M, std::int64_t K, std::int64_t ld, bool transposed, int threads = 0) {
    using namespace packed_detail;
    M_ = M;
    K_ = K;
    pack_slices(data_, K, M, threads, [&](T* dst, std::int64_t k0, std::int64_t depth) {
      if (transposed) {
        pack_transposed(a + k0 * ld, M, depth, ld, dst);
      } else {
        Eigen::internal::gemm_pack_rhs<T, Index, Mapper<T, Eigen::ColMajor>, Traits<T>::nr, Eigen::ColMajor> pack_rhs;
        pack_rhs(dst, Mapper<T, Eigen::ColMajor>(a, ld).getSubMapper(k0, 0), depth, M);
      }
    });
  }

  std::int64_t rows() const { return M_; }
  std::int64_t depth() const { return K_; }

  // One slice of a transposed A, a(m, k) = src[k * ld + m] for k < depth, in the layout of Eigen's packed
  // right-hand factor: whole panels of kPanel rows m, each `depth` steps of kPanel values, then the rows past
  // the last whole panel one after the other, `depth` values each. By blocks of 16 steps, so that every cache
  // line read (16 source rows) and written (16 steps of a panel) is used whole (in float with AVX-512: by
  // 4 x 16 register transposes); a plain copy, the same values.
  static void pack_transposed(const T* src, std::int64_t M, std::int64_t depth, std::int64_t ld, T* dst) {
    constexpr std::int64_t nr = kPanel, kBlock = 16;
    const std::int64_t whole = M / nr * nr;
    std::int64_t first = 0;  // the steps packed by vectors below
#if defined(__AVX512F__)
    if constexpr (std::is_same<T, float>::value && nr == 4) {
      // Blocks of 16 steps by 16 rows m, by groups of 4 steps: 4 source vectors (16 m of one step each),
      // transposed by their 128-bit lanes into 4 vectors, each the 4 steps of one panel (4 m). A block
      // writes 256 contiguous bytes of each of its 4 panels: few pages touched per source line read.
      const std::int64_t wide = M / 16 * 16;
      first = wide > 0 ? depth / kBlock * kBlock : 0;
      for (std::int64_t k0 = 0; k0 < first; k0 += kBlock) {
        for (std::int64_t j = 0; j < wide; j += 16)
          for (std::int64_t q = k0; q < k0 + kBlock; q += 4) {
            const float* r0 = src + q * ld + j;
            const __m512 a = _mm512_loadu_ps(r0), b = _mm512_loadu_ps(r0 + ld);
            const __m512 c = _mm512_loadu_ps(r0 + 2 * ld), d = _mm512_loadu_ps(r0 + 3 * ld);
            const __m512 ab_lo = _mm512_shuffle_f32x4(a, b, 0x44), ab_hi = _mm512_shuffle_f32x4(a, b, 0xEE);
            const __m512 cd_lo = _mm512_shuffle_f32x4(c, d, 0x44), cd_hi = _mm512_shuffle_f32x4(c, d, 0xEE);
            float* out = dst + j * depth + q * nr;
            _mm512_storeu_ps(out, _mm512_shuffle_f32x4(ab_lo, cd_lo, 0x88));
            _mm512_storeu_ps(out + nr * depth, _mm512_shuffle_f32x4(ab_lo, cd_lo, 0xDD));
            _mm512_storeu_ps(out + 2 * nr * depth, _mm512_shuffle_f32x4(ab_hi, cd_hi, 0x88));
            _mm512_storeu_ps(out + 3 * nr * depth, _mm512_shuffle_f32x4(ab_hi, cd_hi, 0xDD));
          }
        for (std::int64_t j = wide; j < whole; j += nr) {
          T* out = dst + j * depth + k0 * nr;
          for (std::int64_t k = 0; k < kBlock; ++k)
            for (std::int64_t i = 0; i < nr; ++i) out[k * nr + i] = src[(k0 + k) * ld + j + i];
        }
        for (std::int64_t j = whole; j < M; ++j)
          for (std::int64_t k = 0; k < kBlock; ++k) dst[j * depth + k0 + k] = src[(k0 + k) * ld + j];
      }
    }
#endif
    for (std::int64_t k0 = first; k0 < depth; k0 += kBlock) {
      const std::int64_t kn = std::min(kBlock, depth - k0);
      for (std::int64_t j = 0; j < whole; j += nr) {
        T* d = dst + j * depth + k0 * nr;
        for (std::int64_t k = 0; k < kn; ++k)
          for (std::int64_t i = 0; i < nr; ++i) d[k * nr + i] = src[(k0 + k) * ld + j + i];
      }
      for (std::int64_t j = whole; j < M; ++j)
        for (std::int64_t k = 0; k < kn; ++k) dst[j * depth + k0 + k] = src[(k0 + k) * ld + j];
    }
  }

  // Slice s from row i0 (a multiple of kPanel).
  const T* at(std::int64_t s, std::int64_t i0) const {
    return data_.data() + s * kPackDepth * M_ + i0 * packed_detail::slice_depth(K_, s);
  }

 private:
  std::int64_t M_ = 0, K_ = 0;
  std::vector<T, Eigen::aligned_allocator<T>> data_;
};

#if defined(__AVX512F__)
namespace packed_detail {

// Where the tiles below read the left factor: a(r, k) for the tile's rows r < 4 R and depth k.
// PanelRows: R panels of PackedLeft (4 rows each, `panel` values apart), B's panel fetched 8 steps ahead.
struct PanelRows {
  const float* a;
  std::int64_t panel;
  float operator()(int r, std::int64_t k) const { return a[(r / 4) * panel + 4 * k + r % 4]; }
  static void prefetch(const float* pb) { _mm_prefetch(reinterpret_cast<const char*>(pb + 8 * 48), _MM_HINT_T0); }
};
// PlainRows: rows of a row-major A read where they lie (packed_rows.hpp), each of B's step's three lines
// fetched 6 steps ahead.
struct PlainRows {
  const float* a;
  std::int64_t lda;
  float operator()(int r, std::int64_t k) const { return a[r * lda + k]; }
  static void prefetch(const float* pb) {
    _mm_prefetch(reinterpret_cast<const char*>(pb + 6 * 48), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(pb + 6 * 48 + 16), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(pb + 6 * 48 + 32), _MM_HINT_T0);
  }
};

// C[4 R rows, 48 columns] += alpha sum_k a(r, k) b(k, :) over one depth slice: 4 R rows of A (see PanelRows,
// PlainRows) against one panel of PackedRight. 12 R accumulators of 16 lanes stay in registers (Eigen's
// kernel keeps 12 at most: a 4-row panel). Every entry of C gets the same arithmetic whatever R and
// wherever A lies: a product summed by fused multiply-adds in the order of k from zero, then C + alpha sum
// (Add) or 0 + alpha sum (not Add: C is only written, the same values as on a zero C).
template <int R, bool Add = true, class Rows>
inline void tile48_rows(const float* pb, const Rows& a, std::int64_t depth, float* C, std::int64_t ldc, float alpha) {
  __m512 c[4 * R][3];
#pragma GCC unroll 8
  for (int r = 0; r < 4 * R; ++r) c[r][0] = c[r][1] = c[r][2] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < depth; ++k, pb += 48) {
    const __m512 b0 = _mm512_load_ps(pb), b1 = _mm512_load_ps(pb + 16), b2 = _mm512_load_ps(pb + 32);
    Rows::prefetch(pb);
#pragma GCC unroll 8
    for (int r = 0; r < 4 * R; ++r) {
      const __m512 ar = _mm512_set1_ps(a(r, k));
      c[r][0] = _mm512_fmadd_ps(b0, ar, c[r][0]);
      c[r][1] = _mm512_fmadd_ps(b1, ar, c[r][1]);
      c[r][2] = _mm512_fmadd_ps(b2, ar, c[r][2]);
    }
  }
  const __m512 scale = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
  for (int r = 0; r < 4 * R; ++r)
#pragma GCC unroll 3
    for (int u = 0; u < 3; ++u) {
      float* cr = C + r * ldc + 16 * u;
      _mm512_storeu_ps(cr, _mm512_fmadd_ps(c[r][u], scale, Add ? _mm512_loadu_ps(cr) : _mm512_setzero_ps()));
    }
}

// The same for the last 16 V columns (V = 1, 2: the panel Eigen's packing leaves at the right edge of B when
// its columns are 16 or 32 past the last whole 48-column panel, V vectors a step).
template <int R, int V, bool Add = true, class Rows>
inline void tile_narrow_rows(const float* pb, const Rows& a, std::int64_t depth, float* C, std::int64_t ldc,
                             float alpha) {
  __m512 c[4 * R][V];
#pragma GCC unroll 8
  for (int r = 0; r < 4 * R; ++r)
    for (int v = 0; v < V; ++v) c[r][v] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < depth; ++k, pb += 16 * V) {
    __m512 b[V];
    for (int v = 0; v < V; ++v) b[v] = _mm512_loadu_ps(pb + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < 4 * R; ++r) {
      const __m512 ar = _mm512_set1_ps(a(r, k));
      for (int v = 0; v < V; ++v) c[r][v] = _mm512_fmadd_ps(b[v], ar, c[r][v]);
    }
  }
  const __m512 scale = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
  for (int r = 0; r < 4 * R; ++r)
    for (int v = 0; v < V; ++v) {
      float* cr = C + r * ldc + 16 * v;
      _mm512_storeu_ps(cr, _mm512_fmadd_ps(c[r][v], scale, Add ? _mm512_loadu_ps(cr) : _mm512_setzero_ps()));
    }
}

// The tiles on PackedLeft's panels (`panel` values apart).
template <int R, bool Add = true>
inline void tile48(const float* pb, const float* pa, std::int64_t panel, std::int64_t depth, float* C, std::int64_t ldc,
                   float alpha) {
  tile48_rows<R, Add>(pb, PanelRows{pa, panel}, depth, C, ldc, alpha);
}
template <int R, int V, bool Add = true>
inline void tile_narrow(const float* pb, const float* pa, std::int64_t panel, std::int64_t depth, float* C,
                        std::int64_t ldc, float alpha) {
  tile_narrow_rows<R, V, Add>(pb, PanelRows{pa, panel}, depth, C, ldc, alpha);
}

}  // namespace packed_detail
#endif

// C[i0 : i0 + mi, j0 : j0 + nj] += alpha (A B) over the same block, C row-major with leading
// dimension ldc. i0 is a multiple of PackedLeft::kPanel, j0 of PackedRight::kPanel, and a block
// ends at a panel boundary or at the edge of C. Which arithmetic an entry of C gets depends on its
// place in C only (whole panels of 48 columns and 4 rows, or the edges), never on the block. With
// `overwrite` the block is set to alpha (A B) instead, bit for bit what it would be added to a zero block,
// without a pass that zeroes it first: the first depth slice writes where the others add.
// packed_block is the same with Cb pointing at C's entry (i0, j0), the block alone in memory (a buffer of
// mi rows, leading dimension ldc).
template <class T>
void packed_block(const PackedLeft<T>& a, const PackedRight<T>& b, T* Cb, std::int64_t ldc, T alpha, std::int64_t i0,
                  std::int64_t mi, std::int64_t j0, std::int64_t nj, bool overwrite = false) {
  using namespace packed_detail;
  if (a.depth() != b.depth()) throw std::logic_error("packed_product: the factors' depths differ");
  if (i0 % PackedLeft<T>::kPanel != 0 || j0 % PackedRight<T>::kPanel != 0)
    throw std::logic_error("packed_product: a block starts inside a panel");
  if (mi <= 0 || nj <= 0) return;
  // Rows of C per kernel call: the right-hand block (slice x rows) stays in the L2 cache.
  constexpr std::int64_t kRows = 256;
  static_assert(kRows % 16 == 0, "whole panels");
  Eigen::internal::gebp_kernel<T, T, Index, ResMapper<T>, Traits<T>::mr, Traits<T>::nr, false, false> gebp;
  const std::int64_t n_slices = slices(a.depth());
  // Zeroes C's block [r0, r0 + rows) x [c0, c0 + cols) before Eigen's kernel adds to it (overwrite, first slice).
  const auto clear = [&](std::int64_t s, std::int64_t r0, std::int64_t rows, std::int64_t c0, std::int64_t cols) {
    if (!overwrite || s != 0) return;
    for (std::int64_t r = r0; r < r0 + rows; ++r) std::fill(Cb + (r - i0) * ldc + (c0 - j0), Cb + (r - i0) * ldc + (c0 + cols - j0), T(0));
  };
  if (n_slices == 0) {  // no depth: a zero product
    for (std::int64_t r = i0; overwrite && r < i0 + mi; ++r) std::fill(Cb + (r - i0) * ldc, Cb + (r - i0) * ldc + (j0 + nj - j0), T(0));
    return;
  }
#if defined(__AVX512F__)
  if constexpr (std::is_same<T, float>::value && Traits<T>::mr == 48 && Traits<T>::nr == 4) {
    // Whole 48-column panels by tile48, 8 rows at a time (the left tile stays in the L1 cache while the
    // right panels stream from L2), then a last 4-row panel; rows past the last whole 4-row panel by
    // Eigen's kernel, and columns past the last whole 48-column panel as below.
    const std::int64_t wide = nj / 48 * 48, tall = mi / 4 * 4;
    for (std::int64_t r0 = i0; r0 < i0 + mi; r0 += kRows) {
      const std::int64_t rows = std::min(kRows, i0 + mi - r0), full = std::min(rows, i0 + tall - r0);
      for (std::int64_t s = 0; s < n_slices; ++s) {
        const std::int64_t d = slice_depth(a.depth(), s), panel = 4 * d;
        const bool add = !overwrite || s > 0;
        std::int64_t i = r0;
        for (; i + 8 <= r0 + full; i += 8)
          for (std::int64_t j = j0; j < j0 + wide; j += 48) {
            if (add) tile48<2>(b.at(s, j), a.at(s, i), panel, d, Cb + (i - i0) * ldc + (j - j0), ldc, alpha);
            else tile48<2, false>(b.at(s, j), a.at(s, i), panel, d, Cb + (i - i0) * ldc + (j - j0), ldc, alpha);
          }
        for (; i + 4 <= r0 + full; i += 4)
          for (std::int64_t j = j0; j < j0 + wide; j += 48) {
            if (add) tile48<1>(b.at(s, j), a.at(s, i), panel, d, Cb + (i - i0) * ldc + (j - j0), ldc, alpha);
            else tile48<1, false>(b.at(s, j), a.at(s, i), panel, d, Cb + (i - i0) * ldc + (j - j0), ldc, alpha);
          }
        if (i < r0 + rows && wide > 0) {
          clear(s, i, r0 + rows - i, j0, wide);
          gebp(ResMapper<T>(Cb + (i - i0) * ldc, ldc), b.at(s, j0), a.at(s, i), wide, d, r0 + rows - i, alpha);
        }
        if (wide < nj) {
          // The right edge: 16 or 32 columns by tile_narrow on whole row panels, anything else by Eigen's kernel.
          const std::int64_t rest = nj - wide, j = j0 + wide;
          std::int64_t e = r0;
          if (rest == 16 || rest == 32) {
            for (; e + 8 <= r0 + full; e += 8) {
              float* ce = Cb + (e - i0) * ldc + (j - j0);
              if (rest == 16) {
                if (add) tile_narrow<2, 1>(b.at(s, j), a.at(s, e), panel, d, ce, ldc, alpha);
                else tile_narrow<2, 1, false>(b.at(s, j), a.at(s, e), panel, d, ce, ldc, alpha);
              } else {
                if (add) tile_narrow<2, 2>(b.at(s, j), a.at(s, e), panel, d, ce, ldc, alpha);
                else tile_narrow<2, 2, false>(b.at(s, j), a.at(s, e), panel, d, ce, ldc, alpha);
              }
            }
            for (; e + 4 <= r0 + full; e += 4) {
              float* ce = Cb + (e - i0) * ldc + (j - j0);
              if (rest == 16) {
                if (add) tile_narrow<1, 1>(b.at(s, j), a.at(s, e), panel, d, ce, ldc, alpha);
                else tile_narrow<1, 1, false>(b.at(s, j), a.at(s, e), panel, d, ce, ldc, alpha);
              } else {
                if (add) tile_narrow<1, 2>(b.at(s, j), a.at(s, e), panel, d, ce, ldc, alpha);
                else tile_narrow<1, 2, false>(b.at(s, j), a.at(s, e), panel, d, ce, ldc, alpha);
              }
            }
          }
          if (e < r0 + rows) {
            clear(s, e, r0 + rows - e, j, rest);
            gebp(ResMapper<T>(Cb + (e - i0) * ldc + (j - j0), ldc), b.at(s, j), a.at(s, e), rest, d, r0 + rows - e, alpha);
          }
        }
      }
    }
    return;
  }
#endif
  for (std::int64_t r0 = i0; r0 < i0 + mi; r0 += kRows) {
    const std::int64_t rows = std::min(kRows, i0 + mi - r0);
    const ResMapper<T> res(Cb + (r0 - i0) * ldc, ldc);
    for (std::int64_t s = 0; s < n_slices; ++s) {
      clear(s, r0, rows, j0, nj);
      gebp(res, b.at(s, j0), a.at(s, r0), nj, slice_depth(a.depth(), s), rows, alpha);
    }
  }
}

template <class T>
void packed_product(const PackedLeft<T>& a, const PackedRight<T>& b, T* C, std::int64_t ldc, T alpha, std::int64_t i0,
                    std::int64_t mi, std::int64_t j0, std::int64_t nj, bool overwrite = false) {
  packed_block(a, b, C + i0 * ldc + j0, ldc, alpha, i0, mi, j0, nj, overwrite);
}

// What computes packed products of T in this build (`nnpk info`).
template <class T>
const char* packed_kernel() {
#if defined(__AVX512F__)
  if (std::is_same<T, float>::value && packed_detail::Traits<T>::mr == 48 && packed_detail::Traits<T>::nr == 4)
    return "nnpk's AVX-512 8x48 tiles on packed panels (Eigen's kernel at the edges)";
#endif
  return "Eigen's GEBP kernel on packed panels";
}

// The column blocks packed products are split into across threads: whole panels, about 48 columns.
template <class T>
constexpr std::int64_t packed_block_cols() {
  constexpr std::int64_t panel = PackedRight<T>::kPanel;
  return panel * std::max<std::int64_t>(1, 48 / panel);
}

// A recurrent node's packed factors for one pass: its recurrent weights (W forward, W^T backward)
// and the step's left factor (h_{t-1} forward, d/dz_t backward); forward, its input weights U and the
// step's inputs x_t. Other nodes of the same pass use them as scratch (one node at a time).
template <class T>
struct RecurrentPacks {
  PackedRight<T> weights;
  PackedLeft<T> states;
  PackedRight<T> input_weights;
  PackedLeft<T> inputs;
};

}  // namespace nnpk
