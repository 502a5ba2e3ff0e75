"""Distributed benchmark: needle.distributed's all_reduce against mpi4py, and DDP training
steps of the demos' models with the share of the step spent in communication.

    mpirun --allow-run-as-root --oversubscribe -np 2 -x PYTHONPATH /usr/bin/python3 bench/bench_distributed.py
    /usr/bin/python3 bench/bench_distributed.py --scaling      # runs mpirun -np 1, 2 and 3 itself

`make bench` runs the first; -np 1 and -np 3 work too (with PYTHONPATH unset, python/
beside bench/ is used). Rank 0 prints everything. Options: --part bandwidth|steps|all (default
all), --steps N (timed steps per model, default 10), --scaling (the steps part launched
with 1, 2 and 3 processes, one table).

all_reduce: float32 messages of 4 KB to 64 MB (x4), in place, "sum": needle's
``dist.all_reduce(tensor)`` and mpi4py's ``comm.Allreduce(MPI.IN_PLACE, array)`` on numpy
arrays of the same size, interleaved (the order alternates per repetition). Each timing
starts after a barrier and covers enough calls to last about a millisecond; the table has
the median of 7 such timings after a warm-up. Bus bandwidth is the algorithm bandwidth
(bytes / time) x 2(N-1)/N, the bytes each rank sends in a ring all-reduce: comparable
across N. ratio = needle throughput / mpi4py throughput (mpi4py time / needle time).
"mpi4py on needle mem" is mpi4py's Allreduce on a numpy view of the needle tensor's own
buffer: it tells needle's engine (needle vs this column) from the memory's pages (this
column vs mpi4py: numpy asks for transparent huge pages on arrays of 4 MB and more, and
needle's CPU allocator does not). The 8-byte line is the latency of a tiny all_reduce.

steps: a DistributedDataParallel training step (forward, SoftmaxLoss, backward with the
bucketed all-reduce, the optimizer) on synthetic data of the right shapes, for
MLPResNet(784, 256, 3 blocks) and FashionResNet(32), the demo's --model mlp and cnn at
its global batch of 128 images (Adam), and the GPT of gpt_demo at its defaults (vocabulary
2,048, 4 layers x 4 heads, width 128, 16 windows of 128 tokens, AdamW). The global batch
is split across the ranks (43/43/42 for 3). Columns (medians over --steps steps, each the
slowest rank's):
  local   the same step without DDP on this rank's shard: computation only;
  ddp     the DDP step; ddp - local is what data parallelism costs here;
  reduce  the all-reduces of one step timed alone: one of all floating buffers together
          (BatchNorm's running statistics), then one per gradient bucket of the model's
          bucket sizes, in DDP's order, on the same sizes;
  comm    reduce / ddp, the communication share of the step were nothing overlapped.
The global batch is fixed, so more ranks means less work per rank (strong scaling). With
more than one rank every process runs one OpenMP thread (OMP_NUM_THREADS=1, set before
needle loads): this machine has 2 cores, so -np 3 oversubscribes them. --scaling prints
the steps table of the three launches together, and one process at 1 thread too.

mpi4py is imported first: it starts MPI at thread level MULTIPLE, and needle's init()
joins the running MPI.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORLD = int(os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("PMI_SIZE", "1")))
if WORLD > 1:  # one thread per rank: the OpenMP and OpenBLAS runtimes read it when they load
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))  # PYTHONPATH wins
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import StealMeter  # noqa: E402

SIZES = [4 << (10 + 2 * i) for i in range(8)]  # 4 KB, 16 KB, ..., 64 MB
GPT_VOCAB, GPT_BLOCK = 2048, 128  # gpt_demo's defaults: --vocab-size, --block-size
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]
MPI = None  # mpi4py.MPI, imported in main() (never in the --scaling driver, which runs mpirun)


def fmt_bytes(n):
    return f"{n >> 20} MB" if n >= 1 << 20 else f"{n >> 10} KB" if n >= 1 << 10 else f"{n} B"


# ------------------------------------------------------------------ all_reduce
def interleaved_medians(comm, fns, calls, reps=7):
    """Median seconds per call of each fn, timed in turn (order alternating per repetition),
    each timing `calls` calls after a barrier; the slowest rank's median."""
    for fn in fns:  # warm-up
        fn()
    times = [[] for _ in fns]
    for r in range(reps):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            comm.Barrier()
            t = time.perf_counter()
            for _ in range(calls):
                fns[i]()
            times[i].append((time.perf_counter() - t) / calls)
    return [comm.allreduce(statistics.median(t), op=MPI.MAX) for t in times]


