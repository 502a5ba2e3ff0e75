"""needle.backend_ndarray against numpy: construction, views, setitem, arithmetic,
reductions, matmul, the raw kernels on handles, float64, and the error cases.

Graded with hw0 (NDArray and the CPU kernels) test by test; flip and pad are hw4's, and the
tests of framework code (devices, threads, the raw entry points' checks) carry no marker.
conftest.py moves the CUDA instances to hw3."""
import numpy as np
import pytest

from needle import backend_ndarray as nd

DEVICES = [
    nd.cpu(),
    pytest.param(nd.cuda(), marks=pytest.mark.skipif(not nd.cuda().enabled(), reason="no CUDA device")),
]
hw0, hw4 = pytest.mark.hw0, pytest.mark.hw4


def rand(*shape, dtype="float32"):
    return np.random.randn(*shape).astype(dtype)


def check(a, b, atol=1e-5):
    assert tuple(a.shape) == tuple(b.shape)
    np.testing.assert_allclose(a.numpy() if isinstance(a, nd.NDArray) else a, b, atol=atol, rtol=1e-5)


# ------------------------------------------------------------------ devices
def _threads_in_child(code, **env):
    """needle.get_num_threads() in a fresh interpreter that first runs `code`."""
    import os
    import subprocess
    import sys

    child_env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    child_env.update(env)
    python_dir = os.path.join(os.path.dirname(__file__), "..", "..", "python")
    out = subprocess.run([sys.executable, "-c", code + "; import needle; print(needle.get_num_threads())"],
                         env=child_env, cwd=python_dir, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


# ------ framework code (no marker): thread settings, device objects, the raw entry points' checks
def test_thread_count_default():
    # Every core by default, OMP_NUM_THREADS when set, and importing PyTorch first (which
    # sets OpenMP's default to 1) changes neither.
    import os

    cores = len(os.sched_getaffinity(0))
    assert _threads_in_child("pass") == cores
    assert _threads_in_child("pass", OMP_NUM_THREADS="1") == 1
    pytest.importorskip("torch")
    assert _threads_in_child("import torch") == cores


def test_devices():
    assert nd.cpu() == nd.cpu() and nd.cpu() != nd.cuda()
    assert repr(nd.cpu()) == "cpu()" and repr(nd.cuda()) == "cuda()"
    assert nd.cpu().enabled()
    assert nd.default_device() == nd.cpu()
    assert nd.cpu() in nd.all_devices() and nd.cuda() in nd.all_devices()
    assert isinstance(nd.cuda().enabled(), bool)


@pytest.mark.skipif(nd.cuda().enabled(), reason="a GPU is present")
def test_cuda_disabled_is_a_clear_error():
    with pytest.raises(RuntimeError, match="cuda"):
        nd.array([1.0, 2.0], device=nd.cuda())


@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_device_constructors(device):
    np.random.seed(0)
    a = device.randn(3, 4)
    np.random.seed(0)
    check(a, np.random.randn(3, 4).astype("float32"))
    np.random.seed(1)
    b = device.rand(2, 5)
    np.random.seed(1)
    check(b, np.random.rand(2, 5).astype("float32"))
    check(device.one_hot(4, [1, 3]), np.eye(4)[[1, 3]])
    check(device.full((2, 3), 7.5), np.full((2, 3), 7.5))
    assert device.empty((2, 3)).shape == (2, 3)
    assert device.randn(2, dtype="float64").dtype == "float64"


# ------------------------------------------------------------------ construction
@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_construct_and_copy(device):
    x = rand(3, 4)
    a = nd.NDArray(x, device=device)
    check(a, x)
    assert a.device == device and a.dtype == "float32"
    assert a.shape == (3, 4) and a.strides == (4, 1) and a.ndim == 2 and a.size == 12
    b = nd.NDArray(a)
    assert b._handle.ptr() != a._handle.ptr()  # NDArray(ndarray) copies
    check(nd.NDArray([[1, 2], [3, 4]], device=device), np.array([[1, 2], [3, 4]]))
    check(nd.array(x, device=device), x)


@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_float64(device):
    x = np.random.randn(5, 6)
    a = nd.NDArray(x, device=device)
    assert a.dtype == "float64"
    np.testing.assert_array_equal(a.numpy(), x)  # exact: no float32 round trip
    np.testing.assert_allclose((a @ a.permute((1, 0))).numpy(), x @ x.T, rtol=1e-12)
    np.testing.assert_allclose(a.sum(axis=1).numpy(), x.sum(axis=1), rtol=1e-12)
    assert nd.array(x, dtype="float32", device=device).dtype == "float32"
    mixed = nd.NDArray(x, device=device) + nd.NDArray(x.astype("float32"), device=device)
    assert mixed.dtype == "float64"


def test_make_and_compact_strides():  # framework: as_strided's checks, no marker
    assert nd.NDArray.compact_strides((2, 3, 4)) == (12, 4, 1)
    a = nd.NDArray.make((2, 3))
    assert a.shape == (2, 3) and a.is_compact()
    b = nd.NDArray.make((3, 2), strides=(1, 3), handle=a._handle)
    assert b._handle.ptr() == a._handle.ptr() and not b.is_compact()
    with pytest.raises(ValueError, match="as_strided"):
        nd.NDArray.make((4, 4), handle=a._handle)


# ------------------------------------------------------------------ views
# Views only rewrite metadata, the same code for every device: the tests of views alone run
# on the default device (on CUDA they would touch no kernel, so they could not grade hw3).
@hw0
@pytest.mark.parametrize(
    "shape,new_shape",
    [((12,), (3, 4)), ((3, 4), (2, 6)), ((2, 3, 4), (6, 4)), ((2, 3, 4), (-1,)), ((1, 5), (5, 1))],
)
def test_reshape_is_a_view(shape, new_shape):
    x = rand(*shape)
    a = nd.array(x)
    b = a.reshape(new_shape)
    check(b, x.reshape(new_shape))
    assert b._handle.ptr() == a._handle.ptr()


@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_reshape_of_strided_view(device):
    x = rand(4, 6)
    a = nd.array(x, device=device)
    check(a[:, ::2].permute((1, 0)).reshape((3, 4)).compact(), x[:, ::2].T.reshape(3, 4))
    check(a[::2].reshape((2, 2, 3)), x[::2].reshape(2, 2, 3))  # splits a contiguous row: a view
    assert a[::2].reshape((2, 2, 3)).strides == (12, 3, 1)
    with pytest.raises(ValueError, match=r"\[reshape\]"):
        a.permute((1, 0)).reshape((24,))


@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_permute_broadcast(device):
    x = rand(2, 3, 4)
    a = nd.array(x, device=device)
    p = a.permute((2, 0, 1))
    check(p, x.transpose(2, 0, 1))
    assert p.strides == (1, 12, 4) and p._handle.ptr() == a._handle.ptr()
    y = rand(3, 1)
    b = nd.array(y, device=device).broadcast_to((2, 3, 5))
    check(b, np.broadcast_to(y, (2, 3, 5)))
    assert b.strides == (0, 1, 0)


@hw4
@pytest.mark.parametrize("device", DEVICES)
def test_flip(device):
    x = rand(2, 3, 4)
    a = nd.array(x, device=device)
    f = a.flip((0, 2))
    check(f, np.flip(x, (0, 2)))
    assert f.strides == (-12, 4, -1) and f._handle.ptr() == a._handle.ptr()
    check(nd.flip(a, (1,)), np.flip(x, 1))


@hw0
@pytest.mark.parametrize(
    "key",
    [
        (slice(1, 3), slice(None)),
        (slice(None, None, 2), slice(1, None, 3)),
        (1, slice(None)),
        (slice(None), 2),
        (-1,),
        (slice(None, None, -1),),
        (slice(4, 0, -2), slice(None, None, -3)),
        (slice(-3, None), Ellipsis),
        (Ellipsis, 1),
        (slice(10, 20),),
    ],
)
def test_getitem(key):  # a view: the default device only (see test_reshape_is_a_view)
    x = rand(5, 7)
    a = nd.array(x)
    b = a[key]
    check(b, x[key])
    if b.size:
        assert b._handle.ptr() == a._handle.ptr()  # a view, not a copy


@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_compact(device):
    x = rand(4, 5, 6)
    a = nd.array(x, device=device)[1:3, ::2, 4:0:-1]
    assert not a.is_compact()
    c = a.compact()
    assert c.is_compact() and c.strides == nd.NDArray.compact_strides(c.shape)
    check(c, x[1:3, ::2, 4:0:-1])


@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_setitem(device):
    x = rand(4, 5)
    a = nd.array(x, device=device)
    ptr = a._handle.ptr()
    y = rand(2, 5)
    a[1:3] = nd.array(y, device=device)
    x[1:3] = y
    a[:, 4] = 9.0
    x[:, 4] = 9.0
    a[::2, ::-2] = nd.array(np.ones((1, 3)), device=device)  # broadcast value
    x[::2, ::-2] = np.ones((1, 3))
    a[0, 1:] = a[1, :4]  # overlapping source
    x[0, 1:] = x[1, :4].copy()
    check(a, x)
    assert a._handle.ptr() == ptr
    with pytest.raises(ValueError, match="setitem"):
        a[1:3] = nd.array(np.ones((3, 5)), device=device)


# ------------------------------------------------------------------ arithmetic
BINARY = [
    (lambda a, b: a + b),
    (lambda a, b: a - b),
    (lambda a, b: a * b),
    (lambda a, b: a / b),
    (lambda a, b: a.maximum(b)),
    (lambda a, b: a == b),
    (lambda a, b: a != b),
    (lambda a, b: a > b),
    (lambda a, b: a >= b),
    (lambda a, b: a < b),
    (lambda a, b: a <= b),
]
NUMPY_BINARY = [np.add, np.subtract, np.multiply, np.divide, np.maximum, np.equal, np.not_equal,
                np.greater, np.greater_equal, np.less, np.less_equal]


@hw0
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("i", range(len(BINARY)))
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((4, 1), (1, 5)), ((2, 3, 4), (4,))])
def test_binary(device, i, shapes):
    x, y = rand(*shapes[0]), rand(*shapes[1])
    y[..., :1] = x[..., :1] if x.shape == y.shape else y[..., :1]  # some equal elements
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    expected = NUMPY_BINARY[i](x, y).astype("float32")
    check(BINARY[i](a, b), expected)
    # the same op on non-contiguous views
    check(BINARY[i](nd.array(x.T.copy(), device=device).permute(tuple(reversed(range(x.ndim)))), b), expected)


