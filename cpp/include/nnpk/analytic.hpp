// Infinite-width kernels of MLPs (CONVENTIONS.md, "Infinite-width (analytic) kernels"): the
// dual map of each activation, in closed form or by quadrature, and the layer recursion of
// the NNGP and the NTK, tiled over the output.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "nnpk/activations.hpp"
#include "nnpk/gram.hpp"
#include "nnpk/mlp.hpp"
#include "nnpk/parallel.hpp"

namespace nnpk {

// Gauss-Legendre order of the bivariate quadrature used unless the caller chooses one.
constexpr int kDefaultQuadratureOrder = 40;

// The two Gaussian expectations of a nonlinearity step for one pair of inputs:
// sigma = E[phi(u) phi(v)], sigma_dot = E[phi'(u) phi'(v)].
struct DualValues {
  double sigma = 0.0;
  double sigma_dot = 0.0;
};

namespace analytic_detail {
constexpr double kPi = 3.14159265358979323846;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
}  // namespace analytic_detail

// Gauss-Legendre nodes (ascending) and weights on [-1, 1], by Newton's method on P_n.
struct LegendreRule {
  std::vector<double> nodes, weights;

  explicit LegendreRule(int order) : nodes(static_cast<std::size_t>(order)), weights(static_cast<std::size_t>(order)) {
    if (order < 1) throw std::invalid_argument("quadrature_order must be positive");
    const int n = order;
    for (int i = 0; i < (n + 1) / 2; ++i) {
      double x = std::cos(analytic_detail::kPi * (i + 0.75) / (n + 0.5));
      double dp = 1.0;
      for (int iter = 0; iter < 100; ++iter) {
        double p0 = 1.0, p1 = x;  // P_{n-1}(x), P_n(x) after the loop
        for (int k = 2; k <= n; ++k) {
          const double p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
          p0 = p1;
          p1 = p2;
        }
        dp = n * (x * p1 - p0) / (x * x - 1.0);
        const double step = p1 / dp;
        x -= step;
        if (std::abs(step) < 1e-15) break;
      }
      const double w = 2.0 / ((1.0 - x * x) * dp * dp);
      nodes[static_cast<std::size_t>(i)] = -x;
      nodes[static_cast<std::size_t>(n - 1 - i)] = x;
      weights[static_cast<std::size_t>(i)] = weights[static_cast<std::size_t>(n - 1 - i)] = w;
    }
  }
};

// E[phi(u) phi(v)] and E[phi'(u) phi'(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]), written as
// u = sqrt(q1) z1, v = sqrt(q2) (rho z1 + s z2) on independent standard normals, each integral
// by Gauss-Legendre panels over [-kReach, kReach] with a panel edge where the activation's
// argument crosses 0. Plain Gauss-Hermite converges only algebraically across the kink of a
// relu-like activation (1e-3 at order 320 for relu) and slowly where phi' is sharply peaked
// at 0 (tanh or erf at variance 9: 5e-3 at order 96); split panels converge geometrically
// for both, so one rule serves every activation.
class PairQuadrature {
 public:
  PairQuadrature(const Activation& act, int order) : act_(act), rule_(order) {}

  DualValues operator()(double q1, double q2, double c) const {
    const double p = q1 * q2;
    const double rho = p > 0 ? std::clamp(c / std::sqrt(p), -1.0, 1.0) : 0.0;
    const double s = std::sqrt((1.0 - rho) * (1.0 + rho));
    const double s1 = std::sqrt(q1), s2 = std::sqrt(q2);
    // Near |rho| = 1 the inner integral, as a function of z1, bends within s/|rho| of z1 = 0
    // (the kink of v's activation seen through a narrow conditional normal): an extra panel
    // edge there resolves it.
    const double layer = rho != 0.0 ? kLayerWidths * s / std::abs(rho) : kReach;
    const double outer_edges_near[] = {-kReach, -layer, 0.0, layer, kReach};
    const double outer_edges_far[] = {-kReach, 0.0, kReach};
    const bool near = layer < kReach / 2;
    const double* edges = near ? outer_edges_near : outer_edges_far;
    const int n_panels = near ? 4 : 2;

    DualValues out;
    for (int panel = 0; panel < n_panels; ++panel) {
      const double mid = 0.5 * (edges[panel] + edges[panel + 1]), half = 0.5 * (edges[panel + 1] - edges[panel]);
      for (std::size_t k = 0; k < rule_.nodes.size(); ++k) {
        const double z1 = mid + half * rule_.nodes[k];
        const double w1 = half * rule_.weights[k] * density(z1);
        const double u = s1 * z1;
        DualValues inner;
        if (s == 0.0) {
          const double v = s2 * rho * z1;
          inner = {act_(v), act_.derivative(v)};
        } else {
          double split = -rho * z1 / s;
          if (!(std::abs(split) < kReach)) split = 0.0;
          inner_panel(-kReach, split, s2, rho * z1, s, inner);
          inner_panel(split, kReach, s2, rho * z1, s, inner);
        }
        out.sigma += w1 * act_(u) * inner.sigma;
        out.sigma_dot += w1 * act_.derivative(u) * inner.sigma_dot;
      }
    }
    return out;
  }

