"""needle.data: DataLoader order and batching, transforms, NDArrayDataset, MNIST idx files.
Homework 2 writes the DataLoader's iteration, the transforms and MNIST parsing (the hw2
mark); the argument checks and the abstract bases are framework code, without a mark."""
import gzip
import os
import struct

import numpy as np
import pytest

import needle as ndl
import needle.data as data
from needle import backend_ndarray as nd

hw2 = pytest.mark.hw2

DEVICES = [
    nd.cpu(),
    pytest.param(nd.cuda(), marks=pytest.mark.skipif(not nd.cuda().enabled(), reason="no CUDA device")),
]
IDS = ["cpu", "cuda"]
FASHION = "/usr/share/datasets/fashion-mnist"


def write_idx(path, array, gz=True):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x800 | array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    raw = header + array.tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(raw)
    return path


@pytest.fixture
def small_mnist(tmp_path):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(23, 28, 28)).astype(np.uint8)
    labels = rng.randint(0, 10, size=23).astype(np.uint8)
    img = write_idx(tmp_path / "img-idx3-ubyte.gz", images)
    lab = write_idx(tmp_path / "lab-idx1-ubyte.gz", labels)
    return str(img), str(lab), images, labels


@hw2
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_dataloader_in_order_with_short_last_batch(device):
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    y = np.arange(10)
    loader = data.DataLoader(data.NDArrayDataset(x, y), batch_size=4, device=device)
    assert len(loader) == 3
    for _ in range(2):  # iterating twice gives the same batches
        batches = list(loader)
        assert [b[0].shape for b in batches] == [(4, 3), (4, 3), (2, 3)]
        for i, (bx, by) in enumerate(batches):
            assert isinstance(bx, ndl.Tensor) and isinstance(by, ndl.Tensor)
            assert not bx.requires_grad and bx.device == device
            np.testing.assert_array_equal(bx.numpy(), x[4 * i : 4 * i + 4])
            np.testing.assert_array_equal(by.numpy(), y[4 * i : 4 * i + 4])


def test_dataloader_of_an_empty_dataset_has_no_batches():
    for shuffle in (False, True):
        loader = data.DataLoader(data.NDArrayDataset(np.zeros((0, 3))), batch_size=4, shuffle=shuffle)
        assert len(loader) == 0 and list(loader) == []


@hw2
def test_dataloader_shuffle_follows_numpy_seed():
    x = np.arange(50, dtype=np.float32).reshape(50, 1)
    loader = data.DataLoader(data.NDArrayDataset(x), batch_size=8, shuffle=True)
    np.random.seed(3)
    first = np.concatenate([b[0].numpy().ravel() for b in loader])
    second = np.concatenate([b[0].numpy().ravel() for b in loader])
    np.random.seed(3)
    p1, p2 = np.random.permutation(50), np.random.permutation(50)
    np.testing.assert_array_equal(first, p1)
    np.testing.assert_array_equal(second, p2)
    assert sorted(first) == list(range(50))


@hw2
def test_dataloader_collates_plain_datasets():
    class Squares(data.Dataset):
        def __len__(self):
            return 7

        def __getitem__(self, i):
            return np.full((2, 2), i, dtype=np.float32), i * i

    batches = list(data.DataLoader(Squares(), batch_size=3))
    assert [b[0].shape for b in batches] == [(3, 2, 2), (3, 2, 2), (1, 2, 2)]
    np.testing.assert_array_equal(batches[1][1].numpy(), [9, 16, 25])
    np.testing.assert_array_equal(batches[2][0].numpy(), np.full((1, 2, 2), 6))


def test_dataloader_and_dataset_errors():
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader(data.NDArrayDataset(np.zeros(3)), batch_size=0)
    with pytest.raises(ValueError, match="differ in length"):
        data.NDArrayDataset(np.zeros(3), np.zeros(4))


@hw2
def test_batches_keep_each_fields_dtype():
    fields = (np.zeros((4, 2)), np.zeros(4, dtype=np.float32), np.arange(4), np.arange(4, dtype=np.uint8))
    bx, bf, by, bu = next(iter(data.DataLoader(data.NDArrayDataset(*fields), batch_size=2)))
    assert (bx.dtype, bf.dtype, by.dtype, bu.dtype) == ("float64", "float32", "int64", "uint8")
    assert not any(t.requires_grad for t in (bx, bf, by, bu))
    # dtype= casts the floating-point fields only: labels stay integers.
    loader = data.DataLoader(data.NDArrayDataset(*fields), batch_size=2, dtype="float32")
    assert [t.dtype for t in next(iter(loader))] == ["float32", "float32", "int64", "uint8"]


@hw2
def test_random_flip_horizontal():
    img = np.random.rand(5, 6, 3)
    tform = data.RandomFlipHorizontal(p=0.5)
    np.random.seed(0)
    outs = [tform(img) for _ in range(20)]
    np.random.seed(0)
    flips = [np.random.rand() < 0.5 for _ in range(20)]
    assert any(flips) and not all(flips)
    for out, flip in zip(outs, flips):
        np.testing.assert_array_equal(out, img[:, ::-1, :] if flip else img)
    np.testing.assert_array_equal(data.RandomFlipHorizontal(p=1.0)(img), img[:, ::-1, :])


