// Band resampling kernels: integer-factor upsampling (nearest, bilinear, cubic) on pixel centres,
// matching GDAL's warper, and area-average downsampling. uint16 and float32, nodata-aware.
//
// Every output pixel is a pure function of its *global* position on the destination grid and of
// the source pixels it reads, so a window of the destination computed from a window of the source
// (with its halo) equals the same crop of the whole-band result bit for bit. The source array passed
// in may be any window of the full source band as long as it holds every tap (the Python layer,
// nimbus/resample.py, computes the window); tap indices are clamped to the *full* band's bounds.
//
// Rules (documented for users in nimbus/resample.py):
//  * destination pixel j has its centre at source coordinate u = (j + 0.5) / f - 0.5 (pixel-centre
//    convention); i0 = floor(u), t = u - i0. Weights are exact rationals with denominator 2f.
//  * bilinear: taps (i0, i0 + 1) with weights (1 - t, t) per axis; taps past the band edge are clamped
//    (same as GDAL's renormalisation over in-bounds taps).
//  * nodata: an output pixel whose nearest source pixel (j // f) is nodata is nodata; otherwise it is
//    the weighted mean of its *valid* taps (weights renormalised). A valid result that happens to equal
//    the nodata value is moved to the next representable value (GDAL does the same).
//  * cubic: Keys' cubic convolution (a = -0.5) on the 4x4 taps i0-1..i0+2; where those taps are not all
//    inside the band or not all valid, the bilinear result is used (GDAL's rule). Where a destination
//    centre falls exactly on a source centre (t = 0: odd factors), GDAL's floating-point position lands
//    on either side, so on the second row/column from a band edge GDAL may use cubic or bilinear there
//    depending on the grid's coordinates; we use the exact rule (taps i0-1 .. i0+2).
//  * uint16 results are rounded half up and clamped to [0, 65535]; bilinear on uint16 is exact integer
//    arithmetic (the exact weighted mean, rounded), cubic and float32 data use float32 arithmetic.
//  * downsampling by f: mean of the valid pixels of each f x f block (nodata where none is valid).
//
// Structure: rows of the destination are split over threads (parallel.hpp, GIL released). Area mean
// /2 on uint16 (10 m -> 20 m) has an AVX2 kernel too (16 outputs a step, the nodata test in the same
// pass; a row pair holding nodata is redone on the general path). Bilinear x2
// on uint16 (the 20 m -> 10 m case) has a fused AVX2 kernel (runtime dispatch) writing two output
// pixels per source pixel; the other cases resample each source row along x once into a per-thread
// row cache and combine 2 (bilinear) or 4 (cubic) cached rows per destination row. Plain loops are
// compiled twice (target_clones: AVX2 and baseline). Rows touching nodata are computed fast and then
// fixed up: runs of nodata are filled, and only pixels near a valid/nodata boundary take the
// per-pixel renormalised path.
#include <pybind11/numpy.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.hpp"
#include "parallel.hpp"

namespace py = pybind11;

namespace nimbus {
namespace {

// target_clones needs ifunc support (GCC on glibc); elsewhere the loops are compiled once.
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__)) && \
    defined(__linux__) && defined(__GLIBC__)
#define NIMBUS_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define NIMBUS_CLONES
#endif

enum Method { NEAREST = 0, BILINEAR = 1, CUBIC = 2 };

inline int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  int64_t q = a / b;
  if ((a % b) != 0 && (a < 0)) --q;
  return q;
}

