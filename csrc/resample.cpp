// Band resampling kernels (placeholder until the resampling work lands).
#include "kernels.hpp"

namespace nimbus {
void register_resample(pybind11::module_& m) { (void)m; }
}  // namespace nimbus
