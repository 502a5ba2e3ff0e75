"""numpy interop of NDArray and Tensor: every dtype's round trip through numpy on every
device, `.dtype` equal to numpy's spellings, `astype` with numpy types, `__array__` (so
np.asarray, np.testing and np.array_split take NDArrays), the course's `process_slice` and
NDArray subclasses, `.flat` as a writable view, and the dtype a Tensor infers."""
import numpy as np
import pytest

import needle as ndl
from needle import backend_ndarray as nd
from gradcheck import DEVICES

IDS = ["cpu", "cuda"]
DTYPES = ["float32", "float64", "int32", "int64", "uint8", "bool"]


def sample(dtype, shape=(3, 4), seed=0):
    """Values of `dtype` that cover its range's interesting parts (negatives, big ints)."""
    rng = np.random.RandomState(seed)
    if dtype == "bool":
        return rng.rand(*shape) < 0.5
    if dtype == "uint8":
        return rng.randint(0, 256, size=shape).astype(np.uint8)
    if dtype.startswith("int"):
        info = np.iinfo(dtype)
        values = rng.randint(-1000, 1000, size=shape).astype(dtype)
        values.flat[0], values.flat[-1] = info.max, info.min  # exact at the extremes
        return values
    return (rng.randn(*shape) * 10).astype(dtype)


# --- round trips ---


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_round_trips_through_numpy(device, dtype):
    x = sample(dtype)
    for a in (nd.NDArray(x, device=device), nd.array(x, dtype=dtype, device=device)):
        assert a.dtype == dtype and a.device == device
        back = a.numpy()
        assert back.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(back, x)
        np.testing.assert_array_equal(np.asarray(a), x)
    t = ndl.Tensor(x, device=device)
    assert t.dtype == dtype and t.numpy().dtype == np.dtype(dtype)
    np.testing.assert_array_equal(t.numpy(), x)
    # A strided view comes back as numpy's view of the same data.
    view = nd.NDArray(x, device=device).permute((1, 0))[::2]
    np.testing.assert_array_equal(view.numpy(), x.T[::2])
    # The raw handles of the course's backends.
    handle = device.Array(x.size, dtype=dtype)
    device.from_numpy(x, handle)
    np.testing.assert_array_equal(device.to_numpy(handle, x.shape, (x.shape[1], 1), 0), x)
    assert handle.dtype == dtype


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize("src", DTYPES)
@pytest.mark.parametrize("dst", DTYPES)
def test_astype_every_pair_matches_numpy(device, src, dst):
    x = sample(src)
    if src.startswith("float") and dst in ("uint8", "int32", "int64"):
        x = np.abs(x)  # numpy leaves out-of-range float -> int casts undefined
    a = nd.NDArray(x, device=device)
    for spelling in (dst, np.dtype(dst), np.dtype(dst).type):
        out = a.astype(spelling)
        assert out.dtype == dst
        np.testing.assert_array_equal(out.numpy(), x.astype(dst))


def test_astype_and_dtype_arguments_take_numpy_and_python_types():
    a = nd.array([1.5, 2.5])
    assert a.astype(np.uint8).dtype == "uint8"
    assert a.astype(float).dtype == "float64"
    assert a.astype(int).dtype == "int64"
    assert a.astype(bool).dtype == "bool"
    assert nd.array([1, 2], dtype=np.int32).dtype == "int32"
    assert ndl.Tensor([1, 2], dtype=np.float64).dtype == "float64"
    assert ndl.Tensor([1.5, 2.5]).astype(np.int64).dtype == "int64"
    for bad in (np.float16, "complex64", "float128"):
        with pytest.raises(TypeError, match=r"\[astype\] unsupported dtype '(float16|complex64|float128)'"):
            a.astype(bad)
    with pytest.raises(TypeError, match="not a dtype"):
        a.astype("floaty")
    with pytest.raises(TypeError, match="astype"):
        a.astype(None)


def test_other_numpy_dtypes_become_the_nearest_supported_one():
    cases = {np.float16: "float32", np.int8: "int32", np.int16: "int32", np.uint16: "int32",
             np.uint32: "int64"}
    for src, dst in cases.items():
        x = np.array([[1, 2], [3, 4]], dtype=src)
        for a in (nd.NDArray(x), ndl.Tensor(x)):
            assert a.dtype == dst
            np.testing.assert_array_equal(a.numpy(), x.astype(dst))
    for bad in (np.array([1], dtype=np.uint64), np.array([1j]), np.array(["a"]), np.array([None])):
        with pytest.raises(TypeError, match="unsupported dtype"):
            ndl.Tensor(bad)


