"""needle.nn basic modules against numpy and PyTorch; parameter discovery; state dicts."""
import numpy as np
import pytest
import torch

import needle as ndl
import needle.nn as nn
import needle.optim  # noqa: F401  (ndl.optim)
from needle import backend_ndarray as nd

from gradcheck import kernels_off

hw2, hw4 = pytest.mark.hw2, pytest.mark.hw4  # BatchNorm2d is graded with the CNN homework


# The fused kernels that modules here take a fast path through, bypassing the code the
# homeworks write: batch norm's per-channel kernels, layer norm's (LayerNorm1d) and softmax
# cross-entropy's (SoftmaxLoss), and the softmax family's.
MODULE_KERNELS = ("channel_sums", "channel_affine", "layer_norm", "layer_norm_grad",
                  "softmax_cross_entropy", "softmax_cross_entropy_grad", "softmax", "softmax_grad",
                  "logsoftmax", "logsoftmax_grad")


@pytest.fixture(autouse=True)
def composite_modules():
    """The modules' composites, the code homeworks 2 and 4 write (test_nn_conv.py and
    test_ops_fused.py compare the fused kernels with them)."""
    with kernels_off(*MODULE_KERNELS):
        yield

DEVICES = [
    nd.cpu(),
    pytest.param(nd.cuda(), marks=pytest.mark.skipif(not nd.cuda().enabled(), reason="no CUDA device")),
]
IDS = ["cpu", "cuda"]


def T(a, device, requires_grad=True):
    return ndl.Tensor(np.asarray(a, dtype=np.float32), device=device, requires_grad=requires_grad)


def tt(a):
    return torch.tensor(np.asarray(a, dtype=np.float32), requires_grad=True)


@hw2
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_linear_init_order_and_shapes(device):
    np.random.seed(7)
    lin = nn.Linear(5, 3, device=device)
    np.random.seed(7)
    w_ref = np.random.rand(5, 3) * 2 * np.sqrt(6 / 5) - np.sqrt(6 / 5)
    b_ref = np.random.rand(3, 1) * 2 * np.sqrt(6 / 3) - np.sqrt(6 / 3)
    assert lin.weight.shape == (5, 3) and lin.bias.shape == (1, 3)
    assert isinstance(lin.weight, nn.Parameter) and isinstance(lin.bias, nn.Parameter)
    assert lin.weight.requires_grad and lin.bias.requires_grad
    np.testing.assert_allclose(lin.weight.numpy(), w_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lin.bias.numpy(), b_ref.reshape(1, 3), rtol=1e-5, atol=1e-6)
    assert len(nn.Linear(5, 3, bias=False, device=device).parameters()) == 1


