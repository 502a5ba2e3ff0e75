"""needle.data.CIFAR10Dataset on small batches written in the real cifar-10-batches-py format,
and simple_ml's CIFAR-10 loop (epoch_general_cifar10, train_cifar10, evaluate_cifar10).
Homework 4 writes the dataset's loading and indexing and the loop (the hw4 mark); the batch
reader's and the folder's checks are framework code, without a mark."""
import os
import pickle
import pickletools
import struct

import numpy as np
import pytest

import needle as ndl
import needle.data as data
import needle.nn as nn
import needle.optim  # noqa: F401
from needle.apps import simple_ml
from needle.data.datasets.cifar10_dataset import read_cifar10_batch

hw4 = pytest.mark.hw4

TRAIN_SIZES = [20, 20, 20, 20, 20]
TEST_SIZE = 10


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote CIFAR-10 (protocol 2): every str and bytes object,
    the dict keys, the array's raw data and its dtype's fields included, is a Python 2 str
    (BINSTRING), which encoding="bytes" loads as bytes."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def write_batch(path, data_u8, labels, protocol=None, overrides=None):
    """A batch as CIFAR-10's python version holds it: a dict with keys batch_label, labels,
    data, filenames; written as Python 2 did, or with the given Python 3 pickle protocol."""
    batch = {
        b"batch_label": os.path.basename(str(path)).encode(),
        b"labels": [int(v) for v in labels],
        b"data": data_u8,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    batch.update(overrides or {})
    with open(path, "wb") as f:
        if protocol is None:
            Py2Pickler(f, protocol=2).dump(batch)
        else:
            pickle.dump(batch, f, protocol=protocol)
    return path


@pytest.fixture
def cifar(tmp_path):
    """Folder with data_batch_1..5 (20 images each) and test_batch (10), plus the raw arrays."""
    rng = np.random.RandomState(0)
    train_data, train_labels = [], []
    for i, n in enumerate(TRAIN_SIZES, start=1):
        d = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
        y = rng.randint(0, 10, size=n)
        write_batch(tmp_path / f"data_batch_{i}", d, y)
        train_data.append(d)
        train_labels.append(y)
    test_data = rng.randint(0, 256, size=(TEST_SIZE, 3072)).astype(np.uint8)
    test_labels = rng.randint(0, 10, size=TEST_SIZE)
    write_batch(tmp_path / "test_batch", test_data, test_labels)
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"] * 10}))
    return {
        "dir": str(tmp_path),
        "train_data": np.concatenate(train_data),
        "train_labels": np.concatenate(train_labels),
        "test_data": test_data,
        "test_labels": test_labels,
    }


def images_of(raw):
    return raw.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255)


# ------ the dataset (hw4)

@hw4
@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_cifar10_lengths_split_and_pixels(cifar, train):
    ds = data.CIFAR10Dataset(cifar["dir"], train=train)
    raw = cifar["train_data"] if train else cifar["test_data"]
    labels = cifar["train_labels"] if train else cifar["test_labels"]
    assert len(ds) == len(raw) == (100 if train else 10)
    assert ds.X.shape == (len(raw), 3, 32, 32) and ds.X.dtype == np.float32
    assert ds.y.shape == (len(raw),)
    # batches 1..5 in order (or test_batch), each row planes R, G, B of row-major 32x32
    np.testing.assert_array_equal(ds.X, images_of(raw))
    np.testing.assert_array_equal(ds.y, labels)
    for i, c, r, col in [(0, 0, 0, 1), (3, 1, 5, 7), (len(raw) - 1, 2, 31, 30)]:
        assert ds.X[i, c, r, col] == np.float32(raw[i, c * 1024 + r * 32 + col]) / np.float32(255)


