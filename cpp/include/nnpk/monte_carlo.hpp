// Streaming Monte Carlo kernels of random MLPs: sums over networks [start, stop)
// of h^l(x1) h^l(x2)^T for every requested layer, accumulated in float64.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "nnpk/forward.hpp"
#include "nnpk/gram.hpp"
#include "nnpk/mlp.hpp"

namespace nnpk {

struct MonteCarloOptions {
  std::uint64_t seed = 0;
  std::uint64_t start = 0;  // first network index
  std::uint64_t stop = 1;   // one past the last network index
  bool all_layers = false;  // hidden layers' conjugate kernels too, not only the output's
  int n_threads = 1;
  std::int64_t tile_rows = 2 * kRowQuantum;  // forward row tile, a multiple of kRowQuantum
  std::int64_t gram_tile = 256;               // output tile edge
  std::int64_t panel_cols = 128;              // feature columns gathered before a Gram update
  // Called between steps with the number of networks finished; true stops the run.
  std::function<bool(std::uint64_t)> poll;
};

// The kernels a run accumulates: layer index (0-based; n_hidden is the output).
inline std::vector<std::int64_t> kernel_layers(const MLPSpec& spec, bool all_layers) {
  std::vector<std::int64_t> layers;
  for (std::int64_t l = all_layers ? 0 : spec.n_hidden(); l <= spec.n_hidden(); ++l) layers.push_back(l);
  return layers;
}

// sums[k] (n1 x n2 row-major; n1 x n1 if x2 is null) += sum over networks of the
// un-normalised Gram of kernel_layers(...)[k]. With x2 null only the upper
// triangle is accumulated, then mirrored.
template <class T>
void monte_carlo_accumulate(const MLPSpec& spec, const T* x1, std::int64_t n1, const T* x2, std::int64_t n2,
                            const MonteCarloOptions& opt, const std::vector<double*>& sums) {
  spec.validate();
  if (opt.tile_rows <= 0 || opt.tile_rows % kRowQuantum != 0)
    throw std::invalid_argument("tile_rows must be a positive multiple of " + std::to_string(kRowQuantum));
  const bool symmetric = x2 == nullptr;
  if (symmetric) n2 = n1;
  const std::vector<std::int64_t> layers = kernel_layers(spec, opt.all_layers);
  if (sums.size() != layers.size()) throw std::invalid_argument("one output sum per kernel is needed");
  const std::int64_t d = spec.input_dim();

  // Panels: a whole number of networks' features per Gram update.
  std::vector<Panel> p1, p2;
  std::vector<std::int64_t> slot(spec.layers.size(), -1);
  for (std::size_t k = 0; k < layers.size(); ++k) {
    const std::int64_t width = spec.layers[static_cast<std::size_t>(layers[k])].fan_out;
    const std::int64_t kcap = std::max<std::int64_t>(1, opt.panel_cols / width) * width;
    p1.emplace_back(n1, kcap);
    if (!symmetric) p2.emplace_back(n2, kcap);
    slot[static_cast<std::size_t>(layers[k])] = static_cast<std::int64_t>(k);
  }

  GramOptions gopt;
  gopt.tile = opt.gram_tile;
  gopt.n_threads = opt.n_threads;
  std::uint64_t done = opt.start;
  if (opt.poll) gopt.poll = [&] { return opt.poll(done - opt.start); };
  auto flush = [&](std::size_t k) {
    Panel& a = p1[k];
    gram_accumulate(a, symmetric ? a : p2[k], symmetric, sums[k], n2, gopt);
    a.clear();
    if (!symmetric) p2[k].clear();
  };

  struct RowTile {
    const T* x;
    std::int64_t row0, rows;
    bool second;
  };
  std::vector<RowTile> tiles;
  for (std::int64_t r = 0; r < n1; r += opt.tile_rows) tiles.push_back({x1, r, std::min(opt.tile_rows, n1 - r), false});
  if (!symmetric)
    for (std::int64_t r = 0; r < n2; r += opt.tile_rows) tiles.push_back({x2, r, std::min(opt.tile_rows, n2 - r), true});

  NetworkDraw<T> draw(spec);
  std::vector<ForwardWorkspace<T>> workspaces(static_cast<std::size_t>(std::max(1, opt.n_threads)));
  for (std::uint64_t m = opt.start; m < opt.stop; ++m) {
    for (std::size_t k = 0; k < layers.size(); ++k) {
      const std::int64_t width = spec.layers[static_cast<std::size_t>(layers[k])].fan_out;
      if (!p1[k].fits(width)) flush(k);
    }
    draw.draw(spec, opt.seed, m, opt.n_threads);
    parallel_for(static_cast<std::int64_t>(tiles.size()), opt.n_threads, [&](std::int64_t t, int thread) {
      const RowTile& tile = tiles[static_cast<std::size_t>(t)];
      Panel* panels = tile.second ? p2.data() : p1.data();
      forward_rows(spec, draw, tile.x + tile.row0 * d, tile.rows, workspaces[static_cast<std::size_t>(thread)],
                   [&](std::int64_t layer, const T* features, std::int64_t ld) {
                     const std::int64_t k = slot[static_cast<std::size_t>(layer)];
                     if (k < 0) return;
                     panels[k].write(tile.row0, tile.rows, spec.layers[static_cast<std::size_t>(layer)].fan_out,
                                     features, ld);
                   });
    });
    for (std::size_t k = 0; k < layers.size(); ++k) {
      const std::int64_t width = spec.layers[static_cast<std::size_t>(layers[k])].fan_out;
      p1[k].commit(width);
      if (!symmetric) p2[k].commit(width);
    }
    ++done;
    if (opt.poll && opt.poll(done - opt.start)) throw Cancelled();
  }
  for (std::size_t k = 0; k < layers.size(); ++k) flush(k);
  if (symmetric)
    for (double* s : sums) mirror_upper(s, n1, opt.n_threads);
}

}  // namespace nnpk
