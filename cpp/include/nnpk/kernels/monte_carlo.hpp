// Streaming Monte Carlo kernels of random networks: sums over networks [start, stop) of the
// Gram h(x1) h(x2)^T of every requested node's features, accumulated in float64.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "nnpk/kernels/gram.hpp"
#include "nnpk/network/forward.hpp"
#include "nnpk/network/layers.hpp"
#include "nnpk/network/spec.hpp"

namespace nnpk {

struct MonteCarloOptions {
  std::uint64_t seed = 0;
  std::uint64_t start = 0;  // first network index
  std::uint64_t stop = 1;   // one past the last network index
  // Kernels to accumulate, as node indices; empty means the output's only.
  std::vector<std::int64_t> layers;
  int n_threads = 1;
  std::int64_t tile_rows = 2 * kRowQuantum;  // forward row tile, a multiple of kRowQuantum
  std::int64_t gram_tile = 256;               // output tile edge
  std::int64_t panel_cols = 128;              // feature columns gathered before a Gram update
  std::int64_t networks_per_pass = 1;         // conditional estimator: networks a pass over the output adds
  // Called between steps with the number of networks finished; true stops the run.
  std::function<bool(std::uint64_t)> poll;
};

// The streaming loop of every network kind: for each network m in [start, stop), draw(m),
// then features(tile, thread, panel) for every row tile, which writes kernel k's features of
// the tile's rows into panel(k); sums[k] (n1 x n2 row-major) += their Gram, of width widths[k]
// per network. With `symmetric` only the upper triangle is accumulated, then mirrored. single[k]:
// kernel k's features are float32, its Grams float32 products (PanelStream).
template <class T, class Draw, class Features>
void stream_networks(std::int64_t n1, std::int64_t n2, bool symmetric, const std::vector<std::int64_t>& widths,
                     const std::vector<RowTile<T>>& tiles, const MonteCarloOptions& opt,
                     const std::vector<double*>& sums, Draw&& draw, Features&& features,
                     const std::vector<char>& single = {}) {
  if (sums.size() != widths.size()) throw std::invalid_argument("one output sum per kernel is needed");
  std::vector<PanelStream> streams;
  for (std::size_t k = 0; k < widths.size(); ++k)
    streams.emplace_back(n1, n2, symmetric, widths[k], opt.panel_cols, sums[k],
                         k < single.size() && single[k] != 0);

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

// Kernel features of a node for a tile's points: its output if flat; averaged over positions
// (in double, positions in order) if spatial.
template <class T>
void write_node_features(const SequentialSpec& spec, const SequentialWorkspace<T>& ws, std::int64_t node,
                         const RowTile<T>& tile, RowMatrix<double>& pooled, Panel& panel) {
  const Shape& shape = spec.shape_of(node);
  const RowMatrix<T>& h = ws.output(node);
  const std::int64_t c = shape.channels;
  if (!shape.spatial) return panel.write(tile.row0, tile.rows, c, h.data(), c);
  const std::int64_t positions = shape.positions();
  pooled.resize(tile.rows, c);
  pooled.setZero();
  for (std::int64_t p = 0; p < tile.rows; ++p)
    for (std::int64_t q = 0; q < positions; ++q)
      for (std::int64_t ch = 0; ch < c; ++ch) pooled(p, ch) += static_cast<double>(h(p * positions + q, ch));
  pooled *= 1.0 / static_cast<double>(positions);
  panel.write(tile.row0, tile.rows, c, pooled.data(), c);
}

// The size of a forward tile of a spatial network (sequential_tiles): about kSpatialTileValues values of
// its widest layer's output, at most kSpatialTileRows rows. A node's output of 384 rows and 256 channels
// (384 KiB in float32; 1,536 rows of 64 channels) stays in a core's L2 cache for the node that reads it,
// beside the layer's packed weights and the other outputs still to be read (a Monte Carlo pass reuses the
// buffers of outputs read for the last time: SequentialWorkspace::recycle). On issue 27's attention
// benchmark (64 positions, width 256) tiles of 384 rows took 4% less time than tiles of 1,536 rows, 768
// and 576 rows less than 2% (2-core AVX-512 Xeon).
constexpr std::int64_t kSpatialTileValues = 384 * 256;
constexpr std::int64_t kSpatialTileRows = 1536;

// The forward tiles of a sequential Monte Carlo run: tiles of opt.tile_rows points, except for a network
// whose points have several positions (and no recurrent node, whose step products see the tile's points),
// whose tiles hold fewer points: about kSpatialTileValues values of its widest output (at most
// kSpatialTileRows rows of its features), a multiple of
// kRowQuantum / gcd(kRowQuantum, positions) points (whole quanta of rows, no padding). Each node's output
// then stays in the core's cache for the nodes that read it, and the many tiles share the threads evenly.
// The results do not depend on it: every product of a Monte Carlo pass runs on packed weights (whole panels
// of rows, each row's arithmetic the same wherever it lies in a tile) and every other step is per row or
// per point.
template <class T>
std::vector<RowTile<T>> sequential_tiles(const SequentialSpec& spec, const T* x1, std::int64_t n1, const T* x2,
                                         std::int64_t n2, std::int64_t tile_rows) {
  std::vector<RowTile<T>> tiles = row_tiles(x1, n1, x2, n2, tile_rows);
  const std::int64_t P = spec.features().positions();
  for (const SeqNode& node : spec.nodes)
    if (node.kind == NodeKind::recurrent) return tiles;
  std::int64_t g = kRowQuantum, b = P;
  while (b != 0) {
    const std::int64_t r = g % b;
    g = b;
    b = r;
  }
  const std::int64_t base = kRowQuantum / g;
  std::int64_t widest = 1;  // the widest output of a node (an attention node's keys, queries and values too)
  for (const SeqNode& node : spec.nodes) {
    widest = std::max(widest, node.out.channels);
    if (node.kind == NodeKind::attention)
      widest = std::max({widest, node.heads * node.key_width, node.heads * node.value_width});
  }
  const std::int64_t target = std::min(kSpatialTileRows, std::max(kRowQuantum, kSpatialTileValues / widest));
  const std::int64_t points = std::max<std::int64_t>(1, target / (P * base)) * base;
  if (P <= 1 || points >= tile_rows) return tiles;
  tiles.clear();
  for (std::int64_t r = 0; r < n1; r += points) tiles.push_back({x1, r, std::min(points, n1 - r), false});
  if (x2)
    for (std::int64_t r = 0; r < n2; r += points) tiles.push_back({x2, r, std::min(points, n2 - r), true});
  return tiles;
}

// sums[k] (n1 x n2 row-major; n1 x n1 if x2 is null) += sum over networks [start, stop) of
// the un-normalised Gram of node opt.layers[k]'s features (the output node's if opt.layers is
// empty); x1, x2 hold input.size() values per point.
template <class T>
void sequential_monte_carlo(const SequentialSpec& spec, const T* x1, std::int64_t n1, const T* x2, std::int64_t n2,
                            const MonteCarloOptions& opt, const std::vector<double*>& sums) {
  const bool symmetric = x2 == nullptr;
  if (symmetric) n2 = n1;
  const std::int64_t n_nodes = static_cast<std::int64_t>(spec.nodes.size());
  const std::vector<std::int64_t> nodes = opt.layers.empty() ? std::vector<std::int64_t>{n_nodes - 1} : opt.layers;
  std::vector<std::int64_t> widths;
  std::vector<char> single;  // float32 flat features of kSingleGramWidth or more: float32 Grams
  for (const std::int64_t k : nodes) {
    if (k < 0 || k >= n_nodes) throw std::invalid_argument("kernel node " + std::to_string(k) + " is out of range");
    widths.push_back(spec.shape_of(k).channels);
    single.push_back(std::is_same<T, float>::value && !spec.shape_of(k).spatial && widths.back() >= kSingleGramWidth);
  }
  const std::vector<RowTile<T>> tiles = sequential_tiles(spec, x1, n1, x2, n2, opt.tile_rows);
  const std::int64_t d = spec.input.size();
  const std::vector<LayerScales> scales = spec.scales(false);
  NetworkDraw<T> draw(spec.params);
  draw.packed_weights = true;  // every tile multiplies by one packing of the network's weights
  const NetworkView<T> net = draw.view();
  const std::size_t n_workspaces = static_cast<std::size_t>(std::max(1, opt.n_threads));
  std::vector<SequentialWorkspace<T>> workspaces(n_workspaces);
  std::vector<RowMatrix<double>> pooled(n_workspaces);
  stream_networks<T>(
      n1, n2, symmetric, widths, tiles, opt, sums,
      [&](std::uint64_t m) {
        draw.draw(spec.params, opt.seed, m, opt.n_threads, spec.params.size());
        draw.pack(spec.params, opt.n_threads);
      },
      [&](const RowTile<T>& tile, int thread, auto&& panel) {
        SequentialWorkspace<T>& ws = workspaces[static_cast<std::size_t>(thread)];
        ws.recycle = true;  // only the kernel nodes' outputs are read after the pass
        sequential_forward(spec, scales, net, tile.x + tile.row0 * d, tile.rows, false, ws, spec.nodes.size(), nodes);
        for (std::size_t k = 0; k < nodes.size(); ++k)
          write_node_features(spec, ws, nodes[k], tile, pooled[static_cast<std::size_t>(thread)], panel(k));
      },
      single);
}

}  // namespace nnpk
