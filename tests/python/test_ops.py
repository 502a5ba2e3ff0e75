"""needle.ops: every op's forward against numpy (float32 and float64) and its gradient by
finite differences (float64; contiguous, non-contiguous and broadcast inputs), on every
device; the op classes' compute / gradient / __call__; stack, split and logsumexp against
torch; and the course's forward cases."""
import numpy as np
import pytest

import needle as ndl

from gradcheck import DEVICES, check_gradients, gradient_check, tensor

# Each case is graded with the homework whose code it needs (HOMEWORK.md): logsumexp and
# logsoftmax are hw2; flip, dilate, stack and split are hw4; the rest is hw1.


def np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_gelu(x):
    from math import erf, sqrt
    return x * 0.5 * (1 + np.vectorize(erf)(x / sqrt(2)))


def np_setitem(a, key, v):
    out = a.copy()
    out[key] = v
    return out


POS = dict(low=0.5, high=2.0)  # inputs in a positive range (log, sqrt, divide, power)

# name, needle function, numpy function, input shapes, value range
CASES = [
    ("add", ndl.add, np.add, [(3, 4), (3, 4)], {}),
    ("add broadcast", ndl.add, np.add, [(3, 1), (1, 4)], {}),
    ("add_scalar", lambda a: ndl.add_scalar(a, 1.5), lambda a: a + 1.5, [(3, 4)], {}),
    ("subtract", ndl.subtract, np.subtract, [(2, 3), (3,)], {}),
    ("multiply", ndl.multiply, np.multiply, [(2, 3, 4), (2, 3, 4)], {}),
    ("multiply broadcast", ndl.multiply, np.multiply, [(4, 1, 3), (2, 1)], {}),
    ("mul_scalar", lambda a: ndl.mul_scalar(a, -2.0), lambda a: a * -2.0, [(3, 4)], {}),
    ("divide", ndl.divide, np.divide, [(3, 4), (3, 4)], POS),
    ("divide_scalar", lambda a: ndl.divide_scalar(a, 4.0), lambda a: a / 4.0, [(3, 4)], {}),
    ("rdivide_scalar", lambda a: ndl.rdivide_scalar(a, 3.0), lambda a: 3.0 / a, [(3, 4)], POS),
    ("power", ndl.power, np.power, [(3, 4), (3, 4)], POS),
    ("power_scalar", lambda a: ndl.power_scalar(a, 3), lambda a: a ** 3, [(3, 4)], {}),
    ("power_scalar frac", lambda a: ndl.power_scalar(a, 0.5), np.sqrt, [(3, 4)], POS),
    ("negate", ndl.negate, np.negative, [(3, 4)], {}),
    ("log", ndl.log, np.log, [(3, 4)], POS),
    ("exp", ndl.exp, np.exp, [(3, 4)], {}),
    ("relu", ndl.relu, lambda a: np.maximum(a, 0), [(3, 4)], {}),
    ("tanh", ndl.tanh, np.tanh, [(3, 4)], {}),
    ("sigmoid", ndl.sigmoid, lambda a: 1 / (1 + np.exp(-a)), [(3, 4)], {}),
    ("sqrt", ndl.sqrt, np.sqrt, [(3, 4)], POS),
    ("abs", ndl.ops.abs, np.abs, [(3, 4)], {}),
    ("gelu", ndl.gelu, np_gelu, [(3, 4)], {}),
    ("silu", ndl.silu, lambda a: a / (1 + np.exp(-a)), [(3, 4)], {}),
    ("maximum", ndl.maximum, np.maximum, [(3, 4), (3, 4)], {}),
    ("where", lambda c, a, b: ndl.where(ndl.Tensor(c.numpy() > 0, requires_grad=False), a, b),
     lambda c, a, b: np.where(c > 0, a, b), [(3, 4), (3, 4), (4,)], {}),
    ("reshape", lambda a: ndl.reshape(a, (4, 3)), lambda a: a.reshape(4, 3), [(3, 4)], {}),
    ("reshape -1", lambda a: ndl.reshape(a, (2, -1)), lambda a: a.reshape(2, -1), [(3, 4)], {}),
    ("broadcast_to", lambda a: ndl.broadcast_to(a, (2, 3, 4)),
     lambda a: np.broadcast_to(a, (2, 3, 4)), [(3, 1)], {}),
    ("transpose", ndl.transpose, lambda a: a.swapaxes(-1, -2), [(2, 3, 4)], {}),
    ("transpose pair", lambda a: ndl.transpose(a, (0, 2)), lambda a: a.swapaxes(0, 2),
     [(2, 3, 4)], {}),
    ("permute", lambda a: ndl.permute(a, (2, 0, 1)), lambda a: a.transpose(2, 0, 1),
     [(2, 3, 4)], {}),
    ("summation", ndl.summation, np.sum, [(3, 4)], {}),
    ("summation axis", lambda a: ndl.summation(a, axes=1), lambda a: a.sum(axis=1),
     [(2, 3, 4)], {}),
    ("summation axes", lambda a: ndl.summation(a, axes=(0, 2)), lambda a: a.sum(axis=(0, 2)),
     [(2, 3, 4)], {}),
    ("summation keepdims", lambda a: ndl.summation(a, axes=(1,), keepdims=True),
     lambda a: a.sum(axis=1, keepdims=True), [(2, 3)], {}),
    ("mean", lambda a: ndl.mean(a, axes=(0,)), lambda a: a.mean(axis=0), [(3, 4)], {}),
    ("max", lambda a: ndl.ops.max(a, axes=(1,)), lambda a: a.max(axis=1), [(3, 4)], {}),
    ("logsumexp", ndl.logsumexp, np_logsumexp, [(3, 4)], {}),
    ("logsumexp axes", lambda a: ndl.logsumexp(a, axes=(0, 2)),
     lambda a: np_logsumexp(a, axis=(0, 2)), [(2, 3, 4)], {}),
    ("logsoftmax", ndl.logsoftmax, lambda a: np.log(np_softmax(a)), [(3, 5)], {}),
    ("softmax", lambda a: ndl.softmax(a, axis=0), lambda a: np_softmax(a, axis=0), [(3, 5)], {}),
    ("matmul", ndl.matmul, np.matmul, [(3, 4), (4, 5)], {}),
    ("matmul batched", ndl.matmul, np.matmul, [(2, 3, 4), (2, 4, 2)], {}),
    ("matmul broadcast", ndl.matmul, np.matmul, [(2, 1, 3, 4), (3, 4, 2)], {}),
    ("matmul vector", ndl.matmul, np.matmul, [(4,), (2, 4, 3)], {}),
    ("flip", lambda a: ndl.flip(a, (0, 2)), lambda a: np.flip(a, (0, 2)), [(2, 3, 4)], {}),
    ("pad", lambda a: ndl.pad(a, ((1, 0), (2, 1)), 3.0),
     lambda a: np.pad(a, ((1, 0), (2, 1)), constant_values=3.0), [(2, 3)], {}),
    ("concat", lambda a, b: ndl.concat([a, b, a], 1), lambda a, b: np.concatenate([a, b, a], 1),
     [(2, 1), (2, 3)], {}),
    ("getitem", lambda a: ndl.getitem(a, (slice(1, 3), -1)), lambda a: a[1:3, -1], [(4, 3)], {}),
    ("getitem step", lambda a: a[:, ::-2], lambda a: a[:, ::-2], [(2, 5)], {}),
    ("setitem", lambda a, v: ndl.setitem(a, (1, slice(0, 2)), v),
     lambda a, v: np_setitem(a, (1, slice(0, 2)), v), [(3, 4), (2,)], {}),
    ("stack", lambda a, b: ndl.stack([a, b, a], 1), lambda a, b: np.stack([a, b, a], 1),
     [(2, 3), (2, 3)], {}),
    ("split", lambda a: ndl.split(a, 1)[2] * ndl.split(a, 1)[0],
     lambda a: a[:, 2] * a[:, 0], [(2, 3, 2)], {}),
    ("fused_add_scalars", lambda a: ndl.fused_add_scalars(a, 1.0, 2.0)[1],
     lambda a: a + 2.0, [(3,)], {}),
]
HW2 = {"logsumexp", "logsumexp axes", "logsoftmax"}
HW4 = {"flip", "stack", "split"}


