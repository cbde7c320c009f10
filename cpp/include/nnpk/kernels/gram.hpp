// Deterministic streaming Gram accumulation K += A B^T in float64.
//
// Every entry K(i, j) is one sequential chain K += a_ik b_jk over the columns k in
// the order they were appended, whatever the tile, panel or thread: a panel is only
// where the chain pauses in memory, so the result is bitwise independent of panel
// size, tile size and thread count, and a saved partial sum resumes exactly.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "nnpk/packed.hpp"
#include "nnpk/parallel.hpp"

namespace nnpk {

namespace gram_kernel {
#if defined(__AVX512F__)
constexpr int kLanes = 8;
constexpr int kRows = 8;
#elif defined(__AVX__)
constexpr int kLanes = 4;
constexpr int kRows = 4;
#else
constexpr int kLanes = 2;
constexpr int kRows = 4;
#endif
constexpr int kVectors = 2;                 // vectors per micro-tile row
constexpr int kCols = kLanes * kVectors;    // micro-tile columns
constexpr int kPack = kCols;                // rows per packed block of a panel
static_assert(kPack % kRows == 0, "a packed block holds whole micro-tile row groups");

typedef double Vec __attribute__((vector_size(kLanes * sizeof(double)), aligned(sizeof(double))));

// acc (kRows x kCols, row-major) += A_rows B_cols^T over kn columns of two packed blocks.
inline void micro_tile(const double* a, const double* b, std::int64_t kn, double* acc) {
  Vec c[kRows][kVectors];
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) std::memcpy(&c[r][v], acc + r * kCols + v * kLanes, sizeof(Vec));
  for (std::int64_t k = 0; k < kn; ++k) {
    Vec bv[kVectors];
    for (int v = 0; v < kVectors; ++v) std::memcpy(&bv[v], b + k * kPack + v * kLanes, sizeof(Vec));
    for (int r = 0; r < kRows; ++r) {
      const double ar = a[k * kPack + r];
      for (int v = 0; v < kVectors; ++v) c[r][v] += ar * bv[v];
    }
  }
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) std::memcpy(acc + r * kCols + v * kLanes, &c[r][v], sizeof(Vec));
}
}  // namespace gram_kernel

// Features of n rows, kcap columns at most, packed in blocks of kPack rows:
// element (i, k) at data[((i / kPack) * kcap + k) * kPack + i % kPack].
// With `single`, the features are float32 and kept as they are, row-major (element (i, k) at
// floats()[i * kcap + k]), for a float32 Gram (PanelStream).
class Panel {
 public:
  Panel() = default;
  Panel(std::int64_t rows, std::int64_t kcap, bool single = false)
      : rows_(rows), kcap_(kcap), blocks_((rows + gram_kernel::kPack - 1) / gram_kernel::kPack), single_(single),
        data_(single ? 0 : static_cast<std::size_t>(blocks_ * kcap * gram_kernel::kPack), 0.0),
        floats_(single ? static_cast<std::size_t>(rows * kcap) : 0, 0.0f) {}
  const float* floats() const { return floats_.data(); }

  std::int64_t rows() const { return rows_; }
  std::int64_t capacity() const { return kcap_; }
  std::int64_t used() const { return used_; }
  bool fits(std::int64_t cols) const { return used_ + cols <= kcap_; }
  const double* block(std::int64_t b) const { return data_.data() + b * kcap_ * gram_kernel::kPack; }

  // Writes features (nrows x cols, row-major, leading dimension ld) of rows
  // [row0, row0 + nrows) into columns [used, used + cols). Threads may write
  // disjoint row ranges of the same columns concurrently.
  template <class T>
  void write(std::int64_t row0, std::int64_t nrows, std::int64_t cols, const T* features, std::int64_t ld) {
    using gram_kernel::kPack;
    if (single_) {
      for (std::int64_t i = 0; i < nrows; ++i)
        for (std::int64_t k = 0; k < cols; ++k)
          floats_[static_cast<std::size_t>((row0 + i) * kcap_ + used_ + k)] = static_cast<float>(features[i * ld + k]);
      return;
    }
    for (std::int64_t i = 0; i < nrows; ++i) {
      const std::int64_t row = row0 + i;
      double* dst = data_.data() + ((row / kPack) * kcap_ + used_) * kPack + row % kPack;
      const T* src = features + i * ld;
      for (std::int64_t k = 0; k < cols; ++k) dst[k * kPack] = static_cast<double>(src[k]);
    }
  }
  void commit(std::int64_t cols) { used_ += cols; }
  // Padding rows stay zero, so they add nothing to any chain.
  void clear() { used_ = 0; }