# --- .dtype ---


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_equals_its_name_and_numpy_spellings(dtype):
    x = sample(dtype)
    for obj in (nd.NDArray(x), ndl.Tensor(x), nd.NDArray(x)._handle):
        d = obj.dtype
        assert isinstance(d, str) and str(d) == dtype and d == dtype
        assert d == np.dtype(dtype) and np.dtype(dtype) == d
        assert d == np.dtype(dtype).type and np.dtype(dtype).type == d
        assert d == x.dtype and not (d != x.dtype)
        other = "float32" if dtype != "float32" else "int64"
        assert d != other and d != np.dtype(other) and d != np.dtype(other).type
        assert d != None and d != 3  # noqa: E711
        assert {dtype: 1}[d] == 1 and hash(d) == hash(dtype)
        assert np.dtype(d) == np.dtype(dtype)  # numpy accepts it where it takes a dtype
        assert d.itemsize == np.dtype(dtype).itemsize
    assert ndl.Tensor([1.0]).dtype == float and ndl.Tensor([1]).dtype == int
    assert ndl.Tensor([True]).dtype == bool


# --- __array__ and numpy functions on NDArrays ---


def test_numpy_functions_accept_ndarrays():
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    a = nd.NDArray(x)
    np.testing.assert_allclose(a, x)
    np.testing.assert_array_equal(np.asarray(a, dtype=np.float64), x)
    assert np.asarray(a, dtype=np.float64).dtype == np.float64
    assert np.array(a).dtype == np.float32 and np.array(a).shape == (6, 4)
    assert float(np.sum(a.numpy())) == float(np.sum(np.asarray(a)))
    # copy=False (numpy 2's keyword) is a view of host memory.
    view = a.__array__(copy=False)
    view[0, 0] = 100.0
    assert a.numpy()[0, 0] == 100.0
    pieces = np.array_split(a, 4)
    expected = np.array_split(a.numpy(), 4)
    assert len(pieces) == 4
    for p, e in zip(pieces, expected):
        np.testing.assert_array_equal(np.asarray(p), e)
    cols = np.array_split(a, 3, axis=1)
    for p, e in zip(cols, np.array_split(a.numpy(), 3, axis=1)):
        np.testing.assert_array_equal(np.asarray(p), e)


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_array_split_batches_of_cached_data_with_uint8_labels(device):
    # The course's optimizer tests: features and labels come from tensors' cached data,
    # labels cast with astype(np.uint8), both split into batches with np.array_split.
    np.random.seed(3)
    X = ndl.Tensor(np.random.randint(0, 100, size=(40, 6)) / 20, dtype="float32", device=device).cached_data
    y = ndl.Tensor(np.random.randint(0, 5, size=(40,)), device=device).cached_data.astype(np.uint8)
    assert y.dtype == np.uint8 and y.dtype == "uint8"
    W = np.random.randn(6, 5).astype(np.float32)
    model = ndl.Tensor(W, device=device)
    loss_fn = ndl.nn.SoftmaxLoss()
    for X0, y0 in zip(np.array_split(X, 8), np.array_split(y, 8)):
        X0, y0 = ndl.Tensor(X0, dtype="float32"), ndl.Tensor(y0)
        assert y0.dtype == "uint8" and not y0.requires_grad
        loss = loss_fn(X0 @ model, y0)
        z = np.asarray(X0) @ W
        lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
        ref = np.mean(lse - z[np.arange(len(z)), np.asarray(y0).astype(int)])
        np.testing.assert_allclose(np.array(loss.cached_data), ref, rtol=1e-5)


# --- process_slice and subclasses ---


def test_process_slice_fills_in_every_field():
    a = nd.NDArray(np.zeros((5, 7)))
    assert a.process_slice(slice(None, None, None), 0) == slice(0, 5, 1)
    assert a.process_slice(slice(1, None, 2), 1) == slice(1, 7, 2)
    assert a.process_slice(slice(-3, -1, None), 1) == slice(4, 6, 1)
    assert a.process_slice(slice(None, 100, None), 0) == slice(0, 5, 1)
    assert a.process_slice(slice(-100, 2, None), 0) == slice(0, 2, 1)
    assert a.process_slice(slice(None, None, -1), 0) == slice(4, None, -1)
    for sl in (slice(None), slice(1, -1, 2), slice(-2, None), slice(None, None, -2), slice(3, 0, -1)):
        got = a.process_slice(sl, 1)
        assert None not in (got.start, got.step)
        assert list(range(7))[got] == list(range(7))[sl]