inline int64_t clampi(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Keys cubic convolution weights (a = -0.5) for taps -1, 0, 1, 2 at fraction t.
inline void keys_weights(double t, double w[4]) {
  const double t2 = t * t, t3 = t2 * t;
  w[0] = -0.5 * t3 + t2 - 0.5 * t;
  w[1] = 1.5 * t3 - 2.5 * t2 + 1.0;
  w[2] = -1.5 * t3 + 2.0 * t2 + 0.5 * t;
  w[3] = 0.5 * t3 - 0.5 * t2;
}

// Taps of one axis for every destination index of the window, as *local* source indices.
struct Axis {
  int64_t n = 0;                    // destination length of the window
  std::vector<int32_t> b0, b1;      // bilinear taps (clamped)
  std::vector<uint32_t> wi0, wi1;   // bilinear integer weights, sum 2f
  std::vector<float> wf0, wf1;      // the same as floats (exact: k / 2f)
  std::vector<int32_t> nearest;     // nearest source pixel
  std::vector<int32_t> c[4];        // cubic taps (clamped)
  std::vector<float> cw[4];         // cubic weights
  std::vector<uint8_t> cubic_ok;    // the 4 cubic taps lie inside the band
  std::vector<int32_t> dep_lo, dep_hi;  // per local source index: destination range reading it
  std::vector<int32_t> near_lo, near_hi;  // per local source index: destination range whose nearest it is
  std::vector<int32_t> rep;         // rep[x + f] = i0(x) (local, clamped) for x in [-f, n + 2f)
  int64_t run_j0 = 0, run_count = 0;  // rep[run_j0 + f t + p] = rep[run_j0] + t for t < run_count, p < f
};

Axis make_axis(int f, int64_t n_src_full, int64_t src_off, int64_t n_src_local, int64_t dst_off, int64_t n_dst,
               Method method) {
  const bool cubic = method == CUBIC;
  Axis a;
  a.n = n_dst;
  a.b0.resize(n_dst), a.b1.resize(n_dst), a.wi0.resize(n_dst), a.wi1.resize(n_dst);
  a.wf0.resize(n_dst), a.wf1.resize(n_dst), a.nearest.resize(n_dst);
  if (cubic) {
    for (int k = 0; k < 4; ++k) a.c[k].resize(n_dst), a.cw[k].resize(n_dst);
    a.cubic_ok.resize(n_dst);
  }
  const int64_t den = 2 * int64_t(f);
  const int64_t last = n_src_full - 1;
  auto local = [&](int64_t g) -> int32_t {
    int64_t l = clampi(g, 0, last) - src_off;
    if (l < 0 || l >= n_src_local) throw std::out_of_range("resample: source window does not hold every tap");
    return static_cast<int32_t>(l);
  };
  a.near_lo.assign(n_src_local, std::numeric_limits<int32_t>::max());
  a.near_hi.assign(n_src_local, -1);
  a.dep_lo.assign(n_src_local, std::numeric_limits<int32_t>::max());
  a.dep_hi.assign(n_src_local, -1);
  auto dep = [&](int32_t s, int64_t j) {
    a.dep_lo[s] = std::min<int32_t>(a.dep_lo[s], static_cast<int32_t>(j));
    a.dep_hi[s] = std::max<int32_t>(a.dep_hi[s], static_cast<int32_t>(j));
  };
  if (method != NEAREST) {
    a.rep.resize(n_dst + 3 * f + 1);
    for (int64_t j = 0; j < int64_t(a.rep.size()); ++j) {
      const int64_t g = dst_off + j - f;
      const int64_t l = clampi(floor_div(2 * g + 1 - f, den), 0, last) - src_off;
      a.rep[j] = static_cast<int32_t>(clampi(l, 0, n_src_local - 1));
    }
    // the regular runs of f equal taps (the replication is then a block fill, see replicate_row):
    // source pixel g (unclamped) is the tap i0 of global columns f*g + f/2 .. f*g + f/2 + f - 1
    const int64_t nrep = static_cast<int64_t>(a.rep.size());
    const int64_t x_first = dst_off - f;  // global column of rep[0]
    int64_t g = std::max<int64_t>(0, floor_div(x_first - f / 2 + f - 1, f));  // first run starting at j >= 0
    int64_t j0 = f * g + f / 2 - x_first;
    int64_t count = 0;
    while (j0 >= 0 && g + count <= last && j0 + f * (count + 1) <= nrep) {
      const int64_t base = j0 + f * count;
      bool regular = true;
      for (int64_t p = 0; p < f && regular; ++p) regular = a.rep[base + p] == a.rep[j0] + count;
      if (!regular || a.rep[j0] + count != g + count - src_off) break;
      ++count;
    }
    a.run_j0 = j0;
    a.run_count = count;
  }
  for (int64_t j = 0; j < n_dst; ++j) {
    const int64_t g = dst_off + j;
    const int64_t num = 2 * g + 1 - f;
    const int64_t i0 = floor_div(num, den);
    const int64_t r = num - i0 * den;  // 0 .. den-1
    a.nearest[j] = local(floor_div(g, f));
    a.near_lo[a.nearest[j]] = std::min<int32_t>(a.near_lo[a.nearest[j]], static_cast<int32_t>(j));
    a.near_hi[a.nearest[j]] = std::max<int32_t>(a.near_hi[a.nearest[j]], static_cast<int32_t>(j));
    if (method == NEAREST) {
      a.b0[j] = a.b1[j] = a.nearest[j];
      continue;
    }
    a.b0[j] = local(i0);
    a.b1[j] = r == 0 ? a.b0[j] : local(i0 + 1);
    a.wi0[j] = static_cast<uint32_t>(den - r);
    a.wi1[j] = static_cast<uint32_t>(r);
    a.wf0[j] = static_cast<float>(double(den - r) / double(den));
    a.wf1[j] = static_cast<float>(double(r) / double(den));
    dep(a.b0[j], j), dep(a.b1[j], j), dep(a.nearest[j], j);
    if (cubic) {
      double w[4];
      keys_weights(double(r) / double(den), w);
      a.cubic_ok[j] = (i0 - 1 >= 0 && i0 + 2 <= last) ? 1 : 0;
      for (int k = 0; k < 4; ++k) {
        a.c[k][j] = a.cubic_ok[j] ? local(i0 - 1 + k) : a.b0[j];
        a.cw[k][j] = static_cast<float>(w[k]);
        if (a.cubic_ok[j]) dep(a.c[k][j], j);
      }
    }
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// Traits: validity test and the value used instead of nodata for a valid result.
template <typename T>
struct NoData {
  bool on = false;
  bool nan = false;
  T value = T(0);
  T alt = T(0);
  bool is(T v) const {
    if (!on) return false;
    if constexpr (std::is_floating_point_v<T>) {
      if (nan) return v != v;
    }
    return v == value;
  }
};

template <typename T>
NoData<T> make_nodata(bool on, double v) {
  NoData<T> nd;
  nd.on = on;
  if (!on) return nd;
  if constexpr (std::is_same_v<T, uint16_t>) {
    nd.value = static_cast<uint16_t>(v);
    nd.alt = nd.value == 65535 ? uint16_t(65534) : uint16_t(nd.value + 1);
  } else {
    nd.nan = std::isnan(v);
    nd.value = static_cast<float>(v);
    nd.alt = nd.nan ? 0.0f : std::nextafter(nd.value, std::numeric_limits<float>::infinity());
  }
  return nd;
}

// ---------------------------------------------------------------------------------------------
// Hot row loops (plain loops the compiler vectorises; cloned for AVX2 with runtime dispatch).

NIMBUS_CLONES
int any_eq_u16(const uint16_t* __restrict a, uint16_t nd, int64_t n) {
  int any = 0;
  for (int64_t x = 0; x < n; ++x) any |= (a[x] == nd);
  return any;
}

NIMBUS_CLONES
int any_eq_f32(const float* __restrict a, float nd, bool nan, int64_t n) {
  int any = 0;
  if (nan) {
    for (int64_t x = 0; x < n; ++x) any |= (a[x] != a[x]);
  } else {
    for (int64_t x = 0; x < n; ++x) any |= (a[x] == nd);
  }
  return any;
}

// bad[x] (|)= (a[x] is nodata)
NIMBUS_CLONES
void flag_u16(const uint16_t* __restrict a, uint16_t nd, uint8_t* __restrict bad, int64_t n, bool accumulate) {
  if (accumulate) {
    for (int64_t x = 0; x < n; ++x) bad[x] |= uint8_t(a[x] == nd);
  } else {
    for (int64_t x = 0; x < n; ++x) bad[x] = uint8_t(a[x] == nd);
  }
}

NIMBUS_CLONES
void flag_f32(const float* __restrict a, float nd, bool nan, uint8_t* __restrict bad, int64_t n, bool accumulate) {
  if (!accumulate) std::memset(bad, 0, size_t(n));
  if (nan) {
    for (int64_t x = 0; x < n; ++x) bad[x] |= uint8_t(a[x] != a[x]);
  } else {
    for (int64_t x = 0; x < n; ++x) bad[x] |= uint8_t(a[x] == nd);
  }
}

NIMBUS_CLONES
void replace_u16(uint16_t* __restrict out, uint16_t from, uint16_t to, int64_t n) {
  for (int64_t x = 0; x < n; ++x) out[x] = out[x] == from ? to : out[x];
}

NIMBUS_CLONES
void replace_f32(float* __restrict out, float from, bool nan, float to, int64_t n) {
  if (nan) {
    for (int64_t x = 0; x < n; ++x) out[x] = out[x] != out[x] ? to : out[x];
  } else {
    for (int64_t x = 0; x < n; ++x) out[x] = out[x] == from ? to : out[x];
  }
}

template <typename T>
inline bool row_any_nodata(const T* row, int64_t n, const NoData<T>& nd) {
  if constexpr (std::is_same_v<T, uint16_t>) return any_eq_u16(row, nd.value, n) != 0;
  else return any_eq_f32(row, nd.value, nd.nan, n) != 0;
}

template <typename T>
inline void flag_row(const T* row, const NoData<T>& nd, uint8_t* bad, int64_t n, bool accumulate) {
  if constexpr (std::is_same_v<T, uint16_t>) flag_u16(row, nd.value, bad, n, accumulate);
  else flag_f32(row, nd.value, nd.nan, bad, n, accumulate);
}

// out[2k] = (v[k-1] + 3 v[k] + 8) >> 4, out[2k+1] = (3 v[k] + v[k+1] + 8) >> 4 for k in [0, pairs)
// ---------------------------------------------------------------------------------------------
// Upsampling of one destination row.

template <typename T>
struct UpJob {
  const T* src;        // (C, sh, sw) contiguous
  int64_t sh, sw;
  T* dst;              // (C, dh, dw)
  int64_t dh, dw;
  int f;
  Method method;
  NoData<T> nd;
  const Axis* X;
  const Axis* Y;
  int64_t dst_x_off;   // global offset of the window's first column (for the x2 fast path)
  int64_t src_x_off, n_src_x_full;
  bool stream;         // non-temporal stores for huge outputs
};

// Nodata-aware bilinear value of destination pixel (row y, col x) of channel plane `s`; returns
// false when the result is nodata.
template <typename T>
inline T bilinear_slow(const UpJob<T>& J, const T* s, int64_t y, int64_t x) {
  const Axis& X = *J.X;
  const Axis& Y = *J.Y;
  const T nv = s[int64_t(Y.nearest[y]) * J.sw + X.nearest[x]];
  if (J.nd.is(nv)) return J.nd.value;
  const int32_t ys[2] = {Y.b0[y], Y.b1[y]};
  const int32_t xs[2] = {X.b0[x], X.b1[x]};
  if constexpr (std::is_same_v<T, uint16_t>) {
    const int64_t wy[2] = {Y.wi0[y], Y.wi1[y]};
    const int64_t wx[2] = {X.wi0[x], X.wi1[x]};
    int64_t num = 0, den = 0;
    for (int i = 0; i < 2; ++i) {
      if (wy[i] == 0) continue;
      const T* row = s + int64_t(ys[i]) * J.sw;
      for (int k = 0; k < 2; ++k) {
        if (wx[k] == 0) continue;
        const T v = row[xs[k]];
        if (J.nd.is(v)) continue;
        num += wy[i] * wx[k] * int64_t(v);
        den += wy[i] * wx[k];
      }
    }
    uint16_t out = static_cast<uint16_t>((2 * num + den) / (2 * den));
    if (J.nd.on && out == J.nd.value) out = J.nd.alt;
    return out;
  } else {
    const float wy[2] = {Y.wf0[y], Y.wf1[y]};
    const float wx[2] = {X.wf0[x], X.wf1[x]};
    float num = 0.0f, den = 0.0f;
    for (int i = 0; i < 2; ++i) {
      if (wy[i] == 0.0f) continue;
      const T* row = s + int64_t(ys[i]) * J.sw;
      for (int k = 0; k < 2; ++k) {
        if (wx[k] == 0.0f) continue;
        const T v = row[xs[k]];
        if (J.nd.is(v)) continue;
        num += wy[i] * wx[k] * v;
        den += wy[i] * wx[k];
      }
    }
    float out = num / den;
    if (J.nd.on && J.nd.is(out)) out = J.nd.alt;
    return out;
  }
}

// Walk the source columns flagged in `bad` (bytes) and call fix(x) once for every destination column
// that reads one of them.
template <typename Fn>
inline void for_each_dependent(const Axis& X, const uint8_t* bad, int64_t sw, Fn&& fix) {
  int64_t next = 0;
  int64_t s = 0;
  while (s < sw) {
    if (s + 8 <= sw) {
      uint64_t word;
      std::memcpy(&word, bad + s, 8);
      if (word == 0) {
        s += 8;
        continue;
      }
    }
    if (bad[s] && X.dep_hi[s] >= 0) {
      for (int64_t x = std::max<int64_t>(next, X.dep_lo[s]); x <= X.dep_hi[s]; ++x) fix(x);
      next = std::max<int64_t>(next, int64_t(X.dep_hi[s]) + 1);
    }
    ++s;
  }
}

// Interior blocks of the destination window along x: source index g (global) produces destination
// columns f*g .. f*g+f-1, whose taps g-1, g, g+1 are all inside the band when 1 <= g <= n-2.
struct Blocks {
  int64_t x_begin = 0;  // local destination column of the first interior block
  int64_t count = 0;    // number of blocks
  int64_t k0 = 0;       // local source index of the first block's g
};

inline Blocks interior_blocks(int f, int64_t dst_off, int64_t dw, int64_t src_off, int64_t n_src_full) {
  Blocks B;
  const int64_t ga = std::max<int64_t>(1, (dst_off + f - 1) / f);
  const int64_t gb = std::min<int64_t>(n_src_full - 1, (dst_off + dw) / f);  // exclusive
  if (gb > ga) {
    B.x_begin = ga * f - dst_off;
    B.count = gb - ga;
    B.k0 = ga - src_off;
  }
  return B;
}

template <int F, typename T>
void nearest_blocks(const T* __restrict row, T* __restrict out, int64_t blocks) {
  for (int64_t k = 0; k < blocks; ++k) {
    const T v = row[k];
    for (int p = 0; p < F; ++p) out[F * k + p] = v;
  }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define NIMBUS_HAVE_AVX2_KERNEL 1
bool g_down_stream = false;  // non-temporal stores in the /2 area mean (switchable for benchmarks)
// Bilinear x2 on uint16 for one destination row, fused vertical + horizontal, exact integer math:
// V[x] = lo[x] + 3 hi[x]; out[2k] = (V[k-1] + 3V[k] + 8) >> 4; out[2k+1] = (3V[k] + V[k+1] + 8) >> 4.
// lo/hi point at the local source index of the first block; reads lo[-1] .. lo[pairs].
#define NIMBUS_V(l, h)                                                                                  \
  _mm256_add_epi32(                                                                                    \
      _mm256_add_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(l))),    \
                       _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)))),   \
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h))), 1))
__attribute__((target("avx2"))) void bilinear_x2_u16_avx2(const uint16_t* __restrict lo, const uint16_t* __restrict hi,
                                                          uint16_t* __restrict out, int64_t pairs, bool stream) {
  const __m256i eight = _mm256_set1_epi32(8);
  const __m256i shuf = _mm256_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15,  //
                                        0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15);
  int64_t k = 0;
  auto scalar = [&](int64_t kk) {
    const uint32_t vm = lo[kk - 1] + 3u * hi[kk - 1], v0 = lo[kk] + 3u * hi[kk], vp = lo[kk + 1] + 3u * hi[kk + 1];
    const uint32_t c = 3u * v0 + 8u;
    out[2 * kk] = static_cast<uint16_t>((vm + c) >> 4);
    out[2 * kk + 1] = static_cast<uint16_t>((c + vp) >> 4);
  };
  // with streaming stores, peel pairs until the output is 32-byte aligned
  stream = stream && (reinterpret_cast<uintptr_t>(out) & 3) == 0 && pairs >= 64;
  if (stream)
    while (k < pairs && (reinterpret_cast<uintptr_t>(out + 2 * k) & 31) != 0) scalar(k++);
  for (; k + 8 <= pairs; k += 8) {
    const __m256i vm = NIMBUS_V(lo + k - 1, hi + k - 1);
    const __m256i v0 = NIMBUS_V(lo + k, hi + k);
    const __m256i vp = NIMBUS_V(lo + k + 1, hi + k + 1);
    const __m256i c = _mm256_add_epi32(_mm256_add_epi32(v0, _mm256_slli_epi32(v0, 1)), eight);
    const __m256i e = _mm256_srli_epi32(_mm256_add_epi32(vm, c), 4);
    const __m256i o = _mm256_srli_epi32(_mm256_add_epi32(vp, c), 4);
    const __m256i pk = _mm256_shuffle_epi8(_mm256_packus_epi32(e, o), shuf);  // e0 o0 e1 o1 ... per lane
    if (stream)
      _mm256_stream_si256(reinterpret_cast<__m256i*>(out + 2 * k), pk);
    else
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * k), pk);
  }
  for (; k < pairs; ++k) scalar(k);
  if (stream) _mm_sfence();
}
#undef NIMBUS_V

