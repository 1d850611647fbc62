// Registration hooks: each kernel family (one .cpp file) adds its functions to the module.
#pragma once
#include <pybind11/pybind11.h>

namespace nimbus {
void register_resample(pybind11::module_& m);
void register_blend(pybind11::module_& m);
void register_windows(pybind11::module_& m);
}  // namespace nimbus
