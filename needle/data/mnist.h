// MNIST-format data: the idx file reader and the MNIST / Fashion-MNIST dataset.
//
// An idx file is a 4-byte magic number (two zero bytes, an element-type code, the number
// of dimensions), then each dimension as a big-endian uint32, then the elements. MNIST
// uses unsigned bytes (type 0x08): images (N, 28, 28), labels (N,). Files may be gzipped
// (read through zlib when Needle is built with it; detected by the gzip magic, not the
// name). Every problem — a missing file, a wrong magic number, a truncated or oversized
// body, images and labels that disagree — is a ValueError naming the file; a malformed
// file never crashes the reader.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "needle/data/dataloader.h"

namespace needle::data {

// Whether gzipped idx files can be read (Needle was built with zlib).
bool gzip_supported();

// The raw contents of an idx file of unsigned bytes.
struct IdxArray {
  Shape shape;
  std::vector<uint8_t> data;  // row-major, size = product of shape
};

// Reads an idx file of unsigned bytes (gzipped or plain).
IdxArray read_idx(const std::string& path);

// Writes an idx file of unsigned bytes (plain; gzipped when the path ends in ".gz" and zlib
// is available). For tests and tools that make small datasets.
void write_idx(const std::string& path, const Shape& shape, const std::vector<uint8_t>& data);

// The course's parse_mnist: images as float32 in [0, 1], one row of rows*cols values per
// image, and the labels. ValueError when the two files disagree on the count or the image
// file is not 3-D / the label file not 1-D.
struct MnistData {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<float> images;    // (count, rows * cols)
  std::vector<uint8_t> labels;  // (count,)
};
MnistData parse_mnist(const std::string& image_path, const std::string& label_path);

// MNISTDataset: items are (image (rows, cols, 1) in [0, 1], label) as the course's. The
// pixels stay bytes in memory (a quarter of the float size) and are scaled per batch.
class MNISTDataset : public Dataset {
 public:
  MNISTDataset(const std::string& image_path, const std::string& label_path);
  int64_t size() const override { return count_; }
  size_t num_fields() const override { return 2; }
  Shape item_shape(size_t field) const override;
  void copy_item(int64_t index, size_t field, float* dst) const override;
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  const std::vector<uint8_t>& labels() const { return labels_; }

 private:
  int64_t count_ = 0, rows_ = 0, cols_ = 0;
  std::vector<uint8_t> pixels_;  // (count, rows, cols)
  std::vector<uint8_t> labels_;  // (count,)
};

// The path of `name` (e.g. "train-images-idx3-ubyte") in `dir`, with ".gz" or without,
// whichever exists (gz preferred); ValueError naming both when neither does.
std::string find_idx_file(const std::string& dir, const std::string& name);

}  // namespace needle::data