class _SliceRecorder(nd.NDArray):
    """The course's test pattern: a subclass whose indexing returns (shape, explicit slices)."""

    def __getitem__(self, idxs):
        idxs = tuple(
            self.process_slice(s, i) if isinstance(s, slice) else slice(s, s + 1, 1)
            for i, s in enumerate(idxs)
        )
        return self.shape, idxs


def shape_and_slices(*shape):
    return _SliceRecorder(np.ones(shape))


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
@pytest.mark.parametrize(
    "lhs,rhs",
    [
        (shape_and_slices(4, 5, 6)[1:2, 0, 0], shape_and_slices(7, 7, 7)[1:2, 0, 0]),
        (shape_and_slices(4, 5, 6)[1:4:2, 0, 0], shape_and_slices(7, 7, 7)[1:3, 0, 0]),
        (shape_and_slices(4, 5, 6)[1:3, 2:5, 2:6], shape_and_slices(7, 7, 7)[:2, :3, :4]),
        (shape_and_slices(4, 5, 6)[-3:, ::2, 1], shape_and_slices(3, 3, 2)[:, :, 0]),
    ],
)
def test_subclass_slices_drive_setitem(device, lhs, rhs):
    (lhs_shape, lhs_slices), (rhs_shape, rhs_slices) = lhs, rhs
    _A, _B = np.random.randn(*lhs_shape), np.random.randn(*rhs_shape)
    A, B = nd.array(_A, device=device), nd.array(_B, device=device)
    start_ptr = A._handle.ptr()
    A[lhs_slices] = B[rhs_slices]
    _A[lhs_slices] = _B[rhs_slices]
    assert A._handle.ptr() == start_ptr, "setitem must write in place"
    np.testing.assert_allclose(A.numpy(), _A, rtol=1e-6)


