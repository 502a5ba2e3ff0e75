// Bindings of safetensors checkpoints (needle/serialize.h).
//
// save takes Tensors (also NDArrays and numpy arrays) and load returns constant Tensors;
// python/needle/serialization.py (needle.save / needle.load) adds Module and path
// conveniences on top. Errors keep their needle type: a damaged file is a ValueError
// naming it, an unwritable path a RuntimeError.
#include "needle/serialize.h"

#include <map>
#include <string>

#include "bindings.h"
#include "tensor_bindings.h"

namespace py = pybind11;

namespace needle::python {
namespace {

std::string fspath(const py::handle& path) {
  return py::str(py::module_::import("os").attr("fspath")(path));
}

// An NDArray from an NDArray, a needle Tensor (its realized data), a numpy array or
// anything numpy accepts.
NDArray array_of(const std::string& name, const py::handle& value) {
  if (py::isinstance<NDArray>(value)) return value.cast<NDArray>();
  if (!value.is_none()) {
    try {
      const Tensor t = value.cast<Tensor>();
      if (t.defined()) return t.data();
    } catch (const py::cast_error&) {
    }
  }
  if (py::hasattr(value, "realize_cached_data")) {
    py::object data = value.attr("realize_cached_data")();
    if (py::isinstance<NDArray>(data)) return data.cast<NDArray>();
  }
  try {
    return to_ndarray(value, nullptr, std::nullopt);
  } catch (const py::error_already_set&) {
    throw TypeError("[save] '" + name + "': expected a Tensor, NDArray or numpy array, got " +
                    std::string(py::str(py::type::of(value).attr("__name__"))));
  }
}

}  // namespace

void init_serialize(py::module_& m) {
  m.def(
      "save",
      [](const py::dict& tensors, const py::object& path, const py::object& metadata) {
        const std::string file = fspath(path);
        ArrayDict arrays;
        for (auto item : tensors) {
          if (!py::isinstance<py::str>(item.first))
            throw TypeError("[save] tensor names must be str, got " +
                            std::string(py::str(py::type::of(item.first).attr("__name__"))));
          const std::string name = item.first.cast<std::string>();
          arrays.emplace(name, array_of(name, item.second));
        }
        Metadata meta;
        if (!metadata.is_none())
          for (auto item : metadata.cast<py::dict>())
            meta[py::str(item.first)] = py::str(item.second);
        py::gil_scoped_release release;
        save_safetensors(arrays, file, meta);
      },
      py::arg("tensors"), py::arg("path"), py::arg("metadata") = py::none(),
      R"doc(Write a dict of name -> Tensor / NDArray / numpy array to `path` in the
safetensors format, atomically (temporary file in the same directory, fsync, rename).
`metadata` is an optional dict of str -> str stored under "__metadata__".)doc");

  m.def(
      "load",
      [](const py::object& path, const py::object& device) {
        const std::string file = fspath(path);
        Backend& backend = to_backend(device);
        TensorDict tensors;
        {
          py::gil_scoped_release release;
          tensors = load_safetensors(file, backend);
        }
        py::dict out;
        for (auto& [name, t] : tensors) out[py::str(name)] = py::cast(t);
        return out;
      },
      py::arg("path"), py::arg("device") = py::none(),
      R"doc(Read a safetensors file: a dict of name -> Tensor (float32 / float64 as stored,
requires_grad=False) on `device`. A truncated, corrupt or non-safetensors file raises ValueError naming it.)doc");

  m.def(
      "load_metadata",
      [](const py::object& path) {
        const std::string file = fspath(path);
        Metadata meta;
        {
          py::gil_scoped_release release;
          load_safetensors_arrays(file, find_backend("cpu"), &meta);
        }
        return meta;
      },
      py::arg("path"), "The \"__metadata__\" dict of a safetensors file (validated as load).");
}

}  // namespace needle::python