// Area mean /2 on uint16 for one destination row (no nodata in the result): out[x] = (a[2x] + a[2x+1]
// + b[2x] + b[2x+1] + 2) >> 2, 16 outputs per step (the even/odd pixels of each 32-bit lane split by
// mask and shift, summed in 32 bits, packed back). With `check`, also reports whether any of the
// 2 * dw input pixels equals `ndv` in the same pass (the caller then redoes the row on the nodata path).
__attribute__((target("avx2"))) bool down2_u16_avx2(const uint16_t* __restrict a, const uint16_t* __restrict b,
                                                    uint16_t* __restrict out, int64_t dw, bool check, uint16_t ndv) {
  const __m256i low = _mm256_set1_epi32(0xFFFF);
  const __m256i two = _mm256_set1_epi32(2);
  const __m256i nd = _mm256_set1_epi16(static_cast<short>(ndv));
  __m256i hit = _mm256_setzero_si256();
  int64_t x = 0;
  bool found = false;
  auto scalar = [&](int64_t i) {
    const uint16_t p0 = a[2 * i], p1 = a[2 * i + 1], q0 = b[2 * i], q1 = b[2 * i + 1];
    if (check) found = found || p0 == ndv || p1 == ndv || q0 == ndv || q1 == ndv;
    out[i] = static_cast<uint16_t>((uint32_t(p0) + p1 + q0 + q1 + 2u) >> 2);
  };
  // non-temporal stores once the output is 32-byte aligned: the output is written once and not
  // read back here, so it need not be read into the cache first (a quarter less memory traffic)
  const bool stream = g_down_stream && dw >= 256 && (reinterpret_cast<uintptr_t>(out) & 1) == 0;
  if (stream)
    while (x < dw && (reinterpret_cast<uintptr_t>(out + x) & 31) != 0) scalar(x++);
  for (; x + 16 <= dw; x += 16) {
    const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 2 * x));
    const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 2 * x + 16));
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2 * x));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2 * x + 16));
    if (check)
      hit = _mm256_or_si256(hit, _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi16(a0, nd), _mm256_cmpeq_epi16(a1, nd)),
                                                 _mm256_or_si256(_mm256_cmpeq_epi16(b0, nd), _mm256_cmpeq_epi16(b1, nd))));
    __m256i s0 = _mm256_add_epi32(_mm256_add_epi32(_mm256_and_si256(a0, low), _mm256_srli_epi32(a0, 16)),
                                  _mm256_add_epi32(_mm256_and_si256(b0, low), _mm256_srli_epi32(b0, 16)));
    __m256i s1 = _mm256_add_epi32(_mm256_add_epi32(_mm256_and_si256(a1, low), _mm256_srli_epi32(a1, 16)),
                                  _mm256_add_epi32(_mm256_and_si256(b1, low), _mm256_srli_epi32(b1, 16)));
    s0 = _mm256_srli_epi32(_mm256_add_epi32(s0, two), 2);
    s1 = _mm256_srli_epi32(_mm256_add_epi32(s1, two), 2);
    // packus interleaves 128-bit lanes (s0 lo, s1 lo, s0 hi, s1 hi): put the quarters back in order
    const __m256i pk = _mm256_permute4x64_epi64(_mm256_packus_epi32(s0, s1), 0xD8);
    if (stream)
      _mm256_stream_si256(reinterpret_cast<__m256i*>(out + x), pk);
    else
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + x), pk);
  }
  found = found || (check && !_mm256_testz_si256(hit, hit));
  for (; x < dw; ++x) scalar(x);
  if (stream) _mm_sfence();
  return found;
}