def test_python_subclass_of_ndarray_is_an_ndarray():
    class Scaled(nd.NDArray):
        unit = "m"

        def doubled(self):
            return self * 2.0

    s = Scaled(np.arange(6.0).reshape(2, 3))
    s.note = "attributes work"
    assert isinstance(s, nd.NDArray) and s.note == "attributes work" and s.unit == "m"
    assert s.shape == (2, 3) and s.dtype == "float64"
    np.testing.assert_array_equal(s.doubled().numpy(), np.arange(6.0).reshape(2, 3) * 2)
    np.testing.assert_array_equal((s + s).numpy(), 2 * np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(np.asarray(s[1]), [3.0, 4.0, 5.0])
    np.testing.assert_array_equal(ndl.Tensor(s).numpy(), s.numpy())

    class Tagged(nd.NDArray):
        def __init__(self, values, tag):
            super().__init__(values, dtype="int32")
            self.tag = tag

    t = Tagged([[1, 2]], "labels")
    assert t.tag == "labels" and t.dtype == "int32" and t.shape == (1, 2)
    np.testing.assert_array_equal(np.asarray(t), [[1, 2]])


# --- .flat and in-place finite differences ---


def test_flat_is_a_writable_view_of_the_buffer():
    t = ndl.Tensor(np.arange(6.0).reshape(2, 3))
    flat = t.realize_cached_data().flat
    assert flat.shape == (6,)
    flat[4] -= 0.5
    t.realize_cached_data().flat[0] += 2.0
    np.testing.assert_array_equal(t.numpy(), [[2.0, 1.0, 2.0], [3.0, 3.5, 5.0]])
    # The view keeps the buffer alive after the array and tensor are gone.
    del t
    flat[1] = 7.0
    assert flat[1] == 7.0
    # A strided view: numpy's flat iterator writes through to the shared buffer.
    base = nd.NDArray(np.zeros((3, 4), dtype=np.float32))
    view = base.permute((1, 0))[::2]
    view.flat[1] = 9.0  # row-major over the view: view[0, 1] = base[1, 0]
    assert base.numpy()[1, 0] == 9.0
    # A 1-D NDArray view (the path taken for device memory) also writes in place.
    same = base.reshape((base.size,))
    same[5] += 1.0
    assert base.numpy()[1, 1] == 1.0
    ints = nd.NDArray(np.arange(4, dtype=np.int64))
    ints.flat[2] = 40
    np.testing.assert_array_equal(ints.numpy(), [0, 1, 40, 3])


def numeric_gradient_check(f, *args, tol=1e-6):
    """Central differences that perturb each input in place through
    ``realize_cached_data().flat[j]`` (as the course's hw1 checker does), against backward."""
    eps = 1e-4
    numerical = [np.zeros(a.shape) for a in args]
    for i, a in enumerate(args):
        for j in range(a.realize_cached_data().size):
            a.realize_cached_data().flat[j] += eps
            f1 = float(f(*args).numpy().sum())
            a.realize_cached_data().flat[j] -= 2 * eps
            f2 = float(f(*args).numpy().sum())
            a.realize_cached_data().flat[j] += eps
            numerical[i].flat[j] = (f1 - f2) / (2 * eps)
    out = f(*args).sum()
    out.backward()
    error = sum(np.linalg.norm(a.grad.numpy() - n) for a, n in zip(args, numerical))
    assert error < tol


@pytest.mark.hw1
@pytest.mark.parametrize(
    "f,shapes",
    [
        (lambda a, b: a * b, [(4, 3), (4, 3)]),
        (lambda a, b: a @ b, [(3, 5), (5, 2)]),
        (lambda a, b: a / b, [(2, 3), (2, 3)]),
        (lambda a: ndl.exp(a) * 0.3, [(3, 3)]),
        (lambda a: ndl.log(a * a + 1.0), [(4,)]),
        (lambda a: ndl.summation(a, axes=(1,)), [(3, 4)]),
        (lambda a: ndl.broadcast_to(a, (3, 4)), [(1, 4)]),
        (lambda a: ndl.reshape(ndl.transpose(a), (6,)), [(2, 3)]),
    ],
)
def test_in_place_finite_differences_at_float64_precision(f, shapes):
    np.random.seed(0)
    args = [ndl.Tensor(np.random.randn(*s) + 2.0 * (i == 1)) for i, s in enumerate(shapes)]
    assert all(a.dtype == "float64" for a in args)
    numeric_gradient_check(f, *args)


def test_a_python_float_tensor_keeps_double_precision():
    # Float32 would round both of these; the course's hw1 compares them at rtol 1e-7.
    x = ndl.Tensor([[4.95, 1.75]])
    np.testing.assert_allclose(x.numpy(), [[4.95, 1.75]], rtol=1e-15)
    s = np.random.randn()
    np.testing.assert_allclose(ndl.Tensor(s).numpy(), s, rtol=1e-15)
    np.testing.assert_allclose((ndl.Tensor(0.1) * 3).numpy(), 0.1 * 3, rtol=1e-15)


# --- dtype inference and requires_grad ---


@pytest.mark.parametrize(
    "value,dtype",
    [
        (1.5, "float64"),
        ([1.5, 2.5], "float64"),
        ([[1.0], [2.0]], "float64"),
        (np.float64(2.0), "float64"),
        (np.random.randn(), "float64"),
        (np.ones(3, dtype=np.float32), "float32"),
        (np.float32(1.0), "float32"),
        (np.ones(3), "float64"),
        (3, "int64"),
        ([1, 2, 3], "int64"),
        (np.arange(3, dtype=np.int32), "int32"),
        (np.arange(3, dtype=np.uint8), "uint8"),
        ([1, 2.5], "float64"),
        (True, "bool"),
        ([True, False], "bool"),
        (np.array([True, False]), "bool"),
        # NDArrays and Tensors keep their dtype (made in the test: they are needle objects).
        (lambda: nd.array([1, 2]), "float32"),
        (lambda: nd.NDArray(np.arange(3)), "int64"),
        (lambda: ndl.Tensor(np.ones(2, dtype=np.float32)), "float32"),
        (lambda: ndl.Tensor([1, 2]), "int64"),
    ],
)
def test_tensor_infers_the_dtype_numpy_would(value, dtype):
    value = value() if callable(value) else value
    t = ndl.Tensor(value)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t.numpy(), np.asarray(value).astype(dtype))
    assert ndl.Tensor(value, dtype="float32").dtype == "float32"


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_construction_and_dtypes(device):
    # numpy's inference (the table above has every case).
    assert ndl.Tensor([1, 2, 3], device=device).dtype == "int64"
    assert ndl.Tensor([1.0, 2.0], device=device).dtype == "float64"
    assert ndl.Tensor(np.ones(3), device=device).dtype == "float64"
    assert ndl.Tensor(np.ones(3, dtype=np.float32), device=device).dtype == "float32"
    assert ndl.Tensor(np.arange(3), device=device).dtype == "int64"
    assert ndl.Tensor(np.ones(3), device=device, dtype="float32").dtype == "float32"
    assert ndl.Tensor([1.0], device=device, dtype=np.float64).dtype == "float64"
    x = ndl.Tensor(np.arange(6.0).reshape(2, 3), device=device)
    assert x.shape == (2, 3) and isinstance(x.shape, tuple)
    assert x.device == device and x.ndim == 2
    assert x.requires_grad and x.is_leaf() and x.op is None and x.inputs == []
    assert not ndl.Tensor([1.0], requires_grad=False).requires_grad
    # From a Tensor: same device and dtype share the data; a new dtype converts.
    y = ndl.Tensor(x)
    assert y is not x and y.cached_data._handle.ptr() == x.cached_data._handle.ptr()
    assert ndl.Tensor(x, dtype="float32").dtype == "float32"
    # From an NDArray: shared, not copied.
    a = nd.NDArray(np.ones((2, 2)), device=device)
    assert ndl.Tensor(a).cached_data._handle.ptr() == a._handle.ptr()
    np.testing.assert_array_equal(np.array(x), x.numpy())
    assert x.numpy().dtype == np.float64


