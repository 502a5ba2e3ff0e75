"""The convolution modules (nn.Conv, nn.ConvTranspose, nn.MaxPool2d, nn.AvgPool2d,
nn.Upsample), BatchNorm1d/2d, the per-channel ops under them (ops.batch_norm,
ops.channel_sums, ops.channel_affine), against PyTorch (NCHW on both sides) and numpy,
on every device (the CNNs built from them: test_models_cnn.py).

Homework marks: tests of code homework 4 writes (Conv / ConvTranspose init and forward,
the pooling composites, BatchNorm2d's composite) are hw4 and run with
the fused kernels that would bypass that code turned off; the composite of BatchNorm1d is
homework 2's. Fused-vs-composite agreement, the fused paths themselves, the per-channel
ops, argument errors and Upsample are framework code, without a mark.
"""
import contextlib
import math

import numpy as np
import pytest

import needle as ndl
import needle.nn as nn
from needle import _needle
from needle import ops

from gradcheck import DEVICES, check_gradients, gradient_check, close, second_order_check

torch = pytest.importorskip("torch")
F = torch.nn.functional
hw2, hw4 = pytest.mark.hw2, pytest.mark.hw4
IDS = ["cpu", "cuda"]

CONV_KERNELS = ("conv2d", "conv2d_weight_grad", "conv2d_input_grad")
POOL_KERNELS = ("max_pool2d", "max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad")
BN_KERNELS = ("channel_sums", "channel_affine")
# The conv and batch-norm composites: the code ConvBN / ResNet9 run in homework 4.
HW4_KERNELS = CONV_KERNELS + BN_KERNELS


def off(device, *names):
    """A context in which the named fused kernels are off on device (nothing if no names)."""
    return _needle.kernels.disabled(*names, device=device) if names else contextlib.nullcontext()


def T(x, device, requires_grad=True):
    x = np.asarray(x)
    dtype = "float64" if x.dtype == np.float64 else "float32"
    return ndl.Tensor(x, device=device, dtype=dtype, requires_grad=requires_grad)


def tt(x, requires_grad=True):
    return torch.tensor(np.asarray(x), requires_grad=requires_grad)


def set_data(param, array):
    param.data = ndl.Tensor(np.asarray(array), device=param.device, dtype=param.dtype)


# --------------------------------------------------------------------------------------------
# nn.Conv
# --------------------------------------------------------------------------------------------

# N, Cin, H, W, Cout, kernel, stride, padding (None: "same", kernel // 2). Odd and even
# kernels 1-5, strides 1-3, channels 1..64 sampled rather than crossed.
CONV_MODULE_CASES = [
    (2, 3, 8, 8, 4, 1, 1, None),
    (2, 2, 7, 7, 3, 2, 1, None),
    (1, 5, 9, 9, 6, 3, 2, None),
    (2, 4, 10, 10, 8, 4, 3, None),
    (1, 1, 11, 11, 2, 5, 2, None),
    (1, 16, 6, 6, 32, 3, 1, None),
    (1, 64, 4, 4, 8, 3, 1, None),
    (2, 8, 5, 5, 64, 1, 1, None),
    (1, 3, 9, 8, 5, 5, 3, None),
    (2, 3, 9, 9, 5, 3, 1, 0),
    (1, 2, 8, 8, 3, 3, 2, 2),
    (1, 3, 6, 7, 2, 4, 1, 1),
    (1, 4, 7, 7, 4, 5, 3, 0),
    (1, 2, 6, 6, 3, 2, 2, 3),
]


def conv_case_id(case):
    n, cin, h, w, cout, k, s, p = case
    return f"{n}x{cin}x{h}x{w}-{cout}-k{k}-s{s}-p{'same' if p is None else p}"


