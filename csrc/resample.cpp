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
//    inside the band or not all valid, the bilinear result is used (GDAL's rule).
//  * uint16 results are rounded half up and clamped to [0, 65535]; bilinear x2 on uint16 is exact
//    integer arithmetic (GDAL's double result rounded), other factors use float32 arithmetic.
//  * downsampling by f: mean of the valid pixels of each f x f block (nodata where none is valid).
#include <pybind11/numpy.h>

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

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__)) && \
    defined(__linux__)
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
  std::vector<int32_t> wi0, wi1;    // bilinear integer weights, sum 2f
  std::vector<float> wf0, wf1;      // the same as floats (exact: k / 2f)
  std::vector<int32_t> nearest;     // nearest source pixel
  std::vector<int32_t> c[4];        // cubic taps (clamped)
  std::vector<float> cw[4];         // cubic weights
  std::vector<uint8_t> cubic_ok;    // the 4 cubic taps lie inside the band
  std::vector<int32_t> dep_lo, dep_hi;  // per local source index: destination range reading it
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
  a.dep_lo.assign(n_src_local, std::numeric_limits<int32_t>::max());
  a.dep_hi.assign(n_src_local, -1);
  auto dep = [&](int32_t s, int64_t j) {
    a.dep_lo[s] = std::min<int32_t>(a.dep_lo[s], static_cast<int32_t>(j));
    a.dep_hi[s] = std::max<int32_t>(a.dep_hi[s], static_cast<int32_t>(j));
  };
  for (int64_t j = 0; j < n_dst; ++j) {
    const int64_t g = dst_off + j;
    const int64_t num = 2 * g + 1 - f;
    const int64_t i0 = floor_div(num, den);
    const int64_t r = num - i0 * den;  // 0 .. den-1
    a.nearest[j] = local(floor_div(g, f));
    if (method == NEAREST) {
      a.b0[j] = a.b1[j] = a.nearest[j];
      continue;
    }
    a.b0[j] = local(i0);
    a.b1[j] = r == 0 ? a.b0[j] : local(i0 + 1);
    a.wi0[j] = static_cast<int32_t>(den - r);
    a.wi1[j] = static_cast<int32_t>(r);
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

inline uint16_t round_u16(float v) {
  if (!(v > 0.0f)) return 0;  // also NaN
  if (v >= 65535.0f) return 65535;
  return static_cast<uint16_t>(v + 0.5f);
}

// ---------------------------------------------------------------------------------------------
// Hot row loops (plain loops the compiler vectorises; cloned for AVX2 with runtime dispatch).

NIMBUS_CLONES
void vsum_u16(const uint16_t* __restrict a, const uint16_t* __restrict b, uint32_t wa, uint32_t wb,
              uint32_t* __restrict v, int64_t n) {
  for (int64_t x = 0; x < n; ++x) v[x] = wa * a[x] + wb * b[x];
}

NIMBUS_CLONES
int any_eq_u16(const uint16_t* __restrict a, uint16_t nd, int64_t n) {
  int any = 0;
  for (int64_t x = 0; x < n; ++x) any |= (a[x] == nd);
  return any;
}

// out[2k] = (v[k-1] + 3 v[k] + 8) >> 4, out[2k+1] = (3 v[k] + v[k+1] + 8) >> 4 for k in [0, pairs)
NIMBUS_CLONES
void hpair_x2_u16(const uint32_t* __restrict v, uint16_t* __restrict out, int64_t pairs) {
  for (int64_t k = 0; k < pairs; ++k) {
    const uint32_t c = 3u * v[k] + 8u;
    out[2 * k] = static_cast<uint16_t>((v[k - 1] + c) >> 4);
    out[2 * k + 1] = static_cast<uint16_t>((c + v[k + 1]) >> 4);
  }
}

NIMBUS_CLONES
void vsum_f32(const float* __restrict a, const float* __restrict b, float wa, float wb, float* __restrict v,
              int64_t n) {
  for (int64_t x = 0; x < n; ++x) v[x] = wa * a[x] + wb * b[x];
}

NIMBUS_CLONES
void vsum4_f32(const float* __restrict a, const float* __restrict b, const float* __restrict c,
               const float* __restrict d, const float w[4], float* __restrict v, int64_t n) {
  const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
  for (int64_t x = 0; x < n; ++x) v[x] = ((w0 * a[x] + w1 * b[x]) + w2 * c[x]) + w3 * d[x];
}

NIMBUS_CLONES
void vsum4_u16(const uint16_t* __restrict a, const uint16_t* __restrict b, const uint16_t* __restrict c,
               const uint16_t* __restrict d, const float w[4], float* __restrict v, int64_t n) {
  const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
  for (int64_t x = 0; x < n; ++x)
    v[x] = ((w0 * float(a[x]) + w1 * float(b[x])) + w2 * float(c[x])) + w3 * float(d[x]);
}

NIMBUS_CLONES
void hbilinear_gather_f32(const float* __restrict v, const int32_t* __restrict b0, const int32_t* __restrict b1,
                          const float* __restrict w0, const float* __restrict w1, float* __restrict out, int64_t n) {
  for (int64_t x = 0; x < n; ++x) out[x] = w0[x] * v[b0[x]] + w1[x] * v[b1[x]];
}

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

template <typename T>
struct RowScratch {
  std::vector<uint32_t> vi;
  std::vector<float> vf;
  std::vector<uint8_t> bad;
  std::vector<float> of;
};

template <typename T>
void up_row_nearest(const UpJob<T>& J, const T* s, int64_t y, T* out) {
  const Axis& X = *J.X;
  const T* row = s + int64_t(J.Y->nearest[y]) * J.sw;
  const int32_t* nx = X.nearest.data();
  for (int64_t x = 0; x < J.dw; ++x) out[x] = row[nx[x]];
}

template <typename T>
void up_row_bilinear(const UpJob<T>& J, const T* s, int64_t y, T* out, RowScratch<T>& S) {
  const Axis& X = *J.X;
  const Axis& Y = *J.Y;
  const int64_t sw = J.sw;
  const T* a = s + int64_t(Y.b0[y]) * sw;
  const T* b = s + int64_t(Y.b1[y]) * sw;
  bool row_has_nd = false;
  if (J.nd.on) {
    if constexpr (std::is_same_v<T, uint16_t>) {
      row_has_nd = any_eq_u16(a, J.nd.value, sw) || (Y.wi1[y] != 0 && any_eq_u16(b, J.nd.value, sw));
    } else {
      for (int64_t x = 0; x < sw && !row_has_nd; ++x) row_has_nd = J.nd.is(a[x]) || (Y.wi1[y] != 0 && J.nd.is(b[x]));
    }
  }
  if constexpr (std::is_same_v<T, uint16_t>) {
    uint32_t* v = S.vi.data();
    vsum_u16(a, b, uint32_t(Y.wi0[y]), uint32_t(Y.wi1[y]), v, sw);
    const uint32_t D = uint32_t(4 * J.f * J.f);
    auto generic = [&](int64_t x) {
      return static_cast<uint16_t>((uint32_t(X.wi0[x]) * v[X.b0[x]] + uint32_t(X.wi1[x]) * v[X.b1[x]] + D / 2) / D);
    };
    int64_t x = 0;
    if (J.f == 2) {
      // pairs (2k, 2k+1) with global 2k >= 2 and 2k+1 <= 2n-3 follow the constant pattern
      const int64_t g0 = J.dst_x_off;
      int64_t xa = 0;
      while (xa < J.dw && ((g0 + xa) % 2 != 0 || g0 + xa < 2)) ++xa;
      int64_t xend = std::min<int64_t>(J.dw, 2 * J.n_src_x_full - 2 - g0);  // exclusive, global 2n-2
      int64_t pairs = xend > xa ? (xend - xa) / 2 : 0;
      for (; x < xa && x < J.dw; ++x) out[x] = generic(x);
      if (pairs > 0) {
        const int64_t k0 = (g0 + xa) / 2 - J.src_x_off;  // local source index of the first pair
        hpair_x2_u16(v + k0, out + xa, pairs);
        x = xa + 2 * pairs;
      }
    }
    for (; x < J.dw; ++x) out[x] = generic(x);
    if (J.nd.on && J.nd.value != 0) {
      for (int64_t x = 0; x < J.dw; ++x)
        if (out[x] == J.nd.value) out[x] = J.nd.alt;
    }
  } else {
    float* v = S.vf.data();
    vsum_f32(a, b, Y.wf0[y], Y.wf1[y], v, sw);
    hbilinear_gather_f32(v, X.b0.data(), X.b1.data(), X.wf0.data(), X.wf1.data(), out, J.dw);
    if (J.nd.on) {
      for (int64_t x = 0; x < J.dw; ++x)
        if (J.nd.is(out[x])) out[x] = J.nd.alt;
    }
  }
  if (row_has_nd) {
    uint8_t* bad = S.bad.data();
    const bool use_b = Y.wi1[y] != 0;
    for (int64_t x = 0; x < sw; ++x) bad[x] = J.nd.is(a[x]) || (use_b && J.nd.is(b[x]));
    for_each_dependent(X, bad, sw, [&](int64_t x) { out[x] = bilinear_slow(J, s, y, x); });
  }
}

template <typename T>
void up_row_cubic(const UpJob<T>& J, const T* s, int64_t y, T* out, RowScratch<T>& S) {
  const Axis& X = *J.X;
  const Axis& Y = *J.Y;
  const int64_t sw = J.sw;
  if (!Y.cubic_ok[y]) {  // top/bottom rows: GDAL falls back to bilinear
    for (int64_t x = 0; x < J.dw; ++x) out[x] = bilinear_slow(J, s, y, x);
    return;
  }
  const T* r[4];
  for (int k = 0; k < 4; ++k) r[k] = s + int64_t(Y.c[k][y]) * sw;
  const float wy[4] = {Y.cw[0][y], Y.cw[1][y], Y.cw[2][y], Y.cw[3][y]};
  float* v = S.vf.data();
  if constexpr (std::is_same_v<T, uint16_t>) {
    vsum4_u16(r[0], r[1], r[2], r[3], wy, v, sw);
  } else {
    vsum4_f32(r[0], r[1], r[2], r[3], wy, v, sw);
  }
  float* of = S.of.data();
  const int32_t *c0 = X.c[0].data(), *c1 = X.c[1].data(), *c2 = X.c[2].data(), *c3 = X.c[3].data();
  const float *w0 = X.cw[0].data(), *w1 = X.cw[1].data(), *w2 = X.cw[2].data(), *w3 = X.cw[3].data();
  for (int64_t x = 0; x < J.dw; ++x) of[x] = ((w0[x] * v[c0[x]] + w1[x] * v[c1[x]]) + w2[x] * v[c2[x]]) + w3[x] * v[c3[x]];
  if constexpr (std::is_same_v<T, uint16_t>) {
    for (int64_t x = 0; x < J.dw; ++x) out[x] = round_u16(of[x]);
  } else {
    for (int64_t x = 0; x < J.dw; ++x) out[x] = of[x];
  }
  if (J.nd.on) {
    for (int64_t x = 0; x < J.dw; ++x)
      if (J.nd.is(out[x])) out[x] = J.nd.alt;
  }
  // left/right border columns: bilinear
  for (int64_t x = 0; x < J.dw && !X.cubic_ok[x]; ++x) out[x] = bilinear_slow(J, s, y, x);
  for (int64_t x = J.dw - 1; x >= 0 && !X.cubic_ok[x]; --x) out[x] = bilinear_slow(J, s, y, x);
  if (J.nd.on) {
    uint8_t* bad = S.bad.data();
    bool any = false;
    for (int64_t x = 0; x < sw; ++x) {
      const bool b = J.nd.is(r[0][x]) || J.nd.is(r[1][x]) || J.nd.is(r[2][x]) || J.nd.is(r[3][x]);
      bad[x] = b;
      any |= b;
    }
    if (any) for_each_dependent(X, bad, sw, [&](int64_t x) { out[x] = bilinear_slow(J, s, y, x); });
  }
}

template <typename T>
void upsample_impl(const UpJob<T>& J, int64_t channels, int threads) {
  const int64_t rows = channels * J.dh;
  parallel_for(
      rows, threads,
      [&](int64_t r0, int64_t r1) {
        RowScratch<T> S;
        S.vi.resize(J.sw + 1);
        S.vf.resize(J.sw + 1);
        S.bad.resize(J.sw + 8);
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
                         int64_t dh, int64_t dw, int threads) {
  auto src = py::array_t<T, py::array::c_style>::ensure(src_any);
  if (!src) throw std::invalid_argument("resample: source array has the wrong dtype");
  if (src.ndim() != 3) throw std::invalid_argument("resample: kernel expects a (C, H, W) array");
  const int64_t C = src.shape(0), sh = src.shape(1), sw = src.shape(2);
  py::array_t<T> dst({C, dh, dw});
  if (C == 0 || dh == 0 || dw == 0) return std::move(dst);
  const Axis X = make_axis(f, full_w, src_x_off, sw, dst_x_off, dw, method);
  const Axis Y = make_axis(f, full_h, src_y_off, sh, dst_y_off, dh, method);
  UpJob<T> J{src.data(), sh, sw, dst.mutable_data(), dh, dw, f, method, make_nodata<T>(has_nd, nd), &X, &Y,
             dst_x_off, src_x_off, full_w};
  {
    py::gil_scoped_release release;
    upsample_impl(J, C, threads);
  }
  return std::move(dst);
}

py::array upsample(py::array src, int f, const std::string& method, bool has_nd, double nd, int64_t src_y_off,
                   int64_t src_x_off, int64_t full_h, int64_t full_w, int64_t dst_y_off, int64_t dst_x_off, int64_t dh,
                   int64_t dw, int threads) {
  if (f < 1) throw std::invalid_argument("resample: factor must be >= 1");
  const Method m = parse_method(method);
  if (src.dtype().is(py::dtype::of<uint16_t>()))
    return upsample_typed<uint16_t>(src, f, m, has_nd, nd, src_y_off, src_x_off, full_h, full_w, dst_y_off,
                                    dst_x_off, dh, dw, threads);
  if (src.dtype().is(py::dtype::of<float>()))
    return upsample_typed<float>(src, f, m, has_nd, nd, src_y_off, src_x_off, full_h, full_w, dst_y_off, dst_x_off,
                                 dh, dw, threads);
  throw std::invalid_argument("resample: only uint16 and float32 arrays are supported");
}

// ---------------------------------------------------------------------------------------------
// Area-average downsampling.

template <typename T>
void down_rows(const T* src, int64_t sh, int64_t sw, T* dst, int64_t dh, int64_t dw, int f, const NoData<T>& nd,
               int64_t r0, int64_t r1) {
  (void)sh;
  std::vector<int64_t> si(dw);
  std::vector<double> sf(dw);
  std::vector<int32_t> cnt(dw);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t c = r / dh, y = r % dh;
    const T* plane = src + c * sh * sw;
    T* out = dst + r * dw;
    std::fill(si.begin(), si.end(), 0);
    std::fill(sf.begin(), sf.end(), 0.0);
    std::fill(cnt.begin(), cnt.end(), 0);
    for (int k = 0; k < f; ++k) {
      const T* row = plane + (y * f + k) * sw;
      for (int64_t x = 0; x < dw; ++x) {
        const T* p = row + x * f;
        for (int q = 0; q < f; ++q) {
          const T v = p[q];
          if (nd.is(v)) continue;
          if constexpr (std::is_same_v<T, uint16_t>) si[x] += v;
          else sf[x] += double(v);
          cnt[x] += 1;
        }
      }
    }
    for (int64_t x = 0; x < dw; ++x) {
      const int64_t n = cnt[x];
      if (n == 0) {
        out[x] = nd.value;
        continue;
      }
      T v;
      if constexpr (std::is_same_v<T, uint16_t>) v = static_cast<uint16_t>((2 * si[x] + n) / (2 * n));
      else v = static_cast<float>(sf[x] / double(n));
      if (nd.on && nd.is(v)) v = nd.alt;
      out[x] = v;
    }
  }
}

// Fast path without nodata for uint16: per-row sums in uint32.
NIMBUS_CLONES
void down_row_sum_u16(const uint16_t* __restrict row, uint32_t* __restrict acc, int64_t dw, int f) {
  if (f == 2) {
    for (int64_t x = 0; x < dw; ++x) acc[x] += uint32_t(row[2 * x]) + uint32_t(row[2 * x + 1]);
  } else if (f == 3) {
    for (int64_t x = 0; x < dw; ++x) acc[x] += uint32_t(row[3 * x]) + uint32_t(row[3 * x + 1]) + uint32_t(row[3 * x + 2]);
  } else {
    for (int64_t x = 0; x < dw; ++x) {
      uint32_t s = 0;
      for (int q = 0; q < f; ++q) s += row[x * f + q];
      acc[x] += s;
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
          if constexpr (std::is_same_v<T, uint16_t>) {
            if (!nd.on) {
              std::vector<uint32_t> acc(dw);
              const uint32_t n = uint32_t(f * f);
              for (int64_t r = r0; r < r1; ++r) {
                const int64_t c = r / dh, y = r % dh;
                std::fill(acc.begin(), acc.end(), 0u);
                for (int k = 0; k < f; ++k) down_row_sum_u16(s + c * sh * sw + (y * f + k) * sw, acc.data(), dw, f);
                uint16_t* out = d + r * dw;
                for (int64_t x = 0; x < dw; ++x) out[x] = static_cast<uint16_t>((2 * acc[x] + n) / (2 * n));
              }
              return;
            }
          }
          down_rows<T>(s, sh, sw, d, dh, dw, f, nd, r0, r1);
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
        "Upsample a (C, h, w) uint16/float32 source window by an integer factor onto a window of the finer grid.\n"
        "The source window starts at (src_y_off, src_x_off) of a full band of shape (full_h, full_w) and must hold\n"
        "every tap; the destination window starts at (dst_y_off, dst_x_off) and has shape (dst_h, dst_w).");
  m.def("downsample_mean", &downsample_mean, py::arg("src"), py::arg("factor"), py::arg("has_nodata"),
        py::arg("nodata"), py::arg("threads") = 0,
        "Area-average a (C, H, W) uint16/float32 array by an integer factor (mean of valid pixels per block).");
}

}  // namespace nimbus