def test_ndarray_and_nd_array_keep_the_course_float32_default():
    assert nd.array([1.5, 2.5]).dtype == "float32"
    assert nd.array(np.ones(2)).dtype == "float32"
    assert nd.array(np.arange(3)).dtype == "float32"
    assert nd.NDArray([1, 2]).dtype == "float32"
    assert nd.NDArray(np.ones(2)).dtype == "float64"  # a numpy array keeps its dtype
    assert ndl.init.ones(2).dtype == "float32" and ndl.init.rand(2).dtype == "float32"
    assert ndl.nn.Linear(3, 2).weight.dtype == "float32"


def test_tensor_rejects_what_is_no_array():
    with pytest.raises(TypeError, match=r"\[Tensor\] cannot make a tensor from None"):
        ndl.Tensor(None)
    with pytest.raises(TypeError, match="unsupported dtype"):
        ndl.Tensor("text")
    with pytest.raises(TypeError, match="unsupported dtype"):
        ndl.Tensor({"a": 1})
    with pytest.raises(TypeError, match="None"):
        nd.NDArray(None)


@pytest.mark.parametrize("value", [[1, 2], np.arange(3, dtype=np.uint8), [True, False], np.int32(4)])
def test_integer_and_bool_tensors_never_require_grad(value):
    t = ndl.Tensor(value, requires_grad=True)
    assert not t.requires_grad
    t.requires_grad = True
    assert not t.requires_grad
    assert not ndl.Tensor.make_const(nd.NDArray(np.asarray(value)), requires_grad=True).requires_grad
    assert not ndl.nn.Parameter(value).requires_grad
    f = ndl.Tensor(value, dtype="float32")
    assert f.requires_grad
    f.requires_grad = False
    assert not f.requires_grad
    # Nor do integer results of float tensors that require grad.
    x = ndl.Tensor(np.random.randn(3, 4))
    assert not x.astype("int64").requires_grad
    assert (x * 2).requires_grad


def test_item_is_exact_for_integers():
    big = 2**53 + 1
    assert ndl.Tensor([big]).item() == big and isinstance(ndl.Tensor([big]).item(), int)
    assert nd.NDArray(np.array([big])).item() == big
    assert ndl.Tensor([True]).item() is True
    assert isinstance(ndl.Tensor([1.5]).item(), float)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scalar", [2, 1.5, True, np.int32(3), np.float32(0.5), np.bool_(True)], ids=repr)
def test_scalar_operands_keep_their_kind_as_numpy_does(dtype, scalar):
    x = sample(dtype, seed=1)
    if dtype.startswith("int") or dtype == "uint8":
        x = x % 50  # away from the extremes, where numpy's overflow rules differ
    a = nd.NDArray(x)
    promoted = np.result_type(x, scalar)
    if promoted == np.float16:
        pytest.skip("numpy gives float16 here, which Needle lacks (docs/dtypes.md)")
    for f in (lambda v, s: v * s, lambda v, s: s + v, lambda v, s: s - v):
        try:
            want = f(x, scalar)
        except TypeError:  # numpy refuses bool - bool
            with pytest.raises(TypeError, match="subtract"):
                f(a, scalar)
            continue
        got = f(a, scalar)
        assert isinstance(got, nd.NDArray)  # also with a numpy scalar on the left
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_array_equal(got.numpy(), want)
    # Comparisons: the values numpy gives (docs/dtypes.md: 1.0 / 0.0 for float arrays).
    np.testing.assert_array_equal((a > scalar).numpy().astype(bool), x > scalar)
    with pytest.raises(TypeError):
        a + "text"


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_numpy_array_operands_give_ndarrays(device):
    x, y = np.arange(6).reshape(2, 3), np.linspace(0, 1, 3, dtype=np.float32)
    a = nd.NDArray(x, device=device)
    for got, want in ((a + y, x + y), (y + a, y + x), (y - a, y - x), (a * y, x * y)):
        assert isinstance(got, nd.NDArray) and got.device == device
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got.numpy(), want)
    np.testing.assert_allclose(np.exp(a), np.exp(x))  # other numpy functions: numpy results


