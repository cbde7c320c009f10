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
#include <cstdint>
#include <stdexcept>
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
        Eigen::internal::gemm_pack_rhs<T, Index, Mapper<T, Eigen::RowMajor>, Traits<T>::nr, Eigen::RowMajor> pack_rhs;
        pack_rhs(dst, Mapper<T, Eigen::RowMajor>(a, ld).getSubMapper(k0, 0), depth, M);
      } else {
        Eigen::internal::gemm_pack_rhs<T, Index, Mapper<T, Eigen::ColMajor>, Traits<T>::nr, Eigen::ColMajor> pack_rhs;
        pack_rhs(dst, Mapper<T, Eigen::ColMajor>(a, ld).getSubMapper(k0, 0), depth, M);
      }
    });
  }

  std::int64_t rows() const { return M_; }
  std::int64_t depth() const { return K_; }
  // Slice s from row i0 (a multiple of kPanel).
  const T* at(std::int64_t s, std::int64_t i0) const {
    return data_.data() + s * kPackDepth * M_ + i0 * packed_detail::slice_depth(K_, s);
  }

 private:
  std::int64_t M_ = 0, K_ = 0;
  std::vector<T, Eigen::aligned_allocator<T>> data_;
};

// C[i0 : i0 + mi, j0 : j0 + nj] += alpha (A B) over the same block, C row-major with leading
// dimension ldc. i0 is a multiple of PackedLeft::kPanel, j0 of PackedRight::kPanel, and a block
// ends at a panel boundary or at the edge of C.
template <class T>
void packed_product(const PackedLeft<T>& a, const PackedRight<T>& b, T* C, std::int64_t ldc, T alpha, std::int64_t i0,
                    std::int64_t mi, std::int64_t j0, std::int64_t nj) {
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
  for (std::int64_t r0 = i0; r0 < i0 + mi; r0 += kRows) {
    const std::int64_t rows = std::min(kRows, i0 + mi - r0);
    const ResMapper<T> res(C + r0 * ldc + j0, ldc);
    for (std::int64_t s = 0; s < n_slices; ++s)
      gebp(res, b.at(s, j0), a.at(s, r0), nj, slice_depth(a.depth(), s), rows, alpha);
  }
}

// The column blocks packed products are split into across threads: whole panels, about 48 columns.
template <class T>
constexpr std::int64_t packed_block_cols() {
  constexpr std::int64_t panel = PackedRight<T>::kPanel;
  return panel * std::max<std::int64_t>(1, 48 / panel);
}

// A recurrent node's packed factors for one pass: its recurrent weights (W forward, W^T backward)
// and the step's left factor (h_{t-1} forward, d/dz_t backward).
template <class T>
struct RecurrentPacks {
  PackedRight<T> weights;
  PackedLeft<T> states;
};

}  // namespace nnpk
