// Elementwise nonlinearities, optionally normalised to (phi(z) - shift) / scale.
#pragma once

#include <array>
#include <cmath>
#include <stdexcept>
#include <string>

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
