"""Convolution, pooling, flip and dilate (homework 4) against PyTorch, the second oracle:
forward and backward against torch.nn.functional (NHWC here, NCHW in torch), on every
device. Their numpy forward, float64 finite-difference gradients and fused-vs-composite
checks are rows of the one op table, CASES in test_ops.py. Every test here runs conv's
composite (the devices' fused conv and pooling kernels off), the code homework 4 writes; conv's
argument checks are framework code, without a homework mark."""
import numpy as np
import pytest

import needle as ndl
from needle import backend_ndarray as nd

from gradcheck import DEVICES, gradient_check, kernels_off

torch = pytest.importorskip("torch")
F = torch.nn.functional
hw4 = pytest.mark.hw4


# The fused kernels of conv and pooling: off in every test here, which test the composites.
COMPOSITE_KERNELS = ("conv2d", "conv2d_weight_grad", "conv2d_input_grad", "max_pool2d", "max_pool2d_grad",
                     "avg_pool2d", "avg_pool2d_grad")


@pytest.fixture(autouse=True)
def composite_conv():
    with kernels_off(*COMPOSITE_KERNELS):
        yield

CONV_CASES = [  # (N, H, W, Cin), K, Cout, stride, padding
    ((2, 7, 7, 3), 3, 4, 1, 0),
    ((2, 8, 8, 3), 3, 4, 1, 1),
    ((1, 14, 14, 8), 3, 16, 1, 2),
    ((2, 9, 8, 2), 3, 3, 2, 1),
    ((1, 16, 16, 2), 5, 2, 2, 0),
    ((3, 6, 6, 1), 1, 2, 3, 0),
    ((1, 5, 5, 2), 2, 3, 1, 3),
]


def torch_conv(x, w, stride, padding):
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
    out = F.conv2d(xt, wt, stride=stride, padding=padding)
    return xt, wt, out


@hw4
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape,k,cout,stride,padding", CONV_CASES)
def test_conv_against_torch(shape, k, cout, stride, padding, device):
    x = np.random.randn(*shape).astype(np.float32)
    w = np.random.randn(k, k, shape[3], cout).astype(np.float32)
    X, W = ndl.Tensor(x, device=device), ndl.Tensor(w, device=device)
    y = ndl.conv(X, W, stride=stride, padding=padding)
    xt, wt, yt = torch_conv(x, w, stride, padding)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    g = np.random.randn(*y.shape).astype(np.float32)
    (y * ndl.Tensor(g, device=device)).sum().backward()
    (yt * torch.tensor(g.transpose(0, 3, 1, 2))).sum().backward()
    np.testing.assert_allclose(X.grad.numpy(), xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(W.grad.numpy(), wt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-4, atol=1e-3)


@hw4
def test_conv_op_class_and_float64():
    x = np.random.randn(2, 6, 6, 3)
    w = np.random.randn(3, 3, 3, 5)
    y = ndl.ops.Conv(stride=2, padding=1)(ndl.Tensor(x), ndl.Tensor(w))
    assert y.dtype == "float64"
    _, _, yt = torch_conv(x, w, 2, 1)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10)
    assert ndl.conv(ndl.Tensor(x), ndl.Tensor(w)).shape == (2, 6, 6, 5)  # padding=1 by default
    assert ndl.ops.Conv().padding == 1 and ndl.ops.Conv().stride == 1  # the same defaults
    assert ndl.ops.Conv()(ndl.Tensor(x), ndl.Tensor(w)).shape == (2, 6, 6, 5)


@hw4
@pytest.mark.parametrize("device", DEVICES)
def test_conv_adjoints_against_torch(device):
    # conv_weight_grad / conv_input_grad are conv's two gradients as functions of their own:
    # torch.nn.grad computes the same adjoints (NCHW there).
    x = np.random.randn(2, 9, 8, 3).astype(np.float32)
    w = np.random.randn(3, 3, 3, 4).astype(np.float32)
    g = np.random.randn(2, 5, 4, 4).astype(np.float32)  # stride 2, padding 1
    xt, gt = torch.tensor(x.transpose(0, 3, 1, 2)), torch.tensor(g.transpose(0, 3, 1, 2))
    wt = torch.tensor(w.transpose(3, 2, 0, 1))
    dw = ndl.ops.conv_weight_grad(ndl.Tensor(x, device=device), ndl.Tensor(g, device=device), 3, 3, 2, 1)
    dw_t = torch.nn.grad.conv2d_weight(xt, wt.shape, gt, stride=2, padding=1)
    np.testing.assert_allclose(dw.numpy(), dw_t.numpy().transpose(2, 3, 1, 0), rtol=1e-4, atol=1e-3)
    dx = ndl.ops.conv_input_grad(ndl.Tensor(g, device=device), ndl.Tensor(w, device=device), 9, 8, 2, 1)
    dx_t = torch.nn.grad.conv2d_input(xt.shape, wt, gt, stride=2, padding=1)
    np.testing.assert_allclose(dx.numpy(), dx_t.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-3)


def test_conv_errors():
    with pytest.raises(ValueError, match=r"\[conv_weight_grad\] output gradient of shape \(1, 4, 4, 3\)"):
        ndl.ops.conv_weight_grad(ndl.Tensor(np.ones((1, 5, 5, 2))), ndl.Tensor(np.ones((1, 4, 4, 3))), 3, 3, 1, 1)
    with pytest.raises(ValueError, match=r"\[conv\]"):
        ndl.conv(ndl.Tensor(np.ones((1, 4, 4, 3))), ndl.Tensor(np.ones((3, 3, 2, 2))))
    with pytest.raises(ValueError, match=r"\[conv\]"):
        ndl.conv(ndl.Tensor(np.ones((4, 4, 3))), ndl.Tensor(np.ones((3, 3, 3, 2))))


@hw4
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 1, 0), (3, 2, 1), (2, 2, 1)])
def test_pooling_against_torch(kernel, stride, padding, device):
    x = np.random.randn(2, 6, 7, 3)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    for needle_pool, torch_pool in [(ndl.ops.max_pool2d, F.max_pool2d), (ndl.ops.avg_pool2d, F.avg_pool2d)]:
        X = ndl.Tensor(x, device=device)
        y = needle_pool(X, kernel, stride, padding)
        yt = torch_pool(xt, kernel, stride, padding)
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10)
        g = np.random.randn(*y.shape)
        (y * ndl.Tensor(g, device=device)).sum().backward()
        xt.grad = None
        (yt * torch.tensor(g.transpose(0, 3, 1, 2))).sum().backward()
        np.testing.assert_allclose(X.grad.numpy(), xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10)


@hw4
@pytest.mark.parametrize("device", DEVICES)
def test_flip_dilate_undilate_course_cases(device):
    # The course's dilate forward case and gradient checks (the table in test_ops.py has
    # the numpy and finite-difference cases).
    np.testing.assert_allclose(
        ndl.dilate(ndl.Tensor(np.array([[6.0, 1.0], [4.0, 2.0]]), device=device), axes=(0,), dilation=1).numpy(),
        np.array([[6.0, 1.0], [0.0, 0.0], [4.0, 2.0], [0.0, 0.0]]))
    gradient_check(ndl.flip, ndl.Tensor(np.random.randn(2, 3, 4), device=device), axes=(0, 2))
    gradient_check(ndl.dilate, ndl.Tensor(np.random.randn(3, 2), device=device), axes=(1,), dilation=2)