def _param(case):
    hw = "hw2" if case[0] in HW2 else "hw4" if case[0] in HW4 else "hw1"
    return pytest.param(case, id=case[0], marks=getattr(pytest.mark, hw))


PARAMS = [_param(c) for c in CASES]


def inputs_for(shapes, device, dtype, rng, noncontiguous=False):
    low, high = rng.get("low"), rng.get("high")
    arrays = [np.random.uniform(low, high, s) if low is not None else np.random.randn(*s)
              for s in shapes]
    arrays = [a.astype(dtype) for a in arrays]
    return arrays, [tensor(a, device=device, dtype=dtype, noncontiguous=noncontiguous)
                    for a in arrays]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", PARAMS)
def test_forward(case, device, dtype):
    name, f, ref, shapes, rng = case
    arrays, tensors = inputs_for(shapes, device, dtype, rng)
    out = f(*tensors)
    want = ref(*arrays)
    assert out.shape == np.shape(want)
    assert out.dtype == dtype
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out.numpy(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("noncontiguous", [False, True], ids=["contiguous", "strided"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", PARAMS)
def test_gradient(case, device, noncontiguous):
    name, f, ref, shapes, rng = case
    _, tensors = inputs_for(shapes, device, "float64", rng, noncontiguous)
    check_gradients(f, *tensors)


@pytest.mark.hw4
@pytest.mark.parametrize("device", DEVICES)
def test_op_classes(device):
    a = tensor(np.random.randn(3, 4), device=device)
    b = tensor(np.random.randn(3, 4), device=device)
    op = ndl.ops.EWiseMul()
    np.testing.assert_allclose(op.compute(a.cached_data, b.cached_data).numpy(), a.numpy() * b.numpy())
    out = op(a, b)
    assert out.op is not None and out.inputs[0] is a
    ones = ndl.Tensor(np.ones((3, 4)), device=device)
    ga, gb = op.gradient(ones, out)
    np.testing.assert_allclose(ga.numpy(), b.numpy())
    assert len(op.gradient_as_tuple(ones, out)) == 2
    s = ndl.ops.Summation((1,))
    assert s.axes == [1]
    assert isinstance(s.gradient(ndl.Tensor(np.ones(3), device=device), s(a)), ndl.Tensor)
    assert ndl.ops.AddScalar(2.0).scalar == 2.0
    assert ndl.ops.Transpose()(a).shape == (4, 3)
    assert ndl.ops.Reshape((2, 6))(a).shape == (2, 6)
    assert ndl.ops.BroadcastTo((2, 3, 4))(a).shape == (2, 3, 4)
    assert ndl.ops.LogSumExp(axes=(1,))(a).shape == (3,)
    # Stack takes a TensorTuple, as the course builds it.
    st = ndl.ops.Stack(0)(ndl.make_tuple(a, b))
    assert st.shape == (2, 3, 4)
    parts = ndl.ops.Split(0)(st)
    assert isinstance(parts, ndl.TensorTuple) and len(parts) == 2
    np.testing.assert_allclose(parts[1].numpy(), b.numpy())
    assert [p.shape for p in parts.tuple()] == [(3, 4), (3, 4)]
    assert isinstance(ndl.ops.Split(0), ndl.autograd.TensorTupleOp)
    arrays = ndl.ops.Split(1).compute(a.cached_data)
    assert len(arrays) == 4
    t = ndl.make_tuple(a, b) + ndl.make_tuple(b, a)
    np.testing.assert_allclose(t[0].numpy(), a.numpy() + b.numpy())
    assert "needle.TensorTuple(" in repr(t)


@pytest.mark.hw4
@pytest.mark.parametrize("device", DEVICES)
def test_against_torch(device):
    torch = pytest.importorskip("torch")
    x = np.random.randn(3, 4, 5)
    # logsumexp, with large values
    for axes in [None, (1,), (0, 2)]:
        big = x * 1000
        got = ndl.logsumexp(ndl.Tensor(big, device=device), axes=axes).numpy()
        want = torch.logsumexp(torch.tensor(big), dim=axes if axes else (0, 1, 2)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-10)
    # stack forward and backward
    parts = [np.random.randn(3, 4) for _ in range(3)]
    for axis in range(3):
        A = [ndl.Tensor(p, device=device) for p in parts]
        T = [torch.tensor(p, requires_grad=True) for p in parts]
        out = ndl.stack(A, axis=axis)
        ref = torch.stack(T, dim=axis)
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy())
        (out * out).sum().backward()
        (ref * ref).sum().backward()
        for a, t in zip(A, T):
            np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy())


@pytest.mark.hw1
@pytest.mark.parametrize("device", DEVICES)
def test_course_cases(device):
    # Forward cases from the course's hw1 tests.
    np.testing.assert_allclose(
        ndl.divide(ndl.Tensor([[3.3, 4.35, 1.2], [2.45, 0.95, 2.55]], device=device),
                   ndl.Tensor([[4.6, 4.35, 4.8], [0.65, 0.7, 4.4]], device=device)).numpy(),
        np.array([[0.717391304348, 1.0, 0.25], [3.769230769231, 1.357142857143, 0.579545454545]]),
        rtol=1e-6)
    np.testing.assert_allclose(
        ndl.transpose(ndl.Tensor([[[1.95]], [[2.7]], [[3.75]]], device=device), axes=(1, 2)).numpy(),
        np.array([[[1.95]], [[2.7]], [[3.75]]]))
    np.testing.assert_allclose(
        ndl.summation(ndl.Tensor([[1.0, 2.0], [3.0, 4.0]], device=device), axes=(1,)).numpy(), [3.0, 7.0])
    # The course's gradient checks (op.gradient_as_tuple against numerical gradients).
    gradient_check(ndl.divide, ndl.Tensor(np.random.randn(5, 4)), ndl.Tensor(5 + np.random.randn(5, 4)))
    gradient_check(ndl.power_scalar, ndl.Tensor(np.random.randn(5, 4)), scalar=np.random.randint(1))
    gradient_check(ndl.summation, ndl.Tensor(np.random.randn(5, 4)), axes=(1,))
    gradient_check(ndl.broadcast_to, ndl.Tensor(np.random.randn(3, 1)), shape=(3, 3))
    gradient_check(ndl.matmul, ndl.Tensor(np.random.randn(6, 5, 4)), ndl.Tensor(np.random.randn(4, 3)))
    gradient_check(ndl.transpose, ndl.Tensor(np.random.randn(3, 5, 4)), axes=(0, 1))


@pytest.mark.hw2
def test_course_logsumexp():
    gradient_check(ndl.logsumexp, ndl.Tensor(np.random.randn(5, 4, 3)), axes=(0, 2))
    gradient_check(ndl.logsumexp, ndl.Tensor(np.random.randn(5, 4, 3)), axes=None)
    np.testing.assert_allclose(
        ndl.logsumexp(ndl.Tensor(np.array([[1e6, 1e6 + 1], [-1e6, -1e6]])), axes=(1,)).numpy(),
        [1e6 + 1 + np.log1p(np.exp(-1)), -1e6 + np.log(2)])


@pytest.mark.hw1
def test_errors():
    a = ndl.Tensor(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"broadcast"):
        ndl.broadcast_to(a, (3, 5))
    with pytest.raises(ValueError):
        ndl.concat([a, ndl.Tensor(np.ones((4, 3)))], 0)
    with pytest.raises(IndexError):
        ndl.transpose(a, (0, 5))
    with pytest.raises(ValueError):
        ndl.summation(a, axes=(1, 1))


@pytest.mark.hw4
def test_errors_hw4():
    a = ndl.Tensor(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"\[stack\]"):
        ndl.stack([a, ndl.Tensor(np.ones((4, 3)))], 0)
    with pytest.raises(IndexError):
        ndl.logsumexp(a, axes=(3,))
