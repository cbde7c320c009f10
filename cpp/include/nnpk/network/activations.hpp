// Elementwise nonlinearities, optionally normalised to (phi(z) - shift) / scale.
#pragma once

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
};

namespace detail {
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kTwoOverSqrtPi = 1.12837916709551257390;
// Mean and standard deviation of max(g, 0) for g ~ N(0, 1).
constexpr double kReluMean = 0.39894228040143267794;
constexpr double kReluStd = 0.583819370103548948899;  // sqrt(1/2 - 1/(2 pi))
}  // namespace detail

struct Activation {
  ActivationKind kind = ActivationKind::relu;
  double slope = 0.01;  // negative-side slope of leaky_relu
  double shift = 0.0;   // subtracted after phi (normalize=True: E[phi(g)])
  double scale = 1.0;   // divides after the shift (normalize=True: std of phi(g))

  // phi before the normalisation.
  template <class T>
  T raw(T z) const {
    using std::abs, std::erf, std::exp, std::log1p, std::sin, std::tanh;
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
    }
    return z;
  }

  // d phi / dz before the normalisation (the subgradient 0 at kinks).
  template <class T>
  T raw_derivative(T z) const {
    using std::cos, std::exp, std::tanh;
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
    }
    return T(1);
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
