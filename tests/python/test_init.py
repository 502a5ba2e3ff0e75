"""needle.init: shapes, dtypes, devices and values against numpy's global RNG draws."""
import math

import numpy as np
import pytest

import needle as ndl
import needle.init as init
from needle import backend_ndarray as nd

pytestmark = pytest.mark.hw2

DEVICES = [
    nd.cpu(),
    pytest.param(nd.cuda(), marks=pytest.mark.skipif(not nd.cuda().enabled(), reason="no CUDA device")),
]


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
def test_rand_matches_numpy(device):
    np.random.seed(3)
    t = init.rand(4, 5, low=-2.0, high=3.0, device=device)
    np.random.seed(3)
    ref = np.random.rand(4, 5).astype(np.float32) * 5.0 - 2.0
    assert t.shape == (4, 5) and t.dtype == "float32" and t.device == device
    assert not t.requires_grad
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
def test_randn_matches_numpy(device):
    np.random.seed(5)
    t = init.randn(3, 2, 4, mean=1.5, std=0.5, device=device, requires_grad=True)
    np.random.seed(5)
    ref = np.random.randn(3, 2, 4) * 0.5 + 1.5
    assert t.shape == (3, 2, 4) and t.requires_grad
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
def test_constants(device):
    np.testing.assert_array_equal(init.constant(2, 3, c=-1.5, device=device).numpy(), np.full((2, 3), -1.5))
    np.testing.assert_array_equal(init.ones(4, device=device).numpy(), np.ones(4))
    z = init.zeros(2, 2, device=device, dtype="float64")
    assert z.dtype == "float64"
    np.testing.assert_array_equal(z.numpy(), np.zeros((2, 2)))
    # the PyTorch-style tuple form is accepted too
    assert init.zeros((3, 4), device=device).shape == (3, 4)


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
def test_like(device):
    a = ndl.Tensor(np.arange(6, dtype=np.float64).reshape(2, 3), device=device)
    z, o = init.zeros_like(a), init.ones_like(a, requires_grad=True)
    assert z.shape == (2, 3) and z.dtype == "float64" and z.device == device and not z.requires_grad
    assert o.requires_grad
    np.testing.assert_array_equal(o.numpy(), np.ones((2, 3)))
    np.testing.assert_array_equal(ndl.init.zeros_like(a).numpy(), np.zeros((2, 3)))


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
def test_randb(device):
    np.random.seed(11)
    t = init.randb(50, 40, p=0.3, device=device)
    np.random.seed(11)
    ref = np.random.rand(50, 40) < 0.3
    assert t.dtype == "bool" and not t.requires_grad
    np.testing.assert_array_equal(t.numpy(), ref)
    assert t.numpy().mean() == pytest.approx(0.3, abs=0.05)
    np.random.seed(11)
    f = init.randb(50, 40, p=0.3, device=device, dtype="float32")
    assert f.dtype == "float32"
    np.testing.assert_array_equal(f.numpy(), ref.astype(np.float32))


@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
def test_one_hot(device):
    y = ndl.Tensor([2.0, 0.0, 3.0], device=device)
    t = init.one_hot(4, y, device=device)
    np.testing.assert_array_equal(t.numpy(), np.eye(4)[[2, 0, 3]])
    np.testing.assert_array_equal(init.one_hot(3, np.array([1, 1]), device=device).numpy(), np.eye(3)[[1, 1]])
    for dtype in ("int64", "int32", "uint8"):
        labels = ndl.Tensor(np.array([2, 0, 3], dtype=dtype), device=device)
        np.testing.assert_array_equal(init.one_hot(4, labels, device=device).numpy(), np.eye(4)[[2, 0, 3]])
    assert init.one_hot(4, ndl.Tensor([1]), device=device, dtype="float64").dtype == "float64"
    with pytest.raises(ValueError, match="one_hot"):
        init.one_hot(3, np.array([3]), device=device)
    with pytest.raises(ValueError, match=r"\[one_hot\] class indices must be integers, got 0.5"):
        init.one_hot(3, ndl.Tensor([1.0, 0.5]), device=device)
    with pytest.raises(ValueError, match="must be integers"):
        init.one_hot(3, np.array([np.nan]), device=device)


def test_xavier():
    np.random.seed(0)
    u = init.xavier_uniform(6, 4, gain=2.0)
    n = init.xavier_normal(6, 4, gain=0.5)
    np.random.seed(0)
    a = 2.0 * math.sqrt(6 / 10)
    ref_u = np.random.rand(6, 4) * 2 * a - a
    ref_n = np.random.randn(6, 4) * 0.5 * math.sqrt(2 / 10)
    np.testing.assert_allclose(u.numpy(), ref_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(n.numpy(), ref_n, rtol=1e-5, atol=1e-6)


def test_kaiming():
    np.random.seed(1)
    u = init.kaiming_uniform(8, 3)
    n = init.kaiming_normal(8, 3)
    k = init.kaiming_uniform(27, 16, shape=(3, 3, 3, 16))
    np.random.seed(1)
    b = math.sqrt(2) * math.sqrt(3 / 8)
    np.testing.assert_allclose(u.numpy(), np.random.rand(8, 3) * 2 * b - b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(n.numpy(), np.random.randn(8, 3) * math.sqrt(2) / math.sqrt(8), rtol=1e-5, atol=1e-6)
    b = math.sqrt(2) * math.sqrt(3 / 27)
    np.testing.assert_allclose(k.numpy(), np.random.rand(3, 3, 3, 16) * 2 * b - b, rtol=1e-5, atol=1e-6)
    assert k.shape == (3, 3, 3, 16)
    with pytest.raises(ValueError, match="relu"):
        init.kaiming_uniform(3, 3, nonlinearity="tanh")


def test_kwargs_pass_through():
    t = init.kaiming_uniform(3, 2, dtype="float64", requires_grad=True)
    assert t.dtype == "float64" and t.requires_grad


def test_course_values():
    # The course framework's values for kaiming_uniform(7, 4) after np.random.seed(1337)
    np.random.seed(1337)
    t = init.kaiming_uniform(7, 4)
    np.testing.assert_allclose(
        t.numpy()[:2],
        [[-0.44064468, -0.6319945, -0.4108299, -0.0753305], [-0.3314426, 0.03405684, -0.44079605, 0.88153875]],
        rtol=1e-5,
    )
