"""One rank of the multi-process tests of test_distributed.py: `mpirun -np N python3
distributed_worker.py CASE`. Every rank checks its own results against numpy or a
single-process reference it computes itself, prints "CASE ok" on success and exits non-zero
(an assertion, hence an abort of the job) on failure.

Cases: collectives, ddp, sampler; and the failures, which must end the job: raise (rank 1
raises), hang (rank 1 never joins a collective), mismatch (rank 1 builds another model).
"""
import os
import sys
import time

import numpy as np

import needle as ndl
import needle.backend_ndarray as nd
import needle.distributed as dist
from needle import nn, optim
from needle.data import DistributedSampler

DTYPES = ["bool", "uint8", "int32", "int64", "float32", "float64"]


def rank_data(rank, shape, dtype):
    """Rank `rank`'s input: different on every rank, computable by all of them."""
    rng = np.random.default_rng(100 + rank)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("float"):
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, 50, shape).astype(dtype)


def expected(op, arrays):
    if op == "mean":
        return np.mean(arrays, axis=0).astype(arrays[0].dtype)
    reduce = {"sum": np.add, "max": np.maximum, "min": np.minimum}[op]
    return reduce.reduce(arrays, axis=0).astype(arrays[0].dtype)  # bool: or / or / and


def check_collectives():
    r, n = dist.rank(), dist.world_size()
    for dtype in DTYPES:
        ops = ["sum", "max", "min"] + (["mean"] if dtype.startswith("float") else [])
        for op in ops:
            for shape in [(0,), (1,), (7, 13), (1001,)]:
                x = ndl.Tensor(rank_data(r, shape, dtype), dtype=dtype, requires_grad=False)
                same = dist.all_reduce(x, op)
                want = expected(op, [rank_data(k, shape, dtype) for k in range(n)])
                assert same is x and x.dtype == dtype and x.shape == shape
                np.testing.assert_allclose(x.numpy(), want, rtol=1e-6, err_msg=f"{dtype} {op} {shape}")
        # broadcast from every root
        for root in range(n):
            x = ndl.Tensor(rank_data(r, (5, 3), dtype), dtype=dtype, requires_grad=False)
            dist.broadcast(x, root)
            np.testing.assert_array_equal(x.numpy(), rank_data(root, (5, 3), dtype))
    # Non-contiguous views are reduced in place: only the viewed elements change.
    base = rank_data(r, (6, 8), "float64")
    a = nd.NDArray(base)
    view = a[1:6:2, ::3].permute((1, 0))
    dist.all_reduce(view, "sum")
    want = base.copy()
    want[1:6:2, ::3] = sum(rank_data(k, (6, 8), "float64")[1:6:2, ::3] for k in range(n))
    np.testing.assert_allclose(a.numpy(), want, rtol=1e-12)
    b = nd.NDArray(rank_data(r, (4, 5), "int32"))
    bview = b.permute((1, 0))
    dist.broadcast(bview, n - 1)
    np.testing.assert_array_equal(b.numpy(), rank_data(n - 1, (4, 5), "int32"))
    # Tens of megabytes (MPI counts are ints: big buffers go in chunks).
    big = np.full(5_000_000, float(r + 1))
    x = ndl.Tensor(big, requires_grad=False)
    dist.all_reduce(x, "sum")
    assert x.numpy()[0] == n * (n + 1) / 2 and np.all(x.numpy() == x.numpy()[0])
    # Queued collectives complete in call order, interleaved with direct ones.
    works = []
    for i in range(5):
        t = ndl.Tensor(np.full(1000, float(r + i)), requires_grad=False)
        works.append((i, t, dist.all_reduce_async(t, "mean")))
    direct = ndl.Tensor(np.full(3, float(r)), requires_grad=False)
    dist.all_reduce(direct, "max")
    for i, t, work in works:
        work.wait()
        assert work.is_completed()
        np.testing.assert_allclose(t.numpy(), np.full(1000, (n - 1) / 2 + i))
    np.testing.assert_array_equal(direct.numpy(), np.full(3, n - 1.0))
    dist.barrier()
    if ndl.cuda().enabled():  # NCCL: the same checks on device memory
        check_collectives_on(ndl.cuda())


