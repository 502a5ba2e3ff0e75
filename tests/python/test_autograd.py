"""needle.Tensor and needle.autograd: properties, operators, backward (accumulation, gradient
of a gradient, the course's topological order), Python TensorOps inside the C++ graph,
no_grad, LAZY_MODE, TENSOR_COUNTER over a training loop, deep graphs, indexing, Python
subclasses, and errors. (Construction and dtype inference, framework code, are in
test_numpy_interop.py.)"""
import numpy as np
import pytest

import needle as ndl
from needle import backend_ndarray as nd

from gradcheck import DEVICES, check_gradients, gradient_check, randn, tensor

pytestmark = pytest.mark.hw1


# ------------------------------------------------------------------ properties
def test_properties():
    x = ndl.Tensor([[1.0, 2.0], [3.0, 4.0]])
    d = x.data
    assert not d.requires_grad and d.cached_data._handle.ptr() == x.cached_data._handle.ptr()
    x.data = ndl.Tensor([[5.0, 6.0], [7.0, 8.0]])
    np.testing.assert_array_equal(x.numpy(), [[5, 6], [7, 8]])
    with pytest.raises(TypeError):
        x.data = ndl.Tensor(np.ones((2, 2), dtype=np.float32))  # float32 into float64
    det = x.detach()
    assert det.is_leaf() and not det.requires_grad
    assert isinstance(x.realize_cached_data(), nd.NDArray)
    c = ndl.Tensor.make_const(x.cached_data)
    assert not c.requires_grad and c.is_leaf()
    assert ndl.Tensor.make_const(x, requires_grad=True).requires_grad
    assert repr(ndl.Tensor([1.0, 2.0])) == "needle.Tensor([1. 2.])"
    assert str(ndl.Tensor([1.0, 2.0])) == "[1. 2.]"
    assert ndl.Tensor([3.0]).item() == 3.0
    assert len(ndl.Tensor(np.zeros((4, 2)))) == 4
    x.grad = ndl.Tensor(np.ones((2, 2), dtype=np.float32))
    np.testing.assert_array_equal(x.grad.numpy(), 1)
    x.grad = None
    assert x.grad is None
    # Graph structure and identity: a node's inputs are the very Python objects.
    a, b = ndl.Tensor([1.0]), ndl.Tensor([2.0])
    c = a * b
    assert c.inputs[0] is a and c.inputs[1] is b
    assert isinstance(c.op, ndl.ops.EWiseMul)
    assert isinstance(c.op, ndl.autograd.TensorOp)
    m = ndl.Tensor.make_from_op(ndl.ops.EWiseAdd(), [a, b])
    np.testing.assert_array_equal(m.numpy(), [3.0])


# ------------------------------------------------------------------ operators
@pytest.mark.parametrize("device", DEVICES)
def test_operators_with_scalars_on_both_sides(device):
    v = np.array([1.0, 2.0, 4.0], dtype=np.float32)
    a = ndl.Tensor(v, device=device)
    b = ndl.Tensor(v[::-1].copy(), device=device)
    cases = [
        (a + 1, v + 1), (1 + a, 1 + v), (a - 1, v - 1), (1 - a, 1 - v), (a * 2, v * 2),
        (2 * a, 2 * v), (a / 2, v / 2), (2 / a, 2 / v), (a ** 2, v ** 2), (2 ** a, 2 ** v),
        (-a, -v), (a + b, v + v[::-1]), (a - b, v - v[::-1]), (a * b, v * v[::-1]),
        (a / b, v / v[::-1]), (a ** b, v ** v[::-1]),
        (a + np.float32(1), v + 1), (a * np.array([1.0, 2.0, 3.0]), v * [1, 2, 3]),
        (np.float64(2) * a, 2 * v), (np.array([1.0, 2.0, 3.0]) - a, [1, 2, 3] - v),
    ]
    for got, want in cases:
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
        assert got.dtype == "float32", "scalars must not promote float32"
    m = ndl.Tensor(np.eye(3), device=device)
    np.testing.assert_allclose((m @ m).numpy(), np.eye(3))
    np.testing.assert_allclose(m.matmul(m).numpy(), np.eye(3))


