// Batch normalisation in training: the forward pass of a whole batch stops at each batch
// normalisation to gather the mean and biased variance of its input over every row and position
// of the batch, then normalises by them; and the per-channel sums its backward pass needs.
// Points are split into fixed chunks whatever the thread count, each chunk's float64 sums are
// added in chunk order: results are bitwise the same for any n_threads.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "nnpk/network/forward.hpp"
#include "nnpk/network/spec.hpp"
#include "nnpk/parallel.hpp"

namespace nnpk {

// One batch normalisation's statistics over a batch, per channel, in float64: the mean and the
// biased variance of `count` values (rows x positions).
struct BatchStats {
  std::vector<double> mean, var;
  std::int64_t count = 0;

  // The unbiased variance (what the running variance is updated with).
  double unbiased_var(std::size_t j) const {
    return var[j] * static_cast<double>(count) / static_cast<double>(count - 1);
  }
  // running = (1 - momentum) running + momentum batch, for the mean and the unbiased variance.
  void update_running(double momentum, double* running_mean, double* running_var) const {
    for (std::size_t j = 0; j < mean.size(); ++j) {
      running_mean[j] = (1.0 - momentum) * running_mean[j] + momentum * mean[j];
      running_var[j] = (1.0 - momentum) * running_var[j] + momentum * unbiased_var(j);
    }
  }
};

namespace batch_norm_detail {

// sum[j] += sum over the first `rows` rows of m[r, j] (center null), or of (m[r, j] - center[j])^2.
template <class T>
void add_channel_sums(const RowMatrix<T>& m, std::int64_t rows, const double* center, std::vector<double>& sum) {
  const std::int64_t c = m.cols();
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* row = m.data() + r * c;
    if (center) {
      for (std::int64_t j = 0; j < c; ++j) {
        const double e = double(row[j]) - center[j];
        sum[static_cast<std::size_t>(j)] += e * e;
      }
    } else {
      for (std::int64_t j = 0; j < c; ++j) sum[static_cast<std::size_t>(j)] += double(row[j]);
    }
  }
}

}  // namespace batch_norm_detail

// Normalisation by given (running) statistics: each batch normalisation's mean and
// 1 / sqrt(var + eps) in T, which views point into.
template <class T>
struct NormStatistics {
  std::vector<std::vector<T>> mean, inv_std;

  // Sizes the buffers for spec's batch normalisations and points net.norms[b].mean / inv_std at them.
  void attach(const SequentialSpec& spec, NetworkView<T>& net) {
    mean.resize(spec.norms.size());
    inv_std.resize(spec.norms.size());
    net.norms.resize(spec.norms.size());
    for (std::size_t b = 0; b < spec.norms.size(); ++b) {
      const std::size_t c = static_cast<std::size_t>(spec.norm_node(b).in.channels);
      mean[b].resize(c);
      inv_std[b].resize(c);
      net.norms[b].mean = mean[b].data();
      net.norms[b].inv_std = inv_std[b].data();
    }
  }
  // Sets batch normalisation b's statistics from a float64 mean and variance.
  void set(const SequentialSpec& spec, std::size_t b, const double* m, const double* var) {
    const double eps = spec.norm_node(b).eps;
    for (std::size_t j = 0; j < mean[b].size(); ++j) {
      mean[b][j] = static_cast<T>(m[j]);
      inv_std[b][j] = static_cast<T>(1.0 / std::sqrt(var[j] + eps));
    }
  }
};

