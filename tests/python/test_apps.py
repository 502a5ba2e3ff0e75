"""needle.apps: simple_ml (parse_mnist, softmax_loss, nn_epoch), mlp_resnet (blocks,
epoch, train_mnist), the Fashion-MNIST demo's command line, and the C++ example
docs/examples/train_mnist.cc (an MLP written as ops) training on the same files. The demo's
option and file checks are framework code, without a homework mark."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
import needle.data
import needle.optim
from needle.apps import mlp_resnet, models, simple_ml

from test_data import write_idx

hw2 = pytest.mark.hw2


def check_ran(run):
    """Asserts that a subprocess succeeded. One that died in a homework stub fails the test as
    that stub's NotImplementedError, as if the stub had been called here."""
    stub = re.search(r"\bhw\d+: \S+", run.stderr)
    if run.returncode != 0 and stub:
        raise NotImplementedError(stub.group(0))
    assert run.returncode == 0, run.stderr


def softmax_loss_np(z, y):
    z = z - z.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y])


@hw2
def test_parse_mnist(tmp_path):
    images = np.random.RandomState(0).randint(0, 256, size=(6, 28, 28))
    labels = np.arange(6) % 10
    X, y = simple_ml.parse_mnist(str(write_idx(tmp_path / "i.gz", images)), str(write_idx(tmp_path / "l", labels, gz=False)))
    assert X.shape == (6, 784) and X.dtype == np.float32 and y.dtype == np.uint8
    np.testing.assert_allclose(X, images.reshape(6, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)


@hw2
def test_softmax_loss():
    rng = np.random.RandomState(0)
    z = rng.randn(7, 4).astype(np.float32)
    y = rng.randint(0, 4, 7)
    loss = simple_ml.softmax_loss(ndl.Tensor(z), ndl.Tensor(np.eye(4, dtype=np.float32)[y]))
    np.testing.assert_allclose(loss.numpy(), softmax_loss_np(z.astype(np.float64), y), rtol=1e-5)


@hw2
def test_nn_epoch_matches_numpy():
    rng = np.random.RandomState(1)
    X = rng.randn(50, 5).astype(np.float32)
    y = rng.randint(0, 3, 50).astype(np.uint8)
    W1 = rng.randn(5, 10).astype(np.float32) / np.sqrt(10)
    W2 = rng.randn(10, 3).astype(np.float32) / np.sqrt(3)
    w1, w2 = W1.astype(np.float64), W2.astype(np.float64)
    for i in range(0, 50, 15):  # batches of 15, the last one short
        xb, yb = X[i : i + 15], y[i : i + 15]
        h = np.maximum(xb @ w1, 0)
        z = h @ w2
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(yb)), yb] -= 1
        g2 = h.T @ p / len(yb)
        g1 = xb.T @ ((p @ w2.T) * (h > 0)) / len(yb)
        w1, w2 = w1 - 0.2 * g1, w2 - 0.2 * g2
    T1, T2 = simple_ml.nn_epoch(X, y, ndl.Tensor(W1), ndl.Tensor(W2), lr=0.2, batch=15)
    np.testing.assert_allclose(T1.numpy(), w1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(T2.numpy(), w2, rtol=1e-4, atol=1e-5)


def _synthetic(n, seed):
    rng = np.random.RandomState(seed)
    centers = rng.rand(10, 28, 28) * 255
    y = rng.randint(0, 10, n)
    x = np.clip(centers[y] + rng.randn(n, 28, 28) * 40, 0, 255).astype(np.uint8)
    return x, y.astype(np.uint8)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mnist")
    rng_train, rng_test = _synthetic(300, 0), _synthetic(100, 0)
    write_idx(d / "train-images-idx3-ubyte.gz", rng_train[0])
    write_idx(d / "train-labels-idx1-ubyte.gz", rng_train[1])
    write_idx(d / "t10k-images-idx3-ubyte.gz", rng_test[0])
    write_idx(d / "t10k-labels-idx1-ubyte.gz", rng_test[1])
    return str(d)


@hw2
def test_epoch_trains_and_evaluates(mnist_dir):
    ds = ndl.data.MNISTDataset(os.path.join(mnist_dir, "train-images-idx3-ubyte.gz"),
                               os.path.join(mnist_dir, "train-labels-idx1-ubyte.gz"))
    loader = ndl.data.DataLoader(ds, batch_size=50, shuffle=True)
    np.random.seed(0)
    model = mlp_resnet.MLPResNet(784, 32, num_blocks=1)
    opt = ndl.optim.Adam(model.parameters(), lr=0.01)
    err0, loss0 = mlp_resnet.epoch(loader, model)
    assert not model.training
    assert 0.0 <= err0 <= 1.0 and loss0 > 0
    for _ in range(3):
        err, loss = mlp_resnet.epoch(loader, model, opt)
        assert model.training
    err1, loss1 = mlp_resnet.epoch(loader, model)
    assert loss1 < 0.5 * loss0 and err1 < err0


REPO = os.path.join(os.path.dirname(__file__), "..", "..")


@hw2
def test_cpp_example_trains_from_ops_and_its_checkpoint_loads(mnist_dir, tmp_path):
    exe = os.path.join(REPO, "build", "train_mnist")
    if not os.path.exists(exe):
        pytest.skip(f"C++ example not built at {exe}")
    ckpt = str(tmp_path / "mlp.safetensors")
    # logsoftmax's composite (homework 2's), not its fused kernels.
    env = dict(os.environ, NEEDLE_KERNELS_OFF="logsoftmax,logsoftmax_grad")
    run = subprocess.run([exe, mnist_dir, "--epochs", "3", "--hidden", "32", "--batch-size", "50",
                          "--lr", "0.01", "--save", ckpt], capture_output=True, text=True, env=env)
    check_ran(run)
    losses = [float(line.split("train loss ")[1].split(",")[0])
              for line in run.stdout.splitlines() if "train loss" in line]
    assert len(losses) == 3 and losses[-1] < 0.5 * losses[0]
    acc = float(run.stdout.split("test accuracy: ")[1].split()[0])
    assert acc > 0.8
    params = ndl.load(ckpt)
    assert {k: v.shape for k, v in params.items()} == {
        "w1": (784, 32), "b1": (32,), "w2": (32, 10), "b2": (10,)}
    # The checkpoint resumes in C++ too; a model of another width refuses it.
    again = subprocess.run([exe, mnist_dir, "--epochs", "1", "--hidden", "32", "--load", ckpt],
                           capture_output=True, text=True, env=env)
    check_ran(again)
    wrong = subprocess.run([exe, mnist_dir, "--hidden", "16", "--load", ckpt],
                           capture_output=True, text=True, env=env)
    assert wrong.returncode == 1 and "does not fit this model" in wrong.stderr


@hw2
def test_train_mnist_small(mnist_dir):
    out = mlp_resnet.train_mnist(batch_size=100, epochs=2, optimizer=ndl.optim.Adam, lr=0.01,
                                 weight_decay=0.001, hidden_dim=20, data_dir=mnist_dir)
    assert len(out) == 4
    train_err, train_loss, test_err, test_loss = out
    assert all(np.isfinite(v) for v in out)
    assert 0 <= train_err <= 1 and 0 <= test_err <= 1
    # deterministic: train_mnist seeds numpy itself
    assert mlp_resnet.train_mnist(100, 2, ndl.optim.Adam, 0.01, 0.001, 20, mnist_dir) == pytest.approx(out)


def _demo(*args):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(ndl.__path__[0]), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "needle.apps.demo", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--batch-size", "x"], "invalid int value"),
    (["--device", "tpu"], "--device must be cpu or cuda"),
    (["--bogus"], "unrecognized arguments"),
    (["--data-dir", "/nonexistent/fashion"], "data directory /nonexistent/fashion not found"),
])
def test_demo_bad_options(args, message):
    r = _demo(*args)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr


