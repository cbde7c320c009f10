// The dual map of an activation: the two Gaussian expectations of a nonlinearity step
// (docs/definitions.rst, "Infinite-width (analytic) kernels"), in closed form or by quadrature.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "nnpk/network/activations.hpp"

namespace nnpk {

// a * b + c, rounded once wherever the CPU fuses multiply-adds. Kernels whose entries must agree to
// the bit along two code paths (a point's variance computed alone and the same pair inside a
// tile, vectorised or not) use it where a product meets a sum: left to the compiler
// (-ffp-contract=fast), such a sum is fused in one path and not in another. Without FMA hardware
// nothing is fused, so the plain expression is rounded the same way everywhere.
inline double madd(double a, double b, double c) {
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

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
// of phi itself (alpha = 1, beta = 0) otherwise.
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
      case ActivationKind::sin: base_ = Base::sin; break;
      case ActivationKind::cos: base_ = Base::cos; break;
      case ActivationKind::exp: base_ = Base::exp; break;
      case ActivationKind::gaussian:
        base_ = Base::gaussian;
        gamma_ = act.gamma;
        break;
      case ActivationKind::rbf:
        base_ = Base::rbf;
        gamma_ = act.gamma;
        break;
      case ActivationKind::sign: base_ = Base::sign; break;
      case ActivationKind::rectified_monomial:
        base_ = Base::rectified;
        degree_ = act.degree;
        break;
      case ActivationKind::monomial:
      case ActivationKind::polynomial:
        base_ = Base::hermite;
        hermite_ = HermiteTables(act);
        break;
      default: base_ = Base::quadrature; break;
    }
    if (!closed_form) base_ = Base::quadrature;
    if (base_ == Base::quadrature) {
      quadrature_ = std::make_shared<const PairQuadrature>(act, quadrature_order);
      alpha_ = 1.0;
      beta_ = 0.0;
    }
  }

  DualValues operator()(double q1, double q2, double c) const {
    DualValues out;
    row(q1, &q2, &c, 1, &out.sigma, &out.sigma_dot);
    return out;
  }

  // sigma[j], sigma_dot[j] for the pairs (q1, q2[j], c[j]), j < n. Not inlined: compiled on its
  // own its loops vectorise, where inlined into a caller's loop (link-time optimisation) they were
  // left scalar, 5x slower.
  [[gnu::noinline]] void row(double q1, const double* q2, const double* c, std::int64_t n, double* sigma, double* sigma_dot) const {
    using analytic_detail::kPi;
    switch (base_) {
      case Base::abrelu: {
        // g = a min(z, 0) + b max(z, 0) with (a, b) = (neg_slope, 1). Branch-free, so that
        // the loop vectorises.
        const double a = neg_slope_, d2 = (a - 1.0) * (a - 1.0), mean_coef = (1.0 - a) * analytic_detail::kInvSqrt2Pi;
        const double root_q1 = std::sqrt(q1);
        // The means enter sigma only when beta != 0: otherwise no root of q2.
        const auto fold = [&](auto with_means) {
          fold_row<false>(q1, q2, c, n, sigma, sigma_dot, [=](double q2j, double, double cj) {
            // theta = atan2(y, c) with y = sqrt(q1 q2 - c^2), q1 q2 - c^2 to the accuracy of the
            // difference itself: c^2 = cc + cc_err exactly (fma), q1 q2 - cc with one rounding
            // (fma), then cc_err taken off. 0 when c^2 = q1 q2, as on the diagonal, and accurate
            // near it, where the plain difference is a rounding error whose root would tilt
            // theta by 1e-8. Only explicit fma: no product is left for the compiler to contract
            // (-ffp-contract=fast) into a sum, which would change what is rounded. No correlation
            // beyond 1 (y = 0 then). A zero input (q1 q2 = 0) takes c = 0 and theta = pi/2.
            const bool zero = !(q1 * q2j > 0);
            const double cz = zero ? 0.0 : cj, cc = cz * cz, cc_err = std::fma(cz, cz, -cc);
            const double y = std::sqrt(std::max(std::fma(q1, q2j, -cc) - cc_err, 0.0));
            const double theta = atan2_upper(zero ? 1.0 : y, cz);
            const double gdgd = 0.5 * (a * a + 1.0) - d2 * theta / (2 * kPi);
            double means = 0.0;
            if constexpr (decltype(with_means)::value) means = mean_coef * (root_q1 + std::sqrt(q2j));
            return BaseMoments{d2 * y / (2 * kPi) + gdgd * cz, gdgd, means};
          });
        };
        if (beta_ == 0.0)
          fold(std::false_type{});
        else
          fold(std::true_type{});
        break;
      }
      case Base::erf:
        fold_row(q1, q2, c, n, sigma, sigma_dot, [=](double q2j, double, double cj) {
          const double det = (1.0 + 2.0 * q1) * (1.0 + 2.0 * q2j);
          return BaseMoments{(2.0 / kPi) * std::asin(2.0 * cj / std::sqrt(det)),
                             (4.0 / kPi) / std::sqrt(det - 4.0 * cj * cj), 0.0};
        });
        break;
      case Base::identity:
        fold_row(q1, q2, c, n, sigma, sigma_dot, [](double, double, double cj) { return BaseMoments{cj, 1.0, 0.0}; });
        break;
      case Base::sin:
      case Base::cos: {
        // E[sin u sin v] = e^{-s} sinh c and E[cos u cos v] = e^{-s} cosh c, s = (q1 + q2) / 2: the
        // halves of cos(u - v) -/+ cos(u + v), E cos(w) = e^{-Var w / 2}. E cos u = e^{-q1 / 2}.
        const bool cosine = base_ == Base::cos;
        fold_row(q1, q2, c, n, sigma, sigma_dot, [=](double q2j, double, double cj) {
          const double s = 0.5 * (q1 + q2j), plus = 0.5 * std::exp(cj - s), minus = 0.5 * std::exp(-cj - s);
          const double means = cosine ? std::exp(-0.5 * q1) + std::exp(-0.5 * q2j) : 0.0;
          return cosine ? BaseMoments{plus + minus, plus - minus, means} : BaseMoments{plus - minus, plus + minus, means};
        });
        break;
      }
      case Base::exp:
        fold_row(q1, q2, c, n, sigma, sigma_dot, [=](double q2j, double, double cj) {
          const double gg = std::exp(0.5 * (q1 + q2j) + cj);
          return BaseMoments{gg, gg, std::exp(0.5 * q1) + std::exp(0.5 * q2j)};
        });
        break;
      case Base::gaussian: {
        // g = exp(-gamma z^2): E[g(u) g(v)] = det(I + 2 gamma Sigma)^{-1/2} and
        // E[g'(u) g'(v)] = 4 gamma^2 c det(I + 2 gamma Sigma)^{-3/2}.
        const double g2 = 2.0 * gamma_, a1 = 1.0 + g2 * q1;
        fold_row(q1, q2, c, n, sigma, sigma_dot, [=](double q2j, double, double cj) {
          const double a2 = 1.0 + g2 * q2j, det = a1 * a2 - g2 * g2 * cj * cj, root = std::sqrt(det);
          return BaseMoments{1.0 / root, g2 * g2 * cj / (det * root), 1.0 / std::sqrt(a1) + 1.0 / std::sqrt(a2)};
        });
        break;
      }
      case Base::rbf: {
        // g = sqrt(2) sin(sqrt(2 gamma) z + pi/4): E[g(u) g(v)] = exp(-gamma (q1 + q2 - 2c)),
        // E[g' g'] = 2 gamma times it, E g(u) = exp(-gamma q1).
        const double gamma = gamma_;
        fold_row(q1, q2, c, n, sigma, sigma_dot, [=](double q2j, double, double cj) {
          const double gg = std::exp(-gamma * (q1 + q2j - 2.0 * cj));
          return BaseMoments{gg, 2.0 * gamma * gg, std::exp(-gamma * q1) + std::exp(-gamma * q2j)};
        });
        break;
      }
      case Base::sign:
        // E[sign u sign v] = 1 - 2 theta / pi (theta the angle of the pair, pi/2 for a zero input, whose
        // sign is 0). The derivative's dual is undefined (a Dirac delta): 0 here, refused upstream.
        fold_row<false>(q1, q2, c, n, sigma, sigma_dot, [=](double q2j, double, double cj) {
          const Angle a = angle(q1, q2j, cj);
          return BaseMoments{a.zero ? 0.0 : 1.0 - 2.0 * a.theta / kPi, 0.0, 0.0};
        });
        break;
      case Base::rectified: {
        const int degree = degree_;
        const double mean_coef = rectified_moment(degree), root_q1 = std::sqrt(q1);
        fold_row<false>(q1, q2, c, n, sigma, sigma_dot, [=](double q2j, double, double cj) {
          const Angle a = angle(q1, q2j, cj);
          const double means = mean_coef * (std::pow(root_q1, degree) + std::pow(std::sqrt(q2j), degree));
          return BaseMoments{arc_cosine(degree, a), double(degree) * degree * arc_cosine(degree - 1, a), means};
        });
        break;
      }
      case Base::hermite: {
        std::array<double, kMaxActivationDegree + 1> b1, d1, b2, d2;
        hermite_.betas(q1, false, b1.data());
        hermite_.betas(q1, true, d1.data());
        const HermiteTables& h = hermite_;
        fold_row(q1, q2, c, n, sigma, sigma_dot, [&](double q2j, double, double cj) {
          h.betas(q2j, false, b2.data());
          h.betas(q2j, true, d2.data());
          // sum_k k! beta_k(q1) beta_k(q2) c^k by Horner in c.
          double gg = 0.0, gdgd = 0.0;
          for (int k = h.degree; k >= 0; --k) {
            const std::size_t i = static_cast<std::size_t>(k);
            gg = gg * cj + h.factorial[i] * b1[i] * b2[i];
            gdgd = gdgd * cj + h.factorial[i] * d1[i] * d2[i];
          }
          return BaseMoments{gg, gdgd, b1[0] + b2[0]};
        });
        break;
      }
      case Base::quadrature:
        fold_row(q1, q2, c, n, sigma, sigma_dot, [&](double q2j, double, double cj) {
          // The rule is not symmetric in its two variables; a fixed order keeps the kernel so.
          const DualValues v = (*quadrature_)(std::min(q1, q2j), std::max(q1, q2j), cj);
          return BaseMoments{v.sigma, v.sigma_dot, 0.0};
        });
        break;
    }
  }

  // Whether variance_gradient has a closed form (the relu family, erf and identity).
  bool has_variance_gradient() const {
    return base_ == Base::abrelu || base_ == Base::erf || base_ == Base::identity;
  }

  // d sigma / d q1 and d sigma / d q2 at the pairs (q1, q2[j], c[j]), j < n, given the sigma and
  // sigma_dot that row() returned for them (d sigma / d c is sigma_dot). For the relu family
  // E[g(u) g(v)] = sqrt(q1 q2) f(c / sqrt(q1 q2)) is homogeneous of degree 1, so its derivative in q1
  // is (E[g g] - c E[g' g']) / (2 q1); E g(u) = (1 - a) sqrt(q1 / 2 pi). For erf, differentiating
  // asin(2c / sqrt((1 + 2 q1)(1 + 2 q2))) gives -c E[g' g'] / (1 + 2 q1). A zero variance has no
  // fluctuation to follow: its derivative is taken as 0.
  void variance_gradient(double q1, const double* q2, const double* c, std::int64_t n, const double* sigma,
                         const double* sigma_dot, double* d_q1, double* d_q2) const {
    switch (base_) {
      case Base::abrelu: {
        const double mean_coef = (1.0 - neg_slope_) * analytic_detail::kInvSqrt2Pi, ab = alpha_ * beta_;
        const double root_q1 = std::sqrt(q1), m1 = q1 > 0 ? ab * mean_coef / (2.0 * root_q1) : 0.0;
        for (std::int64_t j = 0; j < n; ++j) {
          const double root_q2 = std::sqrt(q2[j]);
          // alpha^2 E[g g] from sigma = alpha^2 E[g g] - alpha beta (E g(u) + E g(v)) + beta^2.
          const double gg = sigma[j] + ab * mean_coef * (root_q1 + root_q2) - beta_ * beta_;
          const double homogeneous = gg - c[j] * sigma_dot[j];
          d_q1[j] = q1 > 0 ? homogeneous / (2.0 * q1) - m1 : 0.0;
          d_q2[j] = q2[j] > 0 ? homogeneous / (2.0 * q2[j]) - ab * mean_coef / (2.0 * root_q2) : 0.0;
        }
        break;
      }
      case Base::erf:
        for (std::int64_t j = 0; j < n; ++j) {
          const double root_p = std::sqrt(q1 * q2[j]), cj = std::min(std::max(c[j], -root_p), root_p);
          d_q1[j] = -cj * sigma_dot[j] / (1.0 + 2.0 * q1);
          d_q2[j] = -cj * sigma_dot[j] / (1.0 + 2.0 * q2[j]);
        }
        break;
      case Base::identity:
        std::fill(d_q1, d_q1 + n, 0.0);
        std::fill(d_q2, d_q2 + n, 0.0);
        break;
      default: throw std::logic_error("variance_gradient is only known for the relu family, erf and identity");
    }
  }

 private:
  // E[g(u) g(v)], E[g'(u) g'(v)] and E g(u) + E g(v) of the base.
  struct BaseMoments {
    double gg, gdgd, means;
  };
  enum class Base { abrelu, erf, identity, sin, cos, exp, gaussian, rbf, sign, rectified, hermite, quadrature };

  // The angle theta = atan2(sqrt(q1 q2 - c^2), c) of a pair, with y = sqrt(q1 q2 - c^2) as accurate
  // as in the relu family's row (see there); zero: an input of variance 0 (theta = pi/2, c = 0).
  struct Angle {
    double theta, y, c, p;
    bool zero;
  };
  static Angle angle(double q1, double q2, double c) {
    const double p = q1 * q2;
    const bool zero = !(p > 0);
    const double cz = zero ? 0.0 : std::min(std::max(c, -std::sqrt(p)), std::sqrt(p));
    const double cc = cz * cz, cc_err = std::fma(cz, cz, -cc);
    const double y = zero ? 0.0 : std::sqrt(std::max(std::fma(q1, q2, -cc) - cc_err, 0.0));
    return Angle{atan2_upper(zero ? 1.0 : y, cz), y, cz, zero ? 0.0 : p, zero};
  }

  // E max(g, 0)^n for g ~ N(0, 1): 2^{n/2} Gamma((n + 1) / 2) / (2 sqrt(pi)).
  static double rectified_moment(int n) {
    return std::exp(0.5 * n * std::log(2.0) + std::lgamma(0.5 * (n + 1))) / (2.0 * std::sqrt(analytic_detail::kPi));
  }

  // E[max(u, 0)^n max(v, 0)^n] (Cho and Saul's arc-cosine kernel of degree n): in polar coordinates
  // it is (n! / 2 pi) p^{n/2} int_0^{pi - theta} (rho + cos t)^n dt, rho = cos theta, p = q1 q2. With
  // V_j = p^{j/2} int_0^L cos^j t dt, L = pi - theta (cos L = -rho, sin L = sin theta), the binomial
  // expansion gives (n! / 2 pi) sum_j C(n, j) c^{n-j} V_j, where V_0 = L, V_1 = y = sqrt(p - c^2) and
  // V_j = (-c)^{j-1} y / j + ((j - 1) / j) p V_{j-2}: no division by p, exact at a zero input.
  static double arc_cosine(int n, const Angle& a) {
    std::array<double, kMaxActivationDegree + 1> v;
    v[0] = analytic_detail::kPi - a.theta;
    if (n >= 1) v[1] = a.y;
    double minus_c_power = -a.c;  // (-c)^{j-1}
    for (int j = 2; j <= n; ++j) {
      const std::size_t i = static_cast<std::size_t>(j);
      v[i] = minus_c_power * a.y / j + (double(j - 1) / j) * a.p * v[i - 2];
      minus_c_power *= -a.c;
    }
    double sum = 0.0, c_power = 1.0, binomial = 1.0, factorial = 1.0;  // c^{n-j}, C(n, j) from j = n down
    for (int j = n; j >= 0; --j) {
      sum += binomial * c_power * v[static_cast<std::size_t>(j)];
      c_power *= a.c;
      binomial = binomial * j / (n - j + 1);
    }
    for (int k = 2; k <= n; ++k) factorial *= k;
    return factorial * sum / (2.0 * analytic_detail::kPi);
  }

  // phi(sqrt(q) g) = sum_k q^{k/2} beta_k(q) He_k(g) for g ~ N(0, 1), and likewise phi', so that
  // E[phi(u) phi(v)] = sum_k k! beta_k(q1) beta_k(q2) c^k (E[He_j He_k] = k! delta_jk, Mehler).
  // beta_k is a polynomial in t = q - origin, held as its coefficients in t: a monomial z^n has
  // beta_k = C_{n,k} q^{(n-k)/2} (origin 0; C_{n,k} = n! / (k! ((n-k)/2)! 2^{(n-k)/2}), the Hermite
  // coefficients of z^n), a Hermite series sum_j a_j He_j has
  // beta_k = sum_i a_{k+2i} (k+2i)! / (k! i! 2^i) (q - 1)^i (origin 1: exact at unit variance).
  struct HermiteTables {
    int degree = 0;  // of phi; phi' has degree - 1
    double origin = 0.0;
    std::array<double, kMaxActivationDegree + 1> factorial{};
    // value[k][i], slope[k][i]: coefficient of t^i in beta_k of phi and of phi'.
    std::array<std::array<double, kMaxActivationDegree / 2 + 1>, kMaxActivationDegree + 1> value{}, slope{};

    HermiteTables() = default;
    explicit HermiteTables(const Activation& act) : degree(act.degree) {
      factorial[0] = 1.0;
      for (std::size_t k = 1; k < factorial.size(); ++k) factorial[k] = factorial[k - 1] * static_cast<double>(k);
      std::array<double, kMaxActivationDegree + 1> a{}, da{};  // Hermite coefficients of phi and phi'
      if (act.kind == ActivationKind::monomial) {
        origin = 0.0;
        fill_monomial(degree, 1.0, value);
        if (degree >= 1) fill_monomial(degree - 1, double(degree), slope);
        return;
      }
      origin = 1.0;
      for (int k = 0; k <= degree; ++k) a[static_cast<std::size_t>(k)] = act.coefficients[static_cast<std::size_t>(k)];
      for (int k = 0; k < degree; ++k) da[static_cast<std::size_t>(k)] = (k + 1) * a[static_cast<std::size_t>(k + 1)];
      fill_series(a, value);
      fill_series(da, slope);
    }

    // beta_0..beta_degree of phi (or of phi') at variance q.
    void betas(double q, bool derivative, double* out) const {
      const auto& table = derivative ? slope : value;
      const double t = q - origin;
      for (int k = 0; k <= degree; ++k) {
        const auto& row = table[static_cast<std::size_t>(k)];
        double b = 0.0;
        for (int i = (degree - k) / 2; i >= 0; --i) b = b * t + row[static_cast<std::size_t>(i)];
        out[k] = b;
      }
    }

   private:
    using Table = std::array<std::array<double, kMaxActivationDegree / 2 + 1>, kMaxActivationDegree + 1>;
    void fill_monomial(int n, double times, Table& table) const {
      for (int k = n; k >= 0; k -= 2) {
        const int i = (n - k) / 2;
        table[static_cast<std::size_t>(k)][static_cast<std::size_t>(i)] =
            times * factorial[static_cast<std::size_t>(n)] /
            (factorial[static_cast<std::size_t>(k)] * factorial[static_cast<std::size_t>(i)] * std::ldexp(1.0, i));
      }
    }
    void fill_series(const std::array<double, kMaxActivationDegree + 1>& a, Table& table) const {
      for (int k = 0; k <= degree; ++k)
        for (int i = 0; k + 2 * i <= degree; ++i)
          table[static_cast<std::size_t>(k)][static_cast<std::size_t>(i)] =
              a[static_cast<std::size_t>(k + 2 * i)] * factorial[static_cast<std::size_t>(k + 2 * i)] /
              (factorial[static_cast<std::size_t>(k)] * factorial[static_cast<std::size_t>(i)] * std::ldexp(1.0, i));
    }
  };

  // atan2(y, x) for y >= 0, not both 0, within 3 ulp: branch-free, unlike std::atan2, so that
  // a loop over it vectorises. Cephes' rational approximation of atan on [0, tan(pi/8)],
  // atan t = t + t z P(z) / Q(z) with z = t^2, for t = n / m, written with one division: P and
  // Q (degrees 4 and 5) homogeneous in (n^2, m^2), so that atan t = n (Q~ + n^2 P~) / (m Q~).
  static double atan2_upper(double y, double x) {
    constexpr double P[] = {-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
                            -1.228866684490136173410e2, -6.485021904942025371773e1};
    constexpr double Q[] = {2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
                            4.853903996359136964868e2, 1.945506571482613964425e2};
    constexpr double kPi = analytic_detail::kPi;
    const double ax = std::abs(x);
    const bool swap = y > ax;
    double lo = swap ? ax : y, hi = swap ? y : ax;  // t = lo / hi in [0, 1]
    // Scaled by a power of 2 (exactly) to hi in [1, 2), so that the powers below neither
    // overflow nor underflow.
    std::uint64_t bits;
    std::memcpy(&bits, &hi, sizeof bits);
    const std::uint64_t biased = std::min<std::uint64_t>((bits >> 52) & 0x7ff, 2045);
    const std::uint64_t scale_bits = (2046 - biased) << 52;
    double scale;
    std::memcpy(&scale, &scale_bits, sizeof scale);
    lo *= scale;
    hi *= scale;
    // Above tan(pi/8): atan t = pi/4 + atan((t - 1) / (t + 1)).
    const bool big = lo > 0.41421356237309504880 * hi;
    const double num = big ? lo - hi : lo, den = big ? lo + hi : hi;
    const double w = num * num, v = den * den, v2 = v * v, v3 = v2 * v, v4 = v2 * v2;
    const double p = (((P[0] * w + P[1] * v) * w + P[2] * v2) * w + P[3] * v3) * w + P[4] * v4;
    const double q = ((((w + Q[0] * v) * w + Q[1] * v2) * w + Q[2] * v3) * w + Q[3] * v4) * w + Q[4] * (v4 * v);
    double angle = (big ? 0.25 * kPi : 0.0) + num * (q + w * p) / (den * q);
    angle = swap ? 0.5 * kPi - angle : angle;
    return x < 0 ? kPi - angle : angle;
  }

  // kClamp: c clamped to [-root_p, root_p] (correlations in [-1, 1]), root_p = sqrt(q1 q2)
  // passed to moments; else c as it is, and root_p 0.
  template <bool kClamp = true, class Moments>
  void fold_row(double q1, const double* q2, const double* c, std::int64_t n, double* sigma, double* sigma_dot,
                Moments&& moments) const {
    // Members as locals: the stores below cannot alias them, which keeps the loop vectorisable.
    const double alpha = alpha_, beta = beta_;
    const bool unit_second_moment = unit_second_moment_;
    for (std::int64_t j = 0; j < n; ++j) {
      double root_p = 0.0, cj = c[j];
      if constexpr (kClamp) {
        root_p = std::sqrt(q1 * q2[j]);
        cj = std::min(std::max(cj, -root_p), root_p);
      }
      const BaseMoments m = moments(q2[j], root_p, cj);
      // A normalised activation's second moment at unit variance is 1 by construction;
      // taking it as such keeps a unit diagonal exactly 1 through any depth instead of
      // drifting by an ulp a layer.
      const bool unit = unit_second_moment && q1 == 1.0 && q2[j] == 1.0 && cj == 1.0;
      sigma[j] = unit ? 1.0 : madd(alpha * alpha, m.gg, madd(-(alpha * beta), m.means, beta * beta));
      sigma_dot[j] = alpha * alpha * m.gdgd;
    }
  }

  Base base_ = Base::quadrature;
  double neg_slope_ = 0.0;
  double gamma_ = 1.0;
  int degree_ = 1;
  HermiteTables hermite_;
  double alpha_ = 1.0, beta_ = 0.0;
  bool unit_second_moment_ = false;
  std::shared_ptr<const PairQuadrature> quadrature_;
};

}  // namespace nnpk