@hw4
def test_cifar10_items(cifar):
    ds = data.CIFAR10Dataset(cifar["dir"], True)  # positional, as the course calls it
    ds_p = data.CIFAR10Dataset(cifar["dir"], True, 0.9)  # p is accepted and has no effect
    np.testing.assert_array_equal(ds_p.X, ds.X)
    for i in [0, 19, 20, 57, 99]:  # across batch boundaries
        item = ds[i]
        assert isinstance(item, tuple) and len(item) == 2
        X, y = item
        assert isinstance(X, np.ndarray) and X.shape == (3, 32, 32) and X.dtype == np.float32
        assert 0.0 <= X.min() and X.max() <= 1.0
        np.testing.assert_array_equal(X, images_of(cifar["train_data"][i])[0])
        assert int(y) == cifar["train_labels"][i]
    assert ds.X.min() >= 0.0 and ds.X.max() <= 1.0


@hw4
def test_cifar10_batch_indexing(cifar):
    ds = data.CIFAR10Dataset(cifar["dir"], train=True)
    idx = np.array([57, 0, 99, 20])
    X, y = ds[idx]
    assert X.shape == (4, 3, 32, 32) and X.dtype == np.float32
    np.testing.assert_array_equal(X, images_of(cifar["train_data"][idx]))
    np.testing.assert_array_equal(y, cifar["train_labels"][idx])
    X, y = ds[5:9]
    np.testing.assert_array_equal(X, images_of(cifar["train_data"][5:9]))
    np.testing.assert_array_equal(y, cifar["train_labels"][5:9])


@hw4
def test_cifar10_transforms_see_hwc_images(cifar):
    seen = []

    def record(img):
        seen.append(img.shape)
        return img

    flip = data.CIFAR10Dataset(cifar["dir"], train=False,
                               transforms=[record, data.RandomFlipHorizontal(p=1.0)])
    plain = images_of(cifar["test_data"])
    X, y = flip[3]
    assert seen == [(32, 32, 3)]
    assert X.shape == (3, 32, 32) and X.dtype == np.float32
    np.testing.assert_array_equal(X, plain[3][:, :, ::-1])  # the W axis
    X, y = flip[np.array([1, 4, 2])]  # each image of a batch
    assert X.shape == (3, 3, 32, 32) and seen.count((32, 32, 3)) == 4
    np.testing.assert_array_equal(X, plain[[1, 4, 2]][..., ::-1])
    np.testing.assert_array_equal(y, cifar["test_labels"][[1, 4, 2]])
    np.testing.assert_array_equal(flip.X, plain)  # the stored images are untouched
    crop = data.CIFAR10Dataset(cifar["dir"], train=False, transforms=[data.RandomCrop(padding=0)])
    np.testing.assert_array_equal(crop[np.arange(3)][0], plain[:3])


@hw4
def test_cifar10_dataloader(cifar):
    ds = data.CIFAR10Dataset(cifar["dir"], train=True)
    loader = data.DataLoader(ds, batch_size=8)
    batches = list(loader)
    assert len(batches) == len(loader) == 13  # 12 full batches and one of 4
    for i, (X, y) in enumerate(batches):
        assert isinstance(X, ndl.Tensor) and isinstance(y, ndl.Tensor)
        assert X.dtype == "float32" and not X.requires_grad
        assert X.shape == ((8 if i < 12 else 4), 3, 32, 32)
        np.testing.assert_array_equal(X.numpy(), images_of(cifar["train_data"][8 * i : 8 * i + 8]))
        np.testing.assert_array_equal(y.numpy(), cifar["train_labels"][8 * i : 8 * i + 8])


@hw4
def test_cifar10_dataset_reports_bad_batches(cifar):
    d = cifar["dir"]
    os.remove(os.path.join(d, "data_batch_3"))
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        data.CIFAR10Dataset(d, train=True)
    assert len(data.CIFAR10Dataset(d, train=False)) == TEST_SIZE  # needs no train batch
    path = os.path.join(d, "test_batch")
    raw = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="test_batch"):
        data.CIFAR10Dataset(d, train=False)


# ------ framework code (no marker): the folder check and the batch reader's checks

