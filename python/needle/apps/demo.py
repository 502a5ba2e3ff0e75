"""Needle's main demo: train an MLP ResNet or a CNN on Fashion-MNIST and report test accuracy.

    python -m needle.apps.demo [--model mlp|cnn|vit] [--epochs N] [--batch-size B] [--lr LR]
                               [--hidden H] [--width W] [--data-dir DIR]
                               [--device cpu|cuda] [--out DIR] [--distributed]
    mpirun --allow-run-as-root --oversubscribe -np 2 python3 -m needle.apps.demo --distributed

--model mlp (the default) is MLPResNet on flattened images; --model cnn is FashionResNet
(needle.apps.models: ResNet9's ConvBN blocks adapted to 28x28x1) and --model vit is ViT
(7x7 patches, 4 pre-norm blocks of width 64 on the fused attention op), both trained on
images augmented with RandomCrop and RandomFlipHorizontal.
Reads the four idx files (gzip or plain) from --data-dir, trains with Adam and a
cosine learning-rate schedule with linear warm-up, shows a progress bar per batch
(running loss, images/s) and a summary per epoch (train and test loss and
accuracy), then saves the trained weights (safetensors, via ``ndl.save``) and a PNG
of the curves into --out, and prints ``test accuracy: 0.xxxx`` last: for the image
models (trained on flipped images) each test image's logits averaged with its mirror
image's, after the last epoch's plain accuracy.
Bad options or a missing data directory print one ``error: ...`` line and exit 2.

--distributed trains data-parallel on the ranks mpirun starts (needle.distributed, one CPU
thread per rank unless --threads): every rank takes a DistributedSampler shard of each
epoch and --batch-size / ranks images per step (the same global batch, steps and schedule
as one process), DistributedDataParallel averages the gradients, the test set is sharded
and each epoch's losses and accuracies are averaged over the ranks; every rank logs its
shard, rank 0 alone prints the progress, writes the files and prints the accuracy.
"""
import argparse
import contextlib
import math
import os
import resource
import sys
import time

import numpy as np

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CNN_WIDTH = 32
EPOCHS = {"mlp": 8, "cnn": 6, "vit": 20}
LR = {"mlp": 2e-3, "cnn": 4e-3, "vit": 2e-3}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class UsageError(Exception):
    """A problem with the options or the inputs: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse_args(argv):
    p = _Parser(
        prog="python -m needle.apps.demo",
        description="Train an MLP ResNet or a CNN on Fashion-MNIST with needle.",
    )
    p.add_argument("--model", default="mlp",
                   help="mlp (MLPResNet), cnn (FashionResNet) or vit (ViT) (default mlp)")
    p.add_argument("--epochs", type=int, default=None,
                   help="passes over the 60,000 training images (default "
                        + ", ".join(f"{n} for {m}" for m, n in EPOCHS.items()) + ")")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate of Adam (default "
                        + ", ".join(f"{lr:g} for {m}" for m, lr in LR.items()) + ")")
    p.add_argument("--hidden", type=int, default=256, help="width of the residual stream (default 256)")
    p.add_argument("--blocks", type=int, default=3, help="residual blocks of the mlp (default 3)")
    p.add_argument("--width", type=int, default=CNN_WIDTH,
                   help=f"channels of the cnn's first stage, doubled in the second (default {CNN_WIDTH})")
    p.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay (default 0)")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"folder of the idx files (default {DEFAULT_DATA_DIR})")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--out", default="out", help="folder for the checkpoint and the plot (default out/)")
    p.add_argument("--seed", type=int, default=0, help="numpy seed: weights, dropout, shuffling (default 0)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of an mpirun job (see the module docs)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for needle's kernels (default 0: the library's choice)")
    args = p.parse_args(argv)
    if args.model not in EPOCHS:
        raise UsageError(f"--model must be mlp, cnn or vit, got {args.model!r}")
    if args.epochs is None:
        args.epochs = EPOCHS[args.model]
    if args.lr is None:
        args.lr = LR[args.model]
    if args.threads < 0:
        raise UsageError(f"--threads must be 0 (automatic) or more, got {args.threads}")
    for name in ("epochs", "batch_size", "hidden", "blocks", "width"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise UsageError(f"--lr must be a positive number, got {args.lr}")
    if not (args.weight_decay >= 0 and math.isfinite(args.weight_decay)):
        raise UsageError(f"--weight-decay must be zero or positive, got {args.weight_decay}")
    if args.device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {args.device!r}")
    return args


def find_files(data_dir):
    """Paths of the four idx files (NAME.gz or NAME) in data_dir."""
    if not os.path.isdir(data_dir):
        raise UsageError(
            f"data directory {data_dir} not found (install Debian's dataset-fashion-mnist, "
            "or pass --data-dir)"
        )
    paths = {}
    for key, name in FILES.items():
        for candidate in (name + ".gz", name):
            path = os.path.join(data_dir, candidate)
            if os.path.isfile(path):
                paths[key] = path
                break
        else:
            raise UsageError(f"{os.path.join(data_dir, name)}[.gz] not found")
    return paths


def get_device(name):
    from needle import backend_ndarray as nd

    if name == "cuda":
        dev = nd.cuda()
        if not dev.enabled():
            raise UsageError("--device cuda: no CUDA device is available (needle built without CUDA or no GPU)")
        return dev
    return nd.cpu()


def no_grad():
    """needle's no-grad guard when the core has one, else a no-op."""
    import needle as ndl

    guard = getattr(ndl, "no_grad", None) or getattr(ndl.autograd, "no_grad", None)
    return guard() if guard is not None else contextlib.nullcontext()


