"""DistributedDataParallel: data-parallel training over needle.distributed (MPI / NCCL).

Wrap the model once on every rank, feed each rank its own shard of every batch (see
``needle.data.DistributedSampler``), and train as usual::

    dist.init()
    model = nn.DistributedDataParallel(MLPResNet(784, 100))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    for X, y in loader:                      # this rank's part of the global batch
        opt.reset_grad()
        loss_fn(model(X), y).backward()      # grads all-reduced (averaged) during backward
        opt.step()                           # identical step on every rank

At construction the ranks check that their models have the same parameters and buffers
(a ValueError names the first one that differs) and copy rank 0's values to every rank.
During backward, gradients are reduced in buckets of about ``bucket_cap_mb`` megabytes,
in the reverse order of ``parameters()`` (roughly the order backward produces them): a
bucket's all-reduce starts on the communication thread as soon as its last gradient exists,
overlapping the rest of backward, as PyTorch's DDP does. When backward ends, the remaining
buckets are reduced (a parameter that got no gradient on this rank contributes zeros), every
gradient becomes the mean over the ranks, and so, with equal shards, the step equals one
step on the whole global batch.

BatchNorm's running statistics: each rank updates them from its own shard; in each backward
in training mode DDP replaces every floating buffer by its mean over the ranks (one more
all-reduce of all of them together, started when backward starts), so all ranks keep the
same buffers. With equal shards the running
mean is then exactly the one of the global batch; the running variance is the mean of the
shards' variances (it misses the spread of the shard means, a small bias for large shards).
"""
import weakref

import numpy as np

from .. import distributed as dist
from ..autograd import Tensor
from .._needle import autograd as _ag
from ..backend_ndarray import concatenate
from .nn_basic import Module

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Parameters whose gradients are reduced together (one device and dtype)."""

    def __init__(self, params):
        self.params = params
        self.sizes = [int(np.prod(p.shape)) for p in params]
        self.flat = None  # the concatenated gradients while they are being reduced
        self.work = None


def _buckets(params, cap_bytes):
    """Consecutive runs of ``params`` of one device and dtype, each about cap_bytes or less."""
    buckets, run, run_bytes = [], [], 0
    for p in params:
        nbytes = int(np.prod(p.shape)) * np.dtype(str(p.dtype)).itemsize
        if run and ((p.device, p.dtype) != (run[0].device, run[0].dtype)
                    or run_bytes + nbytes > cap_bytes):
            buckets.append(_Bucket(run))
            run, run_bytes = [], 0
        run.append(p)
        run_bytes += nbytes
    if run:
        buckets.append(_Bucket(run))
    return buckets


def _flatten(arrays):
    """The arrays' elements in one new 1-D array (which the ranks then reduce in place)."""
    return concatenate([a.compact().reshape((int(np.prod(a.shape)),)) for a in arrays], 0)


def _unflatten(flat, shapes):
    """Tensors of the given shapes viewing consecutive parts of ``flat``."""
    offset = 0
    for shape in shapes:
        size = int(np.prod(shape))
        yield Tensor.make_const(flat[offset:offset + size].reshape(shape))
        offset += size


def _broadcast_text(text, root):
    """Rank ``root``'s ``text`` on every rank."""
    data = np.frombuffer(text.encode(), dtype=np.uint8)
    size = dist.broadcast(Tensor(np.array([data.size]), requires_grad=False), root)
    if dist.rank() != root:
        data = np.zeros(int(size.numpy()[0]), dtype=np.uint8)
    return bytes(dist.broadcast(Tensor(data, requires_grad=False), root).numpy()).decode()


def _all_reduce_int(value, op):
    return int(dist.all_reduce(Tensor(np.array([value]), requires_grad=False), op).numpy()[0])


def _bucket_hook(ddp_ref, index):
    # Holds the wrapper weakly: a parameter's hook must not keep a dropped wrapper alive.
    def hook(_param):
        ddp = ddp_ref()
        if ddp is not None:
            ddp._grad_ready(index)
    return hook