bool g_stream_allowed = false;  // non-temporal stores for huge outputs (measured: no gain here, off)
bool g_avx2_allowed = true;  // tests switch the AVX2 kernel off to check the portable path
inline bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has && g_avx2_allowed;
}
#else
bool g_stream_allowed = false;
bool g_avx2_allowed = false;
inline bool cpu_has_avx2() { return false; }
#endif

// ---------------------------------------------------------------------------------------------
// Horizontal-first passes: a source row is resampled along x once into a row cache (H) and shared
// by the f destination rows that read it; destination rows then combine 2 (bilinear) or 4 (cubic)
// cached rows. Along x, tap i0(x) + k of column x is R[x + k f] where R is the source row
// replicated onto the destination columns (R[x] = src[i0(x)], clamped at the band edges).

template <typename S, typename D>
void replicate(const S* __restrict s, const int32_t* __restrict rep, D* __restrict R, int64_t n) {
  for (int64_t j = 0; j < n; ++j) R[j] = static_cast<D>(s[rep[j]]);
}

template <int F, typename S, typename D>
void replicate_blocks(const S* __restrict s, D* __restrict R, int64_t blocks) {
  for (int64_t k = 0; k < blocks; ++k) {
    const D v = static_cast<D>(s[k]);
    for (int p = 0; p < F; ++p) R[F * k + p] = v;
  }
}

// R[j] = row[rep[j]] for j < n: block fills over the regular runs, gathers at the edges.
template <typename S, typename D>
void replicate_row(const S* row, const Axis& X, int f, D* R, int64_t n) {
  const int64_t j0 = X.run_j0, cnt = X.run_count, j1 = j0 + f * cnt;
  if (cnt == 0) return replicate(row, X.rep.data(), R, n);
  replicate(row, X.rep.data(), R, j0);
  const S* s = row + X.rep[j0];
  switch (f) {
    case 2: replicate_blocks<2>(s, R + j0, cnt); break;
    case 3: replicate_blocks<3>(s, R + j0, cnt); break;
    case 6: replicate_blocks<6>(s, R + j0, cnt); break;
    default: replicate(row, X.rep.data() + j0, R + j0, j1 - j0);
  }
  replicate(row, X.rep.data() + j1, R + j1, n - j1);
}

NIMBUS_CLONES
void hrow_bil_u16(const uint16_t* __restrict r0, const uint16_t* __restrict r1, const uint32_t* __restrict w0,
                  const uint32_t* __restrict w1, uint32_t* __restrict h, int64_t n) {
  for (int64_t x = 0; x < n; ++x) h[x] = w0[x] * uint32_t(r0[x]) + w1[x] * uint32_t(r1[x]);
}

NIMBUS_CLONES
void hrow_bil_f32(const float* __restrict r0, const float* __restrict r1, const float* __restrict w0,
                  const float* __restrict w1, float* __restrict h, int64_t n) {
  // a zero weight never multiplies a neighbour (which may be nan/inf): the tap is the pixel itself
  for (int64_t x = 0; x < n; ++x) h[x] = w1[x] == 0.0f ? r0[x] : w0[x] * r0[x] + w1[x] * r1[x];
}

NIMBUS_CLONES
void hrow_cubic_f32(const float* __restrict rm, const float* __restrict r0, const float* __restrict r1,
                    const float* __restrict r2, const float* __restrict w0, const float* __restrict w1,
                    const float* __restrict w2, const float* __restrict w3, float* __restrict h, int64_t n) {
  for (int64_t x = 0; x < n; ++x) h[x] = ((w0[x] * rm[x] + w1[x] * r0[x]) + w2[x] * r1[x]) + w3[x] * r2[x];
}

template <int F>
NIMBUS_CLONES void vrow_bil_u16(const uint32_t* __restrict a, const uint32_t* __restrict b, uint32_t wa, uint32_t wb,
                                uint16_t* __restrict out, int64_t n) {
  constexpr uint32_t D = 4u * F * F;
  for (int64_t x = 0; x < n; ++x) out[x] = static_cast<uint16_t>((wa * a[x] + wb * b[x] + D / 2) / D);
}

void vrow_bil_u16_any(const uint32_t* a, const uint32_t* b, uint32_t wa, uint32_t wb, uint16_t* out, int64_t n,
                      int f) {
  const uint64_t D = 4ull * uint64_t(f) * uint64_t(f);
  for (int64_t x = 0; x < n; ++x) out[x] = static_cast<uint16_t>((uint64_t(wa) * a[x] + uint64_t(wb) * b[x] + D / 2) / D);
}

NIMBUS_CLONES
void vrow_bil_f32(const float* __restrict a, const float* __restrict b, float wa, float wb, float* __restrict out,
                  int64_t n) {
  for (int64_t x = 0; x < n; ++x) out[x] = wa * a[x] + wb * b[x];
}