@hw2
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_vs_torch(device, bias):
    np.random.seed(0)
    lin = nn.Linear(6, 4, bias=bias, device=device)
    x = np.random.randn(5, 6).astype(np.float32)
    tl = torch.nn.Linear(6, 4, bias=bias)
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(lin.weight.numpy().T))
        if bias:
            tl.bias.copy_(torch.tensor(lin.bias.numpy().reshape(-1)))
    X, tX = T(x, device), tt(x)
    y, ty = lin(X), tl(tX)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    np.testing.assert_allclose(lin.weight.grad.numpy(), tl.weight.grad.numpy().T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(X.grad.numpy(), tX.grad.numpy(), rtol=1e-4, atol=1e-4)
    if bias:
        np.testing.assert_allclose(lin.bias.grad.numpy().reshape(-1), tl.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


@hw2
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_linear_on_batched_input(device):
    np.random.seed(1)
    lin = nn.Linear(4, 3, device=device)
    x = np.random.randn(2, 5, 4).astype(np.float32)
    X = T(x, device)
    y = lin(X)
    np.testing.assert_allclose(y.numpy(), x @ lin.weight.numpy() + lin.bias.numpy(), rtol=1e-5, atol=1e-5)
    y.sum().backward()
    np.testing.assert_allclose(lin.bias.grad.numpy(), np.full((1, 3), 10.0), rtol=1e-5)
    np.testing.assert_allclose(lin.weight.grad.numpy(), np.tile(x.reshape(10, 4).sum(0)[:, None], (1, 3)), rtol=1e-4)


@hw2
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_softmax_loss_vs_torch(device):
    np.random.seed(1)
    z = np.random.randn(8, 5).astype(np.float32) * 3
    y = np.random.randint(0, 5, size=8)
    Z, tZ = T(z, device), tt(z)
    loss = nn.SoftmaxLoss()(Z, ndl.Tensor(y, device=device, requires_grad=False))
    tloss = torch.nn.functional.cross_entropy(tZ, torch.tensor(y))
    assert loss.shape == () or loss.shape == (1,)
    np.testing.assert_allclose(loss.numpy(), tloss.item(), rtol=1e-5, atol=1e-6)
    loss.backward()
    tloss.backward()
    np.testing.assert_allclose(Z.grad.numpy(), tZ.grad.numpy(), rtol=1e-4, atol=1e-6)


@hw2
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_softmax_loss_takes_integer_labels_of_every_dtype(device):
    np.random.seed(5)
    z = np.random.randn(6, 4)
    y = np.random.randint(0, 4, size=6)
    lse = np.log(np.exp(z).sum(1))
    expected = np.mean(lse - z[np.arange(6), y])
    Z = ndl.Tensor(z, device=device)
    for labels in (y, y.astype(np.int32), y.astype(np.uint8), y.astype(np.float32), list(map(int, y))):
        label = ndl.Tensor(labels, device=device, requires_grad=False)
        loss = nn.SoftmaxLoss()(Z, label)
        assert loss.dtype == "float64"
        np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-12)
    # Labels that are no class index are refused, naming the loss and the bad value.
    for bad, match in (([1.7, 0, 0, 0, 0, 0], "must be integers, got 1.7"),
                       ([0, 0, 4, 0, 0, 0], r"must lie in \[0, 4\)"),
                       ([0, 0, -1, 0, 0, 0], r"must lie in \[0, 4\)")):
        with pytest.raises(ValueError, match=r"\[SoftmaxLoss\] class indices " + match):
            nn.SoftmaxLoss()(Z, ndl.Tensor(bad, device=device))
    with pytest.raises(ValueError, match=r"\[SoftmaxLoss\] expects 2-D input \(batch, classes\)"):
        nn.SoftmaxLoss()(ndl.Tensor(z[0], device=device), ndl.Tensor(y[:1], device=device))
    with pytest.raises(ValueError, match=r"labels of shape \(3,\)"):
        nn.SoftmaxLoss()(Z, ndl.Tensor(y[:3], device=device))


@hw2
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_batchnorm1d_train_eval_vs_torch(device):
    np.random.seed(2)
    bn = nn.BatchNorm1d(4, momentum=0.2, device=device)
    tbn = torch.nn.BatchNorm1d(4, momentum=0.2)
    assert bn.running_mean.shape == (4,) and bn.running_var.shape == (4,)
    rv = np.ones(4)
    for _ in range(3):
        x = (np.random.randn(6, 4) * 2 + 1).astype(np.float32)
        X, tX = T(x, device), tt(x)
        y, ty = bn(X), tbn(tX)
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
        rv = 0.8 * rv + 0.2 * x.var(axis=0)  # the biased batch variance, as the course
    np.testing.assert_allclose(bn.running_mean.numpy(), tbn.running_mean.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-4, atol=1e-5)
    assert not bn.running_mean.requires_grad and not bn.running_var.requires_grad
    g = np.random.randn(6, 4).astype(np.float32)
    (y * T(g, device, False)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(X.grad.numpy(), tX.grad.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(bn.weight.grad.numpy(), tbn.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.bias.grad.numpy(), tbn.bias.grad.numpy(), rtol=1e-4, atol=1e-4)
    # eval: normalizes with the running statistics and leaves them alone
    bn.eval()
    x = np.random.randn(3, 4).astype(np.float32)
    rm = bn.running_mean.numpy()
    ref = (x - rm) / np.sqrt(rv + 1e-5)
    np.testing.assert_allclose(bn(T(x, device)).numpy(), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(bn.running_mean.numpy(), rm)


@hw4
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_batchnorm2d_vs_torch(device):
    np.random.seed(3)
    x = np.random.randn(2, 3, 4, 5).astype(np.float32)
    bn = nn.BatchNorm2d(3, device=device)
    tbn = torch.nn.BatchNorm2d(3)
    np.testing.assert_allclose(bn(T(x, device)).numpy(), tbn(tt(x)).detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.running_mean.numpy(), tbn.running_mean.numpy(), rtol=1e-5, atol=1e-5)
    bn.eval()
    tbn.eval()
    tbn.running_var.copy_(torch.tensor(bn.running_var.numpy()))
    np.testing.assert_allclose(bn(T(x, device)).numpy(), tbn(tt(x)).detach().numpy(), rtol=1e-4, atol=1e-4)


@hw2
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 6)])
def test_layernorm_vs_torch(device, shape):
    np.random.seed(4)
    x = (np.random.randn(*shape) * 3 + 2).astype(np.float32)
    ln = nn.LayerNorm1d(6, device=device)
    w, b = np.random.randn(6).astype(np.float32), np.random.randn(6).astype(np.float32)
    ln.weight.data = T(w, device, False)
    ln.bias.data = T(b, device, False)
    X, tX = T(x, device), tt(x)
    y = ln(X)
    ty = torch.nn.functional.layer_norm(tX, (6,), torch.tensor(w), torch.tensor(b), eps=1e-5)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    g = np.random.randn(*shape).astype(np.float32)
    (y * T(g, device, False)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(X.grad.numpy(), tX.grad.numpy(), rtol=1e-3, atol=1e-4)


@hw2
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_dropout(device):
    x = np.random.randn(20, 30).astype(np.float32)
    drop = nn.Dropout(0.3)
    np.random.seed(9)
    y = drop(T(x, device)).numpy()
    np.random.seed(9)
    mask = np.random.rand(20, 30) < 0.7
    np.testing.assert_allclose(y, x * mask / 0.7, rtol=1e-5, atol=1e-6)
    drop.eval()
    np.testing.assert_array_equal(drop(T(x, device)).numpy(), x)
    drop.train()
    np.testing.assert_array_equal(nn.Dropout(0.0)(T(x, device)).numpy(), x)


@hw2
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_simple_modules(device):
    np.random.seed(5)
    x = np.random.randn(4, 3).astype(np.float32)
    X = T(x, device)
    np.testing.assert_array_equal(nn.Identity()(X).numpy(), x)
    np.testing.assert_allclose(nn.ReLU()(X).numpy(), np.maximum(x, 0))
    np.testing.assert_allclose(nn.Tanh()(X).numpy(), np.tanh(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nn.Sigmoid()(X).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nn.Residual(nn.ReLU())(X).numpy(), np.maximum(x, 0) + x, rtol=1e-6)
    seq = nn.Sequential(nn.Tanh(), nn.ReLU())
    assert len(seq.modules) == 2
    np.testing.assert_allclose(seq(X).numpy(), np.maximum(np.tanh(x), 0), rtol=1e-5, atol=1e-6)
    x4 = np.random.randn(2, 3, 4, 5).astype(np.float32)
    f = nn.Flatten()(T(x4, device))
    assert f.shape == (2, 60)
    np.testing.assert_array_equal(f.numpy(), x4.reshape(2, 60))


@hw2
def test_residual_gradient():
    np.random.seed(6)
    lin = nn.Linear(3, 3)
    x = T(np.random.randn(2, 3), nd.cpu())
    nn.Residual(lin)(x).sum().backward()
    ref = lin.weight.numpy().sum(axis=1) + 1  # d/dx of sum(xW + b + x)
    np.testing.assert_allclose(x.grad.numpy(), np.tile(ref, (2, 1)), rtol=1e-5)


class Tower(nn.Module):
    """A Python-defined module with sub-modules in lists, dicts and tuples."""

    def __init__(self):
        super().__init__()
        self.layers = [nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8)]
        self.heads = {"a": nn.Linear(8, 3), "b": (nn.Linear(8, 3), nn.Parameter(ndl.init.zeros(1, 3)))}
        self.scale = nn.Parameter(ndl.init.ones(1, 3))
        self.norm = nn.BatchNorm1d(8)
        self.not_a_param = ndl.init.ones(2)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        out = self.heads["a"](x) + self.heads["b"][0](x) + self.heads["b"][1].broadcast_to((x.shape[0], 3))
        return out * self.scale.broadcast_to(out.shape)


@hw2
def test_module_finds_every_parameter_and_trains():
    np.random.seed(0)
    m = Tower()
    params = m.parameters()
    assert len(params) == 2 + 2 + 2 + 2 + 1 + 1 + 2
    assert all(isinstance(p, nn.Parameter) for p in params)
    assert len({id(p) for p in params}) == len(params)
    children = m._children()
    assert sum(isinstance(c, nn.Linear) for c in children) == 4
    m.eval()
    assert not any(c.training for c in children) and not m.training
    m.train()
    assert all(c.training for c in children)
    X = ndl.Tensor(np.random.randn(32, 4).astype(np.float32), requires_grad=False)
    y = ndl.Tensor(np.random.randint(0, 3, 32), requires_grad=False)
    opt = ndl.optim.SGD(params, lr=0.1)
    losses = []
    for _ in range(30):
        opt.reset_grad()
        loss = nn.SoftmaxLoss()(m(X), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.numpy()))
    assert losses[-1] < 0.7 * losses[0]
    assert all(p.grad is not None for p in params)


@hw2
def test_state_dict_names_and_buffers():
    np.random.seed(0)
    m = Tower()
    sd = m.state_dict()
    expected = {
        "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias",
        "heads.a.weight", "heads.a.bias", "heads.b.0.weight", "heads.b.0.bias", "heads.b.1",
        "scale", "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var",
    }
    assert set(sd) == expected
    assert sd["layers.0.weight"].shape == (4, 8)
    assert dict(m.named_parameters()).keys() == expected - {"norm.running_mean", "norm.running_var"}
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.BatchNorm1d(3))
    assert list(seq.state_dict()) == [
        "modules.0.weight", "modules.0.bias", "modules.2.weight", "modules.2.bias",
        "modules.2.running_mean", "modules.2.running_var",
    ]


