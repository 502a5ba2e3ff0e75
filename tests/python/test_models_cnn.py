"""The CNNs of needle.apps.models (ResNet9, FashionResNet) against the same networks in
PyTorch with copied weights, in training and eval mode, on every device.

ResNet9 (ConvBN blocks) is homework 4 and runs with the conv and batch-norm kernels off
(their composites are the code homework 4 writes); FashionResNet is framework code.
"""
import numpy as np
import pytest

import needle as ndl
import needle.nn as nn

from gradcheck import DEVICES, close, kernels_off

torch = pytest.importorskip("torch")
hw4 = pytest.mark.hw4
IDS = ["cpu", "cuda"]
# The conv and batch-norm composites: the code ConvBN / ResNet9 run in homework 4.
HW4_KERNELS = ("conv2d", "conv2d_weight_grad", "conv2d_input_grad", "channel_sums", "channel_affine")


def T(x, device, requires_grad=True):
    return ndl.Tensor(np.asarray(x), device=device, dtype="float32", requires_grad=requires_grad)


# --------------------------------------------------------------------------------------------
# ResNet9
# --------------------------------------------------------------------------------------------

class TorchResidual(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


def torch_resnet9():
    def block(a, b, k, s):
        return torch.nn.Sequential(torch.nn.Conv2d(a, b, k, s, padding=k // 2), torch.nn.BatchNorm2d(b),
                                   torch.nn.ReLU())

    return torch.nn.Sequential(
        block(3, 16, 7, 4),
        block(16, 32, 3, 2),
        TorchResidual(torch.nn.Sequential(block(32, 32, 3, 1), block(32, 32, 3, 1))),
        block(32, 64, 3, 2),
        block(64, 128, 3, 2),
        TorchResidual(torch.nn.Sequential(block(128, 128, 3, 1), block(128, 128, 3, 1))),
        torch.nn.Flatten(),
        torch.nn.Linear(128, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )


def resnet9_pairs(model, tmodel):
    """(needle ConvBN, torch block) in build order, then the (needle, torch) Linear pairs."""
    seq, tseq = model.model.modules, tmodel
    blocks = [(seq[0], tseq[0]), (seq[1], tseq[1]),
              (seq[2].fn.modules[0], tseq[2].fn[0]), (seq[2].fn.modules[1], tseq[2].fn[1]),
              (seq[3], tseq[3]), (seq[4], tseq[4]),
              (seq[5].fn.modules[0], tseq[5].fn[0]), (seq[5].fn.modules[1], tseq[5].fn[1])]
    linears = [(seq[7], tseq[7]), (seq[9], tseq[9])]
    return blocks, linears


def copy_resnet9_to_torch(model, tmodel):
    blocks, linears = resnet9_pairs(model, tmodel)
    with torch.no_grad():
        for cb, tb in blocks:
            tb[0].weight.copy_(torch.tensor(cb.conv.weight.numpy().transpose(3, 2, 0, 1)))
            tb[0].bias.copy_(torch.tensor(cb.conv.bias.numpy()))
            tb[1].weight.copy_(torch.tensor(cb.bn.weight.numpy()))
            tb[1].bias.copy_(torch.tensor(cb.bn.bias.numpy()))
            tb[1].running_mean.copy_(torch.tensor(cb.bn.running_mean.numpy()))
            tb[1].running_var.copy_(torch.tensor(cb.bn.running_var.numpy()))
        for lin, tlin in linears:
            tlin.weight.copy_(torch.tensor(lin.weight.numpy().T))
            tlin.bias.copy_(torch.tensor(lin.bias.numpy().reshape(-1)))


def resnet9(device, seed=0):
    from needle.apps.models import ResNet9

    np.random.seed(seed)
    return ResNet9(device=device)


def resnet9_input(n=2, seed=1):
    np.random.seed(seed)
    return np.random.randn(n, 3, 32, 32).astype(np.float32)


@hw4
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_resnet9_parameter_count(device):
    model = resnet9(device)
    assert sum(int(np.prod(p.shape)) for p in model.parameters()) == 431946
    assert sum(p.numel() for p in torch_resnet9().parameters()) == 431946


@hw4
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_resnet9_matches_torch_train_and_eval(device):
    with kernels_off(*HW4_KERNELS):
        model = resnet9(device)
        tmodel = torch_resnet9()
        copy_resnet9_to_torch(model, tmodel)
        x = resnet9_input()
        model.train()
        tmodel.train()
        y = model(T(x, device, False))
        yt = tmodel(torch.tensor(x))
        assert y.shape == (2, 10)
        close(y, yt, err_msg="train-mode logits")
        blocks, _ = resnet9_pairs(model, tmodel)
        for i, (cb, tb) in enumerate(blocks):
            close(cb.bn.running_mean, tb[1].running_mean, err_msg=f"block {i} running_mean")
        # torch updates running_var with the unbiased variance, the course with the biased one:
        # give torch needle's running statistics, then compare eval mode.
        copy_resnet9_to_torch(model, tmodel)
        model.eval()
        tmodel.eval()
        x = resnet9_input(seed=2)
        close(model(T(x, device, False)), tmodel(torch.tensor(x)), err_msg="eval-mode logits")


@hw4
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_resnet9_adam_step_lowers_loss(device):
    with kernels_off(*HW4_KERNELS):
        model = resnet9(device)
        x = T(resnet9_input(8), device, False)
        y = ndl.Tensor(np.random.randint(0, 10, size=8), device=device)
        loss_fn = nn.SoftmaxLoss()
        opt = ndl.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        loss = loss_fn(model(x), y)
        before = float(loss.numpy())
        opt.reset_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        opt.step()
        after = float(loss_fn(model(x), y).numpy())
    assert np.isfinite(before) and np.isfinite(after)
    assert after < before, f"loss {before} -> {after} after one Adam step"


@hw4
@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_resnet9_state_dict_round_trip(device, tmp_path):
    with kernels_off(*HW4_KERNELS):
        model = resnet9(device)
        model.train()
        model(T(resnet9_input(4, seed=3), device, False))  # moves the running statistics
        path = str(tmp_path / "resnet9.safetensors")
        ndl.save(model, path)
        other = resnet9(device, seed=5)
        x = T(resnet9_input(2), device, False)
        model.eval()
        other.eval()
        want = model(x).numpy()
        assert not np.allclose(other(x).numpy(), want)
        other.load_state_dict(ndl.load(path, device=device))
        np.testing.assert_array_equal(other(x).numpy(), want)
        for (k, a), (k2, b) in zip(sorted(model.state_dict().items()), sorted(other.state_dict().items())):
            assert k == k2
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


# --------------------------------------------------------------------------------------------
# FashionResNet
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_fashion_resnet_parameters_and_shape(device):
    from needle.apps.models import FashionResNet

    w = 8

    def convbn(a, b):  # 3x3 conv weight and bias, BatchNorm2d weight and bias
        return 9 * a * b + b + 2 * b

    want = (convbn(1, w)
            + convbn(w, w) + 2 * convbn(w, w)  # stride-2 block, then the residual pair
            + convbn(w, 2 * w) + 2 * convbn(2 * w, 2 * w)
            + 2 * w * 10 + 10)  # the Linear head
    np.random.seed(0)
    model = FashionResNet(width=w, device=device)
    assert sum(int(np.prod(p.shape)) for p in model.parameters()) == want == 7970
    x = T(np.random.randn(3, 1, 28, 28).astype(np.float32), device, False)
    assert model(x).shape == (3, 10)
    model.eval()
    assert model(x).shape == (3, 10)
