// Bindings of the BPE tokenizer (needle/text/bpe_tokenizer.h) as needle._needle.text; the class
// users see is needle.data.BPETokenizer (python/needle/data/tokenizer.py), a thin wrapper.
//
// The C++ tokenizer works on bytes. Here a str is its UTF-8 encoding (a str that cannot be
// encoded, such as one holding a lone surrogate, raises UnicodeEncodeError, a ValueError);
// decode returns str with undecodable bytes replaced by U+FFFD (errors="replace"), and
// decode_bytes returns the exact bytes. Arguments of the wrong kind raise TypeError naming
// the method. A bound tokenizer never changes (training makes a new one), so training and
// encoding run without the GIL, and threads may encode with one tokenizer at once.
#include <algorithm>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "bindings.h"
#include "needle/error.h"
#include "needle/text/bpe_tokenizer.h"

namespace py = pybind11;

namespace needle::python {
namespace {

using text::BPETokenizer;

std::string type_name(const py::handle& obj) {
  return py::str(py::type::of(obj).attr("__name__"));
}

// The bytes of a str (UTF-8, no copy) or of a bytes object; TypeError for anything else.
std::string_view text_arg(const py::handle& obj, const char* op, bool allow_str, bool allow_bytes) {
  if (allow_str && PyUnicode_Check(obj.ptr())) {
    Py_ssize_t n = 0;
    const char* data = PyUnicode_AsUTF8AndSize(obj.ptr(), &n);
    if (!data) throw py::error_already_set();
    return {data, size_t(n)};
  }
  if (allow_bytes && PyBytes_Check(obj.ptr()))
    return {PyBytes_AS_STRING(obj.ptr()), size_t(PyBytes_GET_SIZE(obj.ptr()))};
  fail<TypeError>("[BPETokenizer.", op, "] expected ",
                  allow_str && allow_bytes ? "str or bytes"
                  : allow_str              ? "str"
                                           : "bytes",
                  ", got ", type_name(obj));
}

// An int (or anything with __index__, e.g. numpy integers; not bool or float) as int64;
// ValueError for one beyond int64.
int64_t int_arg(const py::handle& obj, const char* op, const char* what) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    fail<TypeError>("[BPETokenizer.", op, "] ", what, " must be an int, got ", type_name(obj));
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!index) throw py::error_already_set();
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (overflow)
    fail<ValueError>("[BPETokenizer.", op, "] ", what, " ", std::string(py::str(index)),
                     " does not fit in 64 bits");
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

// Token ids from a sequence or iterable of ints, or a 1-d numpy integer array.
std::vector<int64_t> ids_arg(const py::handle& obj, const char* op) {
  if (PyUnicode_Check(obj.ptr()) || PyBytes_Check(obj.ptr()) || PyByteArray_Check(obj.ptr()) ||
      !py::hasattr(obj, "__iter__"))
    fail<TypeError>("[BPETokenizer.", op, "] expected a sequence of int token ids, got ",
                    type_name(obj));
  if (py::isinstance<py::array>(obj)) {
    const auto arr = py::reinterpret_borrow<py::array>(obj);
    const char kind = arr.dtype().kind();
    if (kind != 'i' && kind != 'u')
      fail<TypeError>("[BPETokenizer.", op, "] token ids must be integers, got an array of ",
                      std::string(py::str(arr.dtype())));
    if (arr.ndim() != 1)
      fail<ValueError>("[BPETokenizer.", op, "] expected a 1-d array of token ids, got ",
                       arr.ndim(), " dimensions");
    if (kind == 'u' && arr.dtype().itemsize() == 8 && arr.size() > 0 &&
        py::int_(arr.attr("max")()).cast<uint64_t>() >
            uint64_t(std::numeric_limits<int64_t>::max()))
      fail<ValueError>("[BPETokenizer.", op, "] token id ", std::string(py::str(arr.attr("max")())),
                       " does not fit in 64 bits");
    const auto ids = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
    if (!ids) throw py::error_already_set();
    return std::vector<int64_t>(ids.data(), ids.data() + ids.size());
  }
  std::vector<int64_t> ids;
  if (PyList_Check(obj.ptr()) || PyTuple_Check(obj.ptr())) ids.reserve(size_t(py::len(obj)));
  for (const py::handle item : obj) ids.push_back(int_arg(item, op, "a token id"));
  return ids;
}

std::string path_arg(const py::handle& path) {
  // os.fsencode: str and os.PathLike, encoded as open() would; TypeError for anything else.
  return py::module_::import("os").attr("fsencode")(path).cast<std::string>();
}

// The ids as a list of int. The int objects of ids below kSharedInts are made once and shared
// (as CPython shares -5..256), so a list of a million tokens costs no allocation per token,
// neither to build nor to free. They live as long as the process.
constexpr int64_t kSharedInts = int64_t(1) << 17;

py::list to_list(const std::vector<int64_t>& ids) {
  static std::vector<PyObject*> shared;
  py::list out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    PyObject* v;
    if (id >= 0 && id < kSharedInts) {
      if (size_t(id) >= shared.size()) {
        const size_t old = shared.size();
        shared.resize(std::min<size_t>(kSharedInts, std::max<size_t>(size_t(id) + 1, 2 * old)));
        for (size_t k = old; k < shared.size(); ++k) {
          shared[k] = PyLong_FromLongLong(int64_t(k));
          if (!shared[k]) {
            shared.resize(k);
            throw py::error_already_set();
          }
        }
      }
      v = shared[size_t(id)];
      Py_INCREF(v);
    } else {
      v = PyLong_FromLongLong(id);
      if (!v) throw py::error_already_set();
    }
    PyList_SET_ITEM(out.ptr(), Py_ssize_t(i), v);
  }
  return out;
}

}  // namespace