 private:
  // Standard normal mass beyond 9 is 1e-19: the truncation is below rounding.
  static constexpr double kReach = 9.0;
  // The bend is exp(-32) flat 8 widths away.
  static constexpr double kLayerWidths = 8.0;

  static double density(double z) { return analytic_detail::kInvSqrt2Pi * std::exp(-0.5 * z * z); }

  // acc += sum over the panel [lo, hi] of z2 of weight * (phi(v), phi'(v)), v = s2 (m + s z2).
  void inner_panel(double lo, double hi, double s2, double m, double s, DualValues& acc) const {
    const double mid = 0.5 * (lo + hi), half = 0.5 * (hi - lo);
    if (half == 0.0) return;
    for (std::size_t k = 0; k < rule_.nodes.size(); ++k) {
      const double z2 = mid + half * rule_.nodes[k];
      const double w2 = half * rule_.weights[k] * density(z2);
      const double v = s2 * (m + s * z2);
      acc.sigma += w2 * act_(v);
      acc.sigma_dot += w2 * act_.derivative(v);
    }
  }

  Activation act_;
  LegendreRule rule_;
};

// The nonlinearity step of one layer: (q1, q2, c) = (Sigma(x,x), Sigma(x',x'), Sigma(x,x'))
// of the pre-activations to the two expectations. Every activation is phi = alpha * g - beta
// for a base g (its own shift and scale, and relu_normalized's built-in ones, folded into
// alpha and beta), so E[phi(u) phi(v)] = alpha^2 E[g g] - alpha beta (E g(u) + E g(v)) + beta^2
// and E[phi' phi'] = alpha^2 E[g' g']: closed forms for the bases that have them, quadrature
// of phi itself otherwise.
class DualMap {
 public:
  // unit_second_moment: phi is normalised (E[phi(g)^2] = 1 for g ~ N(0, 1)).
  DualMap(const Activation& act, bool closed_form, int quadrature_order, bool unit_second_moment)
      : unit_second_moment_(unit_second_moment) {
    alpha_ = 1.0 / act.scale;
    beta_ = act.shift / act.scale;
    switch (act.kind) {
      case ActivationKind::relu: base_ = Base::abrelu; break;
      case ActivationKind::leaky_relu:
        base_ = Base::abrelu;
        neg_slope_ = act.slope;
        break;
      case ActivationKind::abs:
        base_ = Base::abrelu;
        neg_slope_ = -1.0;
        break;
      case ActivationKind::relu_normalized:
        base_ = Base::abrelu;
        alpha_ = 1.0 / (detail::kReluStd * act.scale);
        beta_ = (detail::kReluMean / detail::kReluStd + act.shift) / act.scale;
        break;
      case ActivationKind::erf: base_ = Base::erf; break;
      case ActivationKind::identity: base_ = Base::identity; break;
      default: base_ = Base::quadrature; break;
    }
    if (!closed_form) base_ = Base::quadrature;
    if (base_ == Base::quadrature) quadrature_ = std::make_shared<const PairQuadrature>(act, quadrature_order);
  }

