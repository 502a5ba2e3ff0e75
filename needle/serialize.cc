// safetensors writer and validating reader (see serialize.h). The header is JSON (json.h);
// the reader checks its tree against the format.
#include "needle/serialize.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <vector>

#include "needle/checked.h"
#include "needle/json.h"

namespace needle {
namespace {

constexpr uint64_t kMaxHeader = 100'000'000;  // the reference implementation's limit

template <class... Parts>
[[noreturn]] void bad_file(const std::string& path, const Parts&... parts) {
  fail<ValueError>("[safetensors] ", path, ": ", parts...);
}

bool little_endian_host() {
  const uint16_t probe = 1;
  uint8_t first;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

// --- Format ---

// Needle's dtypes and their safetensors names: the one table both directions read.
constexpr std::pair<DType, const char*> kSafetensorsDtypes[] = {
    {DType::bool_, "BOOL"}, {DType::uint8, "U8"},    {DType::int32, "I32"},
    {DType::int64, "I64"},  {DType::float32, "F32"}, {DType::float64, "F64"}};

const char* safetensors_dtype(DType d) {
  for (const auto& [dtype, name] : kSafetensorsDtypes)
    if (dtype == d) return name;
  fail<TypeError>("[safetensors] cannot store dtype ", dtype_name(d));
}

// A non-negative integer that fits in uint64 (shape entries and offsets).
uint64_t to_u64(const std::string& path, const Json& v, const std::string& what) {
  if (v.kind != Json::kNumber || v.text.empty() || v.text[0] == '-' ||
      v.text.find_first_not_of("0123456789") != std::string::npos)
    bad_file(path, what, " must be a non-negative integer");
  uint64_t out = 0;
  for (const char c : v.text) {
    const uint64_t digit = uint64_t(c - '0');
    if (out > (UINT64_MAX - digit) / 10) bad_file(path, what, " is too large");
    out = out * 10 + digit;
  }
  return out;
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

Entry parse_entry(const std::string& path, const std::string& name, const Json& v) {
  const std::string where = "tensor '" + name + "'";
  if (v.kind != Json::kObject) bad_file(path, where, " must be a JSON object");
  const Json *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
  for (const auto& [key, value] : v.members) {
    const Json** slot = key == "dtype"          ? &dtype
                        : key == "shape"        ? &shape
                        : key == "data_offsets" ? &offsets
                                                : nullptr;
    if (!slot) bad_file(path, where, " has an unknown field '", key, "'");
    if (*slot) bad_file(path, where, " has field '", key, "' twice");
    *slot = &value;
  }
  if (!dtype || !shape || !offsets)
    bad_file(path, where, " lacks field '",
             !dtype   ? "dtype"
             : !shape ? "shape"
                      : "data_offsets",
             "'");
  Entry e;
  e.name = name;
  if (dtype->kind != Json::kString) bad_file(path, where, ": dtype must be a string");
  static const std::set<std::string> kKnown = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3",
                                               "I16",  "U16", "F16", "BF16",    "I32",
                                               "U32",  "I64", "U64"};
  const auto* known = std::find_if(std::begin(kSafetensorsDtypes), std::end(kSafetensorsDtypes),
                                   [&](const auto& entry) { return dtype->text == entry.second; });
  if (known != std::end(kSafetensorsDtypes)) {
    e.dtype = known->first;
  } else if (kKnown.count(dtype->text)) {
    bad_file(path, where, " has dtype ", dtype->text,
             ", which Needle does not load (BOOL, U8, I32, I64, F32, F64)");
  } else {
    bad_file(path, where, " has unknown dtype '", dtype->text, "'");
  }
  if (shape->kind != Json::kArray) bad_file(path, where, ": shape must be an array");
  uint64_t numel = 1;
  bool overflow = false;
  for (const Json& d : shape->items) {
    const uint64_t n = to_u64(path, d, where + " shape entry");
    if (n > uint64_t(INT64_MAX)) bad_file(path, where, " shape entry is too large");
    if (n != 0 && numel > UINT64_MAX / n) overflow = true;
    numel *= n;
    e.shape.push_back(int64_t(n));
  }

  if (offsets->kind != Json::kArray || offsets->items.size() != 2)
    bad_file(path, where, ": data_offsets must be [begin, end]");
  e.begin = to_u64(path, offsets->items[0], where + " data_offsets");
  e.end = to_u64(path, offsets->items[1], where + " data_offsets");
  if (e.end < e.begin)
    bad_file(path, where, " has data_offsets [", e.begin, ", ", e.end, "] with end before begin");
  const uint64_t item = dtype_size(e.dtype);
  if (overflow || numel > UINT64_MAX / item || numel * item != e.end - e.begin)
    bad_file(path, where, " of shape ", shape_str(e.shape), " and dtype ", dtype->text, " needs ",
             overflow ? std::string("too many") : std::to_string(numel * item),
             " bytes but data_offsets [", e.begin, ", ", e.end, "] span ", e.end - e.begin);
  try {  // also a shape such as (0, 2^62, 2^62), whose strides do not fit in 64 bits
    checked_numel("safetensors", e.shape, int64_t(item));
  } catch (const ValueError&) {
    bad_file(path, where, " has shape ", shape_str(e.shape), ", too large for 64-bit sizes");
  }
  return e;
}

// The whole file. Only a regular file is read: a FIFO would block forever and a directory
// has no bytes. The type is checked before opening and again on the open descriptor
// (O_NONBLOCK, so a FIFO swapped in between cannot block the open either).
std::vector<char> read_whole_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    bad_file(path, "cannot open file (", std::strerror(errno), ")");
  auto check_regular = [&](const struct stat& s) {
    if (S_ISDIR(s.st_mode)) bad_file(path, "is a directory, not a safetensors file");
    if (!S_ISREG(s.st_mode)) bad_file(path, "is not a regular file (a FIFO, socket or device)");
  };
  check_regular(st);
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) bad_file(path, "cannot open file (", std::strerror(errno), ")");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::fstat(fd, &st) != 0) bad_file(path, "cannot determine the file size");
  check_regular(st);
  std::vector<char> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t r = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) bad_file(path, "read error (", std::strerror(errno), ")");
    if (r == 0) bad_file(path, "read error (the file shrank while it was read)");
    done += size_t(r);
  }
  return bytes;
}

