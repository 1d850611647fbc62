// A minimal parallel-for over row ranges with std::thread, used by every kernel.
// Callers release the GIL before calling it; the body must not touch Python objects.
//
// Work is handed out dynamically: about four chunks per worker (never smaller than min_chunk) taken
// from a shared counter, so a worker delayed by another process on a shared machine does not hold
// the others up (with a static split the call lasts as long as the slowest half). fn(begin, end)
// may thus be called several times per thread, on any sub-ranges: every kernel computes a range
// independently of the others.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace nimbus {

inline int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

// Split [0, n) into chunks and run fn(begin, end) on up to `threads` threads.
template <typename Fn>
void parallel_for(int64_t n, int threads, Fn&& fn, int64_t min_chunk = 16) {
  if (threads <= 0) threads = default_threads();
  min_chunk = std::max<int64_t>(1, min_chunk);
  const int64_t max_workers = std::max<int64_t>(1, n / min_chunk);
  const int workers = static_cast<int>(std::min<int64_t>(threads, max_workers));
  if (workers <= 1) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  const int64_t chunk = std::max<int64_t>(min_chunk, (n + 4 * workers - 1) / (4 * workers));
  std::atomic<int64_t> next{0};
  auto work = [&fn, &next, chunk, n] {
    for (;;) {
      const int64_t b = next.fetch_add(chunk, std::memory_order_relaxed);
      if (b >= n) return;
      fn(b, std::min(n, b + chunk));
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int w = 1; w < workers; ++w) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

}  // namespace nimbus
