// Dataset batching and the DataLoader (see dataloader.h). Batches are gathered on the host
// into one buffer per field, then copied to the device once.
#include "needle/data/dataloader.h"

#include <numeric>

#include "needle/init.h"

namespace needle::data {
namespace {
int64_t product(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}
}  // namespace

std::vector<NDArray> Dataset::get_batch(const std::vector<int64_t>& indices, Backend& device,
                                        DType dtype) const {
  const int64_t n = size();
  std::vector<NDArray> out;
  for (size_t f = 0; f < num_fields(); ++f) {
    const Shape item = item_shape(f);
    const int64_t item_size = product(item);
    std::vector<float> host(indices.size() * size_t(item_size));
    for (size_t k = 0; k < indices.size(); ++k) {
      if (indices[k] < 0 || indices[k] >= n)
        fail<IndexError>("[Dataset] index ", indices[k], " out of range for ", n, " items");
      copy_item(indices[k], f, host.data() + k * size_t(item_size));
    }
    Shape shape{int64_t(indices.size())};
    shape.insert(shape.end(), item.begin(), item.end());
    NDArray a = NDArray::from_host(host.data(), shape, DType::float32, device);
    out.push_back(dtype == DType::float32 ? a : a.astype(dtype));
  }
  return out;
}

ArrayDataset::ArrayDataset(std::vector<Field> fields) : fields_(std::move(fields)) {
  if (fields_.empty()) fail<ValueError>("[ArrayDataset] needs at least one field");
  for (size_t f = 0; f < fields_.size(); ++f) {
    const int64_t item_size = product(fields_[f].item_shape);
    const int64_t total = int64_t(fields_[f].values.size());
    if (item_size <= 0 || total % item_size != 0)
      fail<ValueError>("[ArrayDataset] field ", f, " holds ", total,
                       " values, not a whole number of items of shape ",
                       shape_str(fields_[f].item_shape));
    const int64_t count = total / item_size;
    if (f == 0) size_ = count;
    if (count != size_)
      fail<ValueError>("[ArrayDataset] field ", f, " has ", count, " items but field 0 has ",
                       size_);
    item_sizes_.push_back(item_size);
  }
}

void ArrayDataset::copy_item(int64_t index, size_t field, float* dst) const {
  if (index < 0 || index >= size_)
    fail<IndexError>("[ArrayDataset] index ", index, " out of range for ", size_, " items");
  const int64_t s = item_sizes_.at(field);
  const float* src = fields_[field].values.data() + index * s;
  std::copy(src, src + s, dst);
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, int64_t batch_size, bool shuffle,
                       Backend* device, DType dtype)
    : dataset_(std::move(dataset)),
      batch_size_(batch_size),
      shuffle_(shuffle),
      device_(device ? device : &default_backend()),
      dtype_(dtype) {
  if (!dataset_) fail<ValueError>("[DataLoader] dataset is null");
  if (batch_size_ < 1)
    fail<ValueError>("[DataLoader] batch_size must be positive, got ", batch_size);
  order_.resize(size_t(dataset_->size()));
  std::iota(order_.begin(), order_.end(), int64_t(0));
}

int64_t DataLoader::num_batches() const {
  return (dataset_->size() + batch_size_ - 1) / batch_size_;
}

void DataLoader::reset() {
  // BEGIN SOLUTION hw2
  if (shuffle_) {
    order_ = default_generator().permutation(dataset_->size());
  } else {
    order_.resize(size_t(dataset_->size()));
    std::iota(order_.begin(), order_.end(), int64_t(0));
  }
  // END SOLUTION
}

std::vector<Tensor> DataLoader::batch(int64_t b) const {
  if (b < 0 || b >= num_batches())
    fail<IndexError>("[DataLoader] batch ", b, " out of range for ", num_batches(), " batches");
  // BEGIN SOLUTION hw2
  const int64_t begin = b * batch_size_;
  const int64_t end = std::min(begin + batch_size_, int64_t(order_.size()));
  std::vector<int64_t> indices(order_.begin() + begin, order_.begin() + end);
  std::vector<Tensor> out;
  for (NDArray& a : dataset_->get_batch(indices, *device_, dtype_)) out.emplace_back(a, false);
  return out;
  // END SOLUTION
}

}  // namespace needle::data