class DistributedDataParallel(Module):
    """Averages gradients over the ranks of a needle.distributed job (see the module docs).

    ``events``: set it to a list to record, during each backward, ("grad", bucket) when a
    gradient is ready, ("launch", bucket) when a bucket's all-reduce starts and ("finish",
    completed) when backward ends, ``completed`` the buckets already reduced by then.
    """

    def __init__(self, module, bucket_cap_mb=1.0):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected a Module, got {type(module).__name__}")
        if not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        dist.init()
        self.module = module
        self.events = None
        self._check_same_state()
        for tensor, _ in module._state_entries().values():
            dist.broadcast(tensor, 0)
        params = list({id(p): p for p in module.parameters() if p.requires_grad}.values())
        self._buckets = _buckets(params[::-1], bucket_cap_mb * 2**20)
        for index, bucket in enumerate(self._buckets):
            for p in bucket.params:
                p.register_grad_hook(_bucket_hook(weakref.ref(self), index))
        self._reset()

    def forward(self, *args, **kwargs):
        self._reset()
        return self.module(*args, **kwargs)

    # --- construction ---
    def _check_same_state(self):
        """ValueError on every rank, naming the first parameter or buffer whose name, shape
        or dtype differs between rank 0 and some rank."""
        mine = [f"'{name}' {tuple(t.shape)} {t.dtype}"
                for name, (t, _) in self.module._state_entries().items()]
        rank0 = _broadcast_text("\n".join(mine), 0).split("\n")
        first = next((i for i, (a, b) in enumerate(zip(mine + [""], rank0 + [""])) if a != b), None)
        none = 2**62
        i = _all_reduce_int(none if first is None else first, "min")
        if i == none:
            return
        other = _all_reduce_int(dist.rank() if first == i else -1, "max")
        describe = lambda entries: entries[i] if i < len(entries) and entries[i] else "nothing"
        theirs = _broadcast_text(describe(mine), other)
        raise ValueError(
            f"DistributedDataParallel: the ranks' models differ: parameter/buffer #{i} is "
            f"{theirs} on rank {other} but {describe(rank0)} on rank 0")

    # --- backward ---
    def _reset(self):
        self._pending = [len(b.params) for b in self._buckets]
        self._launched = 0
        self._in_backward = False
        self._buffer_works = []
        for b in self._buckets:
            b.flat, b.work = None, None

    def _log(self, *event):
        if self.events is not None:
            self.events.append(event)

    def _grad_ready(self, index):
        if not self._in_backward:
            self._in_backward = True
            _ag.queue_backward_callback(self._finish_backward)
            if self.module.training:
                self._launch_buffers()
        self._log("grad", index)
        self._pending[index] -= 1
        # Buckets start in index order, so every rank issues the same collectives in turn.
        while self._launched < len(self._buckets) and self._pending[self._launched] == 0:
            self._launch(self._launched)

    def _launch(self, index):
        bucket = self._buckets[index]
        # A parameter without a gradient on this rank in this pass adds zeros.
        bucket.flat = _flatten([
            (p.grad if p.grad is not None else
             Tensor(np.zeros(p.shape, dtype=str(p.dtype)), device=p.device, requires_grad=False)).cached_data
            for p in bucket.params])
        bucket.work = dist.all_reduce_async(bucket.flat, "mean")
        self._launched = index + 1
        self._log("launch", index)

    def _finish_backward(self):
        self._log("finish", [i for i, b in enumerate(self._buckets)
                             if b.work is not None and b.work.is_completed()])
        while self._launched < len(self._buckets):
            self._launch(self._launched)
        for bucket in self._buckets:
            bucket.work.wait()
            for p, grad in zip(bucket.params, _unflatten(bucket.flat, [p.shape for p in bucket.params])):
                p.grad = grad
        for setters, shapes, flat, work in self._buffer_works:
            work.wait()
            for setter, buffer in zip(setters, _unflatten(flat, shapes)):
                setter(buffer)
        self._reset()

    def _launch_buffers(self):
        """Starts averaging the floating buffers (the forward pass has updated them), one
        all-reduce per device and dtype."""
        groups = {}
        for tensor, setter in self.module._state_entries().values():
            if setter is not None and str(tensor.dtype).startswith("float"):
                groups.setdefault((str(tensor.device), str(tensor.dtype)), []).append((tensor, setter))
        for entries in groups.values():
            flat = _flatten([t.cached_data for t, _ in entries])
            work = dist.all_reduce_async(flat, "mean")
            self._buffer_works.append(([s for _, s in entries], [t.shape for t, _ in entries], flat, work))