@hw2
def test_load_state_dict_round_trip():
    np.random.seed(0)
    a, b = Tower(), Tower()
    X = ndl.Tensor(np.random.randn(16, 4).astype(np.float32), requires_grad=False)
    a(X)  # moves the running statistics away from their initial values
    a.eval()
    b.eval()
    params_before = b.parameters()
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(X).numpy(), b(X).numpy())
    assert all(p is q for p, q in zip(params_before, b.parameters()))  # loaded in place
    np.testing.assert_array_equal(b.norm.running_mean.numpy(), a.norm.running_mean.numpy())
    # numpy values load too
    b.load_state_dict({k: v.numpy() for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(a(X).numpy(), b(X).numpy())


@hw2
def test_load_state_dict_errors():
    np.random.seed(0)
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    good = m.state_dict()
    missing = dict(good)
    del missing["modules.1.running_var"]
    with pytest.raises(KeyError, match="missing keys: modules.1.running_var"):
        m.load_state_dict(missing)
    extra = dict(good, **{"modules.5.weight": good["modules.0.weight"]})
    with pytest.raises(KeyError, match="unexpected keys: modules.5.weight"):
        m.load_state_dict(extra)
    m.load_state_dict(missing, strict=False)
    before = m.modules[0].bias.numpy()
    bad = {k: v.numpy() + 1 for k, v in good.items()}
    bad["modules.0.weight"] = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"modules.0.weight.*\(3, 2\).*\(2, 3\)"):
        m.load_state_dict(bad)
    np.testing.assert_array_equal(m.modules[0].bias.numpy(), before)  # nothing half-loaded


@hw2
def test_mlp_resnet_structure():
    from needle.apps.mlp_resnet import MLPResNet, ResidualBlock

    np.random.seed(0)
    blk = ResidualBlock(10, 6, norm=nn.LayerNorm1d, drop_prob=0.0)
    assert sum(int(np.prod(p.shape)) for p in blk.parameters()) == (10 * 6 + 6) + 12 + (6 * 10 + 10) + 20
    model = MLPResNet(15, 25, num_blocks=2, num_classes=5)
    n = sum(int(np.prod(p.shape)) for p in model.parameters())
    block = (25 * 12 + 12) + 24 + (12 * 25 + 25) + 50
    assert n == (15 * 25 + 25) + 2 * block + (25 * 5 + 5)
    out = model(ndl.Tensor(np.random.randn(4, 15).astype(np.float32)))
    assert out.shape == (4, 5)


@hw2
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_module_to_device(device):
    np.random.seed(0)
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    params = m.parameters()
    assert m.to(device) is m
    assert all(p.device == device for p in m.parameters())
    assert m.modules[1].running_mean.device == device and m.modules[1].running_var.device == device
    assert all(p is q for p, q in zip(params, m.parameters()))
    out = m(ndl.Tensor(np.random.randn(4, 3).astype(np.float32), device=device))
    assert out.device == device and out.shape == (4, 2)