@pytest.mark.parametrize("device", DEVICES)
def test_methods(device):
    x = np.random.randn(2, 3, 4)
    t = ndl.Tensor(x, device=device)
    np.testing.assert_allclose(t.sum().numpy(), x.sum())
    np.testing.assert_allclose(t.sum(axes=(0, 2)).numpy(), x.sum(axis=(0, 2)))
    np.testing.assert_allclose(t.sum(1).numpy(), x.sum(axis=1))
    np.testing.assert_allclose(t.reshape((4, 6)).numpy(), x.reshape(4, 6))
    np.testing.assert_allclose(t.reshape(4, 6).numpy(), x.reshape(4, 6))
    np.testing.assert_allclose(t.broadcast_to((5, 2, 3, 4)).numpy(), np.broadcast_to(x, (5, 2, 3, 4)))
    np.testing.assert_allclose(t.transpose().numpy(), x.swapaxes(1, 2))
    np.testing.assert_allclose(t.transpose((0, 1)).numpy(), x.swapaxes(0, 1))
    np.testing.assert_allclose(t.permute((2, 0, 1)).numpy(), x.transpose(2, 0, 1))
    np.testing.assert_allclose(t.mean(axes=1).numpy(), x.mean(axis=1))
    np.testing.assert_allclose(t.max(axes=2).numpy(), x.max(axis=2))
    np.testing.assert_allclose(t.exp().log().numpy(), x)
    np.testing.assert_allclose(t[1, :, ::2].numpy(), x[1, :, ::2])
    np.testing.assert_allclose(t[..., -1].numpy(), x[..., -1])


# ------------------------------------------------------------------ backward
def test_backward_accumulates_and_resets():
    x = ndl.Tensor([1.0, 2.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2, 4, 6])
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5, 7, 9])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3, 3, 3])
    y = ndl.Tensor([1.0, 2.0]) * 2
    y.backward(ndl.Tensor([1.0, 10.0]))
    z = ndl.Tensor([[1.0, 2.0]])
    (z * 5).backward()  # out_grad defaults to ones
    np.testing.assert_allclose(z.grad.numpy(), [[5, 5]])
    with pytest.raises(ValueError):
        (z * 5).backward(ndl.Tensor([1.0, 2.0, 3.0]))


def test_compute_gradient_course():
    # The course's test_compute_gradient, including the gradient of a gradient.
    gradient_check(lambda A, B, C: ndl.summation((A @ B + C) * (A @ B), axes=None),
                   ndl.Tensor(np.random.randn(10, 9)), ndl.Tensor(np.random.randn(9, 8)),
                   ndl.Tensor(np.random.randn(10, 8)), backward=True)
    gradient_check(lambda A, B: ndl.summation(ndl.broadcast_to(A, shape=(10, 9)) * B, axes=None),
                   ndl.Tensor(np.random.randn(10, 1)), ndl.Tensor(np.random.randn(10, 9)),
                   backward=True)
    gradient_check(lambda A, B, C: ndl.summation(ndl.reshape(A, shape=(10, 10)) @ B / 5 + C, axes=None),
                   ndl.Tensor(np.random.randn(100)), ndl.Tensor(np.random.randn(10, 5)),
                   ndl.Tensor(np.random.randn(10, 5)), backward=True)
    # The course writes Tensor([6]) and Tensor([0]): int64 tensors, which never require grad
    # here (API.md), so its second-derivative check runs on floats.
    x2 = ndl.Tensor([6.0])
    x3 = ndl.Tensor([0.0])
    y = x2 * x2 + x2 * x3
    y.backward()
    grad_x2 = x2.grad
    grad_x3 = x3.grad
    grad_x2.backward()
    grad_x2_x2 = x2.grad
    grad_x2_x3 = x3.grad
    x2_val = x2.numpy()
    x3_val = x3.numpy()
    assert y.numpy() == x2_val * x2_val + x2_val * x3_val
    assert grad_x2.numpy() == 2 * x2_val + x3_val
    assert grad_x3.numpy() == x2_val
    assert grad_x2_x2.numpy() == 2
    assert grad_x2_x3.numpy() == 1


def test_second_derivative_by_finite_differences():
    x = ndl.Tensor(np.array([0.3, -0.7, 1.2]))
    f = lambda t: ndl.tanh(t) * ndl.exp(t) / (t * t + 1)  # noqa: E731
    f(x).sum().backward()
    g = x.grad
    x.grad = None
    g.sum().backward()
    fn = lambda v: np.tanh(v) * np.exp(v) / (v * v + 1)  # noqa: E731
    h = 1e-4
    v = x.numpy()
    want = (fn(v + h) - 2 * fn(v) + fn(v - h)) / h ** 2
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-5)