def run_conv_module(case, device, bias=True, seed=0):
    """needle's Conv and torch's conv2d with the same weights: forward, then the gradients
    of a random contraction of the output."""
    n, cin, h, w, cout, k, s, p = case
    np.random.seed(seed)
    conv = nn.Conv(cin, cout, k, stride=s, bias=bias, device=device, padding=p)
    x = np.random.randn(n, cin, h, w).astype(np.float32)
    X = T(x, device)
    y = conv(X)
    pad = k // 2 if p is None else p
    xt = tt(x)
    wt = tt(conv.weight.numpy().transpose(3, 2, 0, 1))
    bt = tt(conv.bias.numpy()) if bias else None
    yt = F.conv2d(xt, wt, bt, stride=s, padding=pad)
    g = np.random.randn(*yt.shape).astype(np.float32)
    (y * T(g, device, False)).sum().backward()
    (yt * torch.tensor(g)).sum().backward()
    return conv, X, y, (xt, wt, bt, yt)


@hw4
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("case", CONV_MODULE_CASES, ids=conv_case_id)
def test_conv_module_against_torch(case, device):
    with off(device, *CONV_KERNELS):
        conv, X, y, (xt, wt, bt, yt) = run_conv_module(case, device)
    assert conv.padding == (case[5] // 2 if case[7] is None else case[7])
    close(y, yt, err_msg="forward")
    close(X.grad, xt.grad, err_msg="input grad")
    close(conv.weight.grad, wt.grad.numpy().transpose(2, 3, 1, 0), err_msg="weight grad")
    close(conv.bias.grad, bt.grad, err_msg="bias grad")


@hw4
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_conv_module_no_bias_against_torch(device):
    with off(device, *CONV_KERNELS):
        conv, X, y, (xt, wt, _, yt) = run_conv_module((2, 3, 7, 7, 4, 3, 2, None), device, bias=False)
    assert conv.bias is None
    close(y, yt, err_msg="forward")
    close(X.grad, xt.grad, err_msg="input grad")
    close(conv.weight.grad, wt.grad.numpy().transpose(2, 3, 1, 0), err_msg="weight grad")


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("case", CONV_MODULE_CASES[::3], ids=conv_case_id)
def test_conv_module_fused_matches_composite(case, device):
    conv, X, y, _ = run_conv_module(case, device)  # the fused kernels where the device has them
    with off(device, *CONV_KERNELS):
        conv2, X2, y2, _ = run_conv_module(case, device)
    close(y, y2, rtol=1e-5, err_msg="forward")
    close(X.grad, X2.grad, rtol=1e-5, err_msg="input grad")
    close(conv.weight.grad, conv2.weight.grad, rtol=1e-5, err_msg="weight grad")
    close(conv.bias.grad, conv2.bias.grad, rtol=1e-5, err_msg="bias grad")


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_conv_shares_one_compact_copy_of_a_permuted_input(device):
    """nn.Conv hands ops.conv an NCHW -> NHWC view; the op compacts it as a node of its own
    (astype to its dtype), which the weight gradient reads again instead of copying anew."""
    x = np.random.randn(2, 3, 5, 5).astype(np.float32)
    X = ndl.Tensor(x, device=device, requires_grad=True)
    w = ndl.Tensor(np.random.randn(3, 3, 3, 4).astype(np.float32), device=device, requires_grad=True)
    out = ops.conv(X.transpose((1, 2)).transpose((2, 3)), w, padding=1)
    shared = out.inputs[0]
    assert str(shared.op) == "<needle op astype>" and shared.realize_cached_data().is_compact()
    compact_input = ndl.Tensor(x.transpose(0, 2, 3, 1).copy(), device=device, requires_grad=True)
    want = ops.conv(compact_input, w, padding=1)
    assert want.inputs[0].op is None  # a compact input is used as it is
    close(out, want, rtol=1e-6, err_msg="forward")


@hw4
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("k,stride,padding", [(3, 2, None), (2, 1, None), (3, 1, 0)])
def test_conv_module_float64_gradient_check(k, stride, padding, device):
    np.random.seed(7)
    with off(device, *CONV_KERNELS):
        conv = nn.Conv(2, 3, k, stride=stride, device=device, dtype="float64", padding=padding)
        assert conv.weight.dtype == "float64" and conv.bias.dtype == "float64"
        x = T(np.random.randn(1, 2, 5, 5), device)
        out_shape = conv(x).shape
        c = T(np.random.randn(*out_shape), device, False)
        # The course's checker: sum(f) of a random contraction, perturbing each argument's
        # .data in place -- the Parameters themselves, so the module sees every probe.
        gradient_check(lambda x, w, b: conv(x) * c, x, conv.weight, conv.bias, tol=1e-6, backward=True)


# --------------------------------------------------------------------------------------------
# Conv's initialization
# --------------------------------------------------------------------------------------------

@hw4
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("cin,cout,k,seed", [(3, 16, 7, 0), (16, 32, 3, 1), (5, 2, 2, 2), (1, 4, 1, 3)])
def test_conv_init(cin, cout, k, seed, device):
    np.random.seed(seed)
    conv = nn.Conv(cin, cout, k, device=device)
    fan_in = cin * k * k
    bound = math.sqrt(2) * math.sqrt(3 / fan_in)
    np.random.seed(seed)
    w = np.random.rand(k, k, cin, cout) * 2 * bound - bound  # kaiming_uniform, drawn first
    b_bound = 1 / math.sqrt(fan_in)
    b = np.random.rand(cout) * 2 * b_bound - b_bound  # then the bias
    assert conv.weight.shape == (k, k, cin, cout) and conv.weight.dtype == "float32"
    assert conv.bias.shape == (cout,)
    np.testing.assert_allclose(conv.weight.numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(conv.bias.numpy(), b, rtol=1e-5, atol=1e-6)
    assert np.abs(conv.weight.numpy()).max() <= bound * (1 + 1e-6)
    assert np.abs(conv.bias.numpy()).max() <= b_bound * (1 + 1e-6)
    params = conv.parameters()
    assert len(params) == 2
    assert params[0] is conv.weight or params[1] is conv.weight
    assert all(isinstance(p, nn.Parameter) for p in params)


@hw4
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_conv_init_weight_bound_is_reached(device):
    # Over many weights the uniform draw fills (-bound, bound): the bound is the right one,
    # not merely an upper limit.
    np.random.seed(4)
    conv = nn.Conv(32, 32, 3, device=device)
    bound = math.sqrt(6 / (32 * 9))
    w = conv.weight.numpy()
    assert w.max() > 0.99 * bound and w.min() < -0.99 * bound
    assert abs(w.mean()) < 0.05 * bound


@hw4
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_conv_init_without_bias(device):
    np.random.seed(5)
    conv = nn.Conv(3, 4, 3, bias=False, device=device)
    after = np.random.rand(3)  # the bias draws nothing: the next draws follow the weight's
    np.random.seed(5)
    bound = math.sqrt(6 / 27)
    w = np.random.rand(3, 3, 3, 4) * 2 * bound - bound
    np.testing.assert_allclose(conv.weight.numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.random.rand(3), after)
    assert conv.bias is None
    assert len(conv.parameters()) == 1 and conv.parameters()[0] is conv.weight
    with off(device, *CONV_KERNELS):
        assert conv(T(np.random.randn(2, 3, 5, 5).astype(np.float32), device)).shape == (2, 4, 5, 5)


# --------------------------------------------------------------------------------------------
# nn.ConvTranspose
# --------------------------------------------------------------------------------------------

# N, Cin, H, W, Cout, kernel, stride, padding, output_padding
CONV_T_CASES = [
    (2, 3, 4, 4, 2, 3, 1, 0, 0),
    (1, 2, 4, 5, 3, 3, 2, 1, 1),
    (2, 4, 3, 3, 4, 4, 2, 1, 0),
    (1, 3, 3, 4, 5, 3, 3, 2, 2),
    (1, 5, 5, 5, 2, 2, 2, 0, 1),
    (1, 8, 3, 3, 16, 5, 3, 1, 0),
    (2, 1, 4, 4, 3, 1, 1, 0, 0),
    (1, 16, 4, 4, 8, 3, 1, 1, 0),
    (1, 2, 6, 6, 2, 5, 1, 2, 0),
]


def run_conv_transpose(case, device, seed=0):
    n, cin, h, w, cout, k, s, p, op = case
    np.random.seed(seed)
    convt = nn.ConvTranspose(cin, cout, k, stride=s, padding=p, output_padding=op, device=device)
    assert convt.weight.shape == (k, k, cout, cin) and convt.bias.shape == (cout,)
    x = np.random.randn(n, cin, h, w).astype(np.float32)
    X = T(x, device)
    y = convt(X)
    xt = tt(x)
    wt = tt(convt.weight.numpy().transpose(3, 2, 0, 1))  # torch's (in, out, k, k)
    bt = tt(convt.bias.numpy())
    yt = F.conv_transpose2d(xt, wt, bt, stride=s, padding=p, output_padding=op)
    g = np.random.randn(*yt.shape).astype(np.float32)
    (y * T(g, device, False)).sum().backward()
    (yt * torch.tensor(g)).sum().backward()
    return convt, X, y, (xt, wt, bt, yt)


def conv_t_case_id(case):
    n, cin, h, w, cout, k, s, p, op = case
    return f"{n}x{cin}x{h}x{w}-{cout}-k{k}-s{s}-p{p}-op{op}"


@hw4
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("case", CONV_T_CASES, ids=conv_t_case_id)
def test_conv_transpose_against_torch(case, device):
    with off(device, *CONV_KERNELS):
        convt, X, y, (xt, wt, bt, yt) = run_conv_transpose(case, device)
    h = case[2]
    assert convt.output_size(h) == yt.shape[2]
    close(y, yt, err_msg="forward")
    close(X.grad, xt.grad, err_msg="input grad")
    close(convt.weight.grad, wt.grad.numpy().transpose(2, 3, 1, 0), err_msg="weight grad")
    close(convt.bias.grad, bt.grad, err_msg="bias grad")


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("case", CONV_T_CASES[1::3], ids=conv_t_case_id)
def test_conv_transpose_fused_matches_composite(case, device):
    convt, X, y, _ = run_conv_transpose(case, device)
    with off(device, *CONV_KERNELS):
        convt2, X2, y2, _ = run_conv_transpose(case, device)
    close(y, y2, rtol=1e-5, err_msg="forward")
    close(X.grad, X2.grad, rtol=1e-5, err_msg="input grad")
    close(convt.weight.grad, convt2.weight.grad, rtol=1e-5, err_msg="weight grad")
    close(convt.bias.grad, convt2.bias.grad, rtol=1e-5, err_msg="bias grad")


def test_conv_module_argument_errors():
    # raised before the modules build their weights: no homework code runs
    with pytest.raises(ValueError, match=r"\[Conv\] kernel_size must be a positive int"):
        nn.Conv(3, 4, 0)
    with pytest.raises(ValueError, match=r"\[Conv\] padding"):
        nn.Conv(3, 4, 3, padding=-1)
    with pytest.raises(ValueError, match=r"\[ConvTranspose\] output_padding"):
        nn.ConvTranspose(3, 4, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"\[MaxPool2d\] padding"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match=r"\[Upsample\] only mode='nearest'"):
        nn.Upsample(2, mode="bilinear")


@hw4  # the checks are the framework's, but building the modules runs homework 4's init
def test_conv_module_input_errors():
    with pytest.raises(ValueError, match=r"\[Conv\] expects 3 input channels .*\(1, 4, 5, 5\)"):
        nn.Conv(3, 4, 3)(ndl.Tensor(np.ones((1, 4, 5, 5), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"\[Conv\]"):
        nn.Conv(3, 4, 3)(ndl.Tensor(np.ones((3, 5, 5), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"\[ConvTranspose\] expects 2 input channels"):
        nn.ConvTranspose(2, 4, 3)(ndl.Tensor(np.ones((1, 3, 5, 5), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"\[ConvTranspose\] input of shape \(1, 2, 1, 1\) gives an empty output"):
        nn.ConvTranspose(2, 4, 1, padding=1)(ndl.Tensor(np.ones((1, 2, 1, 1), dtype=np.float32)))


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------

POOL_CASES = [(k, s, p) for k in (2, 3) for s in (None, 1, 2) for p in (0, 1)]
# The fused kernels (framework code) or the im2col composites homework 4 writes.
POOL_MODES = [pytest.param((), id="fused"), pytest.param(POOL_KERNELS, id="composite", marks=hw4)]


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("kernels_off", POOL_MODES)
@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
def test_pool_modules_against_torch(kernel, stride, padding, kernels_off, device):
    np.random.seed(11)
    x = np.random.randn(2, 3, 7, 6).astype(np.float32)  # continuous values: no ties
    for needle_pool, torch_pool in [(nn.MaxPool2d, F.max_pool2d), (nn.AvgPool2d, F.avg_pool2d)]:
        pool = needle_pool(kernel, stride, padding) if stride is not None else needle_pool(kernel, padding=padding)
        assert pool.stride == (kernel if stride is None else stride)
        xt = tt(x)
        yt = torch_pool(xt, kernel, stride, padding)  # torch's stride=None: the kernel size
        g = np.random.randn(*yt.shape).astype(np.float32)
        (yt * torch.tensor(g)).sum().backward()
        with off(device, *kernels_off):
            X = T(x, device)
            y = pool(X)
            (y * T(g, device, False)).sum().backward()
        name = needle_pool.__name__
        close(y, yt, rtol=1e-6, err_msg=f"{name} forward")
        close(X.grad, xt.grad, rtol=1e-6, err_msg=f"{name} input grad")


# --------------------------------------------------------------------------------------------
# Upsample
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("scale", [2, 3])
def test_upsample_against_torch(scale, device):
    np.random.seed(12)
    x = np.random.randn(2, 3, 4, 5).astype(np.float32)
    up = nn.Upsample(scale)
    X = T(x, device)
    y = up(X)
    xt = tt(x)
    yt = F.interpolate(xt, scale_factor=scale, mode="nearest")
    assert y.shape == (2, 3, 4 * scale, 5 * scale)
    np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())
    g = np.random.randn(*yt.shape).astype(np.float32)
    (y * T(g, device, False)).sum().backward()
    (yt * torch.tensor(g)).sum().backward()
    close(X.grad, xt.grad, rtol=1e-6, err_msg="input grad")


# --------------------------------------------------------------------------------------------
# BatchNorm1d / BatchNorm2d
# --------------------------------------------------------------------------------------------

BN_SHAPES = {nn.BatchNorm1d: (6, 4), nn.BatchNorm2d: (3, 4, 3, 5)}
TORCH_BN = {nn.BatchNorm1d: torch.nn.BatchNorm1d, nn.BatchNorm2d: torch.nn.BatchNorm2d}


def run_batchnorm(cls, device, steps=3, seed=21):
    """Three training steps of needle's and torch's batch norm on the same inputs (weight and
    bias random, copied into torch), then one eval step; returns everything computed."""
    np.random.seed(seed)
    shape = BN_SHAPES[cls]
    c = shape[1]
    axes = (0,) + tuple(range(2, len(shape)))
    per_channel = (1, c) + (1,) * (len(shape) - 2)
    bn, tbn = cls(c, device=device), TORCH_BN[cls](c, momentum=0.1, eps=1e-5)
    assert bn.momentum == 0.1 and bn.eps == 1e-5
    w = (np.random.rand(c) + 0.5).astype(np.float32)
    b = np.random.randn(c).astype(np.float32)
    set_data(bn.weight, w)
    set_data(bn.bias, b)
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor(w))
        tbn.bias.copy_(torch.tensor(b))
    rm, rv = np.zeros(c), np.ones(c)  # the course's rule, from the biased batch variance
    res = {"train": []}
    for _ in range(steps):
        x = (np.random.randn(*shape) * 2 + 1).astype(np.float32)
        g = np.random.randn(*shape).astype(np.float32)
        for p in bn.parameters():
            p.grad = None
        tbn.zero_grad()
        X, xt = T(x, device), tt(x)
        y, yt = bn(X), tbn(xt)
        (y * T(g, device, False)).sum().backward()
        (yt * torch.tensor(g)).sum().backward()
        res["train"].append(dict(
            y=(y.numpy(), yt.detach().numpy()), dx=(X.grad.numpy(), xt.grad.numpy()),
            # copies: torch's .numpy() shares the .grad storage the next step overwrites
            dw=(bn.weight.grad.numpy(), tbn.weight.grad.numpy().copy()),
            db=(bn.bias.grad.numpy(), tbn.bias.grad.numpy().copy())))
        x64 = x.astype(np.float64)
        rm = 0.9 * rm + 0.1 * x64.mean(axis=axes)
        rv = 0.9 * rv + 0.1 * x64.var(axis=axes)
    res["running"] = dict(mean=bn.running_mean.numpy(), var=bn.running_var.numpy(),
                          torch_mean=tbn.running_mean.numpy().copy(), torch_var=tbn.running_var.numpy().copy(),
                          np_mean=rm, np_var=rv)
    assert not bn.running_mean.requires_grad and not bn.running_var.requires_grad
    bn.eval()
    x = np.random.randn(*shape).astype(np.float32)
    g = np.random.randn(*shape).astype(np.float32)
    X = T(x, device)
    y = bn(X)
    (y * T(g, device, False)).sum().backward()
    scale = w.astype(np.float64) / np.sqrt(rv + 1e-5)
    want = (x - rm.reshape(per_channel)) * scale.reshape(per_channel) + b.reshape(per_channel)
    res["eval"] = dict(y=(y.numpy(), want), dx=(X.grad.numpy(), g * scale.reshape(per_channel)),
                       rm_after=bn.running_mean.numpy(), rv_after=bn.running_var.numpy())
    return res


def check_batchnorm_against_oracles(res):
    for step, r in enumerate(res["train"]):
        close(*r["y"], err_msg=f"step {step}: train output")
        close(*r["dx"], rtol=1e-3, err_msg=f"step {step}: input grad")
        close(*r["dw"], err_msg=f"step {step}: weight grad")
        close(*r["db"], err_msg=f"step {step}: bias grad")
    run = res["running"]
    close(run["mean"], run["torch_mean"], rtol=1e-5, err_msg="running_mean vs torch")
    close(run["mean"], run["np_mean"], rtol=1e-5, err_msg="running_mean vs numpy")
    # torch's running_var uses the unbiased batch variance; the course's, the biased one.
    close(run["var"], run["np_var"], rtol=1e-5, err_msg="running_var vs the biased rule")
    close(*res["eval"]["y"], err_msg="eval output")
    close(*res["eval"]["dx"], err_msg="eval input grad")
    # eval uses the running statistics and leaves them alone
    np.testing.assert_array_equal(res["eval"]["rm_after"], run["mean"])
    np.testing.assert_array_equal(res["eval"]["rv_after"], run["var"])


# The fused per-channel kernels (framework) or the composite each homework writes.
BN_PARAMS = [
    pytest.param(nn.BatchNorm1d, (), id="bn1d-fused"),
    pytest.param(nn.BatchNorm1d, BN_KERNELS, id="bn1d-composite", marks=hw2),
    pytest.param(nn.BatchNorm2d, (), id="bn2d-fused"),
    pytest.param(nn.BatchNorm2d, BN_KERNELS, id="bn2d-composite", marks=hw4),
]


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("cls,kernels_off", BN_PARAMS)
def test_batchnorm_against_torch(cls, kernels_off, device):
    with off(device, *kernels_off):
        res = run_batchnorm(cls, device)
    check_batchnorm_against_oracles(res)


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("cls", [nn.BatchNorm1d, nn.BatchNorm2d])
def test_batchnorm_fused_matches_composite(cls, device):
    fused = run_batchnorm(cls, device)
    with off(device, *BN_KERNELS):
        composite = run_batchnorm(cls, device)
    for step, (a, b) in enumerate(zip(fused["train"], composite["train"])):
        for key in ("y", "dx", "dw", "db"):
            close(a[key][0], b[key][0], rtol=1e-5, err_msg=f"step {step}: {key}")
    for key in ("mean", "var"):
        close(fused["running"][key], composite["running"][key], rtol=1e-6, err_msg=f"running {key}")
    for key in ("y", "dx"):
        close(fused["eval"][key][0], composite["eval"][key][0], rtol=1e-6, err_msg=f"eval {key}")


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_batchnorm2d_fused_precision_with_large_mean(device):
    if not all(_needle.kernels.has(k, device) for k in BN_KERNELS):
        pytest.skip("no fused per-channel kernels on this device: BatchNorm2d runs the composite")
    np.random.seed(24)
    x = (1000 + np.random.randn(8, 4, 5, 5)).astype(np.float32)  # mean / std = 1000
    g = np.random.randn(8, 4, 5, 5).astype(np.float32)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)  # the float64 oracle
    yt = F.batch_norm(xt, None, None, training=True, eps=1e-5)
    (yt * torch.tensor(g.astype(np.float64))).sum().backward()
    X = T(x, device)
    y = nn.BatchNorm2d(4, device=device)(X)  # the fused kernels where the device has them
    (y * T(g, device, False)).sum().backward()
    # float32 torch (and needle's composite) are within 5e-5 here; the fused y = x * scale +
    # (bias - mean * scale) rounds x * scale (about 1000) in float32 first: ~1e-4.
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), atol=2e-4, err_msg="output")
    np.testing.assert_allclose(X.grad.numpy(), xt.grad.numpy(), atol=2e-4, err_msg="input grad")


# --------------------------------------------------------------------------------------------
# ops.batch_norm / ops.channel_sums / ops.channel_affine
# --------------------------------------------------------------------------------------------

CHANNEL_MODES = [pytest.param((), id="fused"), pytest.param(BN_KERNELS, id="composite")]


def rnd(*shape, device, low=None, high=None):
    values = np.random.uniform(low, high, shape) if low is not None else np.random.randn(*shape)
    return T(values, device)


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("kernels_off", CHANNEL_MODES)
@pytest.mark.parametrize("shape", [(3, 2, 2, 3), (5, 3)], ids=["4d", "2d"])
def test_channel_ops_gradients_float64(shape, kernels_off, device):
    np.random.seed(31)
    c = shape[1]
    with off(device, *kernels_off):
        check_gradients(lambda a, b: ops.channel_sums(a, b), rnd(*shape, device=device), rnd(*shape, device=device))
        x = rnd(*shape, device=device)
        check_gradients(lambda a: ops.channel_sums(a, a), x)  # a is b: the two paths add
        check_gradients(lambda a, s, t: ops.channel_affine(a, s, t),
                        rnd(*shape, device=device), rnd(c, device=device), rnd(c, device=device))
        check_gradients(lambda x, w, b: ops.batch_norm(x, w, b)[0],
                        rnd(*shape, device=device), rnd(c, device=device, low=0.5, high=2.0),
                        rnd(c, device=device))
        check_gradients(lambda x, w, b: ops.batch_norm(x, w, b, 0.1)[0],
                        rnd(*shape, device=device), rnd(c, device=device), rnd(c, device=device))


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("kernels_off", CHANNEL_MODES)
def test_channel_ops_values(kernels_off, device):
    np.random.seed(32)
    x = np.random.randn(3, 4, 2, 5)
    y = np.random.randn(3, 4, 2, 5)
    w, b = np.random.randn(4), np.random.randn(4)
    with off(device, *kernels_off):
        sums = ops.channel_sums(T(x, device), T(y, device))
        assert sums.dtype == "float64" and sums.shape == (2, 4)
        np.testing.assert_allclose(sums.numpy(), [x.sum(axis=(0, 2, 3)), (x * y).sum(axis=(0, 2, 3))], rtol=1e-12)
        aff = ops.channel_affine(T(x, device), T(w, device), T(b, device))
        np.testing.assert_allclose(aff.numpy(), x * w.reshape(1, 4, 1, 1) + b.reshape(1, 4, 1, 1), rtol=1e-12)
        for dtype, tol in (("float64", 1e-10), ("float32", 1e-5)):
            xd = x.astype(dtype)
            out, mean, var = ops.batch_norm(T(xd, device), T(w.astype(dtype), device), T(b.astype(dtype), device))
            assert out.dtype == mean.dtype == var.dtype == dtype
            assert not mean.requires_grad and not var.requires_grad
            m, v = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
            np.testing.assert_allclose(mean.numpy(), m, rtol=tol, atol=tol)
            np.testing.assert_allclose(var.numpy(), v, rtol=tol, atol=tol)  # biased
            want = (x - m.reshape(1, 4, 1, 1)) / np.sqrt(v.reshape(1, 4, 1, 1) + 1e-5) * w.reshape(1, 4, 1, 1) \
                + b.reshape(1, 4, 1, 1)
            np.testing.assert_allclose(out.numpy(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("kernels_off", CHANNEL_MODES)
def test_batch_norm_second_order_float64(kernels_off, device):
    np.random.seed(33)
    with off(device, *kernels_off):
        second_order_check(lambda x, w, b: ops.batch_norm(x, w, b)[0],
                           [rnd(3, 2, 2, 2, device=device), rnd(2, device=device, low=0.5, high=2.0),
                            rnd(2, device=device)])
        second_order_check(lambda a, s, t: ops.channel_affine(a, s, t) * ops.channel_affine(a, s, t),
                           [rnd(2, 3, 2, device=device), rnd(3, device=device), rnd(3, device=device)])


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_channel_ops_errors(device):
    def ones(*shape, dtype=np.float32):
        return ndl.Tensor(np.ones(shape, dtype=dtype), device=device)

    with pytest.raises(ValueError, match=r"\[channel_affine\] scale of shape \(2,\) and shift of shape \(3,\)"):
        ops.channel_affine(ones(2, 3, 4), ones(2), ones(3))
    with pytest.raises(ValueError, match=r"\[channel_affine\] scale of shape \(3, 1\)"):
        ops.channel_affine(ones(2, 3), ones(3, 1), ones(3))
    with pytest.raises(ValueError, match=r"\[channel_affine\] expects an \(N, C, \.\.\.\) input of rank >= 2"):
        ops.channel_affine(ones(3), ones(3), ones(3))
    with pytest.raises(TypeError, match=r"\[channel_affine\] needs float32 or float64"):
        ops.channel_affine(ones(2, 3, dtype=np.int64), ones(3, dtype=np.int64), ones(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"\[channel_sums\] inputs of shapes \(2, 3\) and \(2, 4\) differ"):
        ops.channel_sums(ones(2, 3), ones(2, 4))
    with pytest.raises(ValueError, match=r"\[channel_sums\] expects an \(N, C, \.\.\.\) input of rank >= 2"):
        ops.channel_sums(ones(3), ones(3))
    with pytest.raises(TypeError, match=r"\[channel_sums\] needs float32 or float64"):
        ops.channel_sums(ones(2, 3, dtype=np.int64), ones(2, 3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"\[batch_norm\] weight of shape \(4,\) and bias of shape \(3,\)"):
        ops.batch_norm(ones(2, 3, 4, 4), ones(4), ones(3))
    with pytest.raises(ValueError, match=r"\[batch_norm\] needs a non-empty input"):
        ops.batch_norm(ones(0, 3), ones(3), ones(3))
    with pytest.raises(ValueError, match=r"\[batch_norm\] expects an \(N, C, \.\.\.\) input of rank >= 2"):
        ops.batch_norm(ones(3), ones(3), ones(3))


def _first_node(t, op_name):
    while type(t.op).__name__ != op_name:
        t = t.inputs[0]
    return t


def test_conv_gradients_share_one_copy_of_the_output_gradient():
    # nn.Conv's output gradient reaches the op as a permuted view; within the backward pass
    # conv_input_grad and conv_weight_grad read one compact copy of it, not one each.
    x = ndl.Tensor(np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32),
                   requires_grad=True)
    conv = nn.Conv(3, 4, 3, bias=False)
    y = conv(x)
    (y * y).sum().backward()
    weight_grad = conv.weight.grad
    assert type(weight_grad.op).__name__ == "ConvWeightGrad"
    copy = weight_grad.inputs[1]
    assert type(copy.op).__name__ == "AsType"
    assert _first_node(x.grad, "ConvInputGrad").inputs[0] is copy
    # The memo ends with the pass: a new pass on another input makes its own copy (and the
    # gradient of sum(conv(2x)^2) without bias is 4 times that of sum(conv(x)^2)).
    x.grad, conv.weight.grad = None, None
    y2 = conv(x * 2)
    (y2 * y2).sum().backward()
    assert conv.weight.grad.inputs[1] is not copy
    np.testing.assert_allclose(conv.weight.grad.numpy(), 4 * weight_grad.numpy(), rtol=1e-4,
                               atol=1e-4)