NIMBUS_CLONES
void vrow_cubic(const float* __restrict a, const float* __restrict b, const float* __restrict c,
                const float* __restrict d, float w0, float w1, float w2, float w3, float* __restrict out, int64_t n) {
  for (int64_t x = 0; x < n; ++x) out[x] = ((w0 * a[x] + w1 * b[x]) + w2 * c[x]) + w3 * d[x];
}

NIMBUS_CLONES
void round_row_u16(const float* __restrict v, uint16_t* __restrict out, int64_t n) {
  // |v| stays far below 2^31 (cubic overshoot of uint16 data); NaN converts to INT_MIN -> 0
  for (int64_t x = 0; x < n; ++x) {
    int32_t i = static_cast<int32_t>(v[x] + 0.5f);
    i = i < 0 ? 0 : i;
    i = i > 65535 ? 65535 : i;
    out[x] = static_cast<uint16_t>(i);
  }
}

// A per-thread cache of horizontally resampled source rows, keyed by the source row's address.
template <typename A>
struct HCache {
  static constexpr int K = 8;
  int64_t len = 0;
  std::vector<A> data;
  const void* key[K] = {};
  int64_t stamp[K] = {};
  int64_t now = 0;
  void init(int64_t n) {
    len = n;
    data.assign(size_t(K) * size_t(n), A(0));
  }
  void next_row() { ++now; }
  template <typename Fill>
  const A* get(const void* row, Fill&& fill) {
    int slot = -1;
    for (int i = 0; i < K; ++i)
      if (key[i] == row) slot = i;
    if (slot < 0) {
      int64_t best = std::numeric_limits<int64_t>::max();
      for (int i = 0; i < K; ++i)
        if (stamp[i] != now && stamp[i] < best) best = stamp[i], slot = i;
      key[slot] = row;
      fill(data.data() + size_t(slot) * size_t(len));
    }
    stamp[slot] = now;
    return data.data() + size_t(slot) * size_t(len);
  }
};

// Per-thread cache of "this source row has nodata" (consecutive destination rows share source rows).
template <typename T>
struct RowNdCache {
  const T* ptr[4] = {nullptr, nullptr, nullptr, nullptr};
  bool val[4] = {false, false, false, false};
  int next = 0;
  bool get(const T* row, int64_t n, const NoData<T>& nd) {
    for (int i = 0; i < 4; ++i)
      if (ptr[i] == row) return val[i];
    const bool any = row_any_nodata(row, n, nd);
    ptr[next] = row, val[next] = any;
    next = (next + 1) & 3;
    return any;
  }
};

template <typename T>
struct RowScratch {
  using BilAcc = std::conditional_t<std::is_same_v<T, uint16_t>, uint32_t, float>;
  HCache<BilAcc> bil;
  HCache<float> cub;
  std::vector<T> rep_t;       // replicated source row (bilinear)
  std::vector<float> rep_f;   // replicated source row as float (cubic)
  std::vector<uint8_t> bad;
  std::vector<uint8_t> bad2;  // fix_row scratch
  std::vector<float> of;
  RowNdCache<T> nd_cache;
};

// Horizontal bilinear pass of one source row into h (length dw).
template <typename T>
void hpass_bilinear(const UpJob<T>& J, const T* row, typename RowScratch<T>::BilAcc* h, RowScratch<T>& S) {
  const Axis& X = *J.X;
  const int64_t F = J.f, n = J.dw;
  if constexpr (std::is_same_v<T, uint16_t>) {
    uint16_t* R = S.rep_t.data();
    replicate_row(row, X, J.f, R, n + 3 * F);
    hrow_bil_u16(R + F, R + 2 * F, X.wi0.data(), X.wi1.data(), h, n);
  } else {
    float* R = S.rep_t.data();
    replicate_row(row, X, J.f, R, n + 3 * F);
    hrow_bil_f32(R + F, R + 2 * F, X.wf0.data(), X.wf1.data(), h, n);
  }
}

template <typename T>
void hpass_cubic(const UpJob<T>& J, const T* row, float* h, RowScratch<T>& S) {
  const Axis& X = *J.X;
  const int64_t F = J.f, n = J.dw;
  float* R = S.rep_f.data();
  replicate_row(row, X, J.f, R, n + 3 * F);
  hrow_cubic_f32(R, R + F, R + 2 * F, R + 3 * F, X.cw[0].data(), X.cw[1].data(), X.cw[2].data(), X.cw[3].data(), h,
                 n);
}

// The nodata fix-up of one destination row: every destination pixel reading a flagged source column
// is recomputed: nodata when its nearest source pixel is, else the renormalised bilinear value.
// Inside large nodata areas this is a fill: runs of nodata in the nearest row set their destination
// columns to nodata at once, and only flagged columns near a valid nearest pixel are visited.
NIMBUS_CLONES
void near_mask(const uint8_t* __restrict nbp, const uint8_t* __restrict bad, uint8_t* __restrict bad2, int64_t n,
               int radius) {
  // nbp is padded by 2 on each side with 1s; bad2[s] = bad[s] and some nearest flag in s-r..s+r is 0
  if (radius == 1) {
    for (int64_t s = 0; s < n; ++s) bad2[s] = bad[s] & uint8_t(~(nbp[s + 1] & nbp[s + 2] & nbp[s + 3]) & 1);
  } else {
    for (int64_t s = 0; s < n; ++s)
      bad2[s] = bad[s] & uint8_t(~(nbp[s] & nbp[s + 1] & nbp[s + 2] & nbp[s + 3] & nbp[s + 4]) & 1);
  }
}

template <typename T>
void fix_row(const UpJob<T>& J, const T* s, int64_t y, T* out, const uint8_t* bad, uint8_t* scratch) {
  const Axis& X = *J.X;
  const int64_t sw = J.sw;
  const T* near_row = s + int64_t(J.Y->nearest[y]) * sw;
  uint8_t* nbp = scratch;            // sw + 4: nearest-row nodata flags, padded
  uint8_t* bad2 = scratch + sw + 8;  // sw
  nbp[0] = nbp[1] = nbp[sw + 2] = nbp[sw + 3] = 1;
  flag_row(near_row, J.nd, nbp + 2, sw, false);
  // 1. destination columns whose nearest source pixel is nodata: fill runs
  int64_t k = 0;
  while (k < sw) {
    if (k + 8 <= sw) {
      uint64_t word;
      std::memcpy(&word, nbp + 2 + k, 8);
      if (word == 0) {
        k += 8;
        continue;
      }
    }
    if (!nbp[2 + k]) {
      ++k;
      continue;
    }
    int64_t e = k;
    while (e < sw && nbp[2 + e]) ++e;
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = -1;
    for (int64_t q = k; q < e; ++q)
      if (X.near_hi[q] >= 0) lo = std::min<int64_t>(lo, X.near_lo[q]), hi = std::max<int64_t>(hi, X.near_hi[q]);
    if (hi >= 0) std::fill(out + lo, out + hi + 1, J.nd.value);
    k = e;
  }
  // 2. other destination columns reading a nodata tap: those near a valid nearest pixel
  near_mask(nbp, bad, bad2, sw, J.method == CUBIC ? 2 : 1);
  const int32_t* nx = X.nearest.data();
  for_each_dependent(X, bad2, sw, [&](int64_t x) {
    if (!nbp[2 + nx[x]]) out[x] = bilinear_slow(J, s, y, x);
  });
}