def test_demo_missing_file(tmp_path):
    r = _demo("--data-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "train-images-idx3-ubyte" in r.stderr


@hw2
@pytest.mark.skipif(not hasattr(ndl, "save"), reason="needle.save (checkpoints) not available yet")
def test_demo_tiny_run(mnist_dir, tmp_path):
    out = tmp_path / "out"
    r = _demo("--data-dir", mnist_dir, "--epochs", "1", "--batch-size", "50", "--hidden", "16",
              "--out", str(out))
    check_ran(r)
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("test accuracy: 0.") or last == "test accuracy: 1.0000"
    assert (out / "mlp_resnet_fashion_mnist.safetensors").is_file()
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = ndl.load(str(out / "mlp_resnet_fashion_mnist.safetensors"))
    model = mlp_resnet.MLPResNet(784, 16)
    model.load_state_dict(state)


def test_demo_cnn_tiny_run(mnist_dir, tmp_path):
    """--model cnn end to end on the synthetic idx files: the same outputs as the MLP's."""
    out = tmp_path / "out"
    r = _demo("--model", "cnn", "--data-dir", mnist_dir, "--epochs", "1", "--batch-size", "50",
              "--width", "4", "--out", str(out))
    check_ran(r)
    assert "model: FashionResNet(width 4)" in r.stdout
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("test accuracy: ")
    assert "logits averaged with its mirror image's" in lines[-2]
    assert lines[-2].endswith(lines[-1].split()[-1])  # the final figure is the mirrored one
    state = ndl.load(str(out / "fashion_resnet_fashion_mnist.safetensors"))
    model = models.FashionResNet(4)
    model.load_state_dict(state)
    assert (out / "training_curves_cnn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mirror_averaged_accuracy_against_numpy():
    """The demo's final evaluation: each image's logits plus its mirror image's, in eval
    mode, against the same sums computed image by image."""
    from needle.apps.demo import as_nchw, mirror_averaged_accuracy

    np.random.seed(5)
    model = models.FashionResNet(4)
    model.train()  # the evaluation must switch to eval mode itself
    images = np.random.rand(12, 28, 28, 1).astype(np.float32)
    labels = np.random.randint(0, 10, 12)
    loader = [(ndl.Tensor(images[i:i + 5]), ndl.Tensor(labels[i:i + 5], dtype="int64"))
              for i in range(0, 12, 5)]
    got = mirror_averaged_accuracy(model, loader, as_nchw)
    assert not model.training
    nchw = images.transpose(0, 3, 1, 2)
    logits = (model(ndl.Tensor(nchw)).numpy()
              + model(ndl.Tensor(np.ascontiguousarray(nchw[..., ::-1]))).numpy())
    assert got == pytest.approx(float((logits.argmax(axis=1) == labels).mean()))


@pytest.mark.hw5
def test_demo_vit_tiny_run(mnist_dir, tmp_path):
    """--model vit end to end on the synthetic idx files."""
    out = tmp_path / "out"
    r = _demo("--model", "vit", "--data-dir", mnist_dir, "--epochs", "1", "--batch-size", "50",
              "--out", str(out))
    check_ran(r)
    assert "model: ViT(7x7 patches" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("test accuracy: ")
    model = models.ViT()
    model.load_state_dict(ndl.load(str(out / "vit_fashion_mnist.safetensors")))
    assert (out / "training_curves_vit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_rejects_unknown_model():
    r = _demo("--model", "rnn")
    assert r.returncode == 2 and "--model must be mlp, cnn or vit" in r.stderr


FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST), reason="Debian's dataset-fashion-mnist is not installed")
def test_cnn_learns_fashion_mnist_subset():
    """A small FashionResNet trained for three epochs on 4,000 real Fashion-MNIST images
    classifies 1,000 unseen test images far better than chance (0.1) or a constant."""
    from needle.apps.demo import find_files

    paths = find_files(FASHION_MNIST)
    train = ndl.data.MNISTDataset(paths["train_images"], paths["train_labels"])
    test = ndl.data.MNISTDataset(paths["test_images"], paths["test_labels"])
    np.random.seed(0)
    x_train, y_train = train.images[:4000].reshape(-1, 1, 28, 28), train.labels[:4000].astype(np.int64)
    x_test, y_test = test.images[:1000].reshape(-1, 1, 28, 28), test.labels[:1000].astype(np.int64)
    model = models.FashionResNet(16)
    opt = ndl.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = ndl.nn.SoftmaxLoss()
    model.train()
    for _ in range(3):
        order = np.random.permutation(len(x_train))
        for i in range(0, len(order), 100):
            batch = order[i:i + 100]
            loss = loss_fn(model(ndl.Tensor(x_train[batch])), ndl.Tensor(y_train[batch]))
            opt.reset_grad()
            loss.backward()
            opt.step()
    model.eval()
    logits = model(ndl.Tensor(x_test)).numpy()
    accuracy = float((logits.argmax(axis=1) == y_test).mean())
    assert accuracy >= 0.7, accuracy


def _lm_demo(*args):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(ndl.__path__[0]))
    return subprocess.run([sys.executable, "-m", "needle.apps.lm_demo", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.hw5
@pytest.mark.skipif(not os.path.exists("/usr/bin/bible"), reason="Debian's bible-kjv is not installed")
def test_lm_demo_tiny_run(tmp_path):
    """make lm's job end to end with a tiny model: corpus, training, perplexity, checkpoint, sample."""
    out = tmp_path / "out"
    r = _lm_demo("--steps", "4", "--eval-every", "2", "--embedding", "8", "--hidden", "8",
                 "--batch-size", "64", "--sample-words", "6", "--data-dir", str(tmp_path / "kjv"),
                 "--out", str(out))
    check_ran(r)
    lines = r.stdout.strip().splitlines()
    assert re.fullmatch(r"validation perplexity: \d+\.\d", lines[-1]), lines[-1]
    assert any(line.startswith("step 2: validation perplexity") for line in lines)
    sample = next(line for line in lines if line.startswith("sample: "))
    assert sample.startswith("sample: and god said")
    vocab = int(re.search(r"vocabulary ([\d,]+)", r.stdout).group(1).replace(",", ""))
    model = models.LanguageModel(8, vocab, 8, seq_model="lstm")
    model.load_state_dict(ndl.load(str(out / "lstm_lm_kjv.safetensors")))


@pytest.mark.parametrize("args,message", [
    (["--steps", "0"], "--steps must be positive"),
    (["--lr", "0"], "--lr, --clip and --minutes must be positive"),
    (["--device", "tpu"], "invalid choice"),
])
def test_lm_demo_rejects_bad_options(args, message):
    r = _lm_demo(*args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