def check_collectives_on(device):
    r, n = dist.rank(), dist.world_size()
    for dtype in DTYPES:
        for op in ["sum", "max", "min"] + (["mean"] if dtype.startswith("float") else []):
            x = ndl.Tensor(rank_data(r, (7, 13), dtype), device=device, dtype=dtype, requires_grad=False)
            dist.all_reduce(x, op)
            want = expected(op, [rank_data(k, (7, 13), dtype) for k in range(n)])
            np.testing.assert_allclose(x.numpy(), want, rtol=1e-6, err_msg=f"{device} {dtype} {op}")
        x = ndl.Tensor(rank_data(r, (5, 3), dtype), device=device, dtype=dtype, requires_grad=False)
        dist.broadcast(x, n - 1)
        np.testing.assert_array_equal(x.numpy(), rank_data(n - 1, (5, 3), dtype))
    base = rank_data(r, (6, 8), "float32")
    a = ndl.Tensor(base, device=device, requires_grad=False)
    view = a.cached_data[1:6:2, ::3].permute((1, 0))
    dist.all_reduce_async(view, "sum").wait()
    want = base.copy()
    want[1:6:2, ::3] = sum(rank_data(k, (6, 8), "float32")[1:6:2, ::3] for k in range(n))
    np.testing.assert_allclose(a.numpy(), want, rtol=1e-6)


def mlp():
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 5))


def cnn():
    return nn.Sequential(nn.Conv(2, 4, 3), nn.ReLU(), nn.Conv(4, 6, 3, stride=2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 4 * 4, 5))


def train_both(make_model, x_shape, steps, make_optimizer, bucket_cap_mb):
    """Trains DDP on this rank's shard and, locally, the same model on the whole global
    batch; returns (ddp, reference)."""
    r, n = dist.rank(), dist.world_size()
    np.random.seed(r)  # a different initialization on every rank: DDP must broadcast rank 0's
    ddp = nn.DistributedDataParallel(make_model(), bucket_cap_mb=bucket_cap_mb)
    reference = make_model()
    for p, q in zip(reference.parameters(), ddp.parameters()):
        p.data = q.detach() * 1  # start from rank 0's values (a copy)
    opt_ddp = make_optimizer(ddp.parameters())
    opt_ref = make_optimizer(reference.parameters())
    rng = np.random.default_rng(7)
    per_rank = 4
    for _ in range(steps):
        X = rng.standard_normal((per_rank * n, *x_shape)).astype(np.float32)
        y = rng.integers(0, 5, per_rank * n)
        mine = slice(per_rank * r, per_rank * (r + 1))
        for model, opt, xs, ys in ((ddp, opt_ddp, X[mine], y[mine]), (reference, opt_ref, X, y)):
            opt.reset_grad()
            nn.SoftmaxLoss()(model(ndl.Tensor(xs)), ndl.Tensor(ys)).backward()
            opt.step()
    return ddp, reference


def assert_same_params(ddp, reference, what):
    for p, q in zip(ddp.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-5, atol=1e-5, err_msg=what)


