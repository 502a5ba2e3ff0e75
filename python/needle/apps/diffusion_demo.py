"""Needle's diffusion job: a DDPM U-Net trained on Fashion-MNIST, sampled with DDIM, and
scored by a Fréchet distance in the features of a needle-trained classifier.

    python -m needle.apps.diffusion_demo [--minutes M] [--steps N] [--batch-size B] [--lr LR]
                                         [--base-channels C] [--timesteps T]
                                         [--schedule linear|cosine] [--ddim-steps S]
                                         [--eta E] [--fd-samples N] [--sample] [--device cpu|cuda]
                                         [--out DIR] [--data-dir DIR]

Trains ``needle.apps.models.UNet`` on the 60,000 training images scaled to [-1, 1] with
the ε-prediction loss of ``needle.diffusion.GaussianDiffusion``, Adam with a linear
warm-up and an EMA of the weights (``needle.optim.EMA``), for --minutes or --steps,
whichever ends first, with a progress bar. It saves the EMA weights and the
configuration into --out, then samples with DDIM (--ddim-steps, --eta) and writes
``diffusion_samples.png`` (an 8x8 grid) and ``diffusion_denoising.png`` (one sample from
noise to image). ``--sample`` skips training and samples from the checkpoint in --out.

Quality: FID's idea with a domain network in place of Inception (which cannot be
downloaded here). A FashionResNet trained by needle on the training images (saved in --out
and reused) maps images to its pooled features; the Fréchet distance between Gaussians
fitted to two sets of features is printed for the samples, for real training images
(the floor: 10,000 of them, and as many as there are samples, since the distance's bias
grows as the set shrinks) and for Gaussian noise (the ceiling), each against the 10,000
test images, with the classifier's class histogram of the samples. The last line is
``Frechet distance: X (real: Y, noise: Z)``.
"""
import json
import math
import os
import sys
import time

import numpy as np

from needle.apps.demo import (CLASSES, DEFAULT_DATA_DIR, Progress, UsageError, _Parser, as_nchw,
                              find_files, get_device, no_grad, run_cli, run_epoch)

CONFIG_FILE, WEIGHTS_FILE = "unet_fashion_mnist.json", "unet_ema_fashion_mnist.safetensors"
CLASSIFIER_FILE = "fashion_classifier.safetensors"
CLASSIFIER_WIDTH = 16
GRID_FILE, STRIP_FILE = "diffusion_samples.png", "diffusion_denoising.png"


