// The conditional Monte Carlo estimator of a sequential network: the kernel after a dense layer
// and the activation that reads it, integrated exactly over that layer's weights given its
// input h,
//   E[phi(z(x)) . phi(z(x')) / n | h] = dual(Sigma),
//   Sigma = W_std^2 h(x) . h(x') / fan_in + b_std^2,
// summed over networks in one float64 chain per entry (the same expectation as the plain
// average, far less variance). For an MLP the pairs are its hidden layers.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "nnpk/kernels/dual.hpp"
#include "nnpk/kernels/gram.hpp"
#include "nnpk/kernels/monte_carlo.hpp"
#include "nnpk/network/forward.hpp"

namespace nnpk {

// A dense node reading flat features and the activation node reading it; unit_second_moment
// says whether that activation is normalised to unit second moment.
struct ConditionalPair {
  std::int64_t dense = 0, activation = 1;
  bool unit_second_moment = false;
};

template <class T>
class SequentialConditional {
 public:
  // pairs: ascending dense nodes, each followed by the activation node that reads it.
  SequentialConditional(const SequentialSpec& spec, const std::vector<ConditionalPair>& pairs, const T* x1,
                        std::int64_t n1, const T* x2, std::int64_t n2, const MonteCarloOptions& opt,
                        std::vector<double*> sums)
      : spec_(spec), opt_(opt), symmetric_(x2 == nullptr), n1_(n1), n2_(x2 ? n2 : n1), sums_(std::move(sums)) {
    if (pairs.empty() || sums_.size() != pairs.size())
      throw std::invalid_argument("one output sum per (dense, activation) pair is needed");
    const auto n_nodes = static_cast<std::int64_t>(spec_.nodes.size());
    for (std::size_t k = 0; k < pairs.size(); ++k) {
      const ConditionalPair& p = pairs[k];
      const std::string name = "pair " + std::to_string(k);
      if (p.dense < 0 || p.activation != p.dense + 1 || p.activation >= n_nodes)
        throw std::invalid_argument(name + " must be a dense node and the node after it");
      if (k > 0 && p.dense <= pairs[k - 1].dense) throw std::invalid_argument("pairs must be ascending");
      const SeqNode& dense = spec_.nodes[static_cast<std::size_t>(p.dense)];
      const SeqNode& act = spec_.nodes[static_cast<std::size_t>(p.activation)];
      if (dense.kind != NodeKind::dense) throw std::invalid_argument(name + ": node " + std::to_string(p.dense) + " is not dense");
      if (act.kind != NodeKind::activation || act.input != p.dense)
        throw std::invalid_argument(name + ": node " + std::to_string(p.activation) +
                                    " is not an activation reading node " + std::to_string(p.dense));
      inputs_.push_back(dense.input);
      layers_.push_back(spec_.params[static_cast<std::size_t>(dense.param)]);
      duals_.emplace_back(act.activation, true, kDefaultQuadratureOrder, p.unit_second_moment);
    }
    if (opt_.gram_tile <= 0 || opt_.gram_tile % kRowQuantum != 0)
      throw std::invalid_argument("gram_tile must be a positive multiple of " + std::to_string(kRowQuantum));
    tiles_ = row_tiles(x1, n1_, x2, n2_, opt_.tile_rows);
    scales_ = spec_.scales(false);
    const SeqNode& top = spec_.nodes[static_cast<std::size_t>(pairs.back().dense)];
    depth_ = static_cast<std::size_t>(pairs.back().dense);  // nodes needed: those below the top dense node
    n_params_ = static_cast<std::size_t>(top.param);        // parameters needed: those of the nodes below it
    first_ = Features(layers_, n1_);
    if (!symmetric_) second_ = Features(layers_, n2_);
    workspaces_.resize(static_cast<std::size_t>(std::max(1, opt_.n_threads)));
  }

  // How many parametrised layers a network needs drawn (those below the top dense node).
  std::size_t n_params() const { return n_params_; }

  void add_network(const NetworkView<T>& net, std::uint64_t& done) {
    const std::int64_t d = spec_.input.size();
    parallel_for(static_cast<std::int64_t>(tiles_.size()), opt_.n_threads, [&](std::int64_t t, int thread) {
      const RowTile<T>& tile = tiles_[static_cast<std::size_t>(t)];
      Workspace& ws = workspaces_[static_cast<std::size_t>(thread)];
      sequential_forward(spec_, scales_, net, tile.x + tile.row0 * d, tile.rows, false, ws.forward, depth_);
      Features& f = tile.second ? second_ : first_;
      for (std::size_t k = 0; k < layers_.size(); ++k) f.store(k, tile.row0, tile.rows, ws.forward.output(inputs_[k]).data());
    });
    first_.update_variances(layers_, n1_, opt_.n_threads);
    if (!symmetric_) second_.update_variances(layers_, n2_, opt_.n_threads);
    gram_pass(done);
  }

  void finish() {
    if (symmetric_)
      for (double* s : sums_) mirror_upper(s, n1_, opt_.n_threads);
  }

 private:
  // Each pair's dense input h for every point (rows padded), and its pre-activation variance
  // Sigma(x, x).
  struct Features {
    std::vector<RowMatrix<T>> inputs;
    std::vector<std::vector<double>> variances;