void init_text(py::module_& parent) {
  py::module_ m = parent.def_submodule("text", "The BPE tokenizer (needle/text/bpe_tokenizer.h).");

  m.def(
      "pre_split",
      [](const py::object& text) {
        const std::string_view data = text_arg(text, "pre_split", true, true);
        py::list out;
        for (const std::string_view piece : text::pre_split(data))
          out.append(py::bytes(piece.data(), piece.size()));
        return out;
      },
      py::arg("text"),
      "The pieces (bytes) that BPE merges inside: runs of letters (bytes >= 0x80 count as "
      "letters), digits, other bytes, each with an optional leading space; whitespace runs; "
      "ASCII contractions. See docs/tokenizer.md.");

  py::class_<BPETokenizer>(m, "BPETokenizer",
                           "Byte-level BPE: ids 0..255 are the bytes, then one id per learned "
                           "merge, then the special tokens.")
      .def(py::init<>(), "The untrained tokenizer: 256 byte tokens, no merges.")
      .def_static(
          "trained",
          [](const py::object& text, const py::object& vocab_size,
             const py::object& special_tokens) {
            const std::string_view data = text_arg(text, "train", true, true);
            const int64_t size = int_arg(vocab_size, "train", "vocab_size");
            if (PyUnicode_Check(special_tokens.ptr()) || PyBytes_Check(special_tokens.ptr()) ||
                !py::hasattr(special_tokens, "__iter__"))
              fail<TypeError>("[BPETokenizer.train] special_tokens must be a sequence of str, got ",
                              type_name(special_tokens));
            std::vector<std::string> specials;
            for (const py::handle s : special_tokens)
              specials.emplace_back(text_arg(s, "train", true, true));
            py::gil_scoped_release release;
            BPETokenizer tok;
            tok.train(data, size, specials);
            return tok;
          },
          py::arg("text"), py::arg("vocab_size"), py::arg("special_tokens") = py::tuple(),
          "A new tokenizer with merges learned from `text` (str, as UTF-8, or bytes) until the "
          "vocabulary has `vocab_size` tokens (fewer when no adjacent pair is left). Special "
          "tokens (str) are cut out of the text before counting. (A new object rather than a "
          "method that changes one: bound tokenizers never change, so encode can run without "
          "the GIL.)")
      .def(
          "encode",
          [](const BPETokenizer& tok, const py::object& text) {
            const std::string_view data = text_arg(text, "encode", true, false);
            std::vector<int64_t> ids;
            {
              py::gil_scoped_release release;
              ids = tok.encode(data);
            }
            return to_list(ids);
          },
          py::arg("text"), "Token ids (list of int) of a str, encoded as UTF-8.")
      .def(
          "encode_bytes",
          [](const BPETokenizer& tok, const py::object& data) {
            const std::string_view bytes = text_arg(data, "encode_bytes", false, true);
            std::vector<int64_t> ids;
            {
              py::gil_scoped_release release;
              ids = tok.encode(bytes);
            }
            return to_list(ids);
          },
          py::arg("data"), "Token ids (list of int) of bytes.")
      .def(
          "decode",
          [](const BPETokenizer& tok, const py::object& ids) {
            const std::string bytes = tok.decode(ids_arg(ids, "decode"));
            PyObject* s = PyUnicode_DecodeUTF8(bytes.data(), Py_ssize_t(bytes.size()), "replace");
            if (!s) throw py::error_already_set();
            return py::reinterpret_steal<py::str>(s);
          },
          py::arg("ids"),
          "The text of token ids (str; bytes that are not valid UTF-8 become U+FFFD). "
          "ValueError naming an id outside [0, vocab_size).")
      .def(
          "decode_bytes",
          [](const BPETokenizer& tok, const py::object& ids) {
            const std::string bytes = tok.decode(ids_arg(ids, "decode_bytes"));
            return py::bytes(bytes);
          },
          py::arg("ids"), "The exact bytes of token ids.")
      .def_property_readonly("vocab_size", &BPETokenizer::vocab_size,
                             "256 + number of merges + number of special tokens.")
      .def_property_readonly(
          "merges",
          [](const BPETokenizer& tok) {
            py::list out;
            for (const text::Merge& mg : tok.merges())
              out.append(py::make_tuple(mg.left, mg.right));
            return out;
          },
          "The merges in the order learned: merge i, (left, right), made token 256 + i.")
      .def_property_readonly(
          "special_tokens",
          [](const BPETokenizer& tok) {
            py::list out;
            for (const std::string& s : tok.special_tokens()) out.append(py::bytes(s));
            return out;
          },
          "The special tokens (bytes); token i has id vocab_size - len(special_tokens) + i.")
      .def(
          "token_bytes",
          [](const BPETokenizer& tok, const py::object& id) {
            return py::bytes(tok.token_bytes(int_arg(id, "token_bytes", "the token id")));
          },
          py::arg("id"), "The bytes that one token stands for.")
      .def(
          "save",
          [](const BPETokenizer& tok, const py::object& path) {
            const std::string file = path_arg(path);
            py::gil_scoped_release release;
            tok.save(file);
          },
          py::arg("path"),
          "Write the tokenizer to `path` atomically in the text format of docs/tokenizer.md.")
      .def_static(
          "load",
          [](const py::object& path) {
            const std::string file = path_arg(path);
            py::gil_scoped_release release;
            return BPETokenizer::load(file);
          },
          py::arg("path"),
          "Read a tokenizer that save wrote; a damaged file is a ValueError naming the file "
          "and line.");
}

}  // namespace needle::python
