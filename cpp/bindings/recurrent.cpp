#include "bindings/registry.hpp"

namespace fastnn::bind {
void register_recurrent(pybind11::module_& m) { (void)m; }
}  // namespace fastnn::bind
