"""CIFAR-10 in its "python version" format (the cifar-10-batches-py folder).

The folder holds six pickled batches: data_batch_1 ... data_batch_5 (the 50,000 training
images) and test_batch (the 10,000 test images). Each is a dict written by Python 2's
cPickle, read with ``encoding="bytes"``: ``b"data"`` is a uint8 array (n, 3072) whose rows
hold an image's 1024 red, then 1024 green, then 1024 blue values, each plane a row-major
32 x 32 image; ``b"labels"`` is a list of n class indices 0..9 (``b"batch_label"`` and
``b"filenames"`` are not used).

A missing folder or batch raises FileNotFoundError naming the path. A file that is not a
pickle, is truncated, or does not hold such a dict (keys, shape, dtype, label count or
range) raises ValueError naming the file. The unpickler only builds plain containers and
numpy arrays: a pickle that refers to any other global (code it would run) is refused.
"""
import os
import pickle

import numpy as np

from ..data_basic import Dataset

__all__ = ["CIFAR10Dataset", "read_cifar10_batch"]

CIFAR10_IMAGE_SHAPE = (3, 32, 32)
CIFAR10_NUM_CLASSES = 10

# The globals a pickled numpy array refers to (numpy 1.x names, numpy 2's, protocol 5's),
# and _codecs.encode, which Python 3 writes for bytes objects under protocols 0-2.
_NUMPY_MODULES = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                  "numpy.core.numeric", "numpy._core.numeric"}
_NUMPY_NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}


def _encode_text(text, encoding="utf-8"):
    """_codecs.encode as bytes are pickled (str -> bytes with latin1), and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise pickle.UnpicklingError(f"refers to _codecs.encode with {encoding!r}")
    return text.encode(encoding)


class _BatchUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only the globals a batch needs (numpy arrays)."""

    def find_class(self, module, name):
        if module in _NUMPY_MODULES and name in _NUMPY_NAMES:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _encode_text
        raise pickle.UnpicklingError(
            f"refers to {module}.{name}, which a CIFAR-10 batch never does"
        )


def read_cifar10_batch(filename):
    """Read one CIFAR-10 python batch: returns (data uint8 (n, 3072), labels int64 (n,))."""
    if not os.path.isfile(filename):
        if not os.path.exists(filename):
            raise FileNotFoundError(f"{filename}: no such CIFAR-10 batch file")
        raise ValueError(f"{filename}: not a regular file, not a CIFAR-10 batch")
    try:
        with open(filename, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except EOFError:
        raise ValueError(f"{filename}: truncated pickle, not a complete CIFAR-10 batch") from None
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError, OverflowError, MemoryError) as e:
        raise ValueError(f"{filename}: not a CIFAR-10 batch (unreadable pickle: {e})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{filename}: holds a {type(batch).__name__}, not a CIFAR-10 batch dict")
    missing = [k for k in (b"data", b"labels") if k not in batch]
    if missing:
        raise ValueError(
            f"{filename}: not a CIFAR-10 batch: no {' or '.join(repr(k) for k in missing)} key "
            f"(keys: {sorted(map(repr, batch))})"
        )
    data = batch[b"data"]
    n = data.shape[0] if isinstance(data, np.ndarray) and data.ndim >= 1 else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != (n, 3072):
        what = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise ValueError(f"{filename}: b'data' is a {what}, expected a uint8 array (n, 3072)")
    try:
        labels = np.asarray(batch[b"labels"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{filename}: b'labels' is not a list of class indices ({e})") from None
    if labels.shape != (n,) or (n and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(
            f"{filename}: b'labels' has shape {labels.shape} ({labels.dtype}), expected {n} "
            f"integer labels to match b'data' of shape {data.shape}"
        )
    labels = labels.astype(np.int64)
    if n and (labels.min() < 0 or labels.max() >= CIFAR10_NUM_CLASSES):
        raise ValueError(
            f"{filename}: labels range over {labels.min()}..{labels.max()}, expected 0..9"
        )
    return data, labels


class CIFAR10Dataset(Dataset):
    """CIFAR-10 images as float32 (3, 32, 32) in [0, 1] and int64 labels 0..9.

    ``base_folder`` is the cifar-10-batches-py folder; ``train`` picks data_batch_1..5 (in
    that order, 50,000 images) or test_batch (10,000). ``p`` is the course's signature's
    parameter and is not used (it has no effect; random augmentation goes in ``transforms``).
    The arrays are ``self.X`` (n, 3, 32, 32) and ``self.y`` (n,).

    Transforms work on H x W x C images (see data_transforms), so each image is given to
    them as (32, 32, 3) and turned back to (3, 32, 32); they apply to each image also when
    an index array or slice fetches a batch.
    """

    batched_indexing = True

    def __init__(self, base_folder: str, train: bool, p=0.5, transforms=None):
        super().__init__(transforms)
        if not os.path.isdir(base_folder):
            if not os.path.exists(base_folder):
                raise FileNotFoundError(
                    f"{base_folder}: no such CIFAR-10 folder (the cifar-10-batches-py folder, "
                    f"with data_batch_1..data_batch_5 and test_batch)"
                )
            raise ValueError(f"{base_folder}: not a directory, not a CIFAR-10 folder")
        # BEGIN SOLUTION hw4
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        batches = [read_cifar10_batch(os.path.join(base_folder, name)) for name in names]
        X = np.concatenate([data for data, _ in batches]).astype(np.float32)
        X /= 255.0  # in place: no second full-size temporary
        self.X = X.reshape((-1,) + CIFAR10_IMAGE_SHAPE)
        self.y = np.concatenate([labels for _, labels in batches])
        # END SOLUTION

    def __getitem__(self, index) -> object:
        # BEGIN SOLUTION hw4
        X, y = self.X[index], self.y[index]
        if self.transforms:
            # CHW -> HWC for the transforms, and back
            if X.ndim == 4:
                X = np.stack([self.apply_transforms(x.transpose(1, 2, 0)).transpose(2, 0, 1)
                              for x in X])
            else:
                X = self.apply_transforms(X.transpose(1, 2, 0)).transpose(2, 0, 1)
                X = np.ascontiguousarray(X)
        return X, y
        # END SOLUTION

    def __len__(self) -> int:
        # BEGIN SOLUTION hw4
        return self.X.shape[0]
        # END SOLUTION