 private:
  std::int64_t rows_ = 0, kcap_ = 0, blocks_ = 0, used_ = 0;
  bool single_ = false;
  std::vector<double> data_;
  std::vector<float> floats_;
};

struct GramOptions {
  std::int64_t tile = 256;  // output tile edge, a multiple of kPack
  int n_threads = 1;
  // Called about every 0.2 s by thread 0 between tiles; returns true to stop.
  std::function<bool()> poll;
};

// K (n1 x n2 row-major, leading dimension ldk) += A B^T over the used columns.
// symmetric: A and B are the same panel and only tiles on or above the diagonal
// are updated (mirror at the end with mirror_upper).
inline void gram_accumulate(const Panel& a, const Panel& b, bool symmetric, double* K, std::int64_t ldk,
                            const GramOptions& opt) {
  using namespace gram_kernel;
  const std::int64_t kn = a.used();
  if (kn == 0) return;
  const std::int64_t n1 = a.rows(), n2 = b.rows();
  const std::int64_t tile = std::max<std::int64_t>(kPack, opt.tile / kPack * kPack);
  for_each_output_tile(n1, n2, tile, symmetric, opt.n_threads, opt.poll, [&](std::int64_t ti0, std::int64_t tni,
                                                                            std::int64_t tj0, std::int64_t tnj, int) {
    const std::int64_t i_end = ti0 + tni, j_end = tj0 + tnj;
    alignas(64) double acc[kRows * kCols];
    for (std::int64_t j0 = tj0; j0 < j_end; j0 += kCols) {
      const double* bp = b.block(j0 / kPack);
      const std::int64_t nj = std::min<std::int64_t>(kCols, j_end - j0);
      for (std::int64_t i0 = ti0; i0 < i_end; i0 += kRows) {
        const double* ap = a.block(i0 / kPack) + i0 % kPack;
        const std::int64_t ni = std::min<std::int64_t>(kRows, i_end - i0);
        if (ni == kRows && nj == kCols) {
          for (int r = 0; r < kRows; ++r) std::memcpy(acc + r * kCols, K + (i0 + r) * ldk + j0, sizeof(double) * kCols);
        } else {
          std::fill(acc, acc + kRows * kCols, 0.0);
          for (std::int64_t r = 0; r < ni; ++r) std::memcpy(acc + r * kCols, K + (i0 + r) * ldk + j0, sizeof(double) * nj);
        }
        micro_tile(ap, bp, kn, acc);
        for (std::int64_t r = 0; r < ni; ++r) std::memcpy(K + (i0 + r) * ldk + j0, acc + r * kCols, sizeof(double) * nj);
      }
    }
  });
}

// Copies the upper triangle of square K (n x n) onto the lower one, in square
// blocks so that both the rows read and the rows written stay in cache.
inline void mirror_upper(double* K, std::int64_t n, int n_threads) {
  constexpr std::int64_t kBlock = 64;
  const std::int64_t nb = (n + kBlock - 1) / kBlock;
  parallel_for(nb, n_threads, [&](std::int64_t bi, int) {
    const std::int64_t i0 = bi * kBlock, i1 = std::min(n, i0 + kBlock);
    for (std::int64_t j0 = 0; j0 <= i0; j0 += kBlock) {
      const std::int64_t j1 = std::min(n, j0 + kBlock);
      for (std::int64_t i = i0; i < i1; ++i)
        for (std::int64_t j = j0; j < std::min(j1, i); ++j) K[i * n + j] = K[j * n + i];
    }
  });
}

