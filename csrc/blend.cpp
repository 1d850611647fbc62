// Probability blending kernels for sliding-window inference.
//
// blend_accumulate: add weighted window probabilities into a strip accumulator (in place).
//   acc (K, H, W) float32, wsum (H, W) float32, probs (N, K, h, w) float32, weights (h, w) float32,
//   rows/cols (N) int64: top-left of each window in accumulator coordinates.
//   Parallel over accumulator rows: each thread owns a band of rows, so overlapping windows never
//   race and no atomics are needed.
// blend_finalize: normalise rows [row0, row0 + n) of the accumulator by the weights (in place), take
//   the arg-max class, write 255 where the input has no data (or no window contributed), optionally
//   the entropy. The accumulator can thus be a reusable buffer larger than the rows finalised.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

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

void blend_accumulate(F32 acc, F32 wsum, F32In probs, F32In weights, I64In rows, I64In cols, int threads) {
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
  const int64_t* r0 = rows.data();
  const int64_t* c0 = cols.data();
  for (int64_t n = 0; n < N; ++n) {
    require(r0[n] >= 0 && r0[n] + h <= H && c0[n] >= 0 && c0[n] + w <= W,
            "window " + std::to_string(n) + " at (" + std::to_string(r0[n]) + ", " + std::to_string(c0[n]) +
                ") does not fit in the accumulator");
  }
  float* A = acc.mutable_data();
  float* S = wsum.mutable_data();
  const float* P = probs.data();
  const float* Wt = weights.data();
  {
    py::gil_scoped_release release;
    parallel_for(
        H, threads,
        [&](int64_t b, int64_t e) {
          for (int64_t n = 0; n < N; ++n) {
            const int64_t top = r0[n], left = c0[n];
            const int64_t lo = std::max(b, top), hi = std::min(e, top + h);
            for (int64_t r = lo; r < hi; ++r) {
              const int64_t wr = r - top;
              const float* wrow = Wt + wr * w;
              float* srow = S + r * W + left;
              for (int64_t x = 0; x < w; ++x) srow[x] += wrow[x];
              for (int64_t k = 0; k < K; ++k) {
                const float* prow = P + ((n * K + k) * h + wr) * w;
                float* arow = A + (k * H + r) * W + left;
                for (int64_t x = 0; x < w; ++x) arow[x] += prow[x] * wrow[x];
              }
            }
          }
        },
        8);
  }
}

void blend_finalize(F32 acc, F32 wsum, U8In valid, U8In class_values, U8 classes, py::object entropy, int64_t row0,
                    int threads) {
  require(acc.ndim() == 3 && wsum.ndim() == 2 && valid.ndim() == 2 && classes.ndim() == 2,
          "expected acc (K, H, W), wsum (H, W), valid (n, W), classes (n, W)");
  require(acc.writeable() && classes.writeable(), "acc and classes must be writeable");
  const int64_t K = acc.shape(0), HA = acc.shape(1), W = acc.shape(2);
  const int64_t H = valid.shape(0);  // rows [row0, row0 + H) of the accumulator are finalised
  require(row0 >= 0 && row0 + H <= HA, "rows to finalise must lie inside the accumulator");
  require(wsum.shape(0) == HA && wsum.shape(1) == W && valid.shape(1) == W && classes.shape(0) == H &&
              classes.shape(1) == W,
          "wsum must be (H, W) like acc; valid and classes (n, W)");
  require(class_values.ndim() == 1 && class_values.shape(0) == K, "class_values must have one entry per class");
  float* E = nullptr;
  F32 ent;
  if (!entropy.is_none()) {
    ent = entropy.cast<F32>();
    require(ent.ndim() == 2 && ent.shape(0) == H && ent.shape(1) == W && ent.writeable(),
            "entropy must be a writeable (H, W) float32 array");
    E = ent.mutable_data();
  }
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

}  // namespace

void register_blend(pybind11::module_& m) {
  m.def("blend_accumulate", &blend_accumulate, py::arg("acc"), py::arg("wsum"), py::arg("probs"), py::arg("weights"),
        py::arg("rows"), py::arg("cols"), py::arg("threads") = 0,
        "Add weighted window probabilities (N, K, h, w) into acc (K, H, W) and weights into wsum (H, W), in place.");
  m.def("blend_finalize", &blend_finalize, py::arg("acc"), py::arg("wsum"), py::arg("valid"), py::arg("class_values"),
        py::arg("classes"), py::arg("entropy") = py::none(), py::arg("row0") = 0, py::arg("threads") = 0,
        "Normalise rows [row0, row0 + n) of acc by wsum in place (n = valid rows), write their arg-max class values "
        "(255 where invalid or unweighted) and optionally the entropy.");
}

}  // namespace nimbus
