"""needle.data.DistributedSampler (shards, padding, drop_last, epochs, seeds) and the DataLoader's
``sampler`` argument; ranks are simulated in one process, so no MPI is needed."""
import math
import types
from collections import Counter

import numpy as np
import pytest

import needle as ndl
import needle.data as data

# (n, num_replicas): R divides n, R does not, n < R, and the single-replica and empty cases.
SIZES = [(12, 4), (12, 3), (10, 4), (7, 3), (3, 5), (1, 4), (5, 1), (0, 2)]


def dataset_of(n):
    return data.NDArrayDataset(np.arange(n))


def shards(n, num_replicas, **kwargs):
    dataset = dataset_of(n)
    return [data.DistributedSampler(dataset, num_replicas, rank, **kwargs) for rank in range(num_replicas)]


def reference_shard(n, num_replicas, rank, shuffle, seed, epoch, drop_last):
    """PyTorch's DistributedSampler algorithm, on Python lists."""
    indices = np.random.default_rng(seed + epoch).permutation(n).tolist() if shuffle else list(range(n))
    per_rank = n // num_replicas if drop_last else math.ceil(n / num_replicas)
    total = per_rank * num_replicas
    while len(indices) < total:
        indices += indices[: total - len(indices)]
    return indices[:total][rank::num_replicas]


@pytest.mark.parametrize("drop_last", [False, True], ids=["pad", "drop_last"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
@pytest.mark.parametrize("n,num_replicas", SIZES)
def test_shards_match_pytorch_and_cover_the_dataset(n, num_replicas, shuffle, drop_last):
    samplers = shards(n, num_replicas, shuffle=shuffle, seed=5, drop_last=drop_last)
    parts = [list(s) for s in samplers]
    per_rank = n // num_replicas if drop_last else math.ceil(n / num_replicas)
    for rank, (sampler, part) in enumerate(zip(samplers, parts)):
        assert len(sampler) == len(part) == per_rank
        assert all(type(i) is int and 0 <= i < n for i in part)
        assert part == reference_shard(n, num_replicas, rank, shuffle, 5, 0, drop_last)
    everything = [i for part in parts for i in part]
    if drop_last or n % num_replicas == 0:
        for a in range(num_replicas):
            for b in range(a + 1, num_replicas):
                assert not set(parts[a]) & set(parts[b])
    if drop_last:
        assert len(set(everything)) == len(everything) == n - n % num_replicas
    else:
        assert set(everything) == set(range(n))
        repeats = sum(count - 1 for count in Counter(everything).values())
        assert repeats == math.ceil(n / num_replicas) * num_replicas - n


def test_padding_repeats_the_beginning_of_the_order():
    parts = [list(s) for s in shards(10, 4, shuffle=False)]
    assert parts == [[0, 4, 8], [1, 5, 9], [2, 6, 0], [3, 7, 1]]
    parts = [list(s) for s in shards(10, 4, shuffle=False, drop_last=True)]
    assert parts == [[0, 4], [1, 5], [2, 6], [3, 7]]


def test_shuffle_is_deterministic_per_seed_and_epoch():
    dataset = dataset_of(50)
    sampler = data.DistributedSampler(dataset, num_replicas=2, rank=1, seed=7)
    first = list(sampler)
    assert list(sampler) == first
    assert list(data.DistributedSampler(dataset, num_replicas=2, rank=1, seed=7)) == first
    assert first == np.random.default_rng(7).permutation(50)[1::2].tolist()
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    assert second == np.random.default_rng(8).permutation(50)[1::2].tolist()
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert list(data.DistributedSampler(dataset, num_replicas=2, rank=1, seed=8)) == second
    assert list(data.DistributedSampler(dataset, num_replicas=2, rank=1, seed=3)) != first


def test_shuffle_ignores_and_keeps_the_global_numpy_rng():
    sampler = data.DistributedSampler(dataset_of(40), num_replicas=3, rank=0)
    np.random.seed(0)
    under_seed_0 = list(sampler)
    after = np.random.rand()
    np.random.seed(1)
    assert list(sampler) == under_seed_0
    np.random.seed(0)
    list(sampler)
    assert np.random.rand() == after  # iterating drew nothing from the global RNG


@pytest.mark.parametrize("drop_last", [False, True], ids=["pad", "drop_last"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
@pytest.mark.parametrize("n,num_replicas", [(23, 4), (24, 3), (7, 2), (2, 4)])
def test_dataloader_yields_the_shard_in_batches(n, num_replicas, shuffle, drop_last):
    x = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    y = np.arange(n) * 10
    dataset = data.NDArrayDataset(x, y)
    for rank in range(num_replicas):
        sampler = data.DistributedSampler(dataset, num_replicas, rank, shuffle=shuffle, drop_last=drop_last)
        loader = data.DataLoader(dataset, 3, False, sampler=sampler)
        for epoch in range(2):
            sampler.set_epoch(epoch)
            shard = list(sampler)
            batches = list(loader)
            assert len(loader) == len(batches) == math.ceil(len(shard) / 3)
            assert [b[0].shape[0] for b in batches] == [min(3, len(shard) - i) for i in range(0, len(shard), 3)]
            if batches:
                assert all(isinstance(t, ndl.Tensor) and not t.requires_grad for b in batches for t in b)
                np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in batches]), x[shard])
                np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), y[shard])


def test_dataloader_accepts_any_sized_iterable_as_sampler():
    x = np.arange(6, dtype=np.float32).reshape(6, 1) + 0.5
    batches = list(data.DataLoader(data.NDArrayDataset(x), batch_size=2, sampler=[4, 1, 3]))
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[0][0].numpy(), x[[4, 1]])
    np.testing.assert_array_equal(batches[1][0].numpy(), x[[3]])


def test_defaults_come_from_needle_distributed(monkeypatch):
    fake = types.SimpleNamespace(world_size=lambda: 3, rank=lambda: 2)
    monkeypatch.setattr(ndl, "distributed", fake, raising=False)
    sampler = data.DistributedSampler(dataset_of(9), shuffle=False)
    assert (sampler.num_replicas, sampler.rank) == (3, 2)
    assert list(sampler) == [2, 5, 8]
    assert data.DistributedSampler(dataset_of(9), rank=0, shuffle=False).num_replicas == 3
    assert data.DistributedSampler(dataset_of(9), num_replicas=9, shuffle=False).rank == 2


def test_errors():
    dataset = dataset_of(8)
    with pytest.raises(ValueError, match="DistributedSampler: num_replicas"):
        data.DistributedSampler(dataset, num_replicas=0, rank=0)
    for rank in (-1, 4):
        with pytest.raises(ValueError, match=r"DistributedSampler: rank must be in \[0, 4\)"):
            data.DistributedSampler(dataset, num_replicas=4, rank=rank)
    for num_replicas, rank in ((2.0, 0), (2, "0"), (True, 0), (2, 1.0)):
        with pytest.raises(TypeError, match="DistributedSampler: (num_replicas|rank) must be an int"):
            data.DistributedSampler(dataset, num_replicas=num_replicas, rank=rank)
    with pytest.raises(TypeError, match="DistributedSampler: epoch must be an int"):
        data.DistributedSampler(dataset, num_replicas=2, rank=0).set_epoch(1.5)
    assert list(data.DistributedSampler(dataset, num_replicas=np.int64(2), rank=np.int32(1), shuffle=False)) == [1, 3, 5, 7]
    sampler = data.DistributedSampler(dataset, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="DataLoader: shuffle and sampler are mutually exclusive"):
        data.DataLoader(dataset, 2, True, sampler=sampler)
