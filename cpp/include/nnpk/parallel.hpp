// OpenMP helpers: optional at build time, exceptions never leave a parallel region.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#ifdef NNPK_HAVE_OPENMP
#include <omp.h>
#endif

namespace nnpk {

inline bool has_openmp() {
#ifdef NNPK_HAVE_OPENMP
  return true;
#else
  return false;
#endif
}

inline int thread_index() {
#ifdef NNPK_HAVE_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Thrown when the caller's poll asks the engine to stop (Ctrl-C in Python).
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("computation cancelled") {}
};

// Collects the first exception thrown by any thread; rethrown after the region.
class ExceptionSlot {
 public:
  template <class F>
  void run(F&& f) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      failed_.store(true);
    }
  }
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr error_;
  std::atomic<bool> failed_{false};
};

// Lets thread 0 call `poll` at most every `period` from inside a parallel loop;
// once it returns true, stop() is true for every thread.
class ThrottledPoll {
 public:
  explicit ThrottledPoll(std::function<bool()> poll, std::chrono::milliseconds period = std::chrono::milliseconds(200))
      : poll_(std::move(poll)), period_(period), last_(std::chrono::steady_clock::now()) {}

  bool stop(int thread) {
    if (thread == 0 && poll_ && !stop_.load(std::memory_order_relaxed)) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last_ > period_) {
        last_ = now;
        if (poll_()) stop_.store(true);
      }
    }
    return stop_.load(std::memory_order_relaxed);
  }
  bool stopped() const { return stop_.load(); }

 private:
  std::function<bool()> poll_;
  std::chrono::milliseconds period_;
  std::chrono::steady_clock::time_point last_;
  std::atomic<bool> stop_{false};
};

// Runs body(item) for item in [0, n_items) on n_threads threads, each thread the same contiguous
// range of items at every call (so that what an item reads stays in that core's cache from call
// to call). Results must not depend on which thread ran an item.
template <class Body>
void parallel_ranges(std::int64_t n_items, int n_threads, Body&& body) {
  ExceptionSlot slot;
#ifdef NNPK_HAVE_OPENMP
  const int threads = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(n_threads, n_items)));
#pragma omp parallel num_threads(threads)
  {
    const std::int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
    for (std::int64_t item = t * n_items / n; item < (t + 1) * n_items / n; ++item) slot.run([&] { body(item); });
  }
#else
  (void)n_threads;
  for (std::int64_t item = 0; item < n_items; ++item) slot.run([&] { body(item); });
#endif
  slot.rethrow();
}

// Runs body(item, thread) for item in [0, n_items) on up to n_threads threads,
// dynamically scheduled. Results must not depend on which thread ran an item.
template <class Body>
void parallel_for(std::int64_t n_items, int n_threads, Body&& body) {
  ExceptionSlot slot;
#ifdef NNPK_HAVE_OPENMP
  const int threads = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(n_threads, n_items)));
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::int64_t item = 0; item < n_items; ++item) {
    slot.run([&] { body(item, thread_index()); });
  }
#else
  (void)n_threads;
  for (std::int64_t item = 0; item < n_items; ++item) slot.run([&] { body(item, 0); });
#endif
  slot.rethrow();
}

// Runs body(i0, ni, j0, nj, thread) in parallel over the tile x tile blocks of an
// n1 x n2 output (rows [i0, i0 + ni), columns [j0, j0 + nj)); with symmetric only
// the blocks on or above the diagonal. `poll` (may be empty) is called by thread 0
// about every 0.2 s; when it returns true the remaining blocks are skipped and
// Cancelled is thrown.
template <class Body>
void for_each_output_tile(std::int64_t n1, std::int64_t n2, std::int64_t tile, bool symmetric, int n_threads,
                          std::function<bool()> poll, Body&& body) {
  const std::int64_t t1 = (n1 + tile - 1) / tile, t2 = (n2 + tile - 1) / tile;
  std::vector<std::pair<std::int64_t, std::int64_t>> tiles;
  for (std::int64_t ti = 0; ti < t1; ++ti)
    for (std::int64_t tj = symmetric ? ti : 0; tj < t2; ++tj) tiles.emplace_back(ti, tj);
  ThrottledPoll gate(std::move(poll));
  parallel_for(static_cast<std::int64_t>(tiles.size()), n_threads, [&](std::int64_t item, int thread) {
    if (gate.stop(thread)) return;
    const auto [ti, tj] = tiles[static_cast<std::size_t>(item)];
    const std::int64_t i0 = ti * tile, j0 = tj * tile;
    body(i0, std::min(tile, n1 - i0), j0, std::min(tile, n2 - j0), thread);
  });
  if (gate.stopped()) throw Cancelled();
}

}  // namespace nnpk
