// Probability blending kernels for sliding-window inference.
//
// blend_accumulate: add weighted window probabilities into a strip accumulator (in place).
//   acc (K, H, W) float32, wsum (H, W) float32, probs (N, K, h, w) float32, weights (h, w) float32,
//   rows/cols (N) int64: top-left of each window in accumulator coordinates.
//   Parallel over accumulator rows: each thread owns a band of rows, so overlapping windows never
//   race and no atomics are needed. Row-outer order: one accumulator row takes every window's row
//   before the next (a whole window row per call passes over the accumulator once). wrap: the
//   accumulator is a ring (raster row r at r % H), so a strip buffer never moves its rows.
// blend_finalize: normalise rows [row0, row0 + n) of the accumulator by the weights (in place), take
//   the arg-max class, write 255 where the input has no data (or no window contributed), optionally
//   the entropy. The accumulator can thus be a reusable buffer larger than the rows finalised.
// blend_finalize_rows: the same for raster rows of a ring accumulator, writing the probabilities to a
//   separate (K, n, W) output and zeroing the finalised ring rows (no copy, no move of the strip).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.hpp"
#include "parallel.hpp"

namespace py = pybind11;

namespace nimbus {
namespace {

using F32 = py::array_t<float, py::array::c_style>;
using F32In = py::array_t<float, py::array::c_style | py::array::forcecast>;
using I64In = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using U8 = py::array_t<uint8_t, py::array::c_style>;
using U8In = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

// Hot row loops as plain functions the compiler vectorises, cloned for AVX2 (runtime dispatch).
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__)) && \
    defined(__linux__) && defined(__GLIBC__)
#define NIMBUS_BLEND_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define NIMBUS_BLEND_CLONES
#endif

// srow += wrow; arow_k += prow_k * wrow for the K class rows of one window row.
NIMBUS_BLEND_CLONES
void accumulate_row(float* __restrict srow, const float* __restrict wrow, float* arow0, int64_t aplane,
                    const float* prow0, int64_t pplane, int64_t K, int64_t w) {
  for (int64_t x = 0; x < w; ++x) srow[x] += wrow[x];
  for (int64_t k = 0; k < K; ++k) {
    float* __restrict arow = arow0 + k * aplane;
    const float* __restrict prow = prow0 + k * pplane;
    for (int64_t x = 0; x < w; ++x) arow[x] += prow[x] * wrow[x];
  }
}

// One accumulator row of a ring: normalise, arg-max, optional probabilities / entropy out, then zero.
NIMBUS_BLEND_CLONES
void finalize_ring_row(float* __restrict srow, float* arow0, int64_t aplane, const uint8_t* __restrict vrow,
                       const uint8_t* __restrict cv, uint8_t* __restrict crow, float* __restrict erow, float* prow0,
                       int64_t pplane, int64_t K, int64_t W, float* __restrict iv, float* __restrict bv,
                       float* __restrict bi, float* __restrict hv) {
  for (int64_t x = 0; x < W; ++x) {
    const float s = srow[x];
    iv[x] = (vrow[x] != 0 && s > 0.0f) ? 1.0f / s : 0.0f;
    bv[x] = -1.0f;
    bi[x] = 0.0f;
    hv[x] = 0.0f;
  }
  for (int64_t k = 0; k < K; ++k) {
    float* __restrict arow = arow0 + k * aplane;
    const float kf = static_cast<float>(k);
    for (int64_t x = 0; x < W; ++x) {
      const float q = arow[x] * iv[x];
      const bool better = q > bv[x];
      bv[x] = better ? q : bv[x];
      bi[x] = better ? kf : bi[x];
    }
    if (prow0) {
      float* __restrict prow = prow0 + k * pplane;
      for (int64_t x = 0; x < W; ++x) prow[x] = iv[x] > 0.0f ? arow[x] * iv[x] : 0.0f;  // NaN of no-data windows -> 0
    }
    if (erow)
      for (int64_t x = 0; x < W; ++x) {
        const float q = arow[x] * iv[x];
        hv[x] -= q > 0.0f ? q * std::log(q > 0.0f ? q : 1.0f) : 0.0f;
      }
    for (int64_t x = 0; x < W; ++x) arow[x] = 0.0f;  // the ring row is free again for later windows
  }
  for (int64_t x = 0; x < W; ++x) crow[x] = iv[x] > 0.0f ? cv[static_cast<int>(bi[x])] : uint8_t(255);
  if (erow)
    for (int64_t x = 0; x < W; ++x) erow[x] = hv[x];
  for (int64_t x = 0; x < W; ++x) srow[x] = 0.0f;
}