# --- integer-array indexing from Python ---


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_index_arrays_gather_as_numpy_does(device):
    x = np.arange(24.0).reshape(2, 3, 4)
    a = nd.NDArray(x, device=device)
    idx = np.array([[2, 0], [2, -1]])
    for key, ref in (
        (np.array([1, 0, 1]), x[[1, 0, 1]]),
        ([1, 1], x[[1, 1]]),
        ((slice(None), np.array([2, 0])), x[:, [2, 0]]),
        ((Ellipsis, idx), x[..., idx]),
        ((slice(None), slice(None), nd.NDArray(np.array([3], dtype=np.int32))), x[:, :, [3]]),
        (np.array([1], dtype=np.uint8), x[[1]]),
    ):
        got = a[key]
        assert isinstance(got, nd.NDArray) and got.device == device
        np.testing.assert_array_equal(got.numpy(), ref)
    for bad, match in ((np.array([True, False]), "boolean masks"), (np.array([0.5]), "integers"),
                       (([0], [1]), "one index array"), ((0, [1]), "one index array")):
        with pytest.raises(IndexError, match=match):
            a[bad]
    with pytest.raises(IndexError, match="out of bounds"):
        a[[2]]
    with pytest.raises(TypeError, match="setitem"):
        a[[0]] = 1.0


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_tensor_index_arrays_scatter_add_their_gradient(device):
    np.random.seed(7)
    x = np.random.randn(4, 3)
    c = np.random.randn(5, 3)
    idx = [3, 0, 3, 3, 1]  # repeated indices accumulate
    for key in (idx, np.array(idx), ndl.Tensor(idx, device=device)):
        t = ndl.Tensor(x, device=device)
        y = t[key]
        np.testing.assert_array_equal(y.numpy(), x[idx])
        (y * ndl.Tensor(c, device=device)).sum().backward()
        expected = np.zeros_like(x)
        np.add.at(expected, idx, c)
        np.testing.assert_allclose(t.grad.numpy(), expected, rtol=1e-12)
    t = ndl.Tensor(x, device=device)
    t[:, [2, 2]].sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [[0, 0, 2]] * 4)


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_ndarray_where_argmax_take_match_numpy(device):
    np.random.seed(4)
    x = np.random.randn(3, 5).astype(np.float32)
    a = nd.NDArray(x, device=device)
    for got, want in (
        (nd.where(a > 0, a, 0.0), np.where(x > 0, x, 0.0)),
        (nd.where(x > 0, 1, a), np.where(x > 0, 1, x)),
        (nd.where(np.array([True, False, True, False, True]), a, -a), np.where([True, False] * 2 + [True], x, -x)),
        (a.argmax(axis=1), x.argmax(axis=1)),
        (a.argmin(axis=0, keepdims=True), x.argmin(axis=0)[None]),
        (nd.argmax(a), x.argmax()),
        (a.take([4, 0, 4], axis=1), x.take([4, 0, 4], axis=1)),
        (a.take(np.array([[1], [2]])), x.take(np.array([[1], [2]]), axis=0)),
    ):
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "float32", "float64"])
@pytest.mark.parametrize("scalar", [2, 1.5, np.int64(3)], ids=repr)
def test_tensor_scalar_operators_keep_the_scalars_kind(dtype, scalar):
    x = (np.arange(6).reshape(2, 3) % 5 + 1).astype(dtype)
    t = ndl.Tensor(x, requires_grad=False)
    for got, want in ((t + scalar, x + scalar), (scalar * t, scalar * x), (t - scalar, x - scalar),
                      (scalar - t, scalar - x), (t / scalar, x / scalar), (t ** 2, x ** 2)):
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