// The forward pass of a batch in training mode over fixed chunks of points: ws_of(c) is chunk
// c's workspace, kept from stage to stage (so the whole batch's outputs are held). `net` holds
// the parameters; its norms' statistics are set (through `norm`) to the batch's as the pass
// reaches them, and stats[b] receives each normalisation's batch statistics.
template <class T, class WorkspaceOf>
void batch_forward(const SequentialSpec& spec, const std::vector<LayerScales>& scales, NetworkView<T>& net,
                   const std::vector<RowTile<T>>& chunks, bool keep_derivatives, int n_threads,
                   NormStatistics<T>& norm, std::vector<BatchStats>& stats, WorkspaceOf&& ws_of) {
  norm.attach(spec, net);
  stats.resize(spec.norms.size());
  const auto n_chunks = static_cast<std::int64_t>(chunks.size());
  std::int64_t points = 0;
  for (const RowTile<T>& chunk : chunks) points += chunk.rows;
  for (std::size_t b = 0; b < spec.norms.size(); ++b) {
    stats[b].count = points * spec.norm_node(b).in.positions();
    if (stats[b].count < 2)
      throw std::invalid_argument("batch normalisation in training needs more than one value per channel (rows x "
                                  "positions), got " + std::to_string(stats[b].count));
  }
  std::vector<std::vector<double>> partial(chunks.size());
  const std::int64_t d = spec.input.size();
  std::size_t first = 0;
  for (std::size_t b = 0; b <= spec.norms.size(); ++b) {
    const std::size_t stop = b < spec.norms.size() ? static_cast<std::size_t>(spec.norms[b]) : spec.nodes.size();
    parallel_for(n_chunks, n_threads, [&](std::int64_t c, int) {
      const RowTile<T>& chunk = chunks[static_cast<std::size_t>(c)];
      sequential_forward(spec, scales, net, chunk.x + chunk.row0 * d, chunk.rows, keep_derivatives,
                         ws_of(static_cast<std::size_t>(c)), stop, {}, first);
    });
    if (b == spec.norms.size()) break;
    const SeqNode& node = spec.norm_node(b);
    const std::int64_t channels = node.in.channels, positions = node.in.positions();
    BatchStats& s = stats[b];
    // Two passes over the batch: the mean, then the mean squared deviation from it.
    for (int pass = 0; pass < 2; ++pass) {
      const double* center = pass == 0 ? nullptr : s.mean.data();
      parallel_for(n_chunks, n_threads, [&](std::int64_t c, int) {
        std::vector<double>& sum = partial[static_cast<std::size_t>(c)];
        sum.assign(static_cast<std::size_t>(channels), 0.0);
        const RowTile<T>& chunk = chunks[static_cast<std::size_t>(c)];
        batch_norm_detail::add_channel_sums(ws_of(static_cast<std::size_t>(c)).output(node.input),
                                            chunk.rows * positions, center, sum);
      });
      std::vector<double>& total = pass == 0 ? s.mean : s.var;
      total.assign(static_cast<std::size_t>(channels), 0.0);
      for (const std::vector<double>& sum : partial)
        for (std::size_t j = 0; j < total.size(); ++j) total[j] += sum[j];
      for (double& v : total) v /= static_cast<double>(s.count);
    }
    norm.set(spec, b, s.mean.data(), s.var.data());
    first = stop;
  }
}

// The logits (rows x n_outputs, float64) of a network in training mode: each batch
// normalisation normalises by the statistics of the `rows` points of x, returned in stats.
template <class T>
void sequential_batch_outputs(const SequentialSpec& spec, const std::vector<LayerScales>& scales,
                              const NetworkView<T>& given, const T* x, std::int64_t rows, int n_threads, double* out,
                              std::vector<BatchStats>& stats) {
  const std::vector<RowTile<T>> chunks = row_tiles<T>(x, rows, nullptr, 0, kRowQuantum);
  std::vector<SequentialWorkspace<T>> ws(chunks.size());
  NetworkView<T> net = given;
  NormStatistics<T> norm;
  batch_forward(spec, scales, net, chunks, false, n_threads, norm, stats,
                [&](std::size_t c) -> SequentialWorkspace<T>& { return ws[c]; });
  const std::int64_t n_out = spec.n_outputs();
  for (std::size_t c = 0; c < chunks.size(); ++c) {
    const RowMatrix<T>& f = ws[c].outputs.back();
    for (std::int64_t i = 0; i < chunks[c].rows * n_out; ++i)
      out[chunks[c].row0 * n_out + i] = static_cast<double>(f.data()[i]);
  }
}

}  // namespace nnpk
