"""A dataset over in-memory arrays that share their first dimension."""
import numpy as np

from ..data_basic import Dataset

__all__ = ["NDArrayDataset"]


class NDArrayDataset(Dataset):
    """Item i is ``tuple(a[i] for a in arrays)``; index arrays give stacked batches."""

    batched_indexing = True

    def __init__(self, *arrays):
        super().__init__()
        if not arrays:
            raise ValueError("NDArrayDataset: needs at least one array")
        arrays = tuple(a if hasattr(a, "shape") and hasattr(a, "__getitem__") else np.asarray(a) for a in arrays)
        n = arrays[0].shape[0]
        for a in arrays[1:]:
            if a.shape[0] != n:
                raise ValueError(
                    "NDArrayDataset: arrays differ in length: " + ", ".join(str(a.shape[0]) for a in arrays)
                )
        self.arrays = arrays

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, i) -> object:
        return tuple(a[i] for a in self.arrays)