@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_scalar_ops(device):
    x = np.abs(rand(3, 4)) + 0.5
    a = nd.array(x, device=device)
    check(a + 2, x + 2)
    check(2 + a, 2 + x)
    check(a - 2, x - 2)
    check(2 - a, 2 - x)
    check(a * 3, x * 3)
    check(3 * a, 3 * x)
    check(a / 4, x / 4)
    check(4 / a, 4 / x)
    check(a ** 3, x ** 3, atol=1e-4)
    check(-a, -x)
    check(a.maximum(1.0), np.maximum(x, 1.0))
    check(a == float(x[0, 0]), (x == x[0, 0]).astype("float32"))
    check(a >= 1.0, (x >= 1.0).astype("float32"))


@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_unary(device):
    x = np.abs(rand(3, 4)) + 0.1
    a = nd.array(x, device=device)[:, ::-1]
    xv = x[:, ::-1]
    check(a.log(), np.log(xv))
    check(a.exp(), np.exp(xv))
    check(a.tanh(), np.tanh(xv))
    check(a.sqrt(), np.sqrt(xv))
    check((-a).abs(), xv)
    check(nd.log(a), np.log(xv))
    check(nd.exp(a), np.exp(xv))
    check(nd.tanh(a), np.tanh(xv))
    check(nd.maximum(a, a * 0 + 1), np.maximum(xv, 1))


