// Gradient checks shared by the training tests (train_test.cpp, lora_test.cpp): seeded normal
// data and central finite differences in double. The tolerance follows from the step h: the
// central difference's truncation error is O(h^2 f'''), its rounding error O(eps |f| / h); both
// are far below 1e-6 for h = 1e-5 on O(1) functions, while a wrong derivative is off by O(|g|).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

namespace lowbit::test {

inline constexpr double kStep = 1e-5;

inline double grad_tolerance(double fx, double g) {
  const double eps = std::numeric_limits<double>::epsilon();
  const double err = kStep * kStep + eps * std::max(1.0, std::abs(fx)) / kStep;
  return 1e3 * err * std::max(1.0, std::abs(g)) + 1e-9;
}

inline std::vector<double> randn(size_t n, uint64_t seed, double sd = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0.0, sd);
  std::vector<double> v(n);
  for (double& x : v) x = d(rng);
  return v;
}

// Checks grad[i] = d f / d x[i] by central differences at the indices given (all when empty).
inline void check_grad(const char* what, std::vector<double>& x, const std::vector<double>& grad,
                       const std::function<double()>& f, std::vector<size_t> at = {}) {
  ASSERT_EQ(x.size(), grad.size()) << what;
  if (at.empty()) {
    for (size_t i = 0; i < x.size(); ++i) at.push_back(i);
  }
  const double f0 = f();
  int bad = 0;
  for (const size_t i : at) {
    const double x0 = x[i];
    x[i] = x0 + kStep;
    const double fp = f();
    x[i] = x0 - kStep;
    const double fm = f();
    x[i] = x0;
    const double fd = (fp - fm) / (2 * kStep);
    if (std::abs(fd - grad[i]) > grad_tolerance(f0, grad[i]) && ++bad <= 5) {
      ADD_FAILURE() << what << " [" << i << "]: analytic " << grad[i] << ", finite difference "
                    << fd;
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

// sum(r * y): the scalar each op's check differentiates (r random, fixed).
inline double weighted(const std::vector<double>& r, const std::vector<double>& y) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += r[i] * y[i];
  return s;
}

}  // namespace lowbit::test