  DualValues operator()(double q1, double q2, double c) const {
    using analytic_detail::kPi;
    const double root_p = std::sqrt(q1 * q2);
    c = std::clamp(c, -root_p, root_p);  // correlations in [-1, 1]
    DualValues out;
    if (base_ == Base::quadrature) {
      out = (*quadrature_)(q1, q2, c);
    } else {
      double gg = c, gdgd = 1.0, means = 0.0;
      if (base_ == Base::abrelu) {
        // g = a min(z, 0) + b max(z, 0) with (a, b) = (neg_slope, 1).
        const double a = neg_slope_, d2 = (a - 1.0) * (a - 1.0);
        // theta from rho rather than from q1 q2 - c^2: that difference is a rounding error,
        // not 0, at c = sqrt(q1 q2), and its square root would tilt theta by 1e-8 there.
        const double rho = root_p > 0 ? c / root_p : 0.0;
        const double sin_rho = std::sqrt((1.0 - rho) * (1.0 + rho));
        const double sin_part = root_p * sin_rho;
        const double theta = root_p > 0 ? std::atan2(sin_rho, rho) : 0.5 * kPi;
        gdgd = 0.5 * (a * a + 1.0) - d2 * theta / (2 * kPi);
        gg = d2 * sin_part / (2 * kPi) + gdgd * c;
        // E g(u) + E g(v), as one product so that no fused multiply-add makes it depend on
        // the order of u and v.
        if (beta_ != 0.0) means = (1.0 - a) * analytic_detail::kInvSqrt2Pi * (std::sqrt(q1) + std::sqrt(q2));
      } else if (base_ == Base::erf) {
        const double det = (1.0 + 2.0 * q1) * (1.0 + 2.0 * q2);
        gg = (2.0 / kPi) * std::asin(2.0 * c / std::sqrt(det));
        gdgd = (4.0 / kPi) / std::sqrt(det - 4.0 * c * c);
      }
      out.sigma = alpha_ * alpha_ * gg - alpha_ * beta_ * means + beta_ * beta_;
      out.sigma_dot = alpha_ * alpha_ * gdgd;
    }
    // A normalised activation's second moment at unit variance is 1 by construction; taking
    // it as such keeps a unit diagonal exactly 1 through any depth instead of drifting by
    // an ulp a layer.
    if (unit_second_moment_ && q1 == 1.0 && q2 == 1.0 && c == 1.0) out.sigma = 1.0;
    return out;
  }

