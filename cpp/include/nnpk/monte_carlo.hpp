// Streaming Monte Carlo kernels of random MLPs: sums over networks [start, stop)
// of h^l(x1) h^l(x2)^T for every requested layer, accumulated in float64.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "nnpk/forward.hpp"
#include "nnpk/gram.hpp"
#include "nnpk/mlp.hpp"

namespace nnpk {

struct MonteCarloOptions {
  std::uint64_t seed = 0;
  std::uint64_t start = 0;  // first network index
  std::uint64_t stop = 1;   // one past the last network index
  // Kernels to accumulate, as layer indices (0-based; n_hidden is the output),
  // ascending; empty means the output's only.
  std::vector<std::int64_t> layers;
  int n_threads = 1;
  std::int64_t tile_rows = 2 * kRowQuantum;  // forward row tile, a multiple of kRowQuantum
  std::int64_t gram_tile = 256;               // output tile edge
  std::int64_t panel_cols = 128;              // feature columns gathered before a Gram update
  // Called between steps with the number of networks finished; true stops the run.
  std::function<bool(std::uint64_t)> poll;
};

// The kernels a run accumulates, checked: layer indices (0-based; n_hidden is the output).
inline std::vector<std::int64_t> kernel_layers(const MLPSpec& spec, const std::vector<std::int64_t>& requested) {
  if (requested.empty()) return {spec.n_hidden()};
  for (std::size_t k = 0; k < requested.size(); ++k) {
    if (requested[k] < 0 || requested[k] > spec.n_hidden())
      throw std::invalid_argument("kernel layer index " + std::to_string(requested[k]) + " is out of range");
    if (k > 0 && requested[k] <= requested[k - 1]) throw std::invalid_argument("kernel layers must be ascending");
  }
  return requested;
}

// A row tile of x1 or x2 for the forward passes.
template <class T>
struct RowTile {
  const T* x;
  std::int64_t row0, rows;
  bool second;
};

template <class T>
std::vector<RowTile<T>> row_tiles(const T* x1, std::int64_t n1, const T* x2, std::int64_t n2, std::int64_t tile_rows) {
  if (tile_rows <= 0 || tile_rows % kRowQuantum != 0)
    throw std::invalid_argument("tile_rows must be a positive multiple of " + std::to_string(kRowQuantum));
  std::vector<RowTile<T>> tiles;
  for (std::int64_t r = 0; r < n1; r += tile_rows) tiles.push_back({x1, r, std::min(tile_rows, n1 - r), false});
  if (x2)
    for (std::int64_t r = 0; r < n2; r += tile_rows) tiles.push_back({x2, r, std::min(tile_rows, n2 - r), true});
  return tiles;
}

// The streaming loop of every network kind: for each network m in [start, stop), draw(m),
// then features(tile, thread, panel) for every row tile, which writes kernel k's features of
// the tile's rows into panel(k); sums[k] (n1 x n2 row-major) += their Gram, of width widths[k]
// per network. With `symmetric` only the upper triangle is accumulated, then mirrored.
template <class T, class Draw, class Features>
void stream_networks(std::int64_t n1, std::int64_t n2, bool symmetric, const std::vector<std::int64_t>& widths,
                     const std::vector<RowTile<T>>& tiles, const MonteCarloOptions& opt,
                     const std::vector<double*>& sums, Draw&& draw, Features&& features) {
  if (sums.size() != widths.size()) throw std::invalid_argument("one output sum per kernel is needed");
  std::vector<PanelStream> streams;
  for (std::size_t k = 0; k < widths.size(); ++k)
    streams.emplace_back(n1, n2, symmetric, widths[k], opt.panel_cols, sums[k]);

  GramOptions gopt;
  gopt.tile = opt.gram_tile;
  gopt.n_threads = opt.n_threads;
  std::uint64_t done = 0;
  if (opt.poll) gopt.poll = [&] { return opt.poll(done); };

  for (std::uint64_t m = opt.start; m < opt.stop; ++m) {
    for (auto& s : streams) s.reserve(gopt);
    draw(m);
    parallel_for(static_cast<std::int64_t>(tiles.size()), opt.n_threads, [&](std::int64_t t, int thread) {
      const RowTile<T>& tile = tiles[static_cast<std::size_t>(t)];
      features(tile, thread, [&](std::size_t k) -> Panel& { return streams[k].panel(tile.second); });
    });
    for (auto& s : streams) s.commit();
    ++done;
    if (opt.poll && opt.poll(done)) throw Cancelled();
  }
  for (auto& s : streams) s.finish(gopt);
}

// sums[k] (n1 x n2 row-major; n1 x n1 if x2 is null) += sum over networks of the
// un-normalised Gram of kernel_layers(...)[k]. With x2 null only the upper
// triangle is accumulated, then mirrored.
template <class T>
void monte_carlo_accumulate(const MLPSpec& spec, const T* x1, std::int64_t n1, const T* x2, std::int64_t n2,
                            const MonteCarloOptions& opt, const std::vector<double*>& sums) {
  spec.validate();
  const bool symmetric = x2 == nullptr;
  if (symmetric) n2 = n1;
  const std::vector<std::int64_t> layers = kernel_layers(spec, opt.layers);
  const std::vector<RowTile<T>> tiles = row_tiles(x1, n1, x2, n2, opt.tile_rows);
  const std::int64_t d = spec.input_dim();
  const std::vector<LayerScales> scales = spec.scales(false);
  std::vector<std::int64_t> widths;
  for (const std::int64_t l : layers) widths.push_back(spec.layers[static_cast<std::size_t>(l)].fan_out);

  NetworkDraw<T> draw(spec.layers);
  const NetworkView<T> net = draw.view();
  std::vector<ForwardWorkspace<T>> workspaces(static_cast<std::size_t>(std::max(1, opt.n_threads)));
  stream_networks<T>(
      n1, n2, symmetric, widths, tiles, opt, sums,
      [&](std::uint64_t m) { draw.draw(spec.layers, opt.seed, m, opt.n_threads); },
      [&](const RowTile<T>& tile, int thread, auto&& panel) {
        ForwardWorkspace<T>& ws = workspaces[static_cast<std::size_t>(thread)];
        forward_rows(spec, scales, net, tile.x + tile.row0 * d, tile.rows, false, ws);
        for (std::size_t k = 0; k < layers.size(); ++k) {
          const RowMatrix<T>& h = ws.outputs[static_cast<std::size_t>(layers[k])];
          panel(k).write(tile.row0, tile.rows, h.cols(), h.data(), h.cols());
        }
      });
}

}  // namespace nnpk
