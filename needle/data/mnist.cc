// The idx reader/writer and MNISTDataset (see mnist.h). Files are read whole into memory,
// gunzipped when they start with the gzip magic, then parsed with every length checked
// against the header before any element is touched.
#include "needle/data/mnist.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <sstream>

#ifdef NEEDLE_WITH_ZLIB
#include <zlib.h>
#endif

namespace needle::data {
namespace {

// Decompressed files larger than this are refused (MNIST's largest is 47 MB).
constexpr size_t kMaxInflated = size_t(1) << 31;

template <class... Parts>
[[noreturn]] void file_error(const std::string& path, const Parts&... parts) {
  fail<ValueError>("[idx] ", path, ": ", parts...);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) file_error(path, "cannot open file (", std::strerror(errno), ")");
  const std::streamoff size = in.tellg();
  if (size < 0) file_error(path, "cannot determine the file size");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    file_error(path, "read error");
  return bytes;
}

bool is_gzip(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

std::vector<uint8_t> gunzip(const std::string& path, const std::vector<uint8_t>& in) {
#ifdef NEEDLE_WITH_ZLIB
  std::vector<uint8_t> out;
  out.reserve(std::min(kMaxInflated, in.size() * 4));  // a guess; grows as needed
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) file_error(path, "cannot initialize zlib");
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = uInt(in.size());
  uint8_t chunk[1 << 16];
  int rc = Z_OK;
  while (true) {
    zs.next_out = chunk;
    zs.avail_out = sizeof(chunk);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) break;
    out.insert(out.end(), chunk, chunk + (sizeof(chunk) - zs.avail_out));
    if (out.size() > kMaxInflated) {
      inflateEnd(&zs);
      file_error(path, "decompressed data exceeds ", kMaxInflated, " bytes");
    }
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      // Another gzip member follows (concatenated .gz files are valid gzip).
      if (inflateReset(&zs) != Z_OK) break;
    } else if (zs.avail_in == 0 && zs.avail_out != 0) {
      rc = Z_BUF_ERROR;  // input ended inside the stream
      break;
    }
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END)
    file_error(path, rc == Z_BUF_ERROR ? "truncated gzip data" : "corrupt gzip data",
               zs.msg ? std::string(" (") + zs.msg + ")" : std::string());
  return out;
#else
  (void)in;
  file_error(path, "is gzipped, but Needle was built without zlib (decompress it with gunzip)");
#endif
}

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

std::string hex(uint32_t v, int width) {
  std::ostringstream os;
  os << "0x" << std::hex << std::setw(width) << std::setfill('0') << v;
  return os.str();
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

bool gzip_supported() {
#ifdef NEEDLE_WITH_ZLIB
  return true;
#else
  return false;
#endif
}

IdxArray read_idx(const std::string& path) {
  std::vector<uint8_t> bytes = read_file(path);
  if (is_gzip(bytes)) bytes = gunzip(path, bytes);
  // BEGIN SOLUTION hw2
  if (bytes.size() < 4) file_error(path, "too short for an idx header (", bytes.size(), " bytes)");
  const uint32_t magic = read_be32(bytes.data());
  if (bytes[0] != 0 || bytes[1] != 0 || bytes[3] == 0)
    file_error(path, "wrong magic number ", hex(magic, 8), " (not an idx file)");
  if (bytes[2] != 0x08)
    file_error(path, "unsupported idx element type ", hex(bytes[2], 2),
               " (only unsigned bytes, 0x08, are supported)");
  const size_t ndim = bytes[3];
  const size_t header = 4 + 4 * ndim;
  if (bytes.size() < header)
    file_error(path, "truncated header: ", ndim, " dimensions need ", header, " bytes, file has ",
               bytes.size());
  IdxArray out;
  const uint64_t body = bytes.size() - header;
  uint64_t count = 1;
  bool too_many = false;  // more elements than the body holds (saturates, never overflows)
  for (size_t i = 0; i < ndim; ++i) {
    const uint32_t d = read_be32(bytes.data() + 4 + 4 * i);
    out.shape.push_back(int64_t(d));
    if (d == 0) {
      count = 0;
      too_many = false;
    } else if (!too_many && count != 0) {
      too_many = d > body / count;  // count * d > body, without overflow
      if (!too_many) count *= d;
    }
  }
  if (too_many)
    file_error(path, "truncated data: shape ", shape_str(out.shape), " needs more than the ", body,
               " bytes after the header");
  if (body < count)
    file_error(path, "truncated data: shape ", shape_str(out.shape), " needs ", count,
               " bytes after the header, file has ", body);
  if (body > count)
    file_error(path, body - count, " unexpected bytes after the ", count, " data bytes of shape ",
               shape_str(out.shape));
  bytes.erase(bytes.begin(), bytes.begin() + std::ptrdiff_t(header));
  out.data = std::move(bytes);
  return out;
  // END SOLUTION
}

void write_idx(const std::string& path, const Shape& shape, const std::vector<uint8_t>& data) {
  if (shape.empty() || shape.size() > 255)
    fail<ValueError>("[write_idx] ", path, ": idx needs 1 to 255 dimensions, got ", shape.size());
  uint64_t count = 1;
  std::vector<uint8_t> bytes{0, 0, 0x08, uint8_t(shape.size())};
  for (int64_t d : shape) {
    if (d < 0 || d > int64_t(UINT32_MAX))
      fail<ValueError>("[write_idx] ", path, ": bad dimension in shape ", shape_str(shape));
    count *= uint64_t(d);
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(uint8_t(uint64_t(d) >> s));
  }
  if (count != data.size())
    fail<ValueError>("[write_idx] ", path, ": shape ", shape_str(shape), " needs ", count,
                     " bytes, got ", data.size());
  bytes.insert(bytes.end(), data.begin(), data.end());
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  if (gz) {
#ifdef NEEDLE_WITH_ZLIB
    gzFile f = gzopen(path.c_str(), "wb");
    if (!f) fail<RuntimeError>("[write_idx] ", path, ": cannot open for writing");
    const int written = gzwrite(f, bytes.data(), unsigned(bytes.size()));
    const int closed = gzclose(f);
    if (written != int(bytes.size()) || closed != Z_OK)
      fail<RuntimeError>("[write_idx] ", path, ": write failed");
    return;
#else
    fail<ValueError>("[write_idx] ", path, ": Needle was built without zlib");
#endif
  }
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f)
    fail<RuntimeError>("[write_idx] ", path, ": cannot open for writing (", std::strerror(errno),
                       ")");
  const size_t written = std::fwrite(bytes.data(), 1, bytes.size(), f);
  const int closed = std::fclose(f);
  if (written != bytes.size() || closed != 0)
    fail<RuntimeError>("[write_idx] ", path, ": write failed");
}