# ------------------------------------------------------------------ reductions
@hw0
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, (0, 2), (1, 2), (0, 1, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(device, axis, keepdims):
    x = rand(3, 4, 5)
    a = nd.array(x, device=device)
    check(a.sum(axis=axis, keepdims=keepdims), np.sum(x, axis=axis, keepdims=keepdims), atol=1e-4)
    check(a.max(axis=axis, keepdims=keepdims), np.max(x, axis=axis, keepdims=keepdims))
    check(nd.sum(a, axis, keepdims), np.sum(x, axis=axis, keepdims=keepdims), atol=1e-4)


@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_reduce_strided_and_large(device):
    x = rand(300, 200)
    a = nd.array(x, device=device)
    check(a.permute((1, 0)).sum(axis=1), x.sum(axis=0), atol=1e-3)
    check(a[::3, ::-2].max(axis=0), x[::3, ::-2].max(axis=0))
    check(a.sum(), np.array(x.sum()), atol=1e-2)
    assert nd.array(np.zeros((0, 3)), device=device).sum(axis=0).numpy().tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="max"):
        nd.array(np.zeros((0, 3)), device=device).max(axis=0)


# ------------------------------------------------------------------ matmul
def check_every_gemm(monkeypatch, product, expected):
    """product() against expected, then again with NEEDLE_CUDA_GEMM=tiled: on CUDA the second
    run takes the backend's own tiled kernel (hw3) instead of cuBLAS; the CPU ignores it."""
    check(product(), expected, atol=1e-4)
    with monkeypatch.context() as m:
        m.setenv("NEEDLE_CUDA_GEMM", "tiled")
        check(product(), expected, atol=1e-4)