def bench_all_reduce(comm, dist, ndl):
    n = comm.Get_size()
    if n == 1:
        if comm.Get_rank() == 0:
            print("all_reduce: one rank, nothing to communicate (run with mpirun -np 2 or more)\n")
        return
    ring = 2 * (n - 1) / n
    rows = []
    for nbytes in [8] + SIZES:
        a = np.ones(nbytes // 4, dtype=np.float32)
        t = ndl.Tensor(a.copy(), requires_grad=False)
        view = t.cached_data.flat  # numpy's view of the tensor's memory, no copy
        calls = max(1, min(200, (4 << 20) // nbytes))  # about a millisecond of calls
        rows.append((nbytes, *interleaved_medians(comm, [
            lambda: dist.all_reduce(t, "sum"),
            lambda: comm.Allreduce(MPI.IN_PLACE, a, op=MPI.SUM),
            lambda: comm.Allreduce(MPI.IN_PLACE, view, op=MPI.SUM)], calls)))
    if comm.Get_rank() != 0:
        return
    print(f"all_reduce, float32, in place, sum, {n} rank(s): median of 7 timings, the slowest rank's")
    print(f"{'size':>8} {'needle us':>10} {'mpi4py us':>10} {'needle busbw GB/s':>18} {'mpi4py busbw GB/s':>18} "
          f"{'ratio':>7} {'mpi4py on needle mem us':>24}")
    for nbytes, t_needle, t_mpi, t_view in rows[1:]:
        print(f"{fmt_bytes(nbytes):>8} {t_needle * 1e6:10.1f} {t_mpi * 1e6:10.1f} "
              f"{ring * nbytes / t_needle / 1e9:18.2f} {ring * nbytes / t_mpi / 1e9:18.2f} "
              f"{t_mpi / t_needle:6.2f}x {t_view * 1e6:24.1f}")
    _, t_needle, t_mpi, t_view = rows[0]
    print(f"latency (8 B): needle {t_needle * 1e6:.1f} us, mpi4py {t_mpi * 1e6:.1f} us "
          f"({t_mpi / t_needle:.2f}x), mpi4py on needle's memory {t_view * 1e6:.1f} us")
    print()


# ------------------------------------------------------------------ training steps
def models():
    """(name, make model, global batch, sample shape (None: GPT token windows), optimizer)."""
    import needle.optim as optim
    from needle.apps.mlp_resnet import MLPResNet
    from needle.apps.models import GPT, FashionResNet

    return [
        ("MLPResNet(784, 256)", lambda: MLPResNet(784, 256, num_blocks=3, num_classes=10), 128, (784,), optim.Adam),
        ("FashionResNet(32)", lambda: FashionResNet(32, num_classes=10), 128, (1, 28, 28), optim.Adam),
        ("GPT (gpt_demo)", lambda: GPT(GPT_VOCAB, GPT_BLOCK, n_layer=4, n_head=4, n_embd=128), 16, None,
         lambda params, lr: optim.AdamW(params, lr=lr, weight_decay=0.1)),
    ]


def bench_steps(comm, dist, ndl, steps):
    """{model: {"local", "ddp", "reduce" (s), "batch" (this rank's), "grad_bytes", ...}}."""
    import needle.nn as nn

    rank, n = comm.Get_rank(), comm.Get_size()
    rng = np.random.default_rng(rank)
    results = {}
    for name, make, global_batch, shape, optimizer in models():
        batch = len(np.array_split(np.arange(global_batch), n)[rank])
        if shape is None:  # next-token prediction on random token windows
            X = ndl.Tensor(rng.integers(0, GPT_VOCAB, (batch, GPT_BLOCK)), dtype="int64", requires_grad=False)
            y = ndl.Tensor(rng.integers(0, GPT_VOCAB, batch * GPT_BLOCK), dtype="int64", requires_grad=False)
        else:
            X = ndl.Tensor(rng.random((batch,) + shape, dtype=np.float32), requires_grad=False)
            y = ndl.Tensor(rng.integers(0, 10, batch), dtype="int64", requires_grad=False)
        loss_fn = nn.SoftmaxLoss()

        def stepper(model):
            opt = optimizer(model.parameters(), lr=1e-3)

            def step():
                opt.reset_grad()
                logits = model(X)
                loss = loss_fn(logits.reshape((y.shape[0], logits.shape[-1])), y)
                loss.backward()
                opt.step()
                loss.numpy()
            return step

        np.random.seed(0)
        local = stepper(make())
        ddp_model = nn.DistributedDataParallel(make())
        ddp = stepper(ddp_model)
        # The reduces of one DDP step, alone: its floating buffers together (all float32
        # here), then its buckets.
        flats = [ndl.Tensor(np.zeros(sum(b.sizes), np.float32), requires_grad=False) for b in ddp_model._buckets]
        buffer_sizes = [int(np.prod(t.shape)) for t, setter in ddp_model.module._state_entries().values()
                        if setter is not None and str(t.dtype).startswith("float")]
        if buffer_sizes:
            flats.insert(0, ndl.Tensor(np.zeros(sum(buffer_sizes), np.float32), requires_grad=False))

        def reduce():
            works = [dist.all_reduce_async(f, "mean") for f in flats]
            for w in works:
                w.wait()

        times = {"local": [], "ddp": [], "reduce": []}
        for fn in (local, ddp, reduce):  # warm-up
            fn(), fn()
        for _ in range(steps):
            for key, fn in (("local", local), ("ddp", ddp), ("reduce", reduce)):
                comm.Barrier()
                t = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t)
        r = {k: comm.allreduce(statistics.median(v), op=MPI.MAX) for k, v in times.items()}
        r.update(batch=batch, global_batch=global_batch,
                 grad_bytes=4 * sum(sum(b.sizes) for b in ddp_model._buckets),
                 buckets=len(ddp_model._buckets), buffers=len(buffer_sizes))
        results[name] = r
    return results


def print_steps(rows):
    """rows: (label, {model: result})."""
    print("DDP training steps: medians, the slowest rank's; batch = this rank's of the global batch")
    print(f"{'model':<20} {'processes':<24} {'batch':>9} {'local ms':>9} {'ddp ms':>8} {'ddp-local':>10} "
          f"{'reduce ms':>10} {'comm':>6} {'samples/s':>10}")
    for name in rows[0][1]:
        for label, results in rows:
            r = results[name]
            print(f"{name:<20} {label:<24} {r['batch']:>4} of {r['global_batch']:<3} {r['local'] * 1e3:9.1f} "
                  f"{r['ddp'] * 1e3:8.1f} {(r['ddp'] - r['local']) * 1e3:10.1f} {r['reduce'] * 1e3:10.2f} "
                  f"{r['reduce'] / r['ddp']:6.1%} {r['global_batch'] / r['ddp']:10.0f}")
    for name, r in rows[0][1].items():
        print(f"{name}: gradients {r['grad_bytes']:,} bytes in {r['buckets']} bucket(s), "
              f"{r['buffers']} floating buffer(s)" + (" in 1 all-reduce" if r['buffers'] else ""))


# ------------------------------------------------------------------ driver
def scaling(args):
    """Launch the steps part with 1 (at 1 thread and at the default), 2 and 3 processes."""
    runs = [(1, {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}, "1 process, 1 thread"),
            (1, {}, "1 process, default thr."), (2, {}, "2 processes x 1 thread"),
            (3, {}, "3 processes x 1 thread")]
    rows = []
    for n, env, label in runs:
        cmd = MPIRUN + ["-np", str(n), "-x", "PYTHONPATH"] + [a for k, v in env.items() for a in ("-x", f"{k}={v}")] + [
            sys.executable, os.path.abspath(__file__), "--part", "steps", "--steps", str(args.steps), "--json"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
        rows.append((label, json.loads(out.stdout.strip().splitlines()[-1])))
    print_steps(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["all", "bandwidth", "steps"], default="all")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model (default 10)")
    p.add_argument("--scaling", action="store_true", help="launch mpirun -np 1, 2, 3 and print the steps table")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("PYTHONPATH", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    if args.scaling:
        steal = StealMeter()
        print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
        scaling(args)
        print(steal.report())
        return

    global MPI
    from mpi4py import MPI  # before needle: MPI starts at thread level MULTIPLE

    import needle as ndl
    import needle.distributed as dist

    dist.init()
    comm = MPI.COMM_WORLD
    rank, n = comm.Get_rank(), comm.Get_size()
    steal = StealMeter()
    if rank == 0 and not args.json:
        print(f"{n} rank(s), {ndl.get_num_threads()} thread(s) each, {os.cpu_count()} cores "
              f"(load average {os.getloadavg()[0]:.2f} at the start); "
              f"{MPI.Get_library_version().split(chr(0))[0].splitlines()[0]}; mpi4py {__import__('mpi4py').__version__}")
        print()
    if args.part in ("all", "bandwidth"):
        bench_all_reduce(comm, dist, ndl)
    if args.part in ("all", "steps"):
        results = bench_steps(comm, dist, ndl, args.steps)
        if rank == 0:
            if args.json:
                print(json.dumps(results))
                return
            print_steps([(f"{n} process{'es' if n > 1 else ''}", results)])
    if rank == 0:
        print(steal.report())


if __name__ == "__main__":
    main()