// Whether [p, p + n) is well-formed UTF-8 (no overlong forms, surrogates or values past
// U+10FFFF): the safetensors header is JSON, which is UTF-8 text.
bool valid_utf8(const char* p, size_t n) {
  const auto* s = reinterpret_cast<const unsigned char*>(p);
  size_t i = 0;
  while (i < n) {
    const unsigned c = s[i];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t k = 2; k < len; ++k)
      if ((s[i + k] & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

// --- Atomic write ---

std::string errno_text() {
  return std::strerror(errno);
}

// Temporary files are named "<target>.tmp-<pid>-XXXXXX". A save that is killed cannot
// remove its own, so each save first removes the ones of the same target whose writer
// process no longer exists (on this host: a writer on another host sharing the directory
// would look dead, so keep concurrent saves of one file on one machine).
std::string temp_prefix(const std::string& target) {
  return target + ".tmp-";
}

void remove_stale_temp_files(const std::string& target) {
  const size_t slash = target.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : target.substr(0, slash + 1);
  const std::string base =
      temp_prefix(slash == std::string::npos ? target : target.substr(slash + 1));
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const dirent* entry = ::readdir(d)) {
    const std::string name = entry->d_name;
    if (name.compare(0, base.size(), base) != 0) continue;
    // "<pid>-XXXXXX" after the prefix
    const std::string rest = name.substr(base.size());
    const size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string::npos || rest.size() - dash != 7) continue;
    if (rest.find_first_not_of("0123456789") != dash) continue;
    const long pid = std::strtol(rest.c_str(), nullptr, 10);
    if (pid <= 0 || (::kill(pid_t(pid), 0) != 0 && errno == ESRCH)) {
      const std::string stale = dir + name;
      struct stat st;
      if (::lstat(stale.c_str(), &st) == 0 && S_ISREG(st.st_mode)) ::unlink(stale.c_str());
    }
  }
  ::closedir(d);
}

class TempFile {
 public:
  explicit TempFile(const std::string& target) : target_(target) {
    // The target is replaced by rename: refuse anything but a regular file (renaming over
    // /dev/null or a FIFO would replace the node itself).
    struct stat st;
    if (::stat(target.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
      fail<ValueError>("[safetensors] cannot write ", target, ": ",
                       S_ISDIR(st.st_mode) ? "it is a directory"
                                           : "it is not a regular file (a FIFO, socket or device)");
    remove_stale_temp_files(target);
    std::string templ = temp_prefix(target) + std::to_string(::getpid()) + "-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    fd_ = ::mkstemp(buf.data());
    if (fd_ < 0)
      fail<RuntimeError>("[safetensors] cannot write ", target,
                         ": cannot create a temporary file (", errno_text(), ")");
    path_ = buf.data();
    ::fchmod(fd_, 0644);
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail_io("write failed");
      p += w;
      n -= size_t(w);
    }
  }
  // fsync, close and rename over the target, then fsync the directory (best effort).
  void commit() {
    if (::fsync(fd_) != 0) fail_io("fsync failed");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail_io("close failed");
    if (::rename(path_.c_str(), target_.c_str()) != 0) fail_io("rename failed");
    committed_ = true;
    const size_t slash = target_.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : target_.substr(0, slash + 1);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  [[noreturn]] void fail_io(const char* what) {
    fail<RuntimeError>("[safetensors] cannot write ", target_, ": ", what, " (", errno_text(), ")");
  }
  std::string target_, path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void save_safetensors(const ArrayDict& arrays, const std::string& path, const Metadata& metadata) {
  if (!little_endian_host()) fail<RuntimeError>("[safetensors] big-endian hosts are not supported");
  // Data order: wider dtypes first, then by name (as the reference writer), so every
  // tensor's offset is a multiple of its element size.
  std::vector<std::pair<std::string, NDArray>> order(arrays.begin(), arrays.end());
  for (const auto& [name, a] : order) {
    if (name.empty()) fail<ValueError>("[safetensors] ", path, ": tensor names must be non-empty");
    if (name == "__metadata__")
      fail<ValueError>("[safetensors] ", path, ": '__metadata__' is reserved, not a tensor name");
    if (!a.defined())
      fail<ValueError>("[safetensors] ", path, ": tensor '", name, "' is undefined");
    safetensors_dtype(a.dtype());
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& x, const auto& y) {
    return dtype_size(x.second.dtype()) > dtype_size(y.second.dtype());
  });

  std::ostringstream header;
  header << '{';
  bool first = true;
  if (!metadata.empty()) {
    header << "\"__metadata__\":{";
    for (auto it = metadata.begin(); it != metadata.end(); ++it) {
      if (it != metadata.begin()) header << ',';
      write_json_string(header, it->first);
      header << ':';
      write_json_string(header, it->second);
    }
    header << '}';
    first = false;
  }
  uint64_t offset = 0;
  for (const auto& [name, a] : order) {
    const uint64_t bytes = uint64_t(a.size()) * dtype_size(a.dtype());
    if (!first) header << ',';
    first = false;
    write_json_string(header, name);
    header << ":{\"dtype\":\"" << safetensors_dtype(a.dtype()) << "\",\"shape\":[";
    for (size_t i = 0; i < a.shape().size(); ++i) header << (i ? "," : "") << a.shape()[i];
    header << "],\"data_offsets\":[" << offset << ',' << offset + bytes << "]}";
    offset += bytes;
  }
  header << '}';
  std::string text = header.str();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t n = text.size();
  uint8_t prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = uint8_t(n >> (8 * i));

  TempFile file(path);
  file.write(prefix, 8);
  file.write(text.data(), text.size());
  std::vector<char> buffer;
  for (const auto& [name, a] : order) {
    buffer.resize(size_t(a.size()) * dtype_size(a.dtype()));
    a.to_host(buffer.data());
    file.write(buffer.data(), buffer.size());
  }
  file.commit();
}

void save_safetensors(const TensorDict& tensors, const std::string& path,
                      const Metadata& metadata) {
  ArrayDict arrays;
  for (const auto& [name, t] : tensors) {
    if (!t.defined())
      fail<ValueError>("[safetensors] ", path, ": tensor '", name, "' is undefined");
    arrays.emplace(name, t.data());
  }
  save_safetensors(arrays, path, metadata);
}

ArrayDict load_safetensors_arrays(const std::string& path, Backend& device, Metadata* metadata) {
  if (!little_endian_host()) fail<RuntimeError>("[safetensors] big-endian hosts are not supported");
  const std::vector<char> bytes = read_whole_file(path);
  if (bytes.size() < 8)
    bad_file(path, "too short for a safetensors file (", bytes.size(), " bytes)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[size_t(i)]);
  if (n > kMaxHeader)
    bad_file(path, "not a safetensors file (header length ", n, " is implausible)");
  if (n > bytes.size() - 8)
    bad_file(path, "truncated: header length ", n, " exceeds the ", bytes.size() - 8,
             " bytes after the length prefix");
  if (n == 0 || bytes[8] != '{')
    bad_file(path, "not a safetensors file (the header is not a JSON object)");
  if (!valid_utf8(bytes.data() + 8, size_t(n)))
    bad_file(path, "corrupt: the header is not valid UTF-8");
  const Json root =
      parse_json("[safetensors] " + path + ": corrupt header", bytes.data() + 8, size_t(n));
  if (root.kind != Json::kObject) bad_file(path, "the header is not a JSON object");

  const uint64_t data_size = bytes.size() - 8 - n;
  std::vector<Entry> entries;
  std::set<std::string> seen;
  Metadata meta;
  for (const auto& [name, value] : root.members) {
    if (!seen.insert(name).second) bad_file(path, "the header names '", name, "' twice");
    if (name == "__metadata__") {
      if (value.kind != Json::kObject) bad_file(path, "__metadata__ must be a JSON object");
      for (const auto& [k, v] : value.members) {
        if (v.kind != Json::kString)
          bad_file(path, "__metadata__ value of '", k, "' is not a string");
        meta[k] = v.text;
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, value));
    if (entries.back().end > data_size)
      bad_file(path, "truncated or corrupt: tensor '", name, "' has data_offsets [",
               entries.back().begin, ", ", entries.back().end, "] beyond the ", data_size,
               " data bytes");
  }
  // The byte ranges must tile the data section exactly: no overlap, no gap, no tail.
  std::vector<const Entry*> sorted;
  for (const Entry& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  const Entry* previous = nullptr;
  for (const Entry* e : sorted) {
    if (e->begin < cursor)
      bad_file(path, "tensors '", previous->name, "' and '", e->name, "' overlap (data_offsets [",
               previous->begin, ", ", previous->end, "] and [", e->begin, ", ", e->end, "])");
    if (e->begin > cursor)
      bad_file(path, "corrupt: bytes [", cursor, ", ", e->begin,
               ") of the data belong to no tensor");
    cursor = e->end;
    previous = e;
  }
  if (cursor != data_size)
    bad_file(path, "corrupt: ", data_size - cursor, " trailing bytes after the last tensor's data");

  ArrayDict out;
  const char* data = bytes.data() + 8 + n;
  for (const Entry& e : entries) {
    // A bool byte other than 0 or 1 is no C++ bool: refuse it rather than read it as one.
    if (e.dtype == DType::bool_ &&
        std::any_of(data + e.begin, data + e.end, [](char c) { return c != 0 && c != 1; }))
      bad_file(path, "tensor '", e.name, "' of dtype BOOL holds a byte other than 0 or 1");
    out.emplace(e.name, NDArray::from_host(data + e.begin, e.shape, e.dtype, device));
  }
  if (metadata) *metadata = std::move(meta);
  return out;
}

TensorDict load_safetensors(const std::string& path, Backend& device, Metadata* metadata) {
  TensorDict out;
  for (auto& [name, a] : load_safetensors_arrays(path, device, metadata))
    out.emplace(name, Tensor(a, false));
  return out;
}

}  // namespace needle
