// Bindings for this area; filled in by its issue.
#include "bindings.h"

namespace needle::python {
void init_tensor(pybind11::module_&) {}
}  // namespace needle::python