@hw0
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("m,n,p", [(1, 1, 1), (8, 8, 8), (16, 16, 16), (3, 5, 7), (64, 32, 48), (129, 65, 33)])
def test_matmul(device, m, n, p, monkeypatch):
    x, y = rand(m, n), rand(n, p)
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    check_every_gemm(monkeypatch, lambda: a @ b, x @ y)
    at = nd.array(x.T.copy(), device=device).permute((1, 0))
    check_every_gemm(monkeypatch, lambda: at @ b, x @ y)


@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_batched_matmul(device, monkeypatch):
    x, y = rand(2, 3, 4, 5), rand(3, 5, 6)
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    check_every_gemm(monkeypatch, lambda: a @ b, x @ y)
    check_every_gemm(monkeypatch, lambda: a @ nd.array(y[0], device=device), x @ y[0])
    v = rand(5)
    check_every_gemm(monkeypatch, lambda: a @ nd.array(v, device=device), x @ v)


# ------------------------------------------------------------------ pad, concatenate, stack
@hw4  # pad is the CNN assignment's; concatenate and stack are framework code
@pytest.mark.parametrize("device", DEVICES)
def test_pad_concat_stack(device):
    x = rand(2, 3)
    a = nd.array(x, device=device)
    check(a.pad(((1, 2), (0, 1))), np.pad(x, ((1, 2), (0, 1))))
    y = rand(2, 4)
    b = nd.array(y, device=device)
    check(nd.concatenate([a, b], axis=1), np.concatenate([x, y], axis=1))
    check(nd.stack([a, a[:, ::-1]], axis=1), np.stack([x, x[:, ::-1]], axis=1))
    with pytest.raises(ValueError, match="concatenate"):
        nd.concatenate([a, b], axis=0)



@pytest.mark.parametrize("device", DEVICES)
def test_concatenate_keeps_a_shared_permuted_layout(device):
    # NCHW views of NHWC arrays (nn.Conv's results) join into an NCHW view of one NHWC
    # array, so the next convolution needs no transpose; mixed layouts give row-major.
    x, y = rand(2, 4, 3, 3), rand(2, 4, 3, 2)
    a = nd.array(x, device=device).permute((0, 3, 1, 2))
    b = nd.array(y, device=device).permute((0, 3, 1, 2))
    ref = np.concatenate([x.transpose(0, 3, 1, 2), y.transpose(0, 3, 1, 2)], axis=1)
    out = nd.concatenate([a, b], axis=1)
    check(out, ref)
    assert not out.is_compact() and out.permute((0, 2, 3, 1)).is_compact()
    mixed = nd.concatenate([a, nd.array(np.ascontiguousarray(ref[:, 3:]), device=device)], axis=1)
    check(mixed, ref)
    assert mixed.is_compact()