template <typename T>
void nudge_row(const UpJob<T>& J, T* out) {  // a valid result never equals nodata
  if (!J.nd.on) return;
  if constexpr (std::is_same_v<T, uint16_t>) replace_u16(out, J.nd.value, J.nd.alt, J.dw);
  else replace_f32(out, J.nd.value, J.nd.nan, J.nd.alt, J.dw);
}

template <typename T>
void up_row_nearest(const UpJob<T>& J, const T* s, int64_t y, T* out) {
  const Axis& X = *J.X;
  const T* row = s + int64_t(J.Y->nearest[y]) * J.sw;
  const int32_t* nx = X.nearest.data();
  const Blocks B = interior_blocks(J.f, J.dst_x_off, J.dw, J.src_x_off, J.n_src_x_full);
  int64_t x = 0;
  if (B.count > 0) {
    for (; x < B.x_begin; ++x) out[x] = row[nx[x]];
    T* o = out + B.x_begin;
    const T* r = row + B.k0;
    switch (J.f) {
      case 2: nearest_blocks<2>(r, o, B.count); break;
      case 3: nearest_blocks<3>(r, o, B.count); break;
      case 6: nearest_blocks<6>(r, o, B.count); break;
      default:
        for (int64_t xx = 0; xx < B.count * J.f; ++xx) o[xx] = row[nx[B.x_begin + xx]];
    }
    x = B.x_begin + B.count * J.f;
  }
  for (; x < J.dw; ++x) out[x] = row[nx[x]];
}

template <typename T>
void up_row_bilinear(const UpJob<T>& J, const T* s, int64_t y, T* out, RowScratch<T>& S) {
  const Axis& X = *J.X;
  const Axis& Y = *J.Y;
  const int64_t sw = J.sw;
  const T* a = s + int64_t(Y.b0[y]) * sw;
  const T* b = s + int64_t(Y.b1[y]) * sw;
  const bool use_b = Y.wi1[y] != 0;
  bool row_has_nd = false;
  if (J.nd.on) row_has_nd = S.nd_cache.get(a, sw, J.nd) || (use_b && S.nd_cache.get(b, sw, J.nd));
  bool done = false;
#ifdef NIMBUS_HAVE_AVX2_KERNEL
  if constexpr (std::is_same_v<T, uint16_t>) {
    if (J.f == 2 && cpu_has_avx2()) {
      // x2: fused vertical + horizontal kernel on the interior, exact integer formula at the edges
      const uint32_t wa = uint32_t(Y.wi0[y]), wb = uint32_t(Y.wi1[y]);
      auto generic = [&](int64_t x) {
        const uint32_t v0 = wa * a[X.b0[x]] + wb * b[X.b0[x]];
        const uint32_t v1 = wa * a[X.b1[x]] + wb * b[X.b1[x]];
        return static_cast<uint16_t>((uint32_t(X.wi0[x]) * v0 + uint32_t(X.wi1[x]) * v1 + 8u) >> 4);
      };
      const Blocks B = interior_blocks(2, J.dst_x_off, J.dw, J.src_x_off, J.n_src_x_full);
      int64_t x = 0;
      if (B.count > 0) {
        for (; x < B.x_begin; ++x) out[x] = generic(x);
        const bool b_heavy = wb == 3;
        bilinear_x2_u16_avx2((b_heavy ? a : b) + B.k0, (b_heavy ? b : a) + B.k0, out + B.x_begin, B.count, J.stream);
        x = B.x_begin + 2 * B.count;
      }
      for (; x < J.dw; ++x) out[x] = generic(x);
      if (J.nd.on && J.nd.value != 0) nudge_row(J, out);  // with nodata 0 a mean of valid pixels is >= 1
      done = true;
    }
  }
#endif
  if (!done) {
    S.bil.next_row();
    const auto* ha = S.bil.get(a, [&](auto* h) { hpass_bilinear(J, a, h, S); });
    const auto* hb = use_b ? S.bil.get(b, [&](auto* h) { hpass_bilinear(J, b, h, S); }) : ha;
    if constexpr (std::is_same_v<T, uint16_t>) {
      const uint32_t wa = uint32_t(Y.wi0[y]), wb = uint32_t(Y.wi1[y]);
      switch (J.f) {
        case 2: vrow_bil_u16<2>(ha, hb, wa, wb, out, J.dw); break;
        case 3: vrow_bil_u16<3>(ha, hb, wa, wb, out, J.dw); break;
        case 6: vrow_bil_u16<6>(ha, hb, wa, wb, out, J.dw); break;
        default: vrow_bil_u16_any(ha, hb, wa, wb, out, J.dw, J.f);
      }
      if (J.nd.on && J.nd.value != 0) nudge_row(J, out);
    } else {
      if (use_b)
        vrow_bil_f32(ha, hb, Y.wf0[y], Y.wf1[y], out, J.dw);
      else
        std::memcpy(out, ha, sizeof(float) * size_t(J.dw));
      nudge_row(J, out);
    }
  }
  if (row_has_nd) {
    uint8_t* bad = S.bad.data();
    flag_row(a, J.nd, bad, sw, false);
    if (use_b) flag_row(b, J.nd, bad, sw, true);
    fix_row(J, s, y, out, bad, S.bad2.data());
  }
}

template <typename T>
void up_row_cubic(const UpJob<T>& J, const T* s, int64_t y, T* out, RowScratch<T>& S) {
  const Axis& X = *J.X;
  const Axis& Y = *J.Y;
  const int64_t sw = J.sw;
  if (!Y.cubic_ok[y]) {  // rows near the top/bottom edge: GDAL falls back to bilinear
    up_row_bilinear(J, s, y, out, S);
    return;
  }
  const T* r[4];
  for (int k = 0; k < 4; ++k) r[k] = s + int64_t(Y.c[k][y]) * sw;
  S.cub.next_row();
  const float* h[4];
  for (int k = 0; k < 4; ++k) h[k] = S.cub.get(r[k], [&](float* hh) { hpass_cubic(J, r[k], hh, S); });
  float* of = S.of.data();
  vrow_cubic(h[0], h[1], h[2], h[3], Y.cw[0][y], Y.cw[1][y], Y.cw[2][y], Y.cw[3][y], of, J.dw);
  if constexpr (std::is_same_v<T, uint16_t>) {
    round_row_u16(of, out, J.dw);
  } else {
    std::memcpy(out, of, sizeof(float) * size_t(J.dw));
  }
  nudge_row(J, out);
  // left/right border columns: bilinear (GDAL's rule)
  const T* near_row = s + int64_t(Y.nearest[y]) * sw;
  auto fallback = [&](int64_t x) {
    out[x] = J.nd.is(near_row[X.nearest[x]]) ? J.nd.value : bilinear_slow(J, s, y, x);
  };
  for (int64_t x = 0; x < J.dw && !X.cubic_ok[x]; ++x) fallback(x);
  for (int64_t x = J.dw - 1; x >= 0 && !X.cubic_ok[x]; --x) fallback(x);
  if (J.nd.on) {
    bool any = false;
    for (int k = 0; k < 4; ++k) any = S.nd_cache.get(r[k], sw, J.nd) || any;
    if (any) {
      uint8_t* bad = S.bad.data();
      for (int k = 0; k < 4; ++k) flag_row(r[k], J.nd, bad, sw, k > 0);
      fix_row(J, s, y, out, bad, S.bad2.data());
    }
  }
}