def test_topo_sort_course():
    a1, b1 = ndl.Tensor(np.asarray([[0.88282157]])), ndl.Tensor(np.asarray([[0.90170084]]))
    c1 = 3 * a1 * a1 + 4 * b1 * a1 - a1
    soln = np.array([[[0.88282157]], [[2.64846471]], [[2.33812177]], [[0.90170084]],
                     [[3.60680336]], [[3.1841638]], [[5.52228558]], [[-0.88282157]],
                     [[4.63946401]]])
    topo_order = np.array([x.numpy() for x in ndl.autograd.find_topo_sort([c1])])
    assert len(soln) == len(topo_order)
    np.testing.assert_allclose(topo_order, soln, rtol=1e-06, atol=1e-06)

    a1, b1 = ndl.Tensor(np.asarray([[0.20914675], [0.65264178]])), ndl.Tensor(np.asarray([[0.65394286, 0.08218317]]))
    c1 = 3 * ((b1 @ a1) + (2.3412 * b1) @ a1) + 1.5
    soln = [np.array([[0.65394286, 0.08218317]]), np.array([[0.20914675], [0.65264178]]),
            np.array([[0.19040619]]), np.array([[1.53101102, 0.19240724]]),
            np.array([[0.44577898]]), np.array([[0.63618518]]), np.array([[1.90855553]]),
            np.array([[3.40855553]])]
    topo_order = [x.numpy() for x in ndl.autograd.find_topo_sort([c1])]
    assert len(soln) == len(topo_order)
    for t, s in zip(topo_order, soln):
        np.testing.assert_allclose(t, s, rtol=1e-06, atol=1e-06)
    # Each node comes after its inputs.
    order = ndl.autograd.find_topo_sort([c1])
    position = {id(n): i for i, n in enumerate(order)}
    for i, n in enumerate(order):
        assert all(position[id(p)] < i for p in n.inputs)


def test_backward_skips_constants():
    x = ndl.Tensor(np.random.randn(3, 2))
    w = ndl.Tensor(np.random.randn(2, 4), requires_grad=False)
    (x @ w).sum().backward()
    assert w.grad is None
    np.testing.assert_allclose(x.grad.numpy(), np.ones((3, 4)) @ w.numpy().T)


# ------------------------------------------------------------------ Python-defined ops
class Square(ndl.autograd.TensorOp):
    def __init__(self, scale=1.0):
        self.scale = scale
        self.computed = 0

    def compute(self, a):
        self.computed += 1
        return a * a * self.scale

    def gradient(self, out_grad, node):
        return out_grad * node.inputs[0] * (2 * self.scale)


class NumpyAddMul(ndl.autograd.TensorOp):
    """Returns numpy from compute and a tuple from gradient."""

    def compute(self, a, b):
        return a.numpy() + 2 * b.numpy()

    def gradient(self, out_grad, node):
        return out_grad, out_grad * 2


class SplitHalves(ndl.autograd.TensorTupleOp):
    def compute(self, a):
        n = a.shape[0] // 2
        return (a[:n].compact(), a[n:].compact())

    def gradient(self, out_grad, node):
        return ndl.ops.concat([out_grad[0], out_grad[1]], 0)


@pytest.mark.parametrize("device", DEVICES)
def test_python_tensor_op_in_cpp_graph(device):
    x = randn(3, 4, device=device)
    op = Square(0.5)
    y = op(ndl.exp(x))
    assert isinstance(y, ndl.Tensor) and y.op is op
    np.testing.assert_allclose(y.numpy(), 0.5 * np.exp(x.numpy()) ** 2)
    assert op.computed == 1
    check_gradients(lambda t: ndl.summation(Square(0.5)(ndl.exp(t)) * t, axes=(1,)), x)
    # The op object may go away; the node keeps it.
    z = Square()(x)
    del op
    z.sum().backward()
    a, b = randn(2, 3, device=device), randn(2, 3, device=device)
    check_gradients(lambda p, q: NumpyAddMul()(p, q * q), a, b)
    assert NumpyAddMul()(a, b).dtype == "float64"


def test_python_tuple_op_and_gradient_of_gradient():
    x = randn(4, 2)
    halves = SplitHalves()(x)
    assert isinstance(halves, ndl.TensorTuple) and len(halves) == 2
    check_gradients(lambda t: SplitHalves()(t)[0] * SplitHalves()(t)[1], x)
    # Second derivative through a Python op: d/dx sum(2 * x * x) = 4x, then 4.
    x = ndl.Tensor(np.array([1.5, -2.0]))
    Square(2.0)(x).sum().backward()
    g = x.grad
    np.testing.assert_allclose(g.numpy(), [6.0, -8.0])
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 4.0])


def test_python_op_errors():
    class Bad(ndl.autograd.TensorOp):
        def compute(self, a):
            return a

        def gradient(self, out_grad, node):
            return "not a tensor"

    y = Bad()(ndl.Tensor([1.0]))
    with pytest.raises(TypeError):
        y.backward()

    class Raises(ndl.autograd.TensorOp):
        def compute(self, a):
            raise KeyError("inside compute")

    with pytest.raises(KeyError):
        Raises()(ndl.Tensor([1.0]))


# ------------------------------------------------------------------ modes and memory
def test_no_grad_builds_no_graph():
    x = ndl.Tensor(np.random.randn(3))
    with ndl.autograd.no_grad():
        assert not ndl.autograd.is_grad_enabled()
        y = ndl.exp(x) * 2 + x
        assert y.is_leaf() and not y.requires_grad and y.inputs == []
    assert ndl.autograd.is_grad_enabled()
    c = ndl.Tensor(np.random.randn(3), requires_grad=False)
    z = ndl.exp(c) + c
    assert z.is_leaf() and not z.requires_grad and z.op is None
    assert not (x + 1).is_leaf()


