// The conditional Monte Carlo estimator: each hidden layer's conjugate kernel
// integrated exactly over that layer's weights given the layer below,
//   E[h^l(x) . h^l(x') / n_l | h^{l-1}] = dual(Sigma^l),
//   Sigma^l = W_std^2 h^{l-1}(x) . h^{l-1}(x') / n_{l-1} + b_std^2,
// summed over networks in one float64 chain per entry (the same expectation as
// the plain average, far less variance).
#pragma once

#include <cstdint>
#include <vector>

#include "nnpk/analytic.hpp"
#include "nnpk/forward.hpp"
#include "nnpk/monte_carlo.hpp"

namespace nnpk {

template <class T>
class ConditionalAccumulator {
 public:
  // opt.layers: hidden layers (0 .. n_hidden - 1, ascending) whose kernels are summed.
  ConditionalAccumulator(const MLPSpec& spec, const DualMap& dual, const T* x1, std::int64_t n1, const T* x2,
                         std::int64_t n2, const MonteCarloOptions& opt, std::vector<double*> sums)
      : spec_(spec), dual_(dual), opt_(opt), layers_(opt.layers), symmetric_(x2 == nullptr), n1_(n1),
        n2_(x2 ? n2 : n1), sums_(std::move(sums)) {
    spec_.validate();
    if (layers_.empty() || sums_.size() != layers_.size())
      throw std::invalid_argument("one output sum per requested hidden layer is needed");
    for (std::size_t k = 0; k < layers_.size(); ++k)
      if (layers_[k] < 0 || layers_[k] >= spec_.n_hidden() || (k > 0 && layers_[k] <= layers_[k - 1]))
        throw std::invalid_argument("conditional kernels are for hidden layers, ascending");
    if (opt_.gram_tile <= 0 || opt_.gram_tile % kRowQuantum != 0)
      throw std::invalid_argument("gram_tile must be a positive multiple of " + std::to_string(kRowQuantum));
    tiles_ = row_tiles(x1, n1_, x2, n2_, opt_.tile_rows);
    scales_ = spec_.scales(false);
    depth_ = static_cast<std::size_t>(layers_.back());  // forward layers needed: inputs of the top one
    first_ = Features(spec_, layers_, n1_);
    if (!symmetric_) second_ = Features(spec_, layers_, n2_);
    workspaces_.resize(static_cast<std::size_t>(std::max(1, opt_.n_threads)));
  }

  void add_network(const NetworkView<T>& net, std::uint64_t& done) {
    const std::int64_t d = spec_.input_dim();
    parallel_for(static_cast<std::int64_t>(tiles_.size()), opt_.n_threads, [&](std::int64_t t, int thread) {
      const RowTile<T>& tile = tiles_[static_cast<std::size_t>(t)];
      Workspace& ws = workspaces_[static_cast<std::size_t>(thread)];
      const T* input = forward_rows(spec_, scales_, net, tile.x + tile.row0 * d, tile.rows, false, ws.forward, depth_);
      Features& f = tile.second ? second_ : first_;
      for (std::size_t k = 0; k < layers_.size(); ++k) {
        const std::int64_t l = layers_[k];
        const T* src = l == 0 ? input : ws.forward.outputs[static_cast<std::size_t>(l - 1)].data();
        f.store(k, tile.row0, tile.rows, src);
      }
    });
    first_.update_variances(spec_, layers_, n1_, opt_.n_threads);
    if (!symmetric_) second_.update_variances(spec_, layers_, n2_, opt_.n_threads);
    gram_pass(done);
  }

  void finish() {
    if (symmetric_)
      for (double* s : sums_) mirror_upper(s, n1_, opt_.n_threads);
  }

 private:
  // Each requested layer's input h^{l-1} for every point (rows padded), and its
  // pre-activation variance Sigma^l(x, x).
  struct Features {
    std::vector<RowMatrix<T>> inputs;
    std::vector<std::vector<double>> variances;