 private:
  enum class Base { abrelu, erf, identity, quadrature };
  Base base_ = Base::quadrature;
  double neg_slope_ = 0.0;
  double alpha_ = 1.0, beta_ = 0.0;
  bool unit_second_moment_ = false;
  std::shared_ptr<const PairQuadrature> quadrature_;
};

struct AnalyticOptions {
  Parameterization parameterization = Parameterization::ntk;
  bool nngp = true;
  bool ntk = false;
  // Kernels to write, in kernel_layers' indexing: hidden layer l's post-activation kernel
  // (0 <= l < n_hidden), then the output kernel (n_hidden). Ascending.
  std::vector<std::int64_t> layers;
  bool closed_form = true;  // false: quadrature for every activation
  int quadrature_order = kDefaultQuadratureOrder;
  bool unit_second_moment = false;
  int n_threads = 1;
  std::int64_t tile = 64;  // output tile edge
  // Called about every 0.2 s by thread 0 between tiles; returns true to stop.
  std::function<bool()> poll;
};

namespace analytic_detail {

// a * b + c as one fixed operation wherever it is inlined: -ffp-contract=fast may fuse the
// expression at one call site and not at another, and a point's variance must equal its
// own entry of the input kernel to the last bit (theta has infinite slope at rho = 1).
inline double multiply_add(double a, double b, double c) {
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// out[i * ld + j] = x1_i . x2_j / d for the rows [i0, i0 + ni) and [j0, j0 + nj): each entry a
// sequential sum over the features in order, the same whatever the tile (so a point's own
// entry equals its diagonal variance bit for bit).
inline void input_kernel_tile(const double* x1, std::int64_t i0, std::int64_t ni, const double* x2, std::int64_t j0,
                              std::int64_t nj, std::int64_t d, std::vector<double>& x2t, double* out,
                              std::int64_t ld) {
  x2t.resize(static_cast<std::size_t>(d * nj));
  for (std::int64_t j = 0; j < nj; ++j)
    for (std::int64_t k = 0; k < d; ++k) x2t[static_cast<std::size_t>(k * nj + j)] = x2[(j0 + j) * d + k];
  const double inv_d = 1.0 / static_cast<double>(d);
  for (std::int64_t i = 0; i < ni; ++i) {
    double* row = out + i * ld;
    const double* xi = x1 + (i0 + i) * d;
    std::fill(row, row + nj, 0.0);
    for (std::int64_t k = 0; k < d; ++k) {
      const double xik = xi[k];
      const double* col = x2t.data() + k * nj;
      for (std::int64_t j = 0; j < nj; ++j) row[j] = multiply_add(xik, col[j], row[j]);
    }
    for (std::int64_t j = 0; j < nj; ++j) row[j] *= inv_d;
  }
}

// Pre-activation variances of every layer: q[l * n + i] = Sigma^l(x_i, x_i) after layer l's
// affine step, by the same operations as the entry recursion applies to a pair (x_i, x_i).
inline std::vector<double> layer_variances(const MLPSpec& spec, const DualMap& dual, const double* x, std::int64_t n,
                                           int n_threads) {
  const std::int64_t d = spec.input_dim(), n_layers = static_cast<std::int64_t>(spec.layers.size());
  std::vector<double> q(static_cast<std::size_t>(n_layers * n));
  constexpr std::int64_t kBlock = 64;
  parallel_for((n + kBlock - 1) / kBlock, n_threads, [&](std::int64_t b, int) {
    std::vector<double> scratch;
    for (std::int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
      double var = 0.0;
      input_kernel_tile(x, i, 1, x, i, 1, d, scratch, &var, 1);
      for (std::int64_t l = 0; l < n_layers; ++l) {
        const DenseLayer& layer = spec.layers[static_cast<std::size_t>(l)];
        var = multiply_add(layer.w_std * layer.w_std, var, layer.has_bias ? layer.b_std * layer.b_std : 0.0);
        q[static_cast<std::size_t>(l * n + i)] = var;
        if (l + 1 < n_layers) var = dual(var, var, var).sigma;
      }
    }
  });
  return q;
}

}  // namespace analytic_detail

// Writes the requested kernels between the rows of x1 (n1 x d) and x2 (n2 x d; null: x1,
// then only tiles on or above the diagonal are computed and mirrored): nngp_out[k] and
// ntk_out[k] (n1 x n2 row-major) for opt.layers[k]. Hidden layer l's kernels are those of
// its post-activation features h^l (the NTK with respect to the parameters of layers 1..l);
// the output's are after the readout's affine step.
inline void analytic_kernels(const MLPSpec& spec, const double* x1, std::int64_t n1, const double* x2, std::int64_t n2,
                             const AnalyticOptions& opt, const std::vector<double*>& nngp_out,
                             const std::vector<double*>& ntk_out) {
  using analytic_detail::input_kernel_tile;
  using analytic_detail::multiply_add;
  spec.validate();
  const std::int64_t n_layers = static_cast<std::int64_t>(spec.layers.size());
  for (std::size_t k = 0; k < opt.layers.size(); ++k)
    if (opt.layers[k] < 0 || opt.layers[k] >= n_layers || (k > 0 && opt.layers[k] <= opt.layers[k - 1]))
      throw std::invalid_argument("layers must be ascending indices below " + std::to_string(n_layers));
  if ((opt.nngp && nngp_out.size() != opt.layers.size()) || (opt.ntk && ntk_out.size() != opt.layers.size()))
    throw std::invalid_argument("one output per requested layer and kernel is needed");
  if (opt.tile < 1) throw std::invalid_argument("tile must be positive");
  const bool symmetric = x2 == nullptr;
  if (symmetric) {
    x2 = x1;
    n2 = n1;
  }
  const std::int64_t d = spec.input_dim();
  const DualMap dual(spec.activation, opt.closed_form, opt.quadrature_order, opt.unit_second_moment);
  const std::vector<double> q1 = analytic_detail::layer_variances(spec, dual, x1, n1, opt.n_threads);
  const std::vector<double> q2 = symmetric ? q1 : analytic_detail::layer_variances(spec, dual, x2, n2, opt.n_threads);
  std::vector<std::int64_t> slot(static_cast<std::size_t>(n_layers), -1);
  for (std::size_t k = 0; k < opt.layers.size(); ++k) slot[static_cast<std::size_t>(opt.layers[k])] = static_cast<std::int64_t>(k);

  const std::int64_t tile = opt.tile;
  const std::int64_t t1 = (n1 + tile - 1) / tile, t2 = (n2 + tile - 1) / tile;
  std::vector<std::pair<std::int64_t, std::int64_t>> tiles;
  for (std::int64_t ti = 0; ti < t1; ++ti)
    for (std::int64_t tj = symmetric ? ti : 0; tj < t2; ++tj) tiles.emplace_back(ti, tj);

  ThrottledPoll gate(opt.poll);
  parallel_for(static_cast<std::int64_t>(tiles.size()), opt.n_threads, [&](std::int64_t item, int thread) {
    if (gate.stop(thread)) return;
    const auto [ti, tj] = tiles[static_cast<std::size_t>(item)];
    const std::int64_t i0 = ti * tile, j0 = tj * tile;
    const std::int64_t ni = std::min(tile, n1 - i0), nj = std::min(tile, n2 - j0);
    std::vector<double> sigma(static_cast<std::size_t>(ni * nj)), theta(opt.ntk ? sigma.size() : 0, 0.0), scratch;
    input_kernel_tile(x1, i0, ni, x2, j0, nj, d, scratch, sigma.data(), nj);
    // A point paired with itself takes its variance from the diagonal recursion, so that
    // rho is exactly 1 there whatever rounding the two routes took.
    const bool diagonal_tile = symmetric && ti == tj;
    for (std::int64_t l = 0; l < n_layers; ++l) {
      const DenseLayer& layer = spec.layers[static_cast<std::size_t>(l)];
      const double w2 = layer.w_std * layer.w_std, b2 = layer.has_bias ? layer.b_std * layer.b_std : 0.0;
      // Under "standard" the weights' tangent share is h.h' = n_{l-1} Sigma and a bias's is 1.
      const double fan_in = static_cast<double>(layer.fan_in), bias_share = layer.has_bias ? 1.0 : 0.0;
      const bool hidden = l + 1 < n_layers;
      const double* qa = q1.data() + l * n1 + i0;
      const double* qb = q2.data() + l * n2 + j0;
      for (std::int64_t i = 0; i < ni; ++i) {
        for (std::int64_t j = 0; j < nj; ++j) {
          const std::size_t e = static_cast<std::size_t>(i * nj + j);
          const double before = sigma[e];
          const double pre = diagonal_tile && i == j ? qa[i] : multiply_add(w2, before, b2);
          double t = 0.0;
          if (opt.ntk)
            t = opt.parameterization == Parameterization::ntk ? pre + w2 * theta[e]
                                                              : fan_in * before + w2 * theta[e] + bias_share;
          if (hidden) {
            const DualValues dv = dual(qa[i], qb[j], pre);
            sigma[e] = dv.sigma;
            if (opt.ntk) theta[e] = t * dv.sigma_dot;
          } else {
            sigma[e] = pre;
            if (opt.ntk) theta[e] = t;
          }
        }
      }
      const std::int64_t k = slot[static_cast<std::size_t>(l)];
      if (k < 0) continue;
      for (std::int64_t i = 0; i < ni; ++i) {
        if (opt.nngp)
          std::copy(sigma.begin() + i * nj, sigma.begin() + (i + 1) * nj, nngp_out[static_cast<std::size_t>(k)] + (i0 + i) * n2 + j0);
        if (opt.ntk)
          std::copy(theta.begin() + i * nj, theta.begin() + (i + 1) * nj, ntk_out[static_cast<std::size_t>(k)] + (i0 + i) * n2 + j0);
      }
    }
  });
  if (gate.stopped()) throw Cancelled();
  if (symmetric) {
    for (double* out : nngp_out) mirror_upper(out, n1, opt.n_threads);
    for (double* out : ntk_out) mirror_upper(out, n1, opt.n_threads);
  }
}

}  // namespace nnpk