def parse_args(argv):
    p = _Parser(prog="python -m needle.apps.diffusion_demo",
                description="Train a DDPM U-Net on Fashion-MNIST with needle and sample it.")
    p.add_argument("--minutes", type=float, default=20.0, help="stop training after this long (default 20)")
    p.add_argument("--steps", type=int, default=1_000_000, help="stop after this many steps (default: no limit)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate after warm-up (default 1e-3)")
    p.add_argument("--warmup", type=int, default=200, help="linear warm-up steps (default 200)")
    p.add_argument("--ema-decay", type=float, default=0.995, help="EMA decay (default 0.995)")
    p.add_argument("--base-channels", type=int, default=32, help="U-Net width (default 32)")
    p.add_argument("--timesteps", type=int, default=1000, help="diffusion steps T (default 1000)")
    p.add_argument("--schedule", default="linear", choices=["linear", "cosine"], help="beta schedule")
    p.add_argument("--ddim-steps", type=int, default=50, help="DDIM sampling steps (default 50)")
    p.add_argument("--eta", type=float, default=1.0,
                   help="DDIM's noise: 0 deterministic, 1 DDPM's variance (default 1; see the tutorial)")
    p.add_argument("--fd-samples", type=int, default=512, help="samples for the Fréchet distance (default 512)")
    p.add_argument("--train-images", type=int, default=60_000,
                   help="train on the first N training images (default all 60,000)")
    p.add_argument("--classifier-epochs", type=int, default=3,
                   help="epochs of the quality figure's classifier when it is not in --out yet (default 3)")
    p.add_argument("--sample", action="store_true", help="load the checkpoint in --out and only sample")
    p.add_argument("--seed", type=int, default=0, help="numpy seed (default 0)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    p.add_argument("--out", default="out", help="folder for checkpoints and images (default out)")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"idx files (default {DEFAULT_DATA_DIR})")
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "base_channels", "timesteps", "ddim_steps", "fd_samples",
                 "train_images", "classifier_epochs"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.warmup < 0:
        raise UsageError(f"--warmup must be zero or positive, got {args.warmup}")
    if not (args.minutes > 0 and args.lr > 0 and math.isfinite(args.lr)):
        raise UsageError("--minutes and --lr must be positive numbers")
    if not 0 <= args.ema_decay <= 1:
        raise UsageError(f"--ema-decay must lie in [0, 1], got {args.ema_decay}")
    if not 0 <= args.eta <= 1:
        raise UsageError(f"--eta must lie in [0, 1], got {args.eta}")
    if args.ddim_steps > args.timesteps:
        raise UsageError(f"--ddim-steps {args.ddim_steps} cannot exceed --timesteps {args.timesteps}")
    return args


# --- the quality figure ---

def frechet_distance(a, b):
    """The Fréchet distance between Gaussians fitted to feature rows a (n, d) and b (m, d):
    |mu_a - mu_b|² + tr(S_a + S_b - 2 (S_a S_b)^(1/2)). The trace of the square root is
    that of (S_a^(1/2) S_b S_a^(1/2))^(1/2), a symmetric matrix, so two eigendecompositions
    give it without a general matrix square root."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root_a @ s_b @ root_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def classifier(args, paths, device):
    """The FashionResNet of the quality figure: loaded from --out, else trained and saved."""
    import needle as ndl
    from needle.apps.models import FashionResNet

    model = FashionResNet(CLASSIFIER_WIDTH, num_classes=10)
    model.to(device)
    path = os.path.join(args.out, CLASSIFIER_FILE)
    if os.path.isfile(path):
        model.load_state_dict(ndl.load(path, device))
        print(f"classifier: {path} (FashionResNet width {CLASSIFIER_WIDTH})")
        model.eval()
        return model
    train = ndl.data.MNISTDataset(paths["train_images"], paths["train_labels"],
                                  transforms=[ndl.data.RandomCrop(1), ndl.data.RandomFlipHorizontal()])
    train.images, train.labels = train.images[:args.train_images], train.labels[:args.train_images]
    test = ndl.data.MNISTDataset(paths["test_images"], paths["test_labels"])
    loader = ndl.data.DataLoader(train, 128, shuffle=True, device=device)
    opt = ndl.optim.Adam(model.parameters(), lr=4e-3)
    steps = len(loader) * args.classifier_epochs
    sched = ndl.optim.CosineWarmupLR(opt, warmup_steps=len(loader) // 2, total_steps=steps)
    loss_fn = ndl.nn.SoftmaxLoss()
    t0 = time.perf_counter()
    for ep in range(1, args.classifier_epochs + 1):
        bar = Progress(len(loader), f"classifier epoch {ep}/{args.classifier_epochs}")
        run_epoch(model, loader, loss_fn, opt, sched, bar, prepare=as_nchw)
        bar.close()
    _, acc, _ = run_epoch(model, ndl.data.DataLoader(test, 1000, device=device), loss_fn, prepare=as_nchw)
    ndl.save(model.state_dict(), path)
    print(f"classifier: FashionResNet width {CLASSIFIER_WIDTH}, {args.classifier_epochs} epochs in "
          f"{time.perf_counter() - t0:.0f} s, test accuracy {acc:.4f}; saved to {path}")
    model.eval()
    return model


def features(model, images, device, batch=500):
    """(pooled features, predicted classes) of NCHW images in [-1, 1] (numpy)."""
    import needle as ndl

    feats, preds = [], []
    with no_grad():
        for i in range(0, len(images), batch):
            x = ndl.Tensor(((images[i:i + batch] + 1) / 2).astype(np.float32), device=device)
            f = model.features(x)
            feats.append(f.numpy().astype(np.float64))
            preds.append(model.head(f).numpy().argmax(axis=1))
    return np.concatenate(feats), np.concatenate(preds)


# --- images ---

def load_images(path):
    """The idx images of ``path`` as NCHW float32 in [-1, 1]."""
    import needle as ndl

    images = ndl.data.MNISTDataset(path, path.replace("images-idx3", "labels-idx1")).images
    return (images.reshape(-1, 1, 28, 28) * 2 - 1).astype(np.float32)


def save_png(path, tiles, columns, scale=2):
    """tiles (n, 1, H, W) in [-1, 1] as one grayscale PNG, ``columns`` per row, 2 px gaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, _, h, w = tiles.shape
    rows = -(-n // columns)
    canvas = np.ones((rows * (h + 2) + 2, columns * (w + 2) + 2))
    for i, tile in enumerate(np.clip((tiles[:, 0] + 1) / 2, 0, 1)):
        r, c = divmod(i, columns)
        canvas[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + c * (w + 2):2 + c * (w + 2) + w] = tile
    plt.imsave(path, np.kron(canvas, np.ones((scale, scale))), cmap="gray", vmin=0, vmax=1)


# --- training and sampling ---

def build(config, device):
    import needle.diffusion
    from needle.apps.models import UNet

    model = UNet(in_channels=1, base_channels=config["base_channels"])
    model.to(device)
    return model, needle.diffusion.GaussianDiffusion(model, config["timesteps"], config["schedule"], device)


def train(args, train_images, device):
    import needle as ndl
    import needle.optim

    config = {"base_channels": args.base_channels, "timesteps": args.timesteps, "schedule": args.schedule}
    model, diffusion = build(config, device)
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    print(f"model: UNet(base {args.base_channels}, mults (1, 2, 2), attention at 7x7), {n_params:,} parameters; "
          f"T = {args.timesteps}, {args.schedule} schedule")
    opt = ndl.optim.Adam(model.parameters(), lr=args.lr)
    warmup = max(args.warmup, 1)
    sched = ndl.optim.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
    ema = ndl.optim.EMA(model.parameters(), decay=args.ema_decay)
    budget = args.minutes * 60
    print(f"training: batches of {args.batch_size}, Adam lr {args.lr:g} (warm-up {args.warmup} steps), "
          f"EMA {args.ema_decay}, for {args.minutes:g} min or {args.steps:,} steps")
    bar = Progress(int(budget), "training (s)")
    start, step, running = time.perf_counter(), 0, None
    order = np.random.permutation(len(train_images))
    while step < args.steps and time.perf_counter() - start < budget:
        first = (step * args.batch_size) % len(order)
        if first + args.batch_size > len(order):
            order, first = np.random.permutation(len(train_images)), 0
        x = ndl.Tensor(train_images[order[first:first + args.batch_size]], device=device)
        loss = diffusion.loss(x)
        opt.reset_grad()
        loss.backward()
        opt.step()
        sched.step()
        ema.update()
        value = float(loss.numpy())
        running = value if running is None else 0.98 * running + 0.02 * value
        step += 1
        elapsed = time.perf_counter() - start
        bar.update(min(int(elapsed), int(budget)), f"step {step}  loss {running:.4f}  {elapsed / step:.2f} s/step")
        del loss
    bar.close()
    elapsed = time.perf_counter() - start
    print(f"trained {step:,} steps ({step * args.batch_size / len(train_images):.2f} epochs) in {elapsed:.0f} s, "
          f"{elapsed / max(step, 1):.2f} s/step; final loss (running mean) {running:.4f}")
    ema.apply_to(model)
    config.update(steps=step, train_seconds=round(elapsed), final_loss=running)
    ndl.save(model.state_dict(), os.path.join(args.out, WEIGHTS_FILE))
    with open(os.path.join(args.out, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=1)
    print(f"checkpoint (EMA weights): {os.path.join(args.out, WEIGHTS_FILE)}")
    return model, diffusion


def load_checkpoint(args, device):
    import needle as ndl

    config_path, weights = os.path.join(args.out, CONFIG_FILE), os.path.join(args.out, WEIGHTS_FILE)
    if not (os.path.isfile(config_path) and os.path.isfile(weights)):
        raise UsageError(f"--sample: no checkpoint in {args.out} (train first: python -m needle.apps.diffusion_demo)")
    with open(config_path) as f:
        config = json.load(f)
    model, diffusion = build(config, device)
    model.load_state_dict(ndl.load(weights, device))
    print(f"checkpoint: {weights} ({config.get('steps', '?')} training steps)")
    return model, diffusion


def sample(args, diffusion, device):
    """--fd-samples DDIM samples (numpy, NCHW) and the first one's trajectory; writes the PNGs."""
    n, batches, trajectory = args.fd_samples, [], []
    start = time.perf_counter()
    bar = Progress(-(-n // 64), f"DDIM {args.ddim_steps} steps, eta {args.eta:g}")
    start_noise = np.random.randn(min(64, n), 1, 28, 28)
    for i in range(0, n, 64):
        first = i == 0
        x = diffusion.ddim_sample(min(64, n - i), (1, 28, 28), steps=args.ddim_steps, eta=args.eta,
                                  noise=start_noise if first else None, trajectory=trajectory if first else None)
        batches.append(x.numpy())
        bar.update(len(batches), f"{time.perf_counter() - start:.0f} s")
    bar.close()
    samples = np.concatenate(batches)
    per_batch = (time.perf_counter() - start) / len(batches)
    print(f"sampled {n} images with DDIM ({args.ddim_steps} steps, eta {args.eta:g}) in {time.perf_counter() - start:.0f} s "
          f"({per_batch:.1f} s per batch of 64)")
    grid, strip = os.path.join(args.out, GRID_FILE), os.path.join(args.out, STRIP_FILE)
    save_png(grid, samples[:64], 8)
    picks = np.unique(np.round(np.linspace(0, len(trajectory) - 1, 9)).astype(int))
    frames = np.concatenate([start_noise[:1].astype(np.float32)] + [trajectory[k][:1] for k in picks])
    save_png(strip, frames, len(frames), scale=3)
    print(f"samples: {grid} (8x8 grid); denoising: {strip} (the noise, then {len(frames) - 1} of the {len(trajectory)} steps)")
    return samples


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    paths = find_files(args.data_dir)
    os.makedirs(args.out, exist_ok=True)
    import needle as ndl  # noqa: F401
    import needle.data  # noqa: F401

    device = get_device(args.device)
    np.random.seed(args.seed)
    real = load_images(paths["train_images"])  # the training data, and the figure's floor
    if args.sample:
        model, diffusion = load_checkpoint(args, device)
    else:
        train_images = real[:args.train_images]
        print(f"data: {len(train_images):,} training images from {args.data_dir}, scaled to [-1, 1]")
        model, diffusion = train(args, train_images, device)
    samples = sample(args, diffusion, device)

    net = classifier(args, paths, device)
    rng = np.random.default_rng(args.seed)
    test_feats, _ = features(net, load_images(paths["test_images"]), device)
    sample_feats, predicted = features(net, samples, device)
    real_feats, _ = features(net, real[rng.choice(len(real), 10_000, replace=False)], device)
    noise_feats, _ = features(net, np.clip(rng.standard_normal(samples.shape), -1, 1).astype(np.float32), device)
    fd = frechet_distance(sample_feats, test_feats)
    fd_real = frechet_distance(real_feats, test_feats)
    fd_real_n = frechet_distance(real_feats[:len(samples)], test_feats)
    fd_noise = frechet_distance(noise_feats, test_feats)
    counts = np.bincount(predicted, minlength=10)
    print("class histogram of the samples (classifier's predictions):")
    for name, c in zip(CLASSES, counts):
        print(f"  {name:<12} {c:4d}  {'#' * int(round(40 * c / max(counts.max(), 1)))}")
    print(f"Fréchet distance to the 10,000 test images in the classifier's {test_feats.shape[1]}-d features "
          f"(lower is better): samples {fd:.2f} ({len(samples)}); real training images {fd_real:.2f} "
          f"(10,000), {fd_real_n:.2f} ({len(samples)}); Gaussian noise {fd_noise:.2f} ({len(samples)})")
    print(f"Frechet distance: {fd:.2f} (real: {fd_real_n:.2f}, noise: {fd_noise:.2f})")
    return 0


if __name__ == "__main__":
    run_cli(main)
