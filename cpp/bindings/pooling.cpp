#include "bindings/registry.hpp"

namespace fastnn::bind {
void register_pooling(pybind11::module_& m) { (void)m; }
}  // namespace fastnn::bind