template <typename T>
void upsample_impl(const UpJob<T>& J, int64_t channels, int threads) {
  const int64_t rows = channels * J.dh;
  parallel_for(
      rows, threads,
      [&](int64_t r0, int64_t r1) {
        RowScratch<T> S;
        const int64_t ext = J.dw + 3 * int64_t(J.f) + 1;
        if (J.method == BILINEAR || J.method == CUBIC) {
          S.bil.init(J.dw);
          S.rep_t.resize(ext);
        }
        if (J.method == CUBIC) {
          S.cub.init(J.dw);
          S.rep_f.resize(ext);
        }
        S.bad.resize(J.sw + 8);
        S.bad2.resize(2 * J.sw + 24);
        S.of.resize(J.dw + 1);
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t c = r / J.dh, y = r % J.dh;
          const T* s = J.src + c * J.sh * J.sw;
          T* out = J.dst + r * J.dw;
          switch (J.method) {
            case NEAREST: up_row_nearest(J, s, y, out); break;
            case BILINEAR: up_row_bilinear(J, s, y, out, S); break;
            case CUBIC: up_row_cubic(J, s, y, out, S); break;
          }
        }
      },
      8);
}

Method parse_method(const std::string& m) {
  if (m == "nearest") return NEAREST;
  if (m == "bilinear") return BILINEAR;
  if (m == "cubic") return CUBIC;
  throw std::invalid_argument("resample: unknown method '" + m + "' (nearest, bilinear, cubic)");
}

template <typename T>
py::array upsample_typed(py::array src_any, int f, Method method, bool has_nd, double nd, int64_t src_y_off,
                         int64_t src_x_off, int64_t full_h, int64_t full_w, int64_t dst_y_off, int64_t dst_x_off,
                         int64_t dh, int64_t dw, int threads, const py::object& out) {
  auto src = py::array_t<T, py::array::c_style>::ensure(src_any);
  if (!src) throw std::invalid_argument("resample: source array has the wrong dtype");
  if (src.ndim() != 3) throw std::invalid_argument("resample: kernel expects a (C, H, W) array");
  const int64_t C = src.shape(0), sh = src.shape(1), sw = src.shape(2);
  py::array_t<T> dst;
  if (out.is_none()) {
    dst = py::array_t<T>({C, dh, dw});
  } else {
    // caller's buffer: exactly (C, dh, dw), this dtype, C-contiguous and writable (no silent copy)
    if (!py::isinstance<py::array_t<T>>(out)) throw std::invalid_argument("resample: out has the wrong dtype");
    dst = py::reinterpret_borrow<py::array_t<T>>(out);
    if (dst.ndim() != 3 || dst.shape(0) != C || dst.shape(1) != dh || dst.shape(2) != dw)
      throw std::invalid_argument("resample: out has the wrong shape");
    if (!(dst.flags() & py::array::c_style) || !dst.writeable())
      throw std::invalid_argument("resample: out must be C-contiguous and writable");
  }
  if (C == 0 || dh == 0 || dw == 0) return std::move(dst);
  const Axis X = make_axis(f, full_w, src_x_off, sw, dst_x_off, dw, method);
  const Axis Y = make_axis(f, full_h, src_y_off, sh, dst_y_off, dh, method);
  // stream (non-temporal stores) only when the output is far larger than the caches
  const bool stream = g_stream_allowed && C * dh * dw * int64_t(sizeof(T)) >= (int64_t(64) << 20);
  UpJob<T> J{src.data(), sh, sw, dst.mutable_data(), dh, dw, f, method, make_nodata<T>(has_nd, nd), &X, &Y,
             dst_x_off, src_x_off, full_w, stream};
  {
    py::gil_scoped_release release;
    upsample_impl(J, C, threads);
  }
  return std::move(dst);
}

py::array upsample(py::array src, int f, const std::string& method, bool has_nd, double nd, int64_t src_y_off,
                   int64_t src_x_off, int64_t full_h, int64_t full_w, int64_t dst_y_off, int64_t dst_x_off, int64_t dh,
                   int64_t dw, int threads, const py::object& out) {
  if (f < 1) throw std::invalid_argument("resample: factor must be >= 1");
  const Method m = parse_method(method);
  if (src.dtype().is(py::dtype::of<uint16_t>()))
    return upsample_typed<uint16_t>(src, f, m, has_nd, nd, src_y_off, src_x_off, full_h, full_w, dst_y_off,
                                    dst_x_off, dh, dw, threads, out);
  if (src.dtype().is(py::dtype::of<float>()))
    return upsample_typed<float>(src, f, m, has_nd, nd, src_y_off, src_x_off, full_h, full_w, dst_y_off, dst_x_off,
                                 dh, dw, threads, out);
  throw std::invalid_argument("resample: only uint16 and float32 arrays are supported");
}

// ---------------------------------------------------------------------------------------------
// Area-average downsampling: per destination row, sums (and counts of valid pixels) over the f x f
// blocks, then the mean; F is a template constant for the Sentinel-2 factors (0: runtime f).

template <int F, typename T>
NIMBUS_CLONES void down_accumulate(const T* __restrict row, int64_t dw, int frt, T ndv, bool nd_on, bool nd_nan,
                                   std::conditional_t<std::is_same_v<T, uint16_t>, uint32_t, float>* __restrict acc,
                                   uint32_t* __restrict cnt) {
  const int f = F ? F : frt;
  for (int64_t x = 0; x < dw; ++x) {
    const T* p = row + x * f;
    for (int q = 0; q < f; ++q) {
      const T v = p[q];
      bool valid = true;
      if constexpr (std::is_same_v<T, float>) {
        if (nd_on) valid = nd_nan ? (v == v) : (v != ndv);
      } else {
        if (nd_on) valid = v != ndv;
      }
      acc[x] += valid ? v : T(0);
      cnt[x] += valid ? 1u : 0u;
    }
  }
}

template <int F>
NIMBUS_CLONES void down_finish_u16_full(const uint32_t* __restrict acc, uint16_t* __restrict out, int64_t dw) {
  constexpr uint32_t N = uint32_t(F) * uint32_t(F);
  for (int64_t x = 0; x < dw; ++x) out[x] = static_cast<uint16_t>((2u * acc[x] + N) / (2u * N));
}

NIMBUS_CLONES
void down_finish_u16(const uint32_t* __restrict acc, const uint32_t* __restrict cnt, uint16_t* __restrict out,
                     int64_t dw, uint16_t ndv, uint16_t alt) {
  // (2 sum + n) / (2 n) floored, in float: exact since 2 sum + n < 2^24 and a non-integer quotient
  // is at least 1/(2n) >= 1/72 from the next integer, far above float's rounding error
  for (int64_t x = 0; x < dw; ++x) {
    const float n = float(cnt[x]);
    const float q = (2.0f * float(acc[x]) + n) / (2.0f * (n > 0.0f ? n : 1.0f));
    uint16_t v = static_cast<uint16_t>(q);
    v = v == ndv ? alt : v;
    out[x] = cnt[x] ? v : ndv;
  }
}

NIMBUS_CLONES
void down_finish_f32(const float* __restrict acc, const uint32_t* __restrict cnt, float* __restrict out, int64_t dw,
                     bool nd_on, float ndv, bool nd_nan, float alt) {
  for (int64_t x = 0; x < dw; ++x) {
    float v = acc[x] / float(cnt[x] ? cnt[x] : 1u);
    if (nd_on) v = (nd_nan ? (v != v) : (v == ndv)) ? alt : v;
    out[x] = cnt[x] ? v : ndv;
  }
}