void blend_accumulate(F32 acc, F32 wsum, F32In probs, F32In weights, I64In rows, I64In cols, int threads, bool wrap) {
  require(acc.ndim() == 3, "acc must be (K, H, W) float32");
  require(wsum.ndim() == 2, "wsum must be (H, W) float32");
  require(probs.ndim() == 4, "probs must be (N, K, h, w)");
  require(weights.ndim() == 2, "weights must be (h, w)");
  require(acc.writeable() && wsum.writeable(), "acc and wsum must be writeable");
  const int64_t K = acc.shape(0), H = acc.shape(1), W = acc.shape(2);
  const int64_t N = probs.shape(0), h = probs.shape(2), w = probs.shape(3);
  require(wsum.shape(0) == H && wsum.shape(1) == W, "wsum shape must match acc's (H, W)");
  require(probs.shape(1) == K, "probs must have as many classes as acc");
  require(weights.shape(0) == h && weights.shape(1) == w, "weights must be (h, w) of the windows");
  require(rows.ndim() == 1 && cols.ndim() == 1 && rows.shape(0) == N && cols.shape(0) == N,
          "rows and cols must be 1-D with one entry per window");
  require(!wrap || h <= H, "a window must not be taller than the ring accumulator");
  const int64_t* r0 = rows.data();
  const int64_t* c0 = cols.data();
  for (int64_t n = 0; n < N; ++n) {
    require(r0[n] >= 0 && (wrap || r0[n] + h <= H) && c0[n] >= 0 && c0[n] + w <= W,
            "window " + std::to_string(n) + " at (" + std::to_string(r0[n]) + ", " + std::to_string(c0[n]) +
                ") does not fit in the accumulator");
  }
  float* A = acc.mutable_data();
  float* S = wsum.mutable_data();
  const float* P = probs.data();
  const float* Wt = weights.data();
  {
    py::gil_scoped_release release;
    // Row-outer: each thread owns a band of accumulator rows and adds every window's row into one
    // accumulator row before moving on, so that row (K x W floats) stays in cache while the
    // overlapping windows of a whole window row are added (one pass over the accumulator per call).
    parallel_for(
        H, threads,
        [&](int64_t b, int64_t e) {
          for (int64_t r = b; r < e; ++r) {
            float* srow_all = S + r * W;
            for (int64_t n = 0; n < N; ++n) {
              // window row wr of window n lands on accumulator row r (ring: raster row mod H)
              int64_t wr = r - r0[n];
              if (wrap) wr = ((wr % H) + H) % H;
              if (wr < 0 || wr >= h) continue;
              const int64_t left = c0[n];
              accumulate_row(srow_all + left, Wt + wr * w, A + r * W + left, H * W, P + (n * K * h + wr) * w, h * w, K,
                             w);
            }
          }
        },
        8);
  }
}

// The argument checks both finalisers share (shapes, class table, the optional entropy output).
// Returns the entropy buffer, or nullptr when none was asked for; `ent` keeps it alive.
float* check_finalize(const F32& acc, const F32& wsum, const U8In& valid, const U8In& class_values, const U8& classes,
                      const py::object& entropy, F32& ent) {
  require(acc.ndim() == 3 && wsum.ndim() == 2 && valid.ndim() == 2 && classes.ndim() == 2,
          "expected acc (K, H, W), wsum (H, W), valid (n, W), classes (n, W)");
  require(acc.writeable() && classes.writeable(), "acc and classes must be writeable");
  const int64_t K = acc.shape(0), HA = acc.shape(1), W = acc.shape(2), n = valid.shape(0);
  require(wsum.shape(0) == HA && wsum.shape(1) == W && valid.shape(1) == W && classes.shape(0) == n &&
              classes.shape(1) == W,
          "wsum must be (H, W) like acc; valid and classes (n, W)");
  require(class_values.ndim() == 1 && class_values.shape(0) == K, "class_values must have one entry per class");
  if (entropy.is_none()) return nullptr;
  ent = entropy.cast<F32>();
  require(ent.ndim() == 2 && ent.shape(0) == n && ent.shape(1) == W && ent.writeable(),
          "entropy must be a writeable (n, W) float32 array");
  return ent.mutable_data();
}

