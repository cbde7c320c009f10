// Elementwise nonlinearities, optionally normalised to (phi(z) - shift) / scale.
#pragma once

#include <array>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace nnpk {

enum class ActivationKind : int {
  relu = 0,
  leaky_relu,
  abs,
  erf,
  tanh,
  sigmoid,
  gelu,
  softplus,
  sin,
  identity,
  relu_normalized,
  cos,
  gaussian,
  exp,
  rbf,
  sign,
  monomial,
  rectified_monomial,
  polynomial,
  elementwise,  // a user's function, tabulated (values and derivatives) on a uniform grid
};

// The table of an elementwise activation: phi and phi' at n >= 2 uniform nodes lo, lo + step, ..., hi.
// Between nodes phi is the cubic Hermite interpolant of the values and derivatives (continuously
// differentiable), beyond the grid the tangent line at its end; the derivative is the interpolant's own,
// so gradients are exact for the function the engine evaluates.
struct ActivationTable {
  double lo = 0.0, hi = 0.0, step = 1.0;
  std::vector<double> values, derivatives;

  ActivationTable(double lo_, double hi_, std::vector<double> values_, std::vector<double> derivatives_)
      : lo(lo_), hi(hi_), values(std::move(values_)), derivatives(std::move(derivatives_)) {
    if (values.size() < 2 || values.size() != derivatives.size() || !(hi > lo))
      throw std::invalid_argument("an activation table needs lo < hi and as many (>= 2) derivatives as values");
    step = (hi - lo) / static_cast<double>(values.size() - 1);
  }

  // phi(z) (derivative false) or phi'(z) (derivative true).
  double operator()(double z, bool derivative) const {
    const std::size_t last = values.size() - 1;
    if (!(z > lo)) return derivative ? derivatives[0] : values[0] + derivatives[0] * (z - lo);
    if (!(z < hi)) return derivative ? derivatives[last] : values[last] + derivatives[last] * (z - hi);
    const double x = (z - lo) / step;
    std::size_t i = static_cast<std::size_t>(x);
    if (i >= last) i = last - 1;
    const double t = x - static_cast<double>(i);
    const double y0 = values[i], y1 = values[i + 1];
    const double m0 = derivatives[i] * step, m1 = derivatives[i + 1] * step;  // slopes in t
    if (derivative) {
      // d/dt of the Hermite cubic, divided by step.
      const double t2 = t * t;
      const double dy = (6 * t2 - 6 * t) * (y0 - y1) + (3 * t2 - 4 * t + 1) * m0 + (3 * t2 - 2 * t) * m1;
      return dy / step;
    }
    const double t2 = t * t, t3 = t2 * t;
    return (2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * m0 + (-2 * t3 + 3 * t2) * y1 + (t3 - t2) * m1;
  }
};

// The highest degree of monomial, rectified_monomial and polynomial (Hermite coefficients a_0..a_16).
constexpr int kMaxActivationDegree = 16;

namespace detail {
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kTwoOverSqrtPi = 1.12837916709551257390;
// Mean and standard deviation of max(g, 0) for g ~ N(0, 1).
constexpr double kReluMean = 0.39894228040143267794;
constexpr double kReluStd = 0.583819370103548948899;  // sqrt(1/2 - 1/(2 pi))
constexpr double kSqrt2 = 1.41421356237309504880;
constexpr double kQuarterPi = 0.78539816339744830962;

template <class T>
T integer_power(T z, int n) {
  T out = T(1);
  for (int k = 0; k < n; ++k) out *= z;
  return out;
}
}  // namespace detail

struct Activation {
  ActivationKind kind = ActivationKind::relu;
  double slope = 0.01;  // negative-side slope of leaky_relu
  double shift = 0.0;   // subtracted after phi (normalize=True: E[phi(g)])
  double scale = 1.0;   // divides after the shift (normalize=True: std of phi(g))
  double gamma = 1.0;   // gaussian: exp(-gamma z^2); rbf: sqrt(2) sin(sqrt(2 gamma) z + pi/4)
  int degree = 1;       // monomial z^degree, rectified_monomial max(z, 0)^degree; polynomial: its degree
  // polynomial: sum_k coefficients[k] He_k(z), He_k the probabilists' Hermite polynomials
  // (He_0 = 1, He_1 = z, He_{k+1} = z He_k - k He_{k-1}), k <= degree.
  std::array<double, kMaxActivationDegree + 1> coefficients{};
  // elementwise: the tabulated function (shared by every copy of this activation).
  std::shared_ptr<const ActivationTable> table;

