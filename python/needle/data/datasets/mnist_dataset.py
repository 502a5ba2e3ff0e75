"""MNIST-format (idx) datasets: MNIST, Fashion-MNIST. Files may be gzip-compressed or not.

An idx file is a big-endian header (magic number 0x0000 08 ND, then ND dimension
sizes) followed by the raw uint8 data. A file whose magic number is not the
expected one, or whose data is shorter than the header says, raises ValueError
naming the file.
"""
import gzip
import math
import os
import struct
import zlib

import numpy as np

from ..data_basic import Dataset

__all__ = ["MNISTDataset", "read_idx"]

IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def read_idx(filename, magic: int) -> np.ndarray:
    """Read an unsigned-byte idx file (gzip or plain) whose magic number must be ``magic``.

    The file is streamed: the header is read and checked first (magic number, sizes), and
    then exactly the number of bytes it declares, so a file that is not an idx file, or a
    gzip "bomb", is rejected without decompressing it whole.
    """
    if not os.path.isfile(filename):
        kind = "a directory" if os.path.isdir(filename) else "not a regular file"
        if not os.path.exists(filename):
            raise FileNotFoundError(f"{filename}: no such idx file")
        raise ValueError(f"{filename}: {kind}, not an idx file")
    with open(filename, "rb") as plain:
        compressed = plain.read(2) == b"\x1f\x8b"
        plain.seek(0)
        stream = gzip.GzipFile(fileobj=plain, mode="rb") if compressed else plain
        try:
            size = None if compressed else os.fstat(plain.fileno()).st_size
            return _read_idx_stream(filename, stream, magic, size)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{filename}: corrupt or truncated gzip data ({e})") from None


def _read_idx_stream(filename, f, magic, file_size):
    raw = f.read(4)
    if len(raw) < 4:
        raise ValueError(f"{filename}: truncated idx file ({len(raw)} bytes, no header)")
    (got,) = struct.unpack(">I", raw)
    if got != magic:
        raise ValueError(
            f"{filename}: wrong magic number 0x{got:08x} (expected 0x{magic:08x}): not an idx "
            f"{'image' if magic == IDX_IMAGES_MAGIC else 'label'} file"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise ValueError(
            f"{filename}: truncated idx header ({4 + len(raw)} bytes, expected {header})"
        )
    dims = struct.unpack(">" + "I" * ndim, raw)
    count = math.prod(dims)
    shape = "x".join(map(str, dims))
    if file_size is not None and file_size - header < count:
        raise ValueError(
            f"{filename}: truncated data: the header says {shape} = {count} bytes, the file "
            f"holds {file_size - header}"
        )
    data = f.read(count)  # never more than the header declares
    if len(data) < count:
        raise ValueError(
            f"{filename}: truncated data: the header says {shape} = {count} bytes, the file "
            f"holds {len(data)}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


class MNISTDataset(Dataset):
    """Images as float32 (H, W, 1) in [0, 1] and uint8 labels, read from idx files.

    Transforms apply to each (H, W, 1) image, also when an index array fetches a batch.
    """

    batched_indexing = True

    def __init__(self, image_filename: str, label_filename: str, transforms=None):
        super().__init__(transforms)
        # BEGIN SOLUTION hw2
        images = read_idx(image_filename, IDX_IMAGES_MAGIC)
        labels = read_idx(label_filename, IDX_LABELS_MAGIC)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{image_filename} holds {images.shape[0]} images but {label_filename} "
                f"holds {labels.shape[0]} labels"
            )
        X = images.astype(np.float32)
        X /= 255.0  # in place: no second full-size temporary
        self.images = X[..., None]
        self.labels = labels.copy()
        # END SOLUTION

    def __getitem__(self, index) -> object:
        # BEGIN SOLUTION hw2
        X, y = self.images[index], self.labels[index]
        if self.transforms:
            if X.ndim == 4:
                X = np.stack([self.apply_transforms(x) for x in X])
            else:
                X = self.apply_transforms(X)
        return X, y
        # END SOLUTION

    def __len__(self) -> int:
        # BEGIN SOLUTION hw2
        return self.images.shape[0]
        # END SOLUTION