// Mean of 2x2 blocks of two uint16 rows (no nodata): (a0 + a1 + b0 + b1 + 2) >> 2.
NIMBUS_CLONES
void down2_u16(const uint16_t* __restrict a, const uint16_t* __restrict b, uint16_t* __restrict out, int64_t dw) {
  for (int64_t x = 0; x < dw; ++x)
    out[x] = static_cast<uint16_t>((uint32_t(a[2 * x]) + a[2 * x + 1] + b[2 * x] + b[2 * x + 1] + 2u) >> 2);
}

template <int F, typename T>
void down_rows_t(const T* src, int64_t sh, int64_t sw, T* dst, int64_t dh, int64_t dw, int frt, const NoData<T>& nd,
                 int64_t r0, int64_t r1) {
  const int f = F ? F : frt;
  using Acc = std::conditional_t<std::is_same_v<T, uint16_t>, uint32_t, float>;
  std::vector<Acc> acc(dw);
  std::vector<uint32_t> cnt(dw);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t c = r / dh, y = r % dh;
    const T* plane = src + c * sh * sw;
    T* out = dst + r * dw;
    // blocks of rows without nodata take the plain path (the same result, without the validity tests)
    bool any_nd = false;
#ifdef NIMBUS_HAVE_AVX2_KERNEL
    if constexpr (std::is_same_v<T, uint16_t> && F == 2) {
      if (cpu_has_avx2()) {  // one pass: the mean and the nodata test; a row with nodata is redone below
        any_nd = down2_u16_avx2(plane + (2 * y) * sw, plane + (2 * y + 1) * sw, out, dw, nd.on, nd.value);
        if (!any_nd) {
          if (nd.on && nd.value != 0) replace_u16(out, nd.value, nd.alt, dw);
          continue;
        }
      }
    }
#endif
    if (nd.on && !any_nd)
      for (int k = 0; k < f && !any_nd; ++k) any_nd = row_any_nodata(plane + (y * f + k) * sw, dw * f, nd);
    if constexpr (std::is_same_v<T, uint16_t> && F == 2) {
      if (!any_nd) {  // the 10 m -> 20 m case: one fused pass, same value as the general formula
        down2_u16(plane + (2 * y) * sw, plane + (2 * y + 1) * sw, out, dw);
        if (nd.on && nd.value != 0) replace_u16(out, nd.value, nd.alt, dw);
        continue;
      }
    }
    std::fill(acc.begin(), acc.end(), Acc(0));  // the general path only (the fast paths above need no sums)
    std::fill(cnt.begin(), cnt.end(), 0u);
    for (int k = 0; k < f; ++k)
      down_accumulate<F, T>(plane + (y * f + k) * sw, dw, f, nd.value, any_nd, nd.nan, acc.data(), cnt.data());
    if constexpr (std::is_same_v<T, uint16_t>) {
      if (!any_nd && F != 0) {
        down_finish_u16_full<(F ? F : 1)>(acc.data(), out, dw);
        if (nd.on && nd.value != 0) replace_u16(out, nd.value, nd.alt, dw);  // a mean of values >= 1 is >= 1
      } else {
        down_finish_u16(acc.data(), cnt.data(), out, dw, nd.on ? nd.value : uint16_t(0), nd.on ? nd.alt : uint16_t(0));
        if (!nd.on)
          for (int64_t x = 0; x < dw; ++x) out[x] = static_cast<uint16_t>((2ull * acc[x] + cnt[x]) / (2ull * cnt[x]));
      }
    } else {
      down_finish_f32(acc.data(), cnt.data(), out, dw, nd.on, nd.value, nd.nan, nd.alt);
    }
  }
}

template <typename T>
py::array downsample_typed(py::array src_any, int f, bool has_nd, double ndv, int threads) {
  auto src = py::array_t<T, py::array::c_style>::ensure(src_any);
  if (!src) throw std::invalid_argument("resample: source array has the wrong dtype");
  if (src.ndim() != 3) throw std::invalid_argument("resample: kernel expects a (C, H, W) array");
  const int64_t C = src.shape(0), sh = src.shape(1), sw = src.shape(2);
  const int64_t dh = sh / f, dw = sw / f;
  py::array_t<T> dst({C, dh, dw});
  if (C == 0 || dh == 0 || dw == 0) return std::move(dst);
  const NoData<T> nd = make_nodata<T>(has_nd, ndv);
  const T* s = src.data();
  T* d = dst.mutable_data();
  {
    py::gil_scoped_release release;
    parallel_for(
        C * dh, threads,
        [&](int64_t r0, int64_t r1) {
          switch (f) {
            case 2: down_rows_t<2, T>(s, sh, sw, d, dh, dw, f, nd, r0, r1); break;
            case 3: down_rows_t<3, T>(s, sh, sw, d, dh, dw, f, nd, r0, r1); break;
            case 6: down_rows_t<6, T>(s, sh, sw, d, dh, dw, f, nd, r0, r1); break;
            default: down_rows_t<0, T>(s, sh, sw, d, dh, dw, f, nd, r0, r1);
          }
        },
        4);
  }
  return std::move(dst);
}

py::array downsample_mean(py::array src, int f, bool has_nd, double nd, int threads) {
  if (f < 1) throw std::invalid_argument("resample: factor must be >= 1");
  if (src.dtype().is(py::dtype::of<uint16_t>())) return downsample_typed<uint16_t>(src, f, has_nd, nd, threads);
  if (src.dtype().is(py::dtype::of<float>())) return downsample_typed<float>(src, f, has_nd, nd, threads);
  throw std::invalid_argument("resample: only uint16 and float32 arrays are supported");
}

}  // namespace

void register_resample(py::module_& m) {
  m.def("upsample", &upsample, py::arg("src"), py::arg("factor"), py::arg("method"), py::arg("has_nodata"),
        py::arg("nodata"), py::arg("src_y_off"), py::arg("src_x_off"), py::arg("full_h"), py::arg("full_w"),
        py::arg("dst_y_off"), py::arg("dst_x_off"), py::arg("dst_h"), py::arg("dst_w"), py::arg("threads") = 0,
        py::arg("out") = py::none(),
        "Upsample a (C, h, w) uint16/float32 source window by an integer factor onto a window of the finer grid.\n"
        "The source window starts at (src_y_off, src_x_off) of a full band of shape (full_h, full_w) and must hold\n"
        "every tap; the destination window starts at (dst_y_off, dst_x_off) and has shape (dst_h, dst_w).\n"
        "out: optional C-contiguous (C, dst_h, dst_w) array of the source dtype to write into (returned).");
  m.def(
      "_use_avx2",
      [](bool on) {
        const bool old = g_avx2_allowed;
        g_avx2_allowed = on;
        return old;
      },
      py::arg("on"), "Allow (True) or forbid the AVX2 kernels; returns the previous setting (for tests).");
  m.def(
      "_use_streaming_stores",
      [](bool on) {
        const bool old = g_stream_allowed;
        g_stream_allowed = on;
        return old;
      },
      py::arg("on"), "Allow (True) or forbid non-temporal stores for huge outputs; returns the previous setting.");
  m.def(
      "_use_down_streaming_stores",
      [](bool on) {
#ifdef NIMBUS_HAVE_AVX2_KERNEL
        const bool old = g_down_stream;
        g_down_stream = on;
        return old;
#else
        (void)on;
        return false;
#endif
      },
      py::arg("on"), "Allow (True) or forbid non-temporal stores in the /2 area mean; returns the previous setting.");
  m.def("downsample_mean", &downsample_mean, py::arg("src"), py::arg("factor"), py::arg("has_nodata"),
        py::arg("nodata"), py::arg("threads") = 0,
        "Area-average a (C, H, W) uint16/float32 array by an integer factor (mean of valid pixels per block).");
}

}  // namespace nimbus