// One kernel's streaming sum: features of x1 (and x2) are gathered network by
// network into panels holding a whole number of networks, and flushed into `sum`
// when the next network does not fit.
//
// With `single` (float32 features, at least kSingleGramWidth of them a network), each network's Gram is
// instead one float32 product of its features on the packed-product kernel, added to the sum in
// float64: K(i, j) += G_m(i, j) network by network. G_m(i, j)'s arithmetic depends only on (i, j) and the
// width (packed.hpp), so the sum is still bitwise independent of tiles, panels and threads, and a saved
// partial sum still resumes exactly; each G_m carries float32 rounding, about 1e-7 sqrt(width) of
// |h_i| |h_j|, far below the Monte Carlo error of a network's kernel.
constexpr std::int64_t kSingleGramWidth = 128;

class PanelStream {
 public:
  PanelStream(std::int64_t n1, std::int64_t n2, bool symmetric, std::int64_t width, std::int64_t panel_cols,
              double* sum, bool single = false)
      : symmetric_(symmetric), single_(single), width_(width), sum_(sum), ld_(n2) {
    const std::int64_t kcap = single ? width : std::max<std::int64_t>(1, panel_cols / width) * width;
    first_ = Panel(n1, kcap, single);
    if (!symmetric) second_ = Panel(n2, kcap, single);
  }

  // Makes room for one more network's features.
  void reserve(const GramOptions& opt) {
    if (!first_.fits(width_)) flush(opt);
  }
  Panel& panel(bool second) { return second ? second_ : first_; }
  std::int64_t width() const { return width_; }
  void commit() {
    first_.commit(width_);
    if (!symmetric_) second_.commit(width_);
  }
  // Flushes what is left and mirrors a symmetric sum.
  void finish(const GramOptions& opt) {
    flush(opt);
    if (symmetric_) mirror_upper(sum_, first_.rows(), opt.n_threads);
  }

 private:
  void flush(const GramOptions& opt) {
    if (single_) {
      single_gram(opt);
    } else {
      gram_accumulate(first_, symmetric_ ? first_ : second_, symmetric_, sum_, ld_, opt);
    }
    first_.clear();
    if (!symmetric_) second_.clear();
  }

  // sum += F1 F2^T of one network's float32 features, by output tiles of kTile (a multiple of both
  // panels of the packed product), each product in a float32 buffer of the thread's, then added.
  void single_gram(const GramOptions& opt) {
    if (first_.used() == 0) return;
    constexpr std::int64_t kTile = 192;
    const Panel& second = symmetric_ ? first_ : second_;
    const std::int64_t n1 = first_.rows(), n2 = second.rows(), w = width_;
    left_.pack(first_.floats(), n1, w, w, false, opt.n_threads);
    right_.pack(second.floats(), w, n2, w, true, opt.n_threads);  // b(k, j) = F2[j][k]
    buffers_.resize(static_cast<std::size_t>(std::max(1, opt.n_threads)));
    for_each_output_tile(n1, n2, kTile, symmetric_, opt.n_threads, opt.poll,
                         [&](std::int64_t i0, std::int64_t ni, std::int64_t j0, std::int64_t nj, int thread) {
                           std::vector<float>& c = buffers_[static_cast<std::size_t>(thread)];
                           c.assign(static_cast<std::size_t>(ni * nj), 0.0f);
                           packed_block(left_, right_, c.data(), nj, 1.0f, i0, ni, j0, nj);
                           for (std::int64_t r = 0; r < ni; ++r) {
                             double* k = sum_ + (i0 + r) * ld_ + j0;
                             const float* g = c.data() + r * nj;
                             for (std::int64_t j = 0; j < nj; ++j) k[j] += static_cast<double>(g[j]);
                           }
                         });
  }

  bool symmetric_, single_;
  std::int64_t width_;
  double* sum_;
  std::int64_t ld_;
  Panel first_, second_;
  PackedLeft<float> left_;
  PackedRight<float> right_;
  std::vector<std::vector<float>> buffers_;
};

}  // namespace nnpk