def test_cifar10_folder_errors(tmp_path):
    missing = tmp_path / "cifar-10-batches-py"
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py: no such CIFAR-10 folder"):
        data.CIFAR10Dataset(str(missing), train=True)
    afile = tmp_path / "afile"
    afile.write_bytes(b"")
    with pytest.raises(ValueError, match="afile: not a directory"):
        data.CIFAR10Dataset(str(afile), train=False)


def test_read_cifar10_batch(tmp_path):
    rng = np.random.RandomState(1)
    d = rng.randint(0, 256, size=(7, 3072)).astype(np.uint8)
    y = rng.randint(0, 10, size=7)
    py2 = write_batch(tmp_path / "py2", d, y).read_bytes()
    ops = {op.name for op, _, _ in pickletools.genops(py2)}
    assert "SHORT_BINSTRING" in ops and "BINBYTES" not in ops  # the fixture writes Python 2's
    for protocol in [None, 2, 4, 5]:
        path = write_batch(tmp_path / f"b{protocol}", d, y, protocol)
        got_d, got_y = read_cifar10_batch(str(path))
        assert got_d.dtype == np.uint8 and got_y.dtype == np.int64
        np.testing.assert_array_equal(got_d, d)
        np.testing.assert_array_equal(got_y, y)


def test_read_cifar10_batch_errors(tmp_path):
    rng = np.random.RandomState(2)
    d = rng.randint(0, 256, size=(6, 3072)).astype(np.uint8)
    y = rng.randint(0, 10, size=6)
    good = write_batch(tmp_path / "data_batch_1", d, y)
    raw = good.read_bytes()

    def bad(name, content):
        p = tmp_path / name
        p.write_bytes(content)
        return str(p)

    with pytest.raises(FileNotFoundError, match="data_batch_9: no such CIFAR-10 batch file"):
        read_cifar10_batch(str(tmp_path / "data_batch_9"))
    (tmp_path / "adir").mkdir()
    with pytest.raises(ValueError, match="adir: not a regular file"):
        read_cifar10_batch(str(tmp_path / "adir"))
    for cut in [0, 1, 100, len(raw) // 2, len(raw) - 1]:
        with pytest.raises(ValueError, match=r"truncated_batch: (truncated|not a CIFAR-10 batch)"):
            read_cifar10_batch(bad("truncated_batch", raw[:cut]))
    with pytest.raises(ValueError, match="notpickle_batch: not a CIFAR-10 batch"):
        read_cifar10_batch(bad("notpickle_batch", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4))
    with pytest.raises(ValueError, match="list_batch: holds a list"):
        read_cifar10_batch(bad("list_batch", pickle.dumps([1, 2, 3])))
    with pytest.raises(ValueError, match=r"nolabels_batch: .*no b'labels' key"):
        read_cifar10_batch(bad("nolabels_batch", pickle.dumps({b"data": d})))
    # a CIFAR-100 batch (fine_labels) or str keys (loaded without encoding="bytes")
    with pytest.raises(ValueError, match=r"strkeys_batch: .*no b'data' or b'labels' key"):
        read_cifar10_batch(bad("strkeys_batch", pickle.dumps({"data": d, "labels": list(y)})))
    shape_cases = [
        ("wide_batch", d[:, :3071], r"uint8 array of shape \(6, 3071\)"),
        ("hwc_batch", d.reshape(6, 32, 32, 3), r"uint8 array of shape \(6, 32, 32, 3\)"),
        ("float_batch", d.astype(np.float32), r"float32 array of shape \(6, 3072\)"),
        ("listdata_batch", d.tolist(), "list"),
    ]
    for name, value, msg in shape_cases:
        with pytest.raises(ValueError, match=f"{name}: b'data' is a {msg}, expected a uint8 array"):
            read_cifar10_batch(str(write_batch(tmp_path / name, d, y, overrides={b"data": value})))
    with pytest.raises(ValueError, match=r"fewlabels_batch: b'labels' has shape \(5,\).*\(6, 30"):
        read_cifar10_batch(str(write_batch(tmp_path / "fewlabels_batch", d, y[:5])))
    with pytest.raises(ValueError, match=r"range_batch: labels range over 0\.\.10"):
        read_cifar10_batch(str(write_batch(tmp_path / "range_batch", d, np.r_[y[:5], 10])))


class _Evil:
    def __reduce__(self):
        return (print, ("a pickle ran code",))


def test_read_cifar10_batch_refuses_code(tmp_path, capsys):
    p = tmp_path / "evil_batch"
    p.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"evil_batch: .*refers to __builtin__\.print"):
        read_cifar10_batch(str(p))
    assert "ran code" not in capsys.readouterr().out


