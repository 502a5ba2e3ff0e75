// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors), so
// files written here open in PyTorch / numpy tools and theirs open here.
//
// Layout: an 8-byte little-endian header length N; N bytes of JSON
//   {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [2, 3],
//    "data_offsets": [begin, end]}, ...}
// padded with spaces to a multiple of 8; then the raw little-endian data, where each
// tensor occupies [begin, end) counted from the end of the header. Needle stores float32
// as "F32" and float64 as "F64".
//
// Saving is atomic: the bytes go to a temporary file in the target's directory, which is
// fsynced and then renamed over the target, so a crash or a failed write never leaves a
// half-written checkpoint, and an existing file stays intact until the new one is whole.
// The temporary file is "<path>.tmp-<pid>-XXXXXX"; a save that is killed leaves it behind,
// and the next save of the same path removes those whose process no longer exists. Only a
// regular file (or a missing one) is replaced: a FIFO, device or directory is a ValueError.
// Loading reads regular files only (a FIFO never blocks it) and validates everything before allocating tensors — the length prefix, the JSON,
// each entry's fields, dtypes, shapes against byte ranges, ranges inside the data and
// neither overlapping nor leaving gaps — and reports any problem as a ValueError naming
// the file. A damaged file never crashes the reader.
#pragma once

#include <map>
#include <string>

#include "needle/tensor.h"

namespace needle {

using TensorDict = std::map<std::string, Tensor>;
using ArrayDict = std::map<std::string, NDArray>;
// Free-form string pairs stored under "__metadata__".
using Metadata = std::map<std::string, std::string>;

// Writes `arrays` to `path` (atomically). ValueError for an empty name or the reserved
// name "__metadata__"; RuntimeError naming the path when the file cannot be written.
void save_safetensors(const ArrayDict& arrays, const std::string& path,
                      const Metadata& metadata = {});
// Tensors are saved by value (their data; graph and requires_grad are not stored).
void save_safetensors(const TensorDict& tensors, const std::string& path,
                      const Metadata& metadata = {});

// Reads every array in `path` onto `device` (float32 or float64, as stored). When
// `metadata` is given it receives the "__metadata__" entries.
ArrayDict load_safetensors_arrays(const std::string& path, Backend& device = default_backend(),
                                  Metadata* metadata = nullptr);
// Same, as constant Tensors (requires_grad false).
TensorDict load_safetensors(const std::string& path, Backend& device = default_backend(),
                            Metadata* metadata = nullptr);

}  // namespace needle
