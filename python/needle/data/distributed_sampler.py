"""DistributedSampler: the share of a dataset's indices that one data-parallel rank reads."""
import numbers

import numpy as np

__all__ = ["DistributedSampler"]


def _check_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"DistributedSampler: {name} must be an int, got {type(value).__name__}")
    return int(value)


class DistributedSampler:
    """Yields the dataset indices of rank ``rank`` out of ``num_replicas``, as PyTorch's.

    Every rank builds the same index list — ``range(n)``, or with ``shuffle`` the
    permutation ``np.random.default_rng(seed + epoch).permutation(n)``, which does not
    touch numpy's global RNG — and takes every ``num_replicas``-th index from position
    ``rank``. Call ``set_epoch(epoch)`` before each epoch for a new order.

    So that every rank runs the same number of steps, the list is first brought to a
    multiple of ``num_replicas``: without ``drop_last`` it is padded by repeating its
    beginning (each rank gets ceil(n / num_replicas) indices; the padding indices then
    appear twice across the ranks), with ``drop_last`` its tail is dropped (each rank
    gets floor(n / num_replicas); the dropped indices are read by no rank that epoch).
    The shards are therefore disjoint exactly when ``num_replicas`` divides n, or with
    ``drop_last``. ``num_replicas`` and ``rank`` default to ``needle.distributed``'s
    ``world_size()`` and ``rank()``.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            from .. import distributed

            num_replicas = distributed.world_size() if num_replicas is None else num_replicas
            rank = distributed.rank() if rank is None else rank
        self.num_replicas = _check_int("num_replicas", num_replicas)
        self.rank = _check_int("rank", rank)
        if self.num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be at least 1, got {self.num_replicas}")
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(
                f"DistributedSampler: rank must be in [0, {self.num_replicas}), got {self.rank}"
            )
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = _check_int("seed", seed)
        self.drop_last = drop_last
        self.epoch = 0
        n = len(dataset)
        self.num_samples = n // self.num_replicas if drop_last else -(-n // self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        """Selects the permutation of the coming epoch (used only with ``shuffle``)."""
        self.epoch = _check_int("epoch", epoch)

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            indices = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            indices = np.arange(n)
        # np.resize repeats the list from its beginning as often as needed, or truncates it.
        indices = np.resize(indices, self.total_size)
        return iter(indices[self.rank :: self.num_replicas].tolist())

    def __len__(self):
        return self.num_samples
