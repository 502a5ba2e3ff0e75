// Datasets and the DataLoader.
//
// A Dataset is a fixed number of items, each a tuple of float fields of fixed shapes (an
// image and a label). The DataLoader walks it in batches: each batch stacks the fields of
// batch_size items along a new first axis into Tensors on the loader's device. With
// shuffle, every new pass (begin()) draws a fresh order from needle::default_generator();
// the last, shorter batch is kept.
//
//   auto ds = std::make_shared<data::MNISTDataset>(images, labels);
//   data::DataLoader loader(ds, 100, /*shuffle=*/true);
//   for (const std::vector<Tensor>& batch : loader) { Tensor x = batch[0], y = batch[1]; }
#pragma once

#include <cstddef>
#include <iterator>
#include <memory>
#include <vector>

#include "needle/tensor.h"

namespace needle::data {

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual size_t num_fields() const = 0;
  // The shape of field `field` of one item.
  virtual Shape item_shape(size_t field) const = 0;
  // Writes field `field` of item `index` (row-major, item_shape's size) to dst.
  virtual void copy_item(int64_t index, size_t field, float* dst) const = 0;
  // The items at `indices` stacked along a new first axis: one array per field.
  virtual std::vector<NDArray> get_batch(const std::vector<int64_t>& indices, Backend& device,
                                         DType dtype) const;
};

// Items held in memory: field f of item i is the i-th block of fields[f].
class ArrayDataset : public Dataset {
 public:
  struct Field {
    Shape item_shape;
    std::vector<float> values;  // size() * item size
  };
  // ValueError when the fields disagree on the number of items.
  explicit ArrayDataset(std::vector<Field> fields);

  int64_t size() const override { return size_; }
  size_t num_fields() const override { return fields_.size(); }
  Shape item_shape(size_t field) const override { return fields_.at(field).item_shape; }
  void copy_item(int64_t index, size_t field, float* dst) const override;

 private:
  std::vector<Field> fields_;
  std::vector<int64_t> item_sizes_;
  int64_t size_ = 0;
};

class DataLoader {
 public:
  // `device` null = the default device. ValueError for a batch_size below 1.
  DataLoader(std::shared_ptr<const Dataset> dataset, int64_t batch_size = 1, bool shuffle = false,
             Backend* device = nullptr, DType dtype = DType::float32);

  const Dataset& dataset() const { return *dataset_; }
  int64_t batch_size() const { return batch_size_; }
  bool shuffle() const { return shuffle_; }
  // ceil(size / batch_size).
  int64_t num_batches() const;

  // Starts a new pass: the identity order, or a fresh permutation when shuffling.
  void reset();
  // Batch b of the current pass: one Tensor per field (requires_grad false).
  std::vector<Tensor> batch(int64_t b) const;
  // The item indices of the current pass, in order.
  const std::vector<int64_t>& order() const { return order_; }

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = std::vector<Tensor>;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = value_type;

    iterator(const DataLoader* loader, int64_t b) : loader_(loader), b_(b) {}
    value_type operator*() const { return loader_->batch(b_); }
    iterator& operator++() {
      ++b_;
      return *this;
    }
    bool operator==(const iterator& o) const { return b_ == o.b_ && loader_ == o.loader_; }
    bool operator!=(const iterator& o) const { return !(*this == o); }

   private:
    const DataLoader* loader_;
    int64_t b_;
  };
  // begin() starts a new pass (reset()), as the course's __iter__ does.
  iterator begin() {
    reset();
    return iterator(this, 0);
  }
  iterator end() const { return iterator(this, num_batches()); }

 private:
  std::shared_ptr<const Dataset> dataset_;
  int64_t batch_size_;
  bool shuffle_;
  Backend* device_;
  DType dtype_;
  std::vector<int64_t> order_;
};

}  // namespace needle::data
