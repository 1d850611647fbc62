// A minimal parallel-for over row ranges with std::thread, used by every kernel.
// Callers release the GIL before calling it; the body must not touch Python objects.
#pragma once
#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace nimbus {

inline int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

// Split [0, n) into contiguous chunks and run fn(begin, end) on up to `threads` threads.
template <typename Fn>
void parallel_for(int64_t n, int threads, Fn&& fn, int64_t min_chunk = 16) {
  if (threads <= 0) threads = default_threads();
  int64_t max_workers = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
  int workers = static_cast<int>(std::min<int64_t>(threads, max_workers));
  if (workers <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  int64_t chunk = (n + workers - 1) / workers;
  for (int w = 1; w < workers; ++w) {
    int64_t b = w * chunk, e = std::min(n, b + chunk);
    if (b >= e) break;
    pool.emplace_back([&fn, b, e] { fn(b, e); });
  }
  fn(int64_t{0}, std::min(n, chunk));
  for (auto& t : pool) t.join();
}

}  // namespace nimbus