void blend_finalize(F32 acc, F32 wsum, U8In valid, U8In class_values, U8 classes, py::object entropy, int64_t row0,
                    int threads) {
  F32 ent;
  float* E = check_finalize(acc, wsum, valid, class_values, classes, entropy, ent);
  const int64_t K = acc.shape(0), HA = acc.shape(1), W = acc.shape(2);
  const int64_t H = valid.shape(0);  // rows [row0, row0 + H) of the accumulator are finalised
  require(row0 >= 0 && row0 + H <= HA, "rows to finalise must lie inside the accumulator");
  float* A = acc.mutable_data() + row0 * W;
  const float* S = wsum.data() + row0 * W;
  const uint8_t* V = valid.data();
  const uint8_t* CV = class_values.data();
  uint8_t* C = classes.mutable_data();
  const int64_t plane = HA * W;
  {
    py::gil_scoped_release release;
    parallel_for(
        H, threads,
        [&](int64_t b, int64_t e) {
          for (int64_t r = b; r < e; ++r) {
            for (int64_t x = 0; x < W; ++x) {
              const int64_t i = r * W + x;
              const float s = S[i];
              if (!V[i] || !(s > 0.0f)) {
                C[i] = 255;
                for (int64_t k = 0; k < K; ++k) A[k * plane + i] = 0.0f;
                if (E) E[i] = 0.0f;
                continue;
              }
              const float inv = 1.0f / s;
              int64_t best = 0;
              float bestv = -1.0f;
              float h = 0.0f;
              for (int64_t k = 0; k < K; ++k) {
                const float p = A[k * plane + i] * inv;
                A[k * plane + i] = p;
                if (p > bestv) {
                  bestv = p;
                  best = k;
                }
                if (E && p > 0.0f) h -= p * std::log(p);
              }
              C[i] = CV[best];
              if (E) E[i] = h;
            }
          }
        },
        8);
  }
}


void blend_finalize_rows(F32 acc, F32 wsum, U8In valid, U8In class_values, U8 classes, py::object entropy,
                         py::object probs_out, int64_t row0, int threads) {
  F32 ent;
  float* E = check_finalize(acc, wsum, valid, class_values, classes, entropy, ent);
  require(wsum.writeable(), "wsum must be writeable (the ring's rows are zeroed for reuse)");
  const int64_t K = acc.shape(0), HA = acc.shape(1), W = acc.shape(2);
  const int64_t n = valid.shape(0);
  require(row0 >= 0 && n <= HA, "rows to finalise must fit in the ring accumulator");
  float* PO = nullptr;
  F32 pout;
  if (!probs_out.is_none()) {
    pout = probs_out.cast<F32>();
    require(pout.ndim() == 3 && pout.shape(0) == K && pout.shape(1) == n && pout.shape(2) == W && pout.writeable(),
            "probs_out must be a writeable (K, n, W) float32 array");
    PO = pout.mutable_data();
  }
  float* A = acc.mutable_data();
  float* S = wsum.mutable_data();
  const uint8_t* V = valid.data();
  const uint8_t* CV = class_values.data();
  uint8_t* C = classes.mutable_data();
  const int64_t plane = HA * W;
  {
    py::gil_scoped_release release;
    parallel_for(
        n, threads,
        [&](int64_t b, int64_t e) {
          // class-major passes over a row (each a plain loop the compiler vectorises)
          std::vector<float> tmp(static_cast<size_t>(4 * W));
          float* t = tmp.data();
          for (int64_t i = b; i < e; ++i) {
            const int64_t r = (row0 + i) % HA;  // ring row of raster row row0 + i
            finalize_ring_row(S + r * W, A + r * W, plane, V + i * W, CV, C + i * W, E ? E + i * W : nullptr,
                              PO ? PO + i * W : nullptr, n * W, K, W, t, t + W, t + 2 * W, t + 3 * W);
          }
        },
        4);
  }
}

}  // namespace

void register_blend(pybind11::module_& m) {
  m.def("blend_accumulate", &blend_accumulate, py::arg("acc"), py::arg("wsum"), py::arg("probs"), py::arg("weights"),
        py::arg("rows"), py::arg("cols"), py::arg("threads") = 0, py::arg("wrap") = false,
        "Add weighted window probabilities (N, K, h, w) into acc (K, H, W) and weights into wsum (H, W), in place.\n"
        "wrap: acc is a ring of H rows; raster row r is accumulator row r % H (windows must be <= H rows).");
  m.def("blend_finalize_rows", &blend_finalize_rows, py::arg("acc"), py::arg("wsum"), py::arg("valid"),
        py::arg("class_values"), py::arg("classes"), py::arg("entropy") = py::none(), py::arg("probs_out") = py::none(),
        py::arg("row0") = 0, py::arg("threads") = 0,
        "Finalise raster rows [row0, row0 + n) of a ring accumulator (row r at r % H): arg-max class values (255 "
        "where invalid or unweighted), optionally the entropy and the normalised probabilities (K, n, W) "
        "written out; the accumulator rows are then zeroed for reuse.");
  m.def("blend_finalize", &blend_finalize, py::arg("acc"), py::arg("wsum"), py::arg("valid"), py::arg("class_values"),
        py::arg("classes"), py::arg("entropy") = py::none(), py::arg("row0") = 0, py::arg("threads") = 0,
        "Normalise rows [row0, row0 + n) of acc by wsum in place (n = valid rows), write their arg-max class values "
        "(255 where invalid or unweighted) and optionally the entropy.");
}

}  // namespace nimbus
