// The nimbus._kernels extension module: C++ kernels for band resampling and window blending.
#include "kernels.hpp"

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "Nimbus compiled kernels (band resampling, probability blending).";
  nimbus::register_resample(m);
  nimbus::register_blend(m);
}