    Features() = default;
    Features(const MLPSpec& spec, const std::vector<std::int64_t>& layers, std::int64_t n) {
      for (const std::int64_t l : layers) {
        inputs.emplace_back(RowMatrix<T>::Zero(round_up(n, kRowQuantum), spec.layers[static_cast<std::size_t>(l)].fan_in));
        variances.emplace_back(static_cast<std::size_t>(n));
      }
    }
    void store(std::size_t k, std::int64_t row0, std::int64_t rows, const T* src) {
      const std::int64_t width = inputs[k].cols();
      std::copy(src, src + rows * width, inputs[k].data() + row0 * width);
    }
    void update_variances(const MLPSpec& spec, const std::vector<std::int64_t>& layers, std::int64_t n, int n_threads) {
      for (std::size_t k = 0; k < layers.size(); ++k) {
        const DenseLayer& layer = spec.layers[static_cast<std::size_t>(layers[k])];
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
    ForwardWorkspace<T> forward;
    RowMatrix<T> gram;
    std::vector<double> pre, sigma, sigma_dot;  // one row of Sigma^l and its dual
  };

  // Sigma^l from an input inner product (un-normalised).
  static double affine(const DenseLayer& layer, double inner) {
    const double v = layer.w_std * layer.w_std * inner / static_cast<double>(layer.fan_in);
    return layer.has_bias ? v + layer.b_std * layer.b_std : v;
  }

  void gram_pass(std::uint64_t& done) {
    const Features& b = symmetric_ ? first_ : second_;
    std::function<bool()> poll;
    if (opt_.poll) poll = [&] { return opt_.poll(done); };
    for_each_output_tile(n1_, n2_, opt_.gram_tile, symmetric_, opt_.n_threads, poll, [&](std::int64_t i0, std::int64_t ni,
                                                                                       std::int64_t j0, std::int64_t nj,
                                                                                       int thread) {
      const std::int64_t pi = round_up(ni, kRowQuantum), pj = round_up(nj, kRowQuantum);
      Workspace& ws = workspaces_[static_cast<std::size_t>(thread)];
      RowMatrix<T>& g = ws.gram;
      for (std::size_t k = 0; k < layers_.size(); ++k) {
        const DenseLayer& layer = spec_.layers[static_cast<std::size_t>(layers_[k])];
        g.resize(pi, pj);
        g.noalias() = first_.inputs[k].middleRows(i0, pi) * b.inputs[k].middleRows(j0, pj).transpose();
        const double* q1 = first_.variances[k].data() + i0;
        const double* q2 = b.variances[k].data() + j0;
        std::vector<double>& pre = ws.pre;
        std::vector<double>& sigma = ws.sigma;
        std::vector<double>& sigma_dot = ws.sigma_dot;
        pre.resize(static_cast<std::size_t>(nj));
        sigma.resize(pre.size());
        sigma_dot.resize(pre.size());
        for (std::int64_t i = 0; i < ni; ++i) {
          for (std::int64_t j = 0; j < nj; ++j) pre[static_cast<std::size_t>(j)] = affine(layer, double(g(i, j)));
          dual_.row(q1[i], q2, pre.data(), nj, sigma.data(), sigma_dot.data());
          double* out = sums_[k] + (i0 + i) * n2_ + j0;
          for (std::int64_t j = 0; j < nj; ++j) out[j] += sigma[static_cast<std::size_t>(j)];
        }
      }
    });
  }

  MLPSpec spec_;
  const DualMap& dual_;
  MonteCarloOptions opt_;
  std::vector<std::int64_t> layers_;
  bool symmetric_;
  std::int64_t n1_, n2_;
  std::vector<double*> sums_;
  std::vector<RowTile<T>> tiles_;
  std::vector<LayerScales> scales_;
  std::size_t depth_ = 0;
  Features first_, second_;
  std::vector<Workspace> workspaces_;
};

// Sums over networks [start, stop) of the conditional kernels of the hidden layers opt.layers.
template <class T>
void conditional_accumulate(const MLPSpec& spec, const DualMap& dual, const T* x1, std::int64_t n1, const T* x2,
                            std::int64_t n2, const MonteCarloOptions& opt, const std::vector<double*>& sums) {
  ConditionalAccumulator<T> acc(spec, dual, x1, n1, x2, n2, opt, sums);
  NetworkDraw<T> draw(spec.layers);
  const NetworkView<T> net = draw.view();
  const std::size_t depth = static_cast<std::size_t>(opt.layers.back());
  std::uint64_t done = 0;
  for (std::uint64_t m = opt.start; m < opt.stop; ++m) {
    draw.draw(spec.layers, opt.seed, m, opt.n_threads, depth);
    acc.add_network(net, done);
    ++done;
    if (opt.poll && opt.poll(done)) throw Cancelled();
  }
  acc.finish();
}

}  // namespace nnpk
