// Window cutting for sliding-window inference: copy the windows of one window row out of a strip of
// input rows into the model's batch buffer in one call (no per-window numpy slicing).
//
// cut_windows: src (C, Hs, W) float32 (a chunk of input rows), out (N, C, h, w) float32 (the batch),
//   cols (N) int64: left column of each window. Copies src rows [src_row0, src_row0 + nrows) of every
//   channel, columns [cols[n], cols[n] + w), into rows [dst_row0, dst_row0 + nrows) of window n. A
//   window that spans two input chunks is cut by two calls (one per chunk). Parallel over the
//   (channel, row, window) triples, windows fastest (a source row is read once for all its windows);
//   each is one contiguous copy of w floats.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels.hpp"
#include "parallel.hpp"

namespace py = pybind11;

namespace nimbus {
namespace {

using F32 = py::array_t<float, py::array::c_style>;
using I64In = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

void cut_windows(py::array src_any, F32 out, I64In cols, int64_t src_row0, int64_t dst_row0, int64_t nrows,
                 int threads) {
  auto src = py::array_t<float, py::array::c_style>::ensure(src_any);
  require(static_cast<bool>(src) && src.dtype().is(py::dtype::of<float>()),
          "cut_windows: src must be a C-contiguous float32 (C, H, W) array");
  require(src.ndim() == 3 && out.ndim() == 4, "cut_windows: src must be (C, H, W) and out (N, C, h, w)");
  require(out.writeable(), "cut_windows: out must be writeable");
  const int64_t C = src.shape(0), Hs = src.shape(1), W = src.shape(2);
  const int64_t N = out.shape(0), h = out.shape(2), w = out.shape(3);
  require(out.shape(1) == C, "cut_windows: out must have as many channels as src");
  require(cols.ndim() == 1 && cols.shape(0) <= N, "cut_windows: cols must be 1-D with at most one entry per window of out");
  const int64_t n_win = cols.shape(0);
  require(nrows >= 0 && src_row0 >= 0 && src_row0 + nrows <= Hs, "cut_windows: source rows outside src");
  require(dst_row0 >= 0 && dst_row0 + nrows <= h, "cut_windows: destination rows outside the windows");
  const int64_t* c0 = cols.data();
  for (int64_t n = 0; n < n_win; ++n)
    require(c0[n] >= 0 && c0[n] + w <= W,
            "cut_windows: window " + std::to_string(n) + " at column " + std::to_string(c0[n]) + " does not fit in src");
  if (n_win == 0 || nrows == 0 || C == 0) return;
  const float* S = src.data();
  float* O = out.mutable_data();
  {
    py::gil_scoped_release release;
    const int64_t total = n_win * C * nrows;
    parallel_for(
        total, threads,
        [&](int64_t b, int64_t e) {
          for (int64_t t = b; t < e; ++t) {
            // windows fastest: one source row is read once (it stays in cache) for all windows it feeds
            const int64_t n = t % n_win, i = (t / n_win) % nrows, c = t / (n_win * nrows);
            const float* from = S + (c * Hs + src_row0 + i) * W + c0[n];
            float* to = O + ((n * C + c) * h + dst_row0 + i) * w;
            std::memcpy(to, from, static_cast<size_t>(w) * sizeof(float));
          }
        },
        64);
  }
}

}  // namespace

void register_windows(py::module_& m) {
  m.def("cut_windows", &cut_windows, py::arg("src"), py::arg("out"), py::arg("cols"), py::arg("src_row0"),
        py::arg("dst_row0"), py::arg("nrows"), py::arg("threads") = 0,
        "Copy rows [src_row0, +nrows) of src (C, H, W) at columns [cols[n], +w) into rows [dst_row0, +nrows) of "
        "out[n] (N, C, h, w), for every window n of cols (float32).");
}

}  // namespace nimbus