def test_lazy_mode():
    x = ndl.Tensor([1.0, 2.0])
    ndl.autograd.LAZY_MODE = True
    try:
        y = (x * 3).sum()
        assert y.cached_data is None
    finally:
        ndl.autograd.LAZY_MODE = False
    assert not ndl.autograd.LAZY_MODE
    np.testing.assert_allclose(y.numpy(), 9.0)
    assert y.cached_data is not None


def test_tensor_counter_is_flat_over_a_training_loop():
    np.random.seed(0)
    X = ndl.Tensor(np.random.randn(32, 10).astype(np.float32), requires_grad=False)
    y = ndl.Tensor(np.random.randn(32, 1).astype(np.float32), requires_grad=False)
    W1 = ndl.Tensor(np.random.randn(10, 16).astype(np.float32) * 0.1)
    W2 = ndl.Tensor(np.random.randn(16, 1).astype(np.float32) * 0.1)
    counts = []
    for step in range(100):
        pred = ndl.relu(X @ W1) @ W2
        loss = ndl.summation((pred - y) ** 2) / 32
        loss.backward()
        for w in (W1, W2):
            w.data = w.data - w.grad.data * 0.01
        if step >= 5:
            counts.append(ndl.autograd.TENSOR_COUNTER)
    assert max(counts) == min(counts), counts[:10]


def test_tensor_counter_counts_live_tensors():
    before = ndl.autograd.TENSOR_COUNTER
    xs = [ndl.Tensor([1.0]) for _ in range(10)]
    assert ndl.autograd.TENSOR_COUNTER == before + 10
    y = ndl.exp(xs[0]) * xs[1]
    y.backward()  # grads reference the graph: cycles through .grad are collected
    del xs, y
    assert ndl.autograd.TENSOR_COUNTER == before


def test_deep_chain():
    x = ndl.Tensor(np.ones(3))
    y = x
    for _ in range(10000):
        y = y * 1.0001 + 0.0
    assert len(ndl.autograd.find_topo_sort([y])) == 20001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 1.0001 ** 10000)
    del y


# ------------------------------------------------------------------ indexing, subclasses
def test_getitem_setitem():
    x = randn(3, 4)
    check_gradients(lambda t: t[1:, ::-2] * 3, x)
    check_gradients(lambda t: t[-1] + t[0], x)
    with pytest.raises(RuntimeError):
        x[0] = 1.0  # a leaf that requires grad
    v = randn(4)
    x.grad = None
    y = x * 1.0
    y[1] = v
    np.testing.assert_allclose(y.numpy()[1], v.numpy())
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy()[1], 0)
    np.testing.assert_allclose(x.grad.numpy()[0], 1)
    np.testing.assert_allclose(v.grad.numpy(), 1)
    c = ndl.Tensor(np.zeros((2, 2)), requires_grad=False)
    c[0, 1] = 5.0
    np.testing.assert_allclose(c.numpy(), [[0, 5], [0, 0]])
    with pytest.raises(IndexError):
        x[5]
    with pytest.raises(TypeError):
        x["a"]


class Parameter(ndl.Tensor):
    """As needle.nn.Parameter: a Tensor subclass."""


def test_python_subclass():
    p = Parameter(np.ones((2, 2), dtype=np.float32))
    assert isinstance(p, ndl.Tensor) and p.requires_grad and p.dtype == "float32"
    p.tag = "weight"
    y = p * 2
    assert y.inputs[0] is p and y.inputs[0].tag == "weight"
    y.sum().backward()
    np.testing.assert_allclose(p.grad.numpy(), 2)
    q = Parameter(ndl.Tensor([1.0, 2.0]), dtype="float64")
    assert q.dtype == "float64"
    assert not isinstance(p.data, Parameter)


# ------------------------------------------------------------------ errors
def test_errors_name_op_and_shapes():
    a, b = ndl.Tensor(np.ones((3, 4))), ndl.Tensor(np.ones((5, 6)))
    with pytest.raises(ValueError, match=r"\[matmul\] shapes \(3, 4\) and \(5, 6\)"):
        a @ b
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 6\)"):
        a + b
    with pytest.raises(ValueError):
        ndl.reshape(a, (5,))
    with pytest.raises(IndexError):
        ndl.summation(a, axes=(2,))
    with pytest.raises(IndexError):
        ndl.make_tuple(a, b)[7]
    with pytest.raises(TypeError):
        ndl.add(a, 1.0)
    with pytest.raises(TypeError):
        ndl.ops.EWiseAdd()(a)
    with pytest.raises(TypeError):
        ndl.Tensor(object())