# ------ simple_ml's CIFAR-10 loop (hw4)

def tiny_model():
    np.random.seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 10))


def expected_acc_loss(model, X, y):
    """Accuracy and mean softmax loss of the model's logits, computed with numpy."""
    model.eval()
    z = model(ndl.Tensor(X, requires_grad=False)).numpy().astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    losses = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]
    return float(np.mean(z.argmax(axis=1) == y)), float(np.mean(losses))


@hw4
def test_evaluate_cifar10_matches_numpy(cifar):
    ds = data.CIFAR10Dataset(cifar["dir"], train=True)
    loader = data.DataLoader(ds, batch_size=8)  # the last batch has 4 samples
    model = tiny_model()
    acc, loss = simple_ml.evaluate_cifar10(model, loader)
    assert isinstance(acc, float) and isinstance(loss, float)
    exp_acc, exp_loss = expected_acc_loss(model, ds.X, ds.y)
    assert acc == pytest.approx(exp_acc, abs=1e-12)
    assert loss == pytest.approx(exp_loss, rel=1e-5)
    # the epoch function directly, with a loss module instance: the same numbers
    acc2, loss2 = simple_ml.epoch_general_cifar10(loader, model, nn.SoftmaxLoss())
    assert (acc2, loss2) == (acc, loss)
    assert not model.training


@hw4
def test_train_cifar10_lowers_the_loss(cifar):
    ds = data.CIFAR10Dataset(cifar["dir"], train=True)
    loader = data.DataLoader(ds, batch_size=8, shuffle=True)
    model = tiny_model()
    before_acc, before_loss = simple_ml.evaluate_cifar10(model, data.DataLoader(ds, batch_size=8))
    acc, loss = simple_ml.train_cifar10(model, loader, n_epochs=3, optimizer=ndl.optim.Adam,
                                        lr=0.001, weight_decay=0.001)
    assert isinstance(acc, float) and isinstance(loss, float)
    assert 0.0 <= acc <= 1.0 and np.isfinite(loss)
    assert model.training  # the last epoch trained
    after_acc, after_loss = simple_ml.evaluate_cifar10(model, data.DataLoader(ds, batch_size=8))
    assert after_loss < before_loss - 0.1
    assert after_acc > before_acc
    assert loss < before_loss  # the last training epoch's average, too


@hw4
def test_cifar10_loop_seeds_numpy_with_4(cifar):
    ds = data.CIFAR10Dataset(cifar["dir"], train=True, transforms=[data.RandomFlipHorizontal(0.5)])
    results = []
    for other_seed in [1, 2]:
        model = tiny_model()
        np.random.seed(other_seed)  # overridden by each function's np.random.seed(4)
        loader = data.DataLoader(ds, batch_size=8, shuffle=True)
        results.append(simple_ml.train_cifar10(model, loader, n_epochs=1))
        np.random.seed(other_seed + 10)
        results.append(simple_ml.evaluate_cifar10(model, loader))
    assert results[0] == results[2] and results[1] == results[3]
    # evaluation in order, without random transforms, draws nothing after the seed
    model = tiny_model()
    np.random.seed(123)
    simple_ml.evaluate_cifar10(model, data.DataLoader(data.CIFAR10Dataset(cifar["dir"], False), 8))
    after = np.random.rand()
    np.random.seed(4)
    assert after == np.random.rand()