    Features() = default;
    Features(const std::vector<DenseLayer>& layers, std::int64_t n) {
      for (const DenseLayer& layer : layers) {
        inputs.emplace_back(RowMatrix<T>::Zero(round_up(n, kRowQuantum), layer.fan_in));
        variances.emplace_back(static_cast<std::size_t>(n));
      }
    }
    void store(std::size_t k, std::int64_t row0, std::int64_t rows, const T* src) {
      const std::int64_t width = inputs[k].cols();
      std::copy(src, src + rows * width, inputs[k].data() + row0 * width);
    }
    void update_variances(const std::vector<DenseLayer>& layers, std::int64_t n, int n_threads) {
      for (std::size_t k = 0; k < layers.size(); ++k) {
        const DenseLayer& layer = layers[k];
        parallel_for(n, n_threads, [&](std::int64_t i, int) {
          double s = 0;
          const T* row = inputs[k].data() + i * layer.fan_in;
          for (std::int64_t j = 0; j < layer.fan_in; ++j) s += double(row[j]) * double(row[j]);
          variances[k][static_cast<std::size_t>(i)] = affine(layer, s);
        });
      }
    }
  };

  struct Workspace {
    SequentialWorkspace<T> forward;
    RowMatrix<T> gram;
    std::vector<double> pre, sigma, sigma_dot;  // one row of Sigma and its dual
  };

  // Sigma from an input inner product (un-normalised).
  static double affine(const DenseLayer& layer, double inner) {
    const double v = layer.w_std * layer.w_std * inner / static_cast<double>(layer.fan_in);
    return layer.has_bias ? v + layer.b_std * layer.b_std : v;
  }

  // pre[j] = affine(layer, inner[j]), j < n, in a loop that vectorises.
  static void affine_row(const DenseLayer& layer, const T* inner, std::int64_t n, double* pre) {
    const double w2 = layer.w_std * layer.w_std, fan_in = static_cast<double>(layer.fan_in);
    if (layer.has_bias) {
      const double b = layer.b_std;
      for (std::int64_t j = 0; j < n; ++j) pre[j] = w2 * static_cast<double>(inner[j]) / fan_in + b * b;
    } else {
      for (std::int64_t j = 0; j < n; ++j) pre[j] = w2 * static_cast<double>(inner[j]) / fan_in;
    }
  }

  void gram_pass(std::uint64_t& done) {
    const Features& b = symmetric_ ? first_ : second_;
    std::function<bool()> poll;
    if (opt_.poll) poll = [&] { return opt_.poll(done); };
    for_each_output_tile(n1_, n2_, opt_.gram_tile, symmetric_, opt_.n_threads, poll,
                         [&](std::int64_t i0, std::int64_t ni, std::int64_t j0, std::int64_t nj, int thread) {
                           const std::int64_t pi = round_up(ni, kRowQuantum), pj = round_up(nj, kRowQuantum);
                           Workspace& ws = workspaces_[static_cast<std::size_t>(thread)];
                           RowMatrix<T>& g = ws.gram;
                           ws.pre.resize(static_cast<std::size_t>(nj));
                           ws.sigma.resize(ws.pre.size());
                           ws.sigma_dot.resize(ws.pre.size());
                           // A tile on the diagonal of a symmetric sum needs its upper triangle only
                           // (finish() mirrors it).
                           const bool diagonal = symmetric_ && i0 == j0;
                           for (std::size_t k = 0; k < layers_.size(); ++k) {
                             const DenseLayer& layer = layers_[k];
                             g.resize(pi, pj);
                             g.noalias() = first_.inputs[k].middleRows(i0, pi) * b.inputs[k].middleRows(j0, pj).transpose();
                             const double* q1 = first_.variances[k].data() + i0;
                             const double* q2 = b.variances[k].data() + j0;
                             for (std::int64_t i = 0; i < ni; ++i) {
                               const std::int64_t j0_row = diagonal ? i : 0, n_row = nj - j0_row;
                               affine_row(layer, g.data() + i * pj + j0_row, n_row, ws.pre.data());
                               duals_[k].row(q1[i], q2 + j0_row, ws.pre.data(), n_row, ws.sigma.data(),
                                             ws.sigma_dot.data());
                               double* out = sums_[k] + (i0 + i) * n2_ + j0 + j0_row;
                               for (std::int64_t j = 0; j < n_row; ++j) out[j] += ws.sigma[static_cast<std::size_t>(j)];
                             }
                           }
                         });
  }

  SequentialSpec spec_;
  MonteCarloOptions opt_;
  bool symmetric_;
  std::int64_t n1_, n2_;
  std::vector<double*> sums_;
  std::vector<std::int64_t> inputs_;  // per pair: the node the dense layer reads (-1: the input)
  std::vector<DenseLayer> layers_;    // per pair: the dense layer
  std::vector<DualMap> duals_;        // per pair: its activation's dual map
  std::vector<RowTile<T>> tiles_;
  std::vector<LayerScales> scales_;
  std::size_t depth_ = 0, n_params_ = 0;
  Features first_, second_;
  std::vector<Workspace> workspaces_;
};

// Sums over networks [start, stop) of the conditional kernels of `pairs` (opt.layers unused).
template <class T>
void sequential_conditional(const SequentialSpec& spec, const std::vector<ConditionalPair>& pairs, const T* x1,
                            std::int64_t n1, const T* x2, std::int64_t n2, const MonteCarloOptions& opt,
                            const std::vector<double*>& sums) {
  SequentialConditional<T> acc(spec, pairs, x1, n1, x2, n2, opt, sums);
  NetworkDraw<T> draw(spec.params);
  const NetworkView<T> net = draw.view();
  std::uint64_t done = 0;
  for (std::uint64_t m = opt.start; m < opt.stop; ++m) {
    draw.draw(spec.params, opt.seed, m, opt.n_threads, acc.n_params(), spec.init);
    acc.add_network(net, done);
    ++done;
    if (opt.poll && opt.poll(done)) throw Cancelled();
  }
  acc.finish();
}

}  // namespace nnpk
