"""Token windows for next-token training (``needle.data.TextDataset``).

Item i of ``TextDataset(ids, block_size)`` is ``(x, y)``: ``block_size`` token ids from
``i * stride`` and the same window shifted by one, as int64 arrays, so a batch of B items
is what a GPT-style model trains on: logits for x (B, T) against targets y (B, T). The
default stride is ``block_size`` (windows that tile the text once per epoch); index arrays
give stacked batches, so the DataLoader gathers a batch in one step.
"""
import numpy as np

from ..data_basic import Dataset

__all__ = ["TextDataset"]


class TextDataset(Dataset):
    """(x, y) windows of ``block_size`` ids of a 1-D token sequence, y = x shifted by one."""

    batched_indexing = True

    def __init__(self, ids, block_size, stride=None):
        super().__init__()
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"[TextDataset] expects a 1-D integer sequence of ids, got {ids.dtype} "
                             f"of shape {ids.shape}")
        stride = block_size if stride is None else stride
        for name, n in (("block_size", block_size), ("stride", stride)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ValueError(f"[TextDataset] {name} must be a positive int, got {n!r}")
        if ids.shape[0] < block_size + 1:
            raise ValueError(f"[TextDataset] {ids.shape[0]} ids are too few for one window of "
                             f"{block_size} (+1 target)")
        self.ids = ids.astype(np.int64)
        self.block_size, self.stride = int(block_size), int(stride)

    def __len__(self):
        return (self.ids.shape[0] - self.block_size - 1) // self.stride + 1

    def __getitem__(self, i):
        index = np.asarray(i)
        if not np.issubdtype(index.dtype, np.integer):
            raise IndexError(f"[TextDataset] index must be integers, got {index.dtype}")
        n = len(self)
        if index.size and (index.min() < -n or index.max() >= n):
            raise IndexError(f"[TextDataset] index out of range for {n} windows")
        starts = (index % n) * self.stride
        window = starts[..., None] + np.arange(self.block_size + 1)
        tokens = self.ids[window]
        return tokens[..., :-1], tokens[..., 1:]
