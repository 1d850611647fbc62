// Probability blending kernels (placeholder until the deployment work lands).
#include "kernels.hpp"

namespace nimbus {
void register_blend(pybind11::module_& m) { (void)m; }
}  // namespace nimbus