namespace {
// Reads and cross-checks an image file (count, rows, cols) and a label file (count,).
std::pair<IdxArray, IdxArray> read_mnist_pair(const std::string& image_path,
                                              const std::string& label_path) {
  IdxArray images = read_idx(image_path);
  IdxArray labels = read_idx(label_path);
  if (images.shape.size() != 3)
    fail<ValueError>("[mnist] ", image_path, ": expected images (count, rows, cols), got shape ",
                     shape_str(images.shape));
  if (labels.shape.size() != 1)
    fail<ValueError>("[mnist] ", label_path, ": expected labels (count,), got shape ",
                     shape_str(labels.shape));
  if (images.shape[0] != labels.shape[0])
    fail<ValueError>("[mnist] ", image_path, " has ", images.shape[0], " images but ", label_path,
                     " has ", labels.shape[0], " labels");
  return {std::move(images), std::move(labels)};
}
}  // namespace

MnistData parse_mnist(const std::string& image_path, const std::string& label_path) {
  auto [images, labels] = read_mnist_pair(image_path, label_path);
  MnistData out;
  out.count = images.shape[0];
  out.rows = images.shape[1];
  out.cols = images.shape[2];
  out.images.resize(images.data.size());
  for (size_t i = 0; i < images.data.size(); ++i) out.images[i] = float(images.data[i]) / 255.0f;
  out.labels = std::move(labels.data);
  return out;
}

MNISTDataset::MNISTDataset(const std::string& image_path, const std::string& label_path) {
  auto [images, labels] = read_mnist_pair(image_path, label_path);
  count_ = images.shape[0];
  rows_ = images.shape[1];
  cols_ = images.shape[2];
  pixels_ = std::move(images.data);
  labels_ = std::move(labels.data);
}

Shape MNISTDataset::item_shape(size_t field) const {
  if (field == 0) return {rows_, cols_, 1};
  if (field == 1) return {};
  fail<IndexError>("[MNISTDataset] field ", field, " out of range (2 fields)");
}

void MNISTDataset::copy_item(int64_t index, size_t field, float* dst) const {
  if (index < 0 || index >= count_)
    fail<IndexError>("[MNISTDataset] index ", index, " out of range for ", count_, " items");
  if (field == 1) {
    *dst = float(labels_[size_t(index)]);
    return;
  }
  if (field != 0) fail<IndexError>("[MNISTDataset] field ", field, " out of range (2 fields)");
  const size_t n = size_t(rows_ * cols_);
  const uint8_t* src = pixels_.data() + size_t(index) * n;
  for (size_t i = 0; i < n; ++i) dst[i] = float(src[i]) / 255.0f;
}

std::string find_idx_file(const std::string& dir, const std::string& name) {
  const std::string base = dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
  if (file_exists(base + ".gz")) return base + ".gz";
  if (file_exists(base)) return base;
  fail<ValueError>("[mnist] neither ", base, ".gz nor ", base, " exists");
}

}  // namespace needle::data