def check_ddp():
    r, n = dist.rank(), dist.world_size()
    adam = lambda params: optim.Adam(params, lr=0.01)
    sgd = lambda params: optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3)
    for make_model, shape in ((mlp, (12,)), (cnn, (2, 8, 8))):
        for make_optimizer in (adam, sgd):
            for cap in (1e-3, 25.0):  # a bucket per parameter or so; one bucket
                ddp, reference = train_both(make_model, shape, 3, make_optimizer, cap)
                assert_same_params(ddp, reference, f"{make_model.__name__} cap {cap}")
                # and the same on every rank
                for p in ddp.parameters():
                    spread = ndl.Tensor(p.numpy(), requires_grad=False)
                    low = ndl.Tensor(p.numpy(), requires_grad=False)
                    dist.all_reduce(spread, "max")
                    dist.all_reduce(low, "min")
                    np.testing.assert_array_equal(spread.numpy(), low.numpy())

    # Buckets overlap backward: the first bucket's all-reduce starts before the last gradient
    # exists, and (on the communication thread) some finish before backward ends.
    big = lambda: nn.Sequential(*[nn.Linear(256, 256) for _ in range(6)])
    ddp = nn.DistributedDataParallel(big(), bucket_cap_mb=0.3)
    ddp.events = []
    finished_early = 0
    for _ in range(5):
        ddp.events.clear()
        out = ddp(ndl.Tensor(np.random.default_rng(r).standard_normal((64, 256)).astype(np.float32)))
        out.sum().backward()
        kinds = [e[0] for e in ddp.events]
        last_grad = max(i for i, k in enumerate(kinds) if k == "grad")
        assert kinds.index("launch") < last_grad, kinds
        assert kinds[-1] == "finish"
        launches = [e[1] for e in ddp.events if e[0] == "launch"]
        assert launches == sorted(launches)
        finished_early += len(ddp.events[-1][1]) > 0
    if n <= os.cpu_count():  # oversubscribed ranks run in turns, so the timing says nothing
        assert finished_early > 0, "no bucket finished reducing while backward ran"

    # BatchNorm buffers: the mean over the ranks, identical everywhere; with equal shards the
    # running mean after one step is the global batch's.
    np.random.seed(0)
    bn_model = lambda: nn.Sequential(nn.Linear(12, 8), nn.BatchNorm1d(8))
    ddp = nn.DistributedDataParallel(bn_model())
    np.random.seed(0)
    reference = bn_model()
    X = np.random.default_rng(3).standard_normal((4 * n, 12)).astype(np.float32)
    ddp(ndl.Tensor(X[4 * r:4 * r + 4])).sum().backward()
    reference(ndl.Tensor(X)).sum().backward()
    mean = ddp.module.modules[1].running_mean.numpy()
    np.testing.assert_allclose(mean, reference.modules[1].running_mean.numpy(), rtol=1e-5, atol=1e-6)
    top = ndl.Tensor(mean, requires_grad=False)
    dist.all_reduce(top, "max")
    np.testing.assert_array_equal(top.numpy(), mean)


def check_sampler():
    r, n = dist.rank(), dist.world_size()
    for size in (60, 61):
        sampler = DistributedSampler(list(range(size)), shuffle=True, seed=5)
        sampler.set_epoch(2)
        counts = np.zeros(size, dtype=np.int32)
        np.add.at(counts, list(sampler), 1)
        total = ndl.Tensor(counts, requires_grad=False)
        dist.all_reduce(total, "sum")
        assert total.numpy().min() >= 1, "the shards do not cover the data set"
        assert total.numpy().sum() == len(sampler) * n
        if size % n == 0:
            assert total.numpy().max() == 1, "the shards overlap"


def fail_raise():
    if dist.rank() == 1:
        raise RuntimeError("rank 1 failed on purpose")
    x = ndl.Tensor(np.ones(4), requires_grad=False)
    dist.all_reduce(x)  # rank 1 never joins: the abort must end this rank
    time.sleep(60)


def fail_hang():
    if dist.rank() == 1:
        time.sleep(60)  # neither fails nor joins: rank 0's watchdog ends the job
    x = ndl.Tensor(np.ones(4), requires_grad=False)
    dist.all_reduce(x)
    time.sleep(60)


def fail_mismatch():
    hidden = 32 if dist.rank() == 0 else 33
    model = nn.Sequential(nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, 5))
    try:
        nn.DistributedDataParallel(model)
    except ValueError as e:
        print(f"rank {dist.rank()}: {e}", flush=True)
        sys.exit(3)


CASES = {"collectives": check_collectives, "ddp": check_ddp, "sampler": check_sampler,
         "raise": fail_raise, "hang": fail_hang, "mismatch": fail_mismatch}

if __name__ == "__main__":
    case = sys.argv[1]
    dist.init(timeout=float(sys.argv[2]) if len(sys.argv) > 2 else 60.0)
    CASES[case]()
    print(f"{case} ok", flush=True)
