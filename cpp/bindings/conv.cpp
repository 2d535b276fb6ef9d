#include "bindings/registry.hpp"

namespace fastnn::bind {
void register_conv(pybind11::module_& m) { (void)m; }
}  // namespace fastnn::bind
