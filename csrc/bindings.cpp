// The nimbus._kernels extension module: C++ kernels for band resampling, window cutting and blending.
#include "kernels.hpp"

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "Nimbus compiled kernels (band resampling, window cutting, probability blending).";
  nimbus::register_resample(m);
  nimbus::register_blend(m);
  nimbus::register_windows(m);
}
