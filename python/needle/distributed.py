"""needle.distributed: data-parallel collectives on MPI (CPU tensors) and NCCL (CUDA tensors).

Run a script on several processes with ``mpirun`` and call ``init()`` first::

    import needle as ndl
    import needle.distributed as dist

    dist.init()                              # reads the rank and size mpirun sets
    x = ndl.Tensor([float(dist.rank())])
    dist.all_reduce(x, op="mean")            # in place: every rank now holds the mean
    if dist.rank() == 0:
        print(x, "over", dist.world_size(), "ranks")

    $ mpirun -np 2 python3 script.py         # as root, add --allow-run-as-root

Without mpirun, ``init()`` makes a world of one process, where every collective returns its
input, so the same script runs alone. Collectives are in place, take a Tensor or an NDArray
of any dtype and strides, and must be called in the same order with the same shapes on
every rank (as MPI's): ``op`` is "sum", "mean" (float dtypes), "max" or "min"; for bool,
sum and max are logical or and min is logical and (numpy's add / maximum / minimum).

Failures end the whole job instead of hanging it: after ``init()`` an exception that no
one catches on any rank prints its traceback and aborts every rank (MPI_Abort), and a
collective that has not finished after ``timeout`` seconds (a rank died, hangs, or called
a different collective) aborts the job with a message naming the collective.
"""
import atexit
import sys

from ._needle import distributed as _dist

__all__ = [
    "init", "is_initialized", "mpi_available", "rank", "world_size", "local_rank",
    "all_reduce", "all_reduce_async", "broadcast", "barrier", "finalize", "abort",
]

mpi_available = _dist.mpi_available
is_initialized = _dist.is_initialized
rank = _dist.rank
world_size = _dist.world_size
local_rank = _dist.local_rank
barrier = _dist.barrier
finalize = _dist.finalize


def abort(message, exit_code=1):
    """Print ``message`` (naming this rank) and end every rank of the job."""
    sys.stdout.flush()
    sys.stderr.flush()
    _dist.abort(str(message), int(exit_code))


def _abort_on_uncaught_exception(previous_hook):
    def hook(exc_type, exc, tb):
        previous_hook(exc_type, exc, tb)  # the traceback, as usual
        if world_size() > 1:
            abort(f"uncaught {exc_type.__name__}: {exc}")
    return hook


def init(timeout=300.0):
    """Join the job ``mpirun`` started (a world of one process without it); idempotent.

    ``timeout``: seconds after which an unfinished collective aborts every rank.
    """
    first = not _dist.is_initialized()
    _dist.init(float(timeout))
    if first:
        sys.excepthook = _abort_on_uncaught_exception(sys.excepthook)
        atexit.register(_dist.finalize)


all_reduce = _dist.all_reduce
all_reduce_async = _dist.all_reduce_async
broadcast = _dist.broadcast
