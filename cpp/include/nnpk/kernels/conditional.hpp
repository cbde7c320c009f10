// The conditional Monte Carlo estimator of a sequential network: the kernel after a dense layer
// and the activation that reads it, integrated exactly over that layer's weights given its
// input h,
//   E[phi(z(x)) . phi(z(x')) / n | h] = dual(Sigma),
//   Sigma = W_std^2 h(x) . h(x') / fan_in + b_std^2,
// summed over networks in one float64 chain per entry (the same expectation as the plain
// average, far less variance). For an MLP the pairs are its hidden layers.
//
// Control variate: where h is the first hidden layer (h = phi0(x W0 + b0) on Gaussian weights),
// E Sigma is known in closed form (W_std^2 dual0(Sigma0) + b_std^2), and each network adds
//   dual(Sigma) - [d_c dual(E Sigma) (Sigma - E Sigma)(x, x') + d_q1 dual (.)(x, x) + d_q2 dual (.)(x', x')],
// the linear part of dual's fluctuation about E Sigma taken out: the bracket has mean zero, so the
// expectation is unchanged, and what is left fluctuates at second order in Sigma - E Sigma. E Sigma
// is computed again in each pass over the output (one product of the inputs and one dual map per
// entry): no memory beyond the plain estimator's.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
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
// With control, the dense node reads the first hidden layer (an activation reading a dense node
// that reads the flat input) and the control variate is used; first_unit_second_moment is that
// first activation's flag.
struct ConditionalPair {
  std::int64_t dense = 0, activation = 1;
  bool unit_second_moment = false;
  bool control = false;
  bool first_unit_second_moment = false;
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
      controls_.emplace_back();
      if (p.control) add_control(k, p, name);
    }
    if (opt_.gram_tile <= 0 || opt_.gram_tile % kRowQuantum != 0)
      throw std::invalid_argument("gram_tile must be a positive multiple of " + std::to_string(kRowQuantum));
    tiles_ = row_tiles(x1, n1_, x2, n2_, opt_.tile_rows);
    scales_ = spec_.scales(false);
    const SeqNode& top = spec_.nodes[static_cast<std::size_t>(pairs.back().dense)];
    depth_ = static_cast<std::size_t>(pairs.back().dense);  // nodes needed: those below the top dense node
    n_params_ = static_cast<std::size_t>(top.param);        // parameters needed: those of the nodes below it
    const std::size_t slots = static_cast<std::size_t>(std::max<std::int64_t>(1, opt_.networks_per_pass));
    for (std::size_t b = 0; b < slots; ++b) {
      first_.emplace_back(layers_, n1_);
      if (!symmetric_) second_.emplace_back(layers_, n2_);
    }
    workspaces_.resize(static_cast<std::size_t>(std::max(1, opt_.n_threads)));
    for (std::size_t k = 0; k < controls_.size(); ++k)
      if (controls_[k]) compute_control(k, x1, x2);
  }

  // How many parametrised layers a network needs drawn (those below the top dense node).
  std::size_t n_params() const { return n_params_; }
  // Networks whose features one pass over the output holds.
  std::size_t slots() const { return first_.size(); }

  // Runs a network forward and keeps its features in `slot` for the next pass.
  void add_network(const NetworkView<T>& net, std::size_t slot) {
    const std::int64_t d = spec_.input.size();
    parallel_for(static_cast<std::int64_t>(tiles_.size()), opt_.n_threads, [&](std::int64_t t, int thread) {
      const RowTile<T>& tile = tiles_[static_cast<std::size_t>(t)];
      Workspace& ws = workspaces_[static_cast<std::size_t>(thread)];
      sequential_forward(spec_, scales_, net, tile.x + tile.row0 * d, tile.rows, false, ws.forward, depth_);
      Features& f = tile.second ? second_[slot] : first_[slot];
      for (std::size_t k = 0; k < layers_.size(); ++k) f.store(k, tile.row0, tile.rows, ws.forward.output(inputs_[k]).data());
    });
    first_[slot].update_variances(layers_, n1_, opt_.n_threads);
    if (!symmetric_) second_[slot].update_variances(layers_, n2_, opt_.n_threads);
  }

  // Adds the conditional kernels of the networks in slots [0, used) to the sums, network by network
  // in slot order for every entry; `done` is what the caller's poll reports meanwhile.
  void pass(std::size_t used, std::uint64_t done) {
    const std::vector<Features>& second = symmetric_ ? first_ : second_;
    std::function<bool()> poll;
    if (opt_.poll) poll = [&] { return opt_.poll(done); };
    for_each_output_tile(n1_, n2_, opt_.gram_tile, symmetric_, opt_.n_threads, poll,
                         [&](std::int64_t i0, std::int64_t ni, std::int64_t j0, std::int64_t nj, int thread) {
                           const std::int64_t pi = round_up(ni, kRowQuantum), pj = round_up(nj, kRowQuantum);
                           Workspace& ws = workspaces_[static_cast<std::size_t>(thread)];
                           ws.grams.resize(first_.size());
                           ws.pre.resize(static_cast<std::size_t>(nj));
                           ws.sigma.resize(ws.pre.size());
                           ws.sigma_dot.resize(ws.pre.size());
                           ws.mean.resize(ws.pre.size());
                           // A tile on the diagonal of a symmetric sum needs its upper triangle only
                           // (finish() mirrors it).
                           const bool diagonal = symmetric_ && i0 == j0;
                           for (std::size_t k = 0; k < layers_.size(); ++k) {
                             const DenseLayer& layer = layers_[k];
                             for (std::size_t b = 0; b < used; ++b) {
                               RowMatrix<T>& g = ws.grams[b];
                               g.resize(pi, pj);
                               const auto lhs = first_[b].inputs[k].middleRows(i0, pi);
                               const auto rhs = second[b].inputs[k].middleRows(j0, pj);
                               if (diagonal) {
                                 g.template triangularView<Eigen::Upper>() = lhs * rhs.transpose();
                               } else {
                                 g.noalias() = lhs * rhs.transpose();
                               }
                             }
                             const Control* control = controls_[k] ? &*controls_[k] : nullptr;
                             if (control) control->input_gram(i0, pi, j0, pj, diagonal, ws.input_gram);
                             // Row by row, every network's kernel added in turn while the row of
                             // the sum is in cache.
                             for (std::int64_t i = 0; i < ni; ++i) {
                               const std::int64_t j0_row = diagonal ? i : 0, n_row = nj - j0_row;
                               double* out = sums_[k] + (i0 + i) * n2_ + j0 + j0_row;
                               if (control)
                                 control->linearize(duals_[k], layer, i0 + i, j0 + j0_row, n_row,
                                                    ws.input_gram.data() + i * pj + j0_row, ws.mean);
                               for (std::size_t b = 0; b < used; ++b) {
                                 const double* q1 = first_[b].variances[k].data() + i0;
                                 const double* q2 = second[b].variances[k].data() + j0;
                                 affine_row(layer, ws.grams[b].data() + i * pj + j0_row, n_row, ws.pre.data());
                                 duals_[k].row(q1[i], q2 + j0_row, ws.pre.data(), n_row, ws.sigma.data(),
                                               ws.sigma_dot.data());
                                 if (control) {
                                   add_corrected(out, ws.sigma.data(), ws.pre.data(), q1[i], q2 + j0_row, ws.mean, n_row);
                                 } else {
                                   add_row(out, ws.sigma.data(), n_row);
                                 }
                               }
                             }
                           }
                         });
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
        constexpr std::int64_t kChunk = 64;  // rows a work item
        parallel_for((n + kChunk - 1) / kChunk, n_threads, [&](std::int64_t c, int) {
          for (std::int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) {
            double s = 0;
            const T* row = inputs[k].data() + i * layer.fan_in;
            for (std::int64_t j = 0; j < layer.fan_in; ++j) s += double(row[j]) * double(row[j]);
            variances[k][static_cast<std::size_t>(i)] = affine(layer, s);
          }
        });
      }
    }
  };

  // E Sigma along one row of a tile and dual's derivatives there.
  struct Linearization {
    double q1 = 0;                                   // E Sigma(x, x) of the row's point
    std::vector<double> c, q2, sigma, d_c, d_q1, d_q2;  // per column: E Sigma(x, x'), E Sigma(x', x'), ...
    void resize(std::size_t n) {
      for (auto* v : {&c, &q2, &sigma, &d_c, &d_q1, &d_q2}) v->resize(n);
    }
  };

  // A pair's control variate: the points (rows padded to whole quanta) and, per point, the first
  // dense layer's variance Sigma0(x, x) and E Sigma(x, x), in double. E Sigma(x, x') itself is
  // computed again in every pass, tile by tile (no kernel-sized matrix is kept): the same product
  // of whole row quanta and the same dual map each time, so the same values.
  struct Control {
    DenseLayer first;    // the dense layer reading the input
    DualMap first_dual;  // the activation reading it
    RowMatrix<T> x1, x2;  // x2 empty when symmetric
    std::vector<double> q01, q02, q1, q2;

    // g (pi x pj) = x1 rows [i0, i0 + pi) . x2 rows [j0, j0 + pj) (upper triangle only on the diagonal).
    void input_gram(std::int64_t i0, std::int64_t pi, std::int64_t j0, std::int64_t pj, bool diagonal,
                    RowMatrix<T>& g) const {
      const RowMatrix<T>& b = x2.size() ? x2 : x1;
      g.resize(pi, pj);
      if (diagonal) {
        g.template triangularView<Eigen::Upper>() = x1.middleRows(i0, pi) * b.middleRows(j0, pj).transpose();
      } else {
        g.noalias() = x1.middleRows(i0, pi) * b.middleRows(j0, pj).transpose();
      }
    }

    // E Sigma = W_std^2 dual0(Sigma0) + b_std^2 of `second` for columns [j0, j0 + n) of row i, from
    // that row's input products `inner`, and dual's value and derivatives there.
    void linearize(const DualMap& dual, const DenseLayer& second, std::int64_t i, std::int64_t j0, std::int64_t n,
                   const T* inner, Linearization& e) const {
      affine_row(first, inner, n, e.c.data());
      first_dual.row(q01[static_cast<std::size_t>(i)], q02.data() + j0, e.c.data(), n, e.sigma.data(), e.d_c.data());
      const double w2 = second.w_std * second.w_std, b2 = second.has_bias ? second.b_std * second.b_std : 0.0;
      for (std::int64_t j = 0; j < n; ++j) e.c[static_cast<std::size_t>(j)] = w2 * e.sigma[static_cast<std::size_t>(j)] + b2;
      e.q1 = q1[static_cast<std::size_t>(i)];
      std::copy(q2.begin() + j0, q2.begin() + j0 + n, e.q2.begin());
      dual.row(e.q1, e.q2.data(), e.c.data(), n, e.sigma.data(), e.d_c.data());
      dual.variance_gradient(e.q1, e.q2.data(), e.c.data(), n, e.sigma.data(), e.d_c.data(), e.d_q1.data(),
                             e.d_q2.data());
    }
  };

  struct Workspace {
    SequentialWorkspace<T> forward;
    Linearization mean;
    RowMatrix<T> input_gram;          // a tile's input products, for a control variate
    std::vector<RowMatrix<T>> grams;  // per slot
    std::vector<double> pre, sigma, sigma_dot;  // one row of Sigma and its dual
  };

  // Checks that pair k's dense node reads the first hidden layer of Gaussian weights.
  void add_control(std::size_t k, const ConditionalPair& p, const std::string& name) {
    const auto fail = [&](const std::string& why) { throw std::invalid_argument(name + ": no control variate: " + why); };
    if (std::any_of(spec_.params.begin(), spec_.params.end(), [](const DenseLayer& l) { return l.init != Init::gaussian; }))
      fail("the weights are not Gaussian");
    if (spec_.input.spatial) fail("the input is not flat");
    const std::int64_t a = inputs_[k];
    if (a < 0 || spec_.nodes[static_cast<std::size_t>(a)].kind != NodeKind::activation)
      fail("the dense node does not read an activation");
    const SeqNode& act = spec_.nodes[static_cast<std::size_t>(a)];
    if (act.input < 0 || spec_.nodes[static_cast<std::size_t>(act.input)].kind != NodeKind::dense ||
        spec_.nodes[static_cast<std::size_t>(act.input)].input != -1)
      fail("the activation does not read a dense node reading the input");
    Control c{spec_.params[static_cast<std::size_t>(spec_.nodes[static_cast<std::size_t>(act.input)].param)],
              DualMap(act.activation, true, kDefaultQuadratureOrder, p.first_unit_second_moment), {}, {}, {}, {}, {},
              {}};
    if (!c.first_dual.has_variance_gradient() || !duals_[k].has_variance_gradient())
      fail("an activation has no closed-form dual map");
    controls_[k] = std::move(c);
  }

  // The points of pair k's control variate and their variances: Sigma0(x, x) = W0_std^2 |x|^2 / d
  // + b0_std^2 from the squared norm in double, E Sigma(x, x) = W_std^2 dual0(Sigma0(x, x)) + b_std^2.
  void compute_control(std::size_t k, const T* x1, const T* x2) {
    Control& c = *controls_[k];
    const DenseLayer& second = layers_[k];
    const std::int64_t d = spec_.input.size();
    const auto points = [&](const T* x, std::int64_t n, RowMatrix<T>& m, std::vector<double>& q0,
                            std::vector<double>& q) {
      m = RowMatrix<T>::Zero(round_up(n, kRowQuantum), d);
      std::copy(x, x + n * d, m.data());
      q0.resize(static_cast<std::size_t>(n));
      q.resize(static_cast<std::size_t>(n));
      parallel_for(n, opt_.n_threads, [&](std::int64_t i, int) {
        double s = 0;
        for (std::int64_t j = 0; j < d; ++j) s += double(m(i, j)) * double(m(i, j));
        const double v = affine(c.first, s);
        q0[static_cast<std::size_t>(i)] = v;
        q[static_cast<std::size_t>(i)] = second.w_std * second.w_std * c.first_dual(v, v, v).sigma +
                                         (second.has_bias ? second.b_std * second.b_std : 0.0);
      });
    };
    points(x1, n1_, c.x1, c.q01, c.q1);
    if (symmetric_) {
      c.q02 = c.q01;
      c.q2 = c.q1;
    } else {
      points(x2, n2_, c.x2, c.q02, c.q2);
    }
  }

  // out[j] += sigma[j], j < n (restrict: the loop vectorises wherever it is inlined).
  static void add_row(double* __restrict out, const double* __restrict sigma, std::int64_t n) {
    for (std::int64_t j = 0; j < n; ++j) out[j] += sigma[j];
  }

  // out[j] += sigma[j] minus the linear part of the fluctuation of (c[j], q1, q2[j]) about the mean
  // in e, j < n.
  static void add_corrected(double* __restrict out, const double* __restrict sigma, const double* __restrict c,
                            double q1, const double* __restrict q2, const Linearization& e, std::int64_t n) {
    const double dq1 = q1 - e.q1;
    const double *__restrict mc = e.c.data(), *__restrict mq2 = e.q2.data(), *__restrict d_c = e.d_c.data(),
                             *__restrict d_q1 = e.d_q1.data(), *__restrict d_q2 = e.d_q2.data();
    for (std::int64_t j = 0; j < n; ++j)
      out[j] += sigma[j] - (d_c[j] * (c[j] - mc[j]) + d_q1[j] * dq1 + d_q2[j] * (q2[j] - mq2[j]));
  }

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

  SequentialSpec spec_;
  MonteCarloOptions opt_;
  bool symmetric_;
  std::int64_t n1_, n2_;
  std::vector<double*> sums_;
  std::vector<std::int64_t> inputs_;  // per pair: the node the dense layer reads (-1: the input)
  std::vector<DenseLayer> layers_;    // per pair: the dense layer
  std::vector<DualMap> duals_;        // per pair: its activation's dual map
  std::vector<std::optional<Control>> controls_;  // per pair: its control variate, if any
  std::vector<RowTile<T>> tiles_;
  std::vector<LayerScales> scales_;
  std::size_t depth_ = 0, n_params_ = 0;
  std::vector<Features> first_, second_;  // per slot
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
  std::size_t used = 0;
  for (std::uint64_t m = opt.start; m < opt.stop; ++m) {
    draw.draw(spec.params, opt.seed, m, opt.n_threads, acc.n_params());
    acc.add_network(net, used++);
    if (used < acc.slots() && m + 1 < opt.stop) continue;
    acc.pass(used, done);
    done += used;
    used = 0;
    if (opt.poll && opt.poll(done)) throw Cancelled();
  }
  acc.finish();
}

}  // namespace nnpk
