"""needle.distributed and nn.DistributedDataParallel: a world of one process here, and jobs of
2 and 3 processes under mpirun (distributed_worker.py checks each rank against numpy and a
single-process reference), including the failures that must end a job rather than hang it."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
import needle.distributed as dist
from needle import nn, optim

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
MPIRUN = shutil.which("mpirun")
needs_mpi = pytest.mark.skipif(
    not (MPIRUN and dist.mpi_available()),
    reason="needs OpenMPI (mpirun) and a needle built with MPI (.ci/install-deps installs it)")


def mpirun(n, case, timeout=20, job_timeout=120):
    """Runs the worker's `case` on n ranks; returns (exit code, stdout + stderr)."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(n),
           sys.executable, WORKER, case, str(timeout)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=job_timeout)
    return proc.returncode, proc.stdout


# --- a world of one process (no mpirun) ---

def test_world_of_one():
    dist.init()
    assert dist.is_initialized() and dist.rank() == 0 and dist.world_size() == 1
    assert dist.local_rank() == 0
    x = ndl.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=False)
    for op in ("sum", "mean", "max", "min"):
        assert dist.all_reduce(x, op) is x
        np.testing.assert_array_equal(x.numpy(), np.arange(6.0).reshape(2, 3))
    dist.broadcast(x, 0)
    dist.all_reduce_async(x, "mean").wait()
    dist.barrier()
    np.testing.assert_array_equal(x.numpy(), np.arange(6.0).reshape(2, 3))


def test_errors_name_the_collective():
    dist.init()
    x = ndl.Tensor(np.ones(3, dtype=np.int32), requires_grad=False)
    with pytest.raises(ValueError, match=r"\[all_reduce\] op must be"):
        dist.all_reduce(x, "prod")
    with pytest.raises(TypeError, match=r"'mean' needs a float32 or float64 array, got int32"):
        dist.all_reduce(x, "mean")
    with pytest.raises(IndexError, match=r"\[broadcast\] root 1 is not a rank of this job of 1"):
        dist.broadcast(x, 1)
    with pytest.raises(TypeError, match=r"\[all_reduce\] expected a needle Tensor or NDArray, got ndarray"):
        dist.all_reduce(np.ones(3))
    with pytest.raises(ValueError, match="timeout must be positive"):
        dist.init(timeout=0)


def test_grad_hooks_and_backward_callbacks():
    """The autograd hooks DDP stands on: a hook sees its tensor's final grad, and a callback
    queued from a hook runs after every grad of the pass exists."""
    a = ndl.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = ndl.Tensor(np.array([3.0, 4.0]), requires_grad=True)
    seen = []

    def hook(t):
        seen.append(("hook", t.grad.numpy().tolist()))
        ndl.autograd._ag.queue_backward_callback(lambda: seen.append(("end", b.grad.numpy().tolist())))

    a.register_grad_hook(hook)
    ((a * b).sum() + (a * a).sum()).backward()
    assert seen == [("hook", [5.0, 8.0]), ("end", [1.0, 2.0])]
    with pytest.raises(RuntimeError, match="no backward pass is running"):
        ndl.autograd._ag.queue_backward_callback(lambda: None)


def test_ddp_in_one_process_trains_like_the_module():
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    np.random.seed(0)
    plain = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    ddp = nn.DistributedDataParallel(model, bucket_cap_mb=1e-4)
    opts = [optim.Adam(m.parameters(), lr=0.01) for m in (ddp, plain)]
    rng = np.random.default_rng(0)
    for _ in range(3):
        X, y = ndl.Tensor(rng.standard_normal((6, 5)).astype(np.float32)), ndl.Tensor(rng.integers(0, 3, 6))
        for m, opt in zip((ddp, plain), opts):
            opt.reset_grad()
            nn.SoftmaxLoss()(m(X), y).backward()
            opt.step()
    for p, q in zip(ddp.parameters(), plain.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-6, atol=1e-7)
    assert list(ddp.state_dict()) == ["module." + k for k in plain.state_dict()]
    with pytest.raises(TypeError, match="expected a Module"):
        nn.DistributedDataParallel(lambda x: x)


# --- jobs under mpirun ---

@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("case", ["collectives", "ddp", "sampler"])
def test_job(case, n):
    code, out = mpirun(n, case)
    assert code == 0, out
    assert out.count(f"{case} ok") == n, out


@needs_mpi
def test_an_uncaught_exception_ends_every_rank():
    code, out = mpirun(2, "raise")
    assert code != 0
    assert "rank 1 failed on purpose" in out
    assert "rank 1 of 2: uncaught RuntimeError: rank 1 failed on purpose; aborting the job" in out


@needs_mpi
def test_a_hung_collective_times_out_and_ends_every_rank():
    code, out = mpirun(2, "hang", timeout=2)
    assert code != 0
    assert "rank 0 of 2: all_reduce(sum) of (4,) float64 on cpu did not finish within 2 s" in out


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_models_that_differ_are_named_at_construction(n):
    code, out = mpirun(n, "mismatch")
    assert code == 3, out
    message = (f"parameter/buffer #0 is 'modules.0.weight' (12, 33) float32 on rank {n - 1} but "
               "'modules.0.weight' (12, 32) float32 on rank 0")
    assert out.count(message) == n, out
