// Products C = alpha A B with B packed once (PackedRight, packed.hpp) and A read where it lies, row-major,
// unpacked, with an epilogue run on each finished group of C's rows while they are in the L1 cache.
//
// packed_product packs its left factor A first: a pass over A (and a write of as much) before the product.
// nnpk's AVX-512 tiles (packed.hpp) read A one value at a time, broadcast to a whole vector, so they can read
// it where it lies just as well: a tile's 8 rows of A (one depth slice) stay in L1 while B's panels stream
// from L2, whatever A's layout. rows_product runs these tiles on A unpacked, with the same arithmetic entry
// for entry as packed_product on the packed A (each entry a sum of fused multiply-adds over each depth slice
// in order from zero, then C + alpha sum, or alpha sum on the first slice): bit for bit the same C. It
// applies where packed_product's own tiles compute every entry (rows_product_applies: float32 with
// AVX-512, rows by whole 4-row panels, columns by whole 48-column panels and a last 16 or 32); elsewhere
// rows_product packs A and calls packed_product, then runs the epilogue on the result, the same values.
//
// The epilogue, epilogue(r0, rows): called once per group of rows [r0, r0 + rows) of C when their
// product is complete (every column, every slice), in order of rows; it may rewrite them in place or write
// elsewhere (bias, activation, a residual sum), row by row. Since it sees whole rows, per-row work gives
// the same values whichever groups the rows come in.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "nnpk/packed.hpp"

namespace nnpk {

namespace packed_detail {

#if defined(__AVX512F__)
// tile48 and tile_narrow (packed.hpp) with A's 4 R rows read unpacked: a(r, k) = pa[r * lda + k].
template <int R, bool Add = true>
inline void rows_tile48(const float* pb, const float* pa, std::int64_t lda, std::int64_t depth, float* C,
                        std::int64_t ldc, float alpha) {
  tile48_rows<R, Add>(pb, PlainRows{pa, lda}, depth, C, ldc, alpha);
}
template <int R, int V, bool Add = true>
inline void rows_tile_narrow(const float* pb, const float* pa, std::int64_t lda, std::int64_t depth, float* C,
                             std::int64_t ldc, float alpha) {
  tile_narrow_rows<R, V, Add>(pb, PlainRows{pa, lda}, depth, C, ldc, alpha);
}

// One group of 4 R rows of C (every column), one depth slice s: whole 48-column panels, then the last 16
// or 32 columns.
template <int R>
inline void rows_group(const float* a, std::int64_t lda, const PackedRight<float>& b, std::int64_t s, float* C,
                       std::int64_t ldc, float alpha, bool add) {
  const std::int64_t d = slice_depth(b.depth(), s), n = b.cols(), wide = n / 48 * 48, rest = n - wide;
  const float* as = a + s * kPackDepth;
  for (std::int64_t j = 0; j < wide; j += 48) {
    if (add) rows_tile48<R>(b.at(s, j), as, lda, d, C + j, ldc, alpha);
    else rows_tile48<R, false>(b.at(s, j), as, lda, d, C + j, ldc, alpha);
  }
  if (rest == 16) {
    if (add) rows_tile_narrow<R, 1>(b.at(s, wide), as, lda, d, C + wide, ldc, alpha);
    else rows_tile_narrow<R, 1, false>(b.at(s, wide), as, lda, d, C + wide, ldc, alpha);
  } else if (rest == 32) {
    if (add) rows_tile_narrow<R, 2>(b.at(s, wide), as, lda, d, C + wide, ldc, alpha);
    else rows_tile_narrow<R, 2, false>(b.at(s, wide), as, lda, d, C + wide, ldc, alpha);
  }
}
#endif

}  // namespace packed_detail

// Whether rows_product computes rows x b.cols() of C with A unpacked (see above).
template <class T>
bool rows_product_applies(const PackedRight<T>& b, std::int64_t rows) {
#if defined(__AVX512F__)
  if constexpr (std::is_same<T, float>::value) {
    if (packed_detail::Traits<T>::mr != 48 || packed_detail::Traits<T>::nr != 4) return false;
    const std::int64_t rest = b.cols() % 48;
    return rows % 4 == 0 && b.depth() > 0 && (rest == 0 || rest == 16 || rest == 32);
  }
#endif
  (void)b;
  (void)rows;
  return false;
}

// C (rows x b.cols(), row-major, leading dimension ldc) = alpha A B for A (rows x b.depth(), row-major,
// leading dimension lda), then epilogue(r0, n) on groups of C's rows in order (see above). Where
// rows_product_applies, A is read unpacked, 8 rows at a time, each group's epilogue run right after its
// product; elsewhere A is packed into `pack` (unless `held` already says a: products reading one input
// pack it once; `held` then says a) and the product is packed_product's (overwrite mode), the epilogue then
// run on all rows. The same values either way.
template <class T, class Epilogue>
void rows_product(const T* a, std::int64_t lda, std::int64_t rows, const PackedRight<T>& b, T* C, std::int64_t ldc,
                  T alpha, PackedLeft<T>& pack, const T*& held, Epilogue&& epilogue) {
#if defined(__AVX512F__)
  if constexpr (std::is_same<T, float>::value) {
    if (rows_product_applies(b, rows)) {
      using namespace packed_detail;
      const std::int64_t n_slices = slices(b.depth());
      std::int64_t i = 0;
      for (; i + 8 <= rows; i += 8) {
        for (std::int64_t s = 0; s < n_slices; ++s)
          rows_group<2>(a + i * lda, lda, b, s, C + i * ldc, ldc, alpha, s > 0);
        epilogue(i, std::int64_t(8));
      }
      if (i < rows) {  // a last 4-row panel
        for (std::int64_t s = 0; s < n_slices; ++s)
          rows_group<1>(a + i * lda, lda, b, s, C + i * ldc, ldc, alpha, s > 0);
        epilogue(i, std::int64_t(4));
      }
      return;
    }
  }
#endif
  if (rows <= 0) return;
  if (held != a) {
    pack.pack(a, rows, b.depth(), lda, false);
    held = a;
  }
  packed_product(pack, b, C, ldc, alpha, 0, rows, 0, b.cols(), true);
  epilogue(std::int64_t(0), rows);
}

}  // namespace nnpk