# ------------------------------------------------------------------ raw kernels on handles
@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_raw_kernels(device):
    x, y = rand(4, 6), rand(4, 6)
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    out = device.Array(24)
    assert out.size == 24
    device.ewise_add(a._handle, b._handle, out)
    check(nd.NDArray.make((4, 6), device=device, handle=out), x + y)
    device.scalar_mul(a._handle, 3.0, out)
    check(nd.NDArray.make((4, 6), device=device, handle=out), x * 3)
    device.ewise_exp(a._handle, out)
    check(nd.NDArray.make((4, 6), device=device, handle=out), np.exp(x))
    red = device.Array(4)
    device.reduce_sum(a._handle, red, 6)
    check(nd.NDArray.make((4,), device=device, handle=red), x.sum(axis=1))
    device.reduce_max(a._handle, red, 6)
    check(nd.NDArray.make((4,), device=device, handle=red), x.max(axis=1))
    # compact a transposed view, then write it back transposed with ewise_setitem
    device.compact(a._handle, out, (6, 4), (1, 6), 0)
    check(nd.NDArray.make((6, 4), device=device, handle=out), x.T)
    device.ewise_setitem(out, b._handle, (6, 4), (1, 6), 0)
    check(b, x)
    device.scalar_setitem(3, 5.0, b._handle, (3,), (6,), 1)
    x2 = x.copy()
    x2[:3, 1] = 5.0
    check(b, x2)
    assert device.to_numpy(a._handle, (2, 2), (1, 6), 0).tolist() == x[:2, :2].T.tolist()
    device.from_numpy(np.arange(24, dtype="float32"), out)
    check(nd.NDArray.make((24,), device=device, handle=out), np.arange(24))
    device.fill(out, 2.0)
    check(nd.NDArray.make((24,), device=device, handle=out), np.full(24, 2.0))


@pytest.mark.parametrize("device", DEVICES)
def test_raw_kernels_refuse_mixed_dtypes(device):  # framework: the bindings' checks, no marker
    # Kernels trust their views (NDArray promotes first); the raw entry points check dtypes.
    a32, a64, out32 = device.Array(6), device.Array(6, "float64"), device.Array(6)
    with pytest.raises(TypeError, match=r"\[ewise_add\].*float64"):
        device.ewise_add(a32, a64, out32)
    with pytest.raises(TypeError, match=r"\[ewise_exp\]"):
        device.ewise_exp(a64, out32)
    with pytest.raises(TypeError, match=r"\[scalar_add\]"):
        device.scalar_add(a64, 1.0, out32)
    with pytest.raises(TypeError, match=r"\[reduce_sum\]"):
        device.reduce_sum(a64, device.Array(2), 3)
    with pytest.raises(TypeError, match=r"\[matmul\]"):
        device.matmul(a64, a32, device.Array(4), 2, 3, 2)
    device.compact(a64, out32, (6,), (1,), 0)  # compact converts: fine
    with pytest.raises(ValueError, match=r"differ in length"):
        device.compact(a32, out32, (2, 3), (3,), 0)


@hw0
@pytest.mark.parametrize("device", DEVICES)
def test_raw_matmul_and_tiled(device):
    m, n, p = 16, 24, 8
    x, y = rand(m, n), rand(n, p)
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    out = device.Array(m * p)
    device.matmul(a._handle, b._handle, out, m, n, p)
    check(nd.NDArray.make((m, p), device=device, handle=out), x @ y, atol=1e-4)
    t = device.__tile_size__

    def tile(z):
        r, c = z.shape
        return z.reshape(r // t, t, c // t, t).transpose(0, 2, 1, 3).copy()

    ta, tb = nd.array(tile(x), device=device), nd.array(tile(y), device=device)
    device.matmul_tiled(ta._handle, tb._handle, out, m, n, p)
    check(nd.NDArray.make((m // t, p // t, t, t), device=device, handle=out), tile(x @ y), atol=1e-4)


# ------------------------------------------------------------------ errors
@hw0
def test_errors():
    a = nd.array(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\[reshape\] cannot reshape \(3, 4\) into \(5,\)"):
        a.reshape((5,))
    with pytest.raises(ValueError, match="broadcast"):
        a.broadcast_to((4, 3))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 6\)"):
        a + nd.array(np.zeros((5, 6)))
    with pytest.raises(ValueError, match=r"\[matmul\].*\(3, 4\).*\(5, 6\)"):
        a @ nd.array(np.zeros((5, 6)))
    with pytest.raises(IndexError, match="out of bounds"):
        a[3]
    with pytest.raises(IndexError, match="too many"):
        a[0, 0, 0]
    with pytest.raises(ValueError, match="permut"):
        a.permute((0, 0))
    with pytest.raises(IndexError, match="axis"):
        a.sum(axis=2)
    with pytest.raises(TypeError, match="dtype"):
        nd.array([1.0], dtype="int7")
    with pytest.raises(TypeError):
        a[1.5]
    with pytest.raises(ValueError, match="step"):
        a[::0]
