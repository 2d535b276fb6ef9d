#include "bindings/registry.hpp"

namespace fastnn::bind {
void register_losses(pybind11::module_& m) { (void)m; }
}  // namespace fastnn::bind