  // phi before the normalisation.
  template <class T>
  T raw(T z) const {
    using std::abs, std::cos, std::erf, std::exp, std::log1p, std::sin, std::sqrt, std::tanh;
    switch (kind) {
      case ActivationKind::relu: return z > T(0) ? z : T(0);
      case ActivationKind::leaky_relu: return z > T(0) ? z : T(slope) * z;
      case ActivationKind::abs: return abs(z);
      case ActivationKind::erf: return erf(z);
      case ActivationKind::tanh: return tanh(z);
      case ActivationKind::sigmoid: return T(1) / (T(1) + exp(-z));
      case ActivationKind::gelu: return T(0.5) * z * (T(1) + erf(z * T(detail::kInvSqrt2)));
      case ActivationKind::softplus: return (z > T(0) ? z : T(0)) + log1p(exp(-abs(z)));
      case ActivationKind::sin: return sin(z);
      case ActivationKind::identity: return z;
      case ActivationKind::relu_normalized:
        return ((z > T(0) ? z : T(0)) - T(detail::kReluMean)) / T(detail::kReluStd);
      case ActivationKind::cos: return cos(z);
      case ActivationKind::gaussian: return exp(-T(gamma) * z * z);
      case ActivationKind::exp: return exp(z);
      case ActivationKind::rbf: return T(detail::kSqrt2) * sin(T(sqrt(2 * gamma)) * z + T(detail::kQuarterPi));
      case ActivationKind::sign: return z > T(0) ? T(1) : (z < T(0) ? T(-1) : T(0));
      case ActivationKind::monomial: return detail::integer_power(z, degree);
      case ActivationKind::rectified_monomial: return z > T(0) ? detail::integer_power(z, degree) : T(0);
      case ActivationKind::polynomial: return hermite_series(z, false);
      case ActivationKind::elementwise: return T((*table)(static_cast<double>(z), false));
    }
    return z;
  }

  // d phi / dz before the normalisation (the subgradient 0 at kinks).
  template <class T>
  T raw_derivative(T z) const {
    using std::cos, std::exp, std::sin, std::sqrt, std::tanh;
    switch (kind) {
      case ActivationKind::relu: return z > T(0) ? T(1) : T(0);
      case ActivationKind::leaky_relu: return z > T(0) ? T(1) : T(slope);
      case ActivationKind::abs: return z > T(0) ? T(1) : (z < T(0) ? T(-1) : T(0));
      case ActivationKind::erf: return T(detail::kTwoOverSqrtPi) * exp(-z * z);
      case ActivationKind::tanh: {
        const T t = tanh(z);
        return T(1) - t * t;
      }
      case ActivationKind::sigmoid: {
        const T s = T(1) / (T(1) + exp(-z));
        return s * (T(1) - s);
      }
      case ActivationKind::gelu:
        return T(0.5) * (T(1) + std::erf(z * T(detail::kInvSqrt2))) +
               z * T(detail::kInvSqrt2Pi) * exp(T(-0.5) * z * z);
      case ActivationKind::softplus: return T(1) / (T(1) + exp(-z));
      case ActivationKind::sin: return cos(z);
      case ActivationKind::identity: return T(1);
      case ActivationKind::relu_normalized: return z > T(0) ? T(1 / detail::kReluStd) : T(0);
      case ActivationKind::cos: return -sin(z);
      case ActivationKind::gaussian: return T(-2 * gamma) * z * exp(-T(gamma) * z * z);
      case ActivationKind::exp: return exp(z);
      case ActivationKind::rbf:
        return T(2 * sqrt(gamma)) * cos(T(sqrt(2 * gamma)) * z + T(detail::kQuarterPi));
      // A step: 0 everywhere but at 0, where it is a Dirac delta that no number stands for. The
      // kernels that need it (tangent kernels, training) refuse sign before reaching the engine.
      case ActivationKind::sign: return T(0);
      case ActivationKind::monomial: return T(degree) * detail::integer_power(z, degree - 1);
      case ActivationKind::rectified_monomial:
        return z > T(0) ? T(degree) * detail::integer_power(z, degree - 1) : T(0);
      case ActivationKind::polynomial: return hermite_series(z, true);
      case ActivationKind::elementwise: return T((*table)(static_cast<double>(z), true));
    }
    return T(1);
  }

  // sum_k coefficients[k] He_k(z), or its derivative sum_k k coefficients[k] He_{k-1}(z).
  template <class T>
  T hermite_series(T z, bool derivative) const {
    T previous = T(0), current = T(1);  // He_{k-1}, He_k
    T sum = derivative ? T(0) : T(coefficients[0]);
    for (int k = 1; k <= degree; ++k) {
      const T next = z * current - T(k - 1) * previous;  // He_k from He_{k-1}, He_{k-2}
      sum += derivative ? T(k * coefficients[static_cast<std::size_t>(k)]) * current
                        : T(coefficients[static_cast<std::size_t>(k)]) * next;
      previous = current;
      current = next;
    }
    return sum;
  }

  template <class T>
  T operator()(T z) const {
    return (raw(z) - T(shift)) / T(scale);
  }
  template <class T>
  T derivative(T z) const {
    return raw_derivative(z) / T(scale);
  }
};

}  // namespace nnpk
