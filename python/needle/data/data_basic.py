"""Dataset and DataLoader, as in the course framework.

A DataLoader splits the index range into batches (the last short batch is kept);
with ``shuffle=True`` it draws a fresh ``np.random.permutation`` at the start of
each iteration, so ``np.random.seed`` fixes the order. With a ``sampler`` (an
extension, as in PyTorch) each iteration batches the indices ``list(sampler)`` gives
instead. Each batch is a tuple of Tensors, one per field the dataset returns, that
do not require grad; integer fields (labels) stay integer tensors.
"""
from typing import List, Optional

import numpy as np

import needle as ndl

__all__ = ["Dataset", "DataLoader"]


class Dataset:
    """An abstract dataset: subclasses define __getitem__ and __len__.

    ``__getitem__`` returns one sample as a tuple of numpy arrays (or numbers). A
    dataset whose ``__getitem__`` also accepts an integer index array and returns the
    stacked batch may set ``batched_indexing = True``; the DataLoader then fetches a
    whole batch with one call.
    """

    batched_indexing = False

    def __init__(self, transforms: Optional[List] = None):
        self.transforms = transforms

    def __getitem__(self, index) -> object:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def apply_transforms(self, x):
        if self.transforms is not None:
            for tform in self.transforms:
                x = tform(x)
        return x


def _collate(samples):
    """Stack a list of samples (each a tuple of fields, or one array) field by field."""
    first = samples[0]
    if isinstance(first, tuple):
        return tuple(np.stack([np.asarray(s[f]) for s in samples]) for f in range(len(first)))
    return (np.stack([np.asarray(s) for s in samples]),)


def _field_dtype(x, dtype):
    """The dtype a batch field becomes: ``dtype`` for floating-point data, else its own."""
    own = np.dtype(str(x.dtype)) if hasattr(x, "dtype") else np.asarray(x).dtype
    if dtype is None or np.issubdtype(own, np.inexact):
        return dtype
    return None


class DataLoader:
    """Iterates a Dataset in batches of ``batch_size``: tuples of Tensors.

    ``device`` and ``dtype`` (extensions) place the batches; by default the default
    device and each field's own dtype, as numpy infers it (float32 images stay float32,
    uint8 or int64 labels stay integers). ``dtype`` casts the floating-point fields only:
    integer and bool fields (class labels, token ids) keep their dtype. ``sampler``
    (an extension) is an iterable of dataset indices with a ``__len__``, such as a
    ``DistributedSampler``; it is iterated afresh each epoch and excludes ``shuffle``.
    """

    dataset: Dataset
    batch_size: Optional[int]

    def __init__(self, dataset: Dataset, batch_size: Optional[int] = 1, shuffle: bool = False,
                 device=None, dtype=None, sampler=None):
        if batch_size is None or int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size}")
        if shuffle and sampler is not None:
            raise ValueError("DataLoader: shuffle and sampler are mutually exclusive")
        self.dataset = dataset
        self.shuffle = shuffle
        self.batch_size = int(batch_size)
        self.device = device
        self.dtype = dtype
        self.sampler = sampler
        if not self.shuffle and self.sampler is None:
            self.ordering = self._split(np.arange(len(dataset)))

    def _split(self, indices):
        # Slices, not np.array_split, so that no indices give no batches (not one empty batch).
        return [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]

    def __len__(self) -> int:
        num_indices = len(self.dataset) if self.sampler is None else len(self.sampler)
        return (num_indices + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        if self.sampler is not None:
            self.ordering = self._split(np.array(list(self.sampler), dtype=np.int64))
        # BEGIN SOLUTION hw2
        if self.shuffle:
            self.ordering = self._split(np.random.permutation(len(self.dataset)))
        self.n = 0
        # END SOLUTION
        return self

    def __next__(self):
        # BEGIN SOLUTION hw2
        if self.n >= len(self.ordering):
            raise StopIteration
        indices = self.ordering[self.n]
        self.n += 1
        if getattr(self.dataset, "batched_indexing", False):
            batch = self.dataset[indices]
            if not isinstance(batch, tuple):
                batch = (batch,)
        else:
            batch = _collate([self.dataset[int(i)] for i in indices])
        return tuple(
            ndl.Tensor(x, device=self.device, dtype=_field_dtype(x, self.dtype), requires_grad=False)
            for x in batch
        )
        # END SOLUTION
