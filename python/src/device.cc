// Python devices: the `Device` handle (`nd.cpu()`, `nd.cuda()`), the raw `Array` buffer
// handle, and the course's raw kernel functions on handles (`device.ewise_add(a, b, out)`,
// `device.compact(a, out, shape, strides, offset)`, ...), each mapped onto one Backend call.
#include <algorithm>
#include <string>

#include "bindings.h"
#include "needle/checked.h"
#include "needle/kernels.h"

namespace py = pybind11;

namespace needle::python {

Backend& to_backend(const py::handle& device) {
  if (device.is_none()) return default_backend();
  if (py::isinstance<Device>(device)) return *device.cast<Device&>().backend;
  if (py::isinstance<py::str>(device)) return find_backend(device.cast<std::string>());
  throw py::type_error("expected a device such as needle.cpu(), got " +
                       std::string(py::str(py::type::of(device))));
}

namespace {

using Handle = std::shared_ptr<Buffer>;

// A view over a raw handle: the course kernels address buffers by (shape, strides, offset).
View handle_view(const Handle& h, std::vector<int64_t> shape, std::vector<int64_t> strides,
                 int64_t offset) {
  // Kernels index strides by the shape's dimensions (they trust their views).
  if (shape.size() != strides.size())
    fail<ValueError>("[view] shape ", shape_str(shape), " and strides ", shape_str(strides),
                     " differ in length");
  return View{h->data(), h->dtype(), std::move(shape), std::move(strides), offset};
}
View flat_view(const Handle& h, int64_t size) {
  return handle_view(h, {size}, {1}, 0);
}

void check_handle(const char* op, const Device& d, const Handle& h) {
  if (&h->backend() != d.backend)
    fail<RuntimeError>("[", op, "] handle lives on ", h->backend().name(), ", not on ",
                       d.backend->name());
}

void check_room(const char* op, const Handle& h, int64_t needed) {
  if (needed < 0) fail<ValueError>("[", op, "] negative size ", needed);
  if (needed > h->size())
    fail<ValueError>("[", op, "] needs ", needed, " elements but the handle holds ", h->size());
}

// Kernels trust their views (NDArray promotes dtypes before calling one), so these raw
// entry points check that the handles they hand to one kernel share out's dtype.
void check_dtype(const char* op, const Handle& h, const Handle& out) {
  if (h->dtype() != out->dtype())
    fail<TypeError>("[", op, "] handle of dtype ", dtype_name(h->dtype()),
                    " does not match the output's ", dtype_name(out->dtype()));
}

// These kernels bypass NDArray, so this is where a caller's (shape, strides, offset) is
// checked against the handle: every element the view reaches must lie inside it.
View checked_view(const char* op, const Handle& h, std::vector<int64_t> shape,
                  std::vector<int64_t> strides, int64_t offset) {
  if (shape.size() != strides.size())
    fail<ValueError>("[", op, "] shape ", shape_str(shape), " and strides ", shape_str(strides),
                     " differ in length");
  checked_numel(op, shape);
  if (!view_fits(shape, strides, offset, h->size()))
    fail<ValueError>("[", op, "] shape ", shape_str(shape), " with strides ", shape_str(strides),
                     " and offset ", offset, " reaches outside a handle of ", h->size(),
                     " elements");
  return handle_view(h, std::move(shape), std::move(strides), offset);
}

// rows * cols for a matrix kernel's operand, checked.
int64_t matrix_size(const char* op, int64_t rows, int64_t cols) {
  return checked_numel(op, {rows, cols});
}

// Element-wise kernel on the first out.size elements of compact handles.
void bind_binary(py::class_<Device>& cls, const char* name, BinaryOp op) {
  cls.def(name, [op, name](Device& d, const Handle& a, const Handle& b, const Handle& out) {
    check_handle(name, d, out);
    for (auto* h : {&a, &b}) check_handle(name, d, *h), check_room(name, *h, out->size());
    check_dtype(name, a, out), check_dtype(name, b, out);
    d.backend->binary(op, flat_view(a, out->size()), flat_view(b, out->size()),
                      flat_view(out, out->size()));
  });
}
void bind_scalar(py::class_<Device>& cls, const char* name, BinaryOp op) {
  cls.def(name, [op, name](Device& d, const Handle& a, double val, const Handle& out) {
    check_handle(name, d, out), check_handle(name, d, a), check_room(name, a, out->size());
    check_dtype(name, a, out);
    d.backend->binary_scalar(op, flat_view(a, out->size()), val, flat_view(out, out->size()),
                             false);
  });
}
void bind_unary(py::class_<Device>& cls, const char* name, UnaryOp op) {
  cls.def(name, [op, name](Device& d, const Handle& a, const Handle& out) {
    check_handle(name, d, out), check_handle(name, d, a), check_room(name, a, out->size());
    check_dtype(name, a, out);
    d.backend->unary(op, flat_view(a, out->size()), flat_view(out, out->size()));
  });
}
void bind_reduce(py::class_<Device>& cls, const char* name, ReduceOp op) {
  cls.def(name, [op, name](Device& d, const Handle& a, const Handle& out, int64_t reduce_size) {
    check_handle(name, d, out), check_handle(name, d, a);
    if (reduce_size < 1 && !(op == ReduceOp::sum && reduce_size == 0))
      fail<ValueError>("[", name, "] reduce_size must be positive, got ", reduce_size);
    check_room(name, a, matrix_size(name, out->size(), reduce_size));
    check_dtype(name, a, out);
    d.backend->reduce(op, handle_view(a, {out->size(), reduce_size}, {reduce_size, 1}, 0),
                      flat_view(out, out->size()));
  });
}

// The course's tiled layout stores an (r, c) matrix as (r/T, c/T, T, T) blocks; as a 4-D
// view (r/T, T, c/T, T) those blocks read as the plain matrix.
View tiled_as_matrix(const Handle& h, int64_t rows, int64_t cols, int64_t tile) {
  return handle_view(h, {rows / tile, tile, cols / tile, tile},
                     {cols / tile * tile * tile, tile, tile * tile, 1}, 0);
}

constexpr int64_t kTileSize = 8;

}  // namespace

void init_device(py::module_& m) {
  py::class_<Buffer, Handle>(m, "Array", "A raw device buffer: the handle behind an NDArray.")
      .def_property_readonly("size", &Buffer::size, "Number of elements.")
      .def_property_readonly("dtype", [](const Buffer& b) { return dtype_object(b.dtype()); })
      .def(
          "ptr", [](const Buffer& b) { return reinterpret_cast<uintptr_t>(b.data()); },
          "Address of the first element (compare to test for shared memory).");

  py::class_<Device> cls(m, "Device", "A compute device: cpu() or cuda().");
  cls.def_property_readonly("name", [](const Device& d) { return d.backend->name(); })
      .def(
          "enabled", [](const Device& d) { return d.backend->enabled(); },
          "Whether this device can run here (False for cuda without a GPU).")
      .def("disabled_reason", [](const Device& d) { return d.backend->disabled_reason(); })
      .def("__repr__", [](const Device& d) { return d.backend->name() + "()"; })
      .def("__eq__",
           [](const Device& d, const py::object& other) {
             return py::isinstance<Device>(other) &&
                    other.cast<Device&>().backend->name() == d.backend->name();
           })
      .def("__hash__", [](const Device& d) { return std::hash<std::string>()(d.backend->name()); })
      .def("synchronize", [](const Device& d) { d.backend->synchronize(); })
      .def(
          "Array",
          [](Device& d, int64_t size, const py::object& dtype) {
            if (size < 0) fail<ValueError>("[Array] negative size ", size);
            if (!d.backend->enabled())
              fail<RuntimeError>("device '", d.backend->name(),
                                 "' is not available: ", d.backend->disabled_reason());
            if (dtype.is_none()) fail<TypeError>("[Array] expected a dtype, got None");
            return std::make_shared<Buffer>(*d.backend, size, *to_dtype(dtype, "Array"));
          },
          py::arg("size"), py::arg("dtype") = "float32",
          "Allocate a raw buffer of `size` elements.")
      .def_property_readonly_static("__tile_size__", [](const py::object&) { return kTileSize; })
      .def("fill",
           [](Device& d, const Handle& out, double val) {
             check_handle("fill", d, out);
             d.backend->fill(flat_view(out, out->size()), val);
           })
      .def("compact",
           [](Device& d, const Handle& a, const Handle& out, std::vector<int64_t> shape,
              std::vector<int64_t> strides, int64_t offset) {
             check_handle("compact", d, a), check_handle("compact", d, out);
             View src = checked_view("compact", a, std::move(shape), std::move(strides), offset);
             check_room("compact", out, src.size());
             d.backend->copy(src,
                             handle_view(out, src.shape, NDArray::compact_strides(src.shape), 0));
           })
      .def("ewise_setitem",
           [](Device& d, const Handle& a, const Handle& out, std::vector<int64_t> shape,
              std::vector<int64_t> strides, int64_t offset) {
             check_handle("ewise_setitem", d, a), check_handle("ewise_setitem", d, out);
             View dst =
                 checked_view("ewise_setitem", out, std::move(shape), std::move(strides), offset);
             check_room("ewise_setitem", a, dst.size());
             d.backend->copy(handle_view(a, dst.shape, NDArray::compact_strides(dst.shape), 0),
                             dst);
           })
      .def("scalar_setitem",
           [](Device& d, int64_t /*size*/, double val, const Handle& out,
              std::vector<int64_t> shape, std::vector<int64_t> strides, int64_t offset) {
             check_handle("scalar_setitem", d, out);
             d.backend->fill(
                 checked_view("scalar_setitem", out, std::move(shape), std::move(strides), offset),
                 val);
           })
      .def("matmul",
           [](Device& d, const Handle& a, const Handle& b, const Handle& out, int64_t m, int64_t n,
              int64_t p) {
             for (auto* h : {&a, &b, &out}) check_handle("matmul", d, *h);
             check_room("matmul", a, matrix_size("matmul", m, n));
             check_room("matmul", b, matrix_size("matmul", n, p));
             check_room("matmul", out, matrix_size("matmul", m, p));
             check_dtype("matmul", a, out), check_dtype("matmul", b, out);
             d.backend->matmul(handle_view(a, {m, n}, {n, 1}, 0), handle_view(b, {n, p}, {p, 1}, 0),
                               handle_view(out, {m, p}, {p, 1}, 0));
           })
      .def("matmul_tiled",
           [](Device& d, const Handle& a, const Handle& b, const Handle& out, int64_t m, int64_t n,
              int64_t p) {
             if (m % kTileSize || n % kTileSize || p % kTileSize)
               fail<ValueError>("[matmul_tiled] sizes ", m, ", ", n, ", ", p,
                                " must be multiples of the tile size ", kTileSize);
             for (auto* h : {&a, &b, &out}) check_handle("matmul_tiled", d, *h);
             check_room("matmul_tiled", a, matrix_size("matmul_tiled", m, n));
             check_room("matmul_tiled", b, matrix_size("matmul_tiled", n, p));
             check_room("matmul_tiled", out, matrix_size("matmul_tiled", m, p));
             // Un-tile the operands, multiply, and tile the product back into `out`.
             auto plain = [&](int64_t rows, int64_t cols) {
               return std::make_shared<Buffer>(*d.backend, rows * cols, out->dtype());
             };
             Handle pa = plain(m, n), pb = plain(n, p), po = plain(m, p);
             auto as_4d = [](const Handle& h, int64_t rows, int64_t cols) {
               return handle_view(h, {rows / kTileSize, kTileSize, cols / kTileSize, kTileSize},
                                  {cols * kTileSize, cols, kTileSize, 1}, 0);
             };
             d.backend->copy(tiled_as_matrix(a, m, n, kTileSize), as_4d(pa, m, n));
             d.backend->copy(tiled_as_matrix(b, n, p, kTileSize), as_4d(pb, n, p));
             d.backend->matmul(handle_view(pa, {m, n}, {n, 1}, 0),
                               handle_view(pb, {n, p}, {p, 1}, 0),
                               handle_view(po, {m, p}, {p, 1}, 0));
             d.backend->copy(as_4d(po, m, p), tiled_as_matrix(out, m, p, kTileSize));
           })
      .def("to_numpy",
           [](Device& d, const Handle& a, std::vector<int64_t> shape, std::vector<int64_t> strides,
              int64_t offset) {
             check_handle("to_numpy", d, a);
             checked_view("to_numpy", a, shape, strides, offset);
             return to_numpy(NDArray(a, shape, strides, offset));
           })
      .def("from_numpy", [](Device& d, const py::array& src, const Handle& out) {
        // Any shape, in row-major order (the course passes N-d arrays).
        check_handle("from_numpy", d, out);
        NDArray host = to_ndarray(src, d.backend, out->dtype());
        check_room("from_numpy", out, host.size());
        d.backend->copy(host.reshape({host.size()}).view(), flat_view(out, host.size()));
      });

  bind_binary(cls, "ewise_add", BinaryOp::add);
  bind_binary(cls, "ewise_mul", BinaryOp::multiply);
  bind_binary(cls, "ewise_div", BinaryOp::divide);
  bind_binary(cls, "ewise_maximum", BinaryOp::maximum);
  bind_binary(cls, "ewise_eq", BinaryOp::eq);
  bind_binary(cls, "ewise_ge", BinaryOp::ge);
  bind_scalar(cls, "scalar_add", BinaryOp::add);
  bind_scalar(cls, "scalar_mul", BinaryOp::multiply);
  bind_scalar(cls, "scalar_div", BinaryOp::divide);
  bind_scalar(cls, "scalar_power", BinaryOp::power);
  bind_scalar(cls, "scalar_maximum", BinaryOp::maximum);
  bind_scalar(cls, "scalar_eq", BinaryOp::eq);
  bind_scalar(cls, "scalar_ge", BinaryOp::ge);
  bind_unary(cls, "ewise_log", UnaryOp::log);
  bind_unary(cls, "ewise_exp", UnaryOp::exp);
  bind_unary(cls, "ewise_tanh", UnaryOp::tanh);
  bind_reduce(cls, "reduce_sum", ReduceOp::sum);
  bind_reduce(cls, "reduce_max", ReduceOp::max);

  m.def(
      "device", [](const std::string& name) { return Device{&find_backend(name)}; },
      py::arg("name"), "The device registered under `name` (\"cpu\", \"cuda\").");
  // Thread counts are device settings in the kernel registry (the bindings include no
  // backend header): set_num_threads reaches every device that has the setting.
  m.def(
      "set_num_threads",
      [](int64_t n) {
        // A team far beyond the machine only costs memory and time (10**6 threads took 18 GB).
        constexpr int64_t kMaxThreads = 1024;
        if (n > kMaxThreads)
          fail<ValueError>("[set_num_threads] n = ", n, " is more than ", kMaxThreads,
                           " threads; pass 1..", kMaxThreads, ", or n <= 0 for the default");
        for (Backend* b : all_backends())
          if (auto* set = find_kernel<kernel::SetNumThreads>(kernel::kSetNumThreads, *b))
            set(int(std::max<int64_t>(n, 0)));
      },
      py::arg("n"),
      "Threads the CPU backend may use (its OpenMP team, which also runs the GEMMs), at most "
      "1024; n <= 0 restores the default: OMP_NUM_THREADS when set, else every core.");
  m.def("get_num_threads", [] {
    auto* get = find_kernel<kernel::GetNumThreads>(kernel::kGetNumThreads, default_backend());
    return get ? get() : 1;
  });
  m.def("all_device_names", [] {
    std::vector<std::string> names;
    for (Backend* b : all_backends()) names.push_back(b->name());
    return names;
  });
}

}  // namespace needle::python