@hw2
@pytest.mark.parametrize("padding, shape", [(3, (8, 7, 2)), (1, (28, 28, 1)), (9, (4, 5, 3)),
                                            (2, (6, 6))],
                         ids=["pad3", "mnist", "pad-beyond-the-image", "2-D"])
def test_random_crop(padding, shape):
    """Against np.pad then a slice at the drawn shift, for shifts up to (and a padding
    beyond) the image's size."""
    img = np.random.rand(*shape).astype(np.float32)
    tform = data.RandomCrop(padding=padding)
    np.random.seed(1)
    outs = [tform(img) for _ in range(40)]
    np.random.seed(1)
    p, (h, w) = padding, shape[:2]
    padded = np.pad(img, ((p, p), (p, p)) + ((0, 0),) * (img.ndim - 2))
    for out in outs:
        sx, sy = np.random.randint(low=-p, high=p + 1, size=2)
        assert out.shape == img.shape and out.dtype == img.dtype
        np.testing.assert_array_equal(out, padded[p + sx : p + sx + h, p + sy : p + sy + w])
    np.testing.assert_array_equal(data.RandomCrop(padding=0)(img), img)


def test_transform_base_is_abstract():
    with pytest.raises(NotImplementedError):
        data.Transform()(np.zeros((2, 2, 1)))


@hw2
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_dataset_small_files(tmp_path, gz):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(9, 28, 28)).astype(np.uint8)
    labels = rng.randint(0, 10, size=9).astype(np.uint8)
    suffix = ".gz" if gz else ""
    img = write_idx(tmp_path / ("i" + suffix), images, gz)
    lab = write_idx(tmp_path / ("l" + suffix), labels, gz)
    ds = data.MNISTDataset(str(img), str(lab))
    assert len(ds) == 9
    x, y = ds[4]
    assert x.shape == (28, 28, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[..., 0], images[4] / 255.0, rtol=1e-6)
    assert y == labels[4]
    bx, by = ds[2:5]
    assert bx.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(by, labels[2:5])
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0


@hw2
def test_mnist_dataset_transforms_per_image(small_mnist):
    img, lab, images, labels = small_mnist
    ds = data.MNISTDataset(img, lab, transforms=[data.RandomFlipHorizontal(p=1.0)])
    x, _ = ds[3]
    np.testing.assert_allclose(x[..., 0], images[3][:, ::-1] / 255.0, rtol=1e-6)
    loader = data.DataLoader(ds, batch_size=5)
    bx, by = next(iter(loader))
    np.testing.assert_allclose(bx.numpy()[..., 0], images[:5, :, ::-1] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(by.numpy(), labels[:5])


@hw2
def test_mnist_dataloader_matches_slices(small_mnist):
    ds = data.MNISTDataset(*small_mnist[:2])
    for i, (bx, by) in enumerate(data.DataLoader(ds, batch_size=10)):
        tx, ty = ds[i * 10 : (i + 1) * 10]
        np.testing.assert_allclose(bx.numpy(), tx)
        np.testing.assert_array_equal(by.numpy(), ty)
        assert bx.dtype == "float32" and by.dtype == "uint8" and ty.dtype == np.uint8


@hw2
def test_mnist_errors(tmp_path, small_mnist):
    img, lab, images, labels = small_mnist
    with pytest.raises(ValueError, match=r"lab-idx1-ubyte.gz.*magic"):
        data.MNISTDataset(lab, lab)  # labels where images are expected
    raw = gzip.decompress(open(img, "rb").read())
    short = tmp_path / "short-images"
    short.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(ValueError, match="short-images: truncated data"):
        data.MNISTDataset(str(short), lab)
    cut = tmp_path / "cut-images.gz"
    cut.write_bytes(open(img, "rb").read()[:200])
    with pytest.raises(ValueError, match="cut-images.gz"):
        data.MNISTDataset(str(cut), lab)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="tiny"):
        data.MNISTDataset(str(tiny), lab)
    other = write_idx(tmp_path / "labels-5.gz", labels[:5])
    with pytest.raises(ValueError, match="23 images but .* 5 labels"):
        data.MNISTDataset(img, str(other))


@hw2
@pytest.mark.skipif(not os.path.isdir(FASHION), reason="Fashion-MNIST not installed")
def test_real_fashion_mnist():
    ds = data.MNISTDataset(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz"),
                           os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz"))
    assert len(ds) == 10000
    x, y = ds[0]
    assert x.shape == (28, 28, 1) and 0 <= int(y) < 10
    assert np.bincount(ds.labels, minlength=10).tolist() == [1000] * 10
    assert 0.2 < float(ds.images.mean()) < 0.4