class Progress:
    """A one-line progress bar redrawn in place on a terminal (every ~10% otherwise)."""

    def __init__(self, total, prefix, stream=sys.stdout):
        self.total, self.prefix, self.stream = total, prefix, stream
        self.tty = stream.isatty()
        self.last_draw = 0.0
        self.next_pct = 10

    def update(self, done, text):
        now = time.perf_counter()
        if self.tty:
            if done < self.total and now - self.last_draw < 0.1:
                return
            width = 24
            filled = int(width * done / self.total)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{self.prefix} [{bar}] {done}/{self.total}  {text}\033[K")
            self.stream.flush()
            self.last_draw = now
        elif done * 100 >= self.next_pct * self.total:
            self.stream.write(f"{self.prefix} {done}/{self.total}  {text}\n")
            self.stream.flush()
            while self.next_pct * self.total <= done * 100:
                self.next_pct += 10

    def close(self):
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def as_vectors(X):
    """(B, 28, 28, 1) images as (B, 784) rows, the MLP's input."""
    return X.reshape((X.shape[0], int(np.prod(X.shape[1:]))))


def as_nchw(X):
    """(B, H, W, 1) images as (B, 1, H, W), the CNN's input (the same memory for one channel)."""
    b, h, w, c = X.shape
    return X.reshape((b, 1, h, w)) if c == 1 else X.transpose((2, 3)).transpose((1, 2))


def run_epoch(model, loader, loss_fn, opt=None, sched=None, progress=None, history=None, prepare=as_vectors):
    """One pass; trains when opt is given. Returns (mean loss, accuracy, images/s)."""
    model.train() if opt is not None else model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    ctx = contextlib.nullcontext() if opt is not None else no_grad()
    with ctx:
        for step, (X, y) in enumerate(loader, 1):
            n = X.shape[0]
            logits = model(prepare(X))
            loss = loss_fn(logits, y)
            if opt is not None:
                opt.reset_grad()
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
            batch_loss = float(loss.numpy())
            correct += int((logits.numpy().argmax(axis=1) == y.numpy()).sum())
            total_loss += batch_loss * n
            seen += n
            if history is not None:
                history.append(batch_loss)
            del logits, loss  # free this step's graph before the next one is built
            if progress is not None:
                rate = seen / max(time.perf_counter() - start, 1e-9)
                progress.update(step, f"loss {total_loss / seen:.4f}  {rate:,.0f} img/s")
    elapsed = time.perf_counter() - start
    return total_loss / seen, correct / seen, seen / max(elapsed, 1e-9)


def mirror_averaged_accuracy(model, loader, prepare):
    """Accuracy in eval mode when each image's logits are averaged with those of its mirror
    image (the horizontal flip the training augmentation makes; prepare's NCHW width axis)."""
    from needle import ops

    model.eval()
    correct, seen = 0, 0
    with no_grad():
        for X, y in loader:
            x = prepare(X)
            logits = model(x).numpy() + model(ops.flip(x, (3,))).numpy()
            correct += int((logits.argmax(axis=1) == y.numpy()).sum())
            seen += X.shape[0]
    return correct / seen


def mean_over_ranks(values):
    """Each value's mean over the ranks of the job (needle.distributed)."""
    import needle as ndl
    import needle.distributed as dist

    t = ndl.Tensor(np.array(values, dtype=np.float64), requires_grad=False)
    return [float(v) for v in dist.all_reduce(t, "mean").numpy()]


def save_plot(path, batch_losses, steps_per_epoch, hist, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(hist["train_loss"]) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(1, len(batch_losses) + 1) / steps_per_epoch
    ax1.plot(x, batch_losses, color="tab:blue", alpha=0.25, lw=0.8, label="train (per batch)")
    ax1.plot(epochs, hist["train_loss"], "o-", color="tab:blue", label="train (epoch mean)")
    ax1.plot(epochs, hist["test_loss"], "s-", color="tab:orange", label="test")
    # The first batches' loss dwarfs the rest: keep the epoch curves readable.
    top = 2.0 * max(hist["train_loss"] + hist["test_loss"])
    ax1.set_ylim(0, min(max(batch_losses), top) if batch_losses else top)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy loss")
    ax1.set_title("Loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(epochs, hist["train_acc"], "o-", color="tab:blue", label="train")
    ax2.plot(epochs, hist["test_acc"], "s-", color="tab:orange", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.set_title("Accuracy")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.suptitle(f"needle {title} on Fashion-MNIST")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    paths = find_files(args.data_dir)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --out folder {args.out}: {e.strerror}") from None

    import needle as ndl
    import needle.data
    import needle.nn
    import needle.optim
    from needle.apps.mlp_resnet import MLPResNet
    from needle.apps.models import ViT, FashionResNet

    rank, ranks = 0, 1
    if args.distributed:
        import needle.distributed as dist

        dist.init()
        rank, ranks = dist.rank(), dist.world_size()
        if args.batch_size % ranks:
            raise UsageError(f"--batch-size {args.batch_size} does not split over {ranks} ranks")
        if not args.threads:  # the machine's cores shared among the ranks on it
            local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", ranks))
            args.threads = max(1, (os.cpu_count() or 1) // local)
    say = print if rank == 0 else (lambda *a, **k: None)
    device = get_device(args.device)
    if args.threads:
        set_threads = getattr(ndl, "set_num_threads", None) or getattr(ndl.backend_ndarray, "set_num_threads", None)
        if set_threads is None:
            print("note: this build cannot set its thread count; use OMP_NUM_THREADS instead")
        else:
            set_threads(args.threads)
    np.random.seed(args.seed)

    images = args.model != "mlp"  # the models that see 2-D images, augmented
    augment = [ndl.data.RandomCrop(1), ndl.data.RandomFlipHorizontal()] if images else None
    t0 = time.perf_counter()
    try:
        train_set = ndl.data.MNISTDataset(paths["train_images"], paths["train_labels"], transforms=augment)
        test_set = ndl.data.MNISTDataset(paths["test_images"], paths["test_labels"])
    except ValueError as e:
        raise UsageError(str(e)) from None
    say(f"data: {len(train_set):,} training and {len(test_set):,} test images from {args.data_dir} "
          f"({time.perf_counter() - t0:.1f} s)" + ("; training images augmented (RandomCrop(1), "
                                                    "RandomFlipHorizontal)" if images else ""))

    # One shuffle of the whole set per epoch, dealt out to the ranks: rank r reads every
    # ranks-th image of it, so a step's global batch is the same images with any number
    # of ranks, and one process (ranks == 1) reads it all.
    train_sampler = ndl.data.DistributedSampler(train_set, ranks, rank, shuffle=True, seed=args.seed)
    test_sampler = ndl.data.DistributedSampler(test_set, ranks, rank, shuffle=False)
    batch = args.batch_size // ranks
    train_loader = ndl.data.DataLoader(train_set, batch, device=device, sampler=train_sampler)
    test_loader = ndl.data.DataLoader(test_set, 1000, device=device, sampler=test_sampler)
    if args.distributed:
        print(f"rank {rank}/{ranks}: {len(train_sampler):,} training images per epoch (1 in "
              f"{ranks} of a seeded shuffle), {len(train_loader)} steps of {batch}; "
              f"{len(test_sampler):,} test images; {args.threads} CPU threads", flush=True)
    np.random.seed(args.seed + rank)  # each rank its own augmentation and dropout draws
    if args.model == "cnn":
        model = FashionResNet(args.width, num_classes=10)
        title, prepare, name = f"FashionResNet(width {args.width})", as_nchw, "fashion_resnet"
    elif args.model == "vit":
        model = ViT(image_size=28, patch_size=7, in_channels=1, num_classes=10)
        title, prepare, name = "ViT(7x7 patches, dim 64, depth 4, 4 heads)", as_nchw, "vit"
    else:
        in_dim = int(np.prod(train_set.images.shape[1:]))
        model = MLPResNet(in_dim, args.hidden, num_blocks=args.blocks, num_classes=10, drop_prob=0.1)
        title, prepare = f"MLPResNet({in_dim}, hidden {args.hidden}, {args.blocks} blocks)", as_vectors
        name = "mlp_resnet"
    model.to(device)  # modules are built on the default device
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    if args.distributed:
        model = ndl.nn.DistributedDataParallel(model)  # rank 0's initial weights everywhere
    say(f"model: {title}, {n_params:,} parameters, device {args.device}")

    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * args.epochs
    opt = ndl.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    warmup = min(steps_per_epoch // 2, total_steps // 10)
    sched = ndl.optim.CosineWarmupLR(opt, warmup_steps=warmup, total_steps=total_steps)
    say(f"training: {args.epochs} epochs x {steps_per_epoch} steps of {args.batch_size} images, "
          f"Adam lr {args.lr:g} (warm-up {warmup} steps, cosine decay)")

    loss_fn = ndl.nn.SoftmaxLoss()
    hist = {"train_loss": [], "train_acc": [], "test_loss": [], "test_acc": []}
    batch_losses = []
    t_train = time.perf_counter()
    for ep in range(1, args.epochs + 1):
        t_ep = time.perf_counter()
        bar = Progress(steps_per_epoch, f"epoch {ep}/{args.epochs}") if rank == 0 else None
        train_sampler.set_epoch(ep)
        tr_loss, tr_acc, rate = run_epoch(model, train_loader, loss_fn, opt, sched, bar, batch_losses, prepare)
        if bar is not None:
            bar.close()
        te_loss, te_acc, _ = run_epoch(model, test_loader, loss_fn, prepare=prepare)
        if args.distributed:  # the means over every rank's images (equal shards)
            tr_loss, tr_acc, te_loss, te_acc = mean_over_ranks([tr_loss, tr_acc, te_loss, te_acc])
            rate *= ranks
        for k, v in zip(hist, (tr_loss, tr_acc, te_loss, te_acc)):
            hist[k].append(v)
        say(f"epoch {ep}/{args.epochs}  train loss {tr_loss:.4f} acc {tr_acc:.4f} | "
              f"test loss {te_loss:.4f} acc {te_acc:.4f} | {time.perf_counter() - t_ep:.1f} s, "
              f"{rate:,.0f} img/s", flush=True)
    train_time = time.perf_counter() - t_train
    final_acc = hist["test_acc"][-1]
    if images:  # the models trained on flipped images are also judged on both orientations
        final_acc = mirror_averaged_accuracy(model, test_loader, prepare)
        if args.distributed:
            final_acc = mean_over_ranks([final_acc])[0]
    if rank != 0:
        return 0

    ckpt = os.path.join(args.out, f"{name}_fashion_mnist.safetensors")
    ndl.save((model.module if args.distributed else model).state_dict(), ckpt)  # no "module."
    plot = os.path.join(args.out, "training_curves.png" if args.model == "mlp"
                        else f"training_curves_{args.model}.png")
    save_plot(plot, batch_losses, steps_per_epoch, hist, title)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"trained in {train_time:.1f} s; peak memory (RSS) {peak_mb:.0f} MiB")
    print(f"checkpoint: {ckpt}  (load: model.load_state_dict(ndl.load(path)))")
    print(f"curves: {plot}")
    if images:
        print(f"last epoch's test accuracy {hist['test_acc'][-1]:.4f}; with each test image's "
              f"logits averaged with its mirror image's (the training flips): {final_acc:.4f}")
    print(f"test accuracy: {final_acc:.4f}")
    return 0


def run_cli(main):
    """Runs a job's main(): a UsageError is one ``error: ...`` line and exit code 2."""
    try:
        sys.exit(main())
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run_cli(main)
