"""Property-based tests: random shapes (0-d and zero-size included), axes, slices (negative
steps, values far beyond int64), strides and dtypes thrown at the NDArray methods and the
main ops, each result checked against numpy; when numpy raises, needle must raise an
IndexError / ValueError / TypeError too (never crash, hang or answer).

Every example runs in a persistent child process (tests/python/child.py): a segfault
fails the test with the input shown instead of killing pytest. Examples are derandomized
and bounded so the file stays well under a minute on two cores.

New dtypes: add their names to DTYPES (the data strategy draws integers for them).
A longer hunt: NEEDLE_PROPERTY_EXAMPLES=2000 pytest tests/python/test_properties.py
"""
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from child import Child  # noqa: E402

DTYPES = ["float32", "float64"]  # extend with "int32", "int64", "uint8", "bool" when supported
EXAMPLES = int(os.environ.get("NEEDLE_PROPERTY_EXAMPLES", "100"))
CHECK = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck))
NEEDLE_ERRORS = ("IndexError", "ValueError", "TypeError")
HUGE = [2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64, 2**62, -(2**62)]


@pytest.fixture(scope="module")
def child():
    with Child(timeout=60) as c:
        yield c


# --- strategies ---
shapes = st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple)
nonempty_shapes = st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple)
dtypes = st.sampled_from(DTYPES)
bound = st.one_of(st.none(), st.integers(-6, 6), st.sampled_from(HUGE))
step = st.one_of(st.none(), st.integers(-4, 4).filter(bool), st.sampled_from(HUGE))


def make_array(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    return rng.integers(0, 100, shape).astype(dtype)


@st.composite
def arrays(draw, shape=shapes):
    s = draw(shape)
    return make_array(s, draw(dtypes), draw(st.integers(0, 2**31)))


@st.composite
def axis_lists(draw, ndim):
    """Axes, mostly valid, sometimes out of range or repeated."""
    pool = list(range(-ndim, ndim)) + [ndim, -ndim - 1, 0]
    return tuple(draw(st.lists(st.sampled_from(pool), max_size=min(ndim + 1, 4))))


# --- the comparison ---
def numpy_outcome(fn):
    try:
        return "ok", fn()
    except (IndexError, ValueError, TypeError, OverflowError) as e:  # AxisError is both
        return "error", type(e).__name__


def saturate(key):
    """The key with slice bounds clamped to int64, as Python's own slice.indices treats them
    (numpy refuses slice bounds beyond int64; needle, like Python lists, accepts them)."""
    def sat(v):
        return v if v is None else max(-(2**63), min(2**63 - 1, v))
    return tuple(slice(sat(k.start), sat(k.stop), sat(k.step)) if isinstance(k, slice) else k
                 for k in key)


def check(child, code, expected_fn, rtol=1e-5, **inputs):
    """Runs `code` (which sets `result`) in the child and compares with numpy's answer."""
    kind, expected = numpy_outcome(expected_fn)
    out = child.run(code, **inputs)
    shown = f"code:\n{code}\ninputs: {inputs!r}"
    assert out.kind != "crash", f"needle crashed ({out.message})\n{shown}"
    if kind == "error":
        assert out.kind == "error", f"numpy raised {expected}, needle returned {out.value!r}\n{shown}"
        assert out.value in NEEDLE_ERRORS, f"needle raised {out.value}: {out.message}\n{shown}"
        return
    assert out.kind == "ok", f"numpy returned {expected!r}, needle raised {out.value}: {out.message}\n{shown}"
    got = out.value
    expected = np.asarray(expected)
    assert np.shape(got) == expected.shape, f"shape {np.shape(got)} != numpy's {expected.shape}\n{shown}"
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), expected.astype(np.float64),
                               rtol=rtol, atol=1e-6, equal_nan=True, err_msg=shown)


# --- NDArray methods ---
@CHECK
@given(x=arrays(), data=st.data())
def test_getitem(child, x, data):
    key = []
    for n in x.shape[: data.draw(st.integers(0, x.ndim))]:
        if data.draw(st.booleans()):
            key.append(data.draw(st.one_of(st.integers(-n - 2, n + 1), st.sampled_from(HUGE))))
        else:
            key.append(slice(data.draw(bound), data.draw(bound), data.draw(step)))
    for _ in range(data.draw(st.integers(0, 2))):  # new axes: None, and numpy's bool scalars
        new_axis = data.draw(st.sampled_from([None, True, False]))
        key.insert(data.draw(st.integers(0, len(key))), new_axis)
    if data.draw(st.booleans()):
        key.insert(data.draw(st.integers(0, len(key))), Ellipsis)
    key = tuple(key)
    check(child, "result = nd.array(x, dtype=str(x.dtype))[key].numpy()", lambda: x[saturate(key)],
          x=x, key=key)


@CHECK
@given(x=arrays(nonempty_shapes.filter(len)), data=st.data())
def test_setitem_scalar_and_array(child, x, data):
    key = tuple(slice(data.draw(bound), data.draw(bound), data.draw(step)) for _ in x.shape)
    value = data.draw(st.sampled_from([5.0, "array"]))

    def expected():
        y, k = x.copy(), saturate(key)
        y[k] = 5.0 if value == 5.0 else np.arange(y[k].size, dtype=x.dtype).reshape(y[k].shape)
        return y

    shape = x[saturate(key)].shape
    code = """a = nd.array(x, dtype=str(x.dtype))
v = np.arange(int(np.prod(shape)), dtype=x.dtype).reshape(shape)
a[key] = 5.0 if value == 5.0 else nd.array(v, dtype=str(x.dtype))
result = a.numpy()"""
    check(child, code, expected, x=x, key=key, value=value, shape=shape)


@CHECK
@given(x=arrays(), data=st.data())
def test_reshape(child, x, data):
    dims = list(x.shape)
    target = data.draw(st.one_of(
        st.permutations(dims).map(tuple),
        st.just((x.size,)),
        st.just((-1,)),
        st.lists(st.sampled_from([-1, 0, 1, 2, 3, 2**32, 2**62]), max_size=3).map(tuple),
    ))
    check(child, "result = nd.array(x, dtype=str(x.dtype)).reshape(target).numpy()",
          lambda: x.reshape(target), x=x, target=target)


@CHECK
@given(x=arrays(), data=st.data())
def test_permute_swapaxes_flip(child, x, data):
    perm = tuple(data.draw(st.permutations(range(x.ndim))))
    check(child, "result = nd.array(x, dtype=str(x.dtype)).permute(perm).numpy()",
          lambda: np.transpose(x, perm), x=x, perm=perm)
    a, b = data.draw(st.integers(-x.ndim - 1, x.ndim)), data.draw(st.integers(-x.ndim - 1, x.ndim))
    check(child, "result = nd.array(x, dtype=str(x.dtype)).swapaxes(a, b).numpy()",
          lambda: np.swapaxes(x, a, b), x=x, a=a, b=b)
    axes = data.draw(axis_lists(x.ndim))
    check(child, "result = nd.array(x, dtype=str(x.dtype)).flip(axes).numpy()",
          lambda: np.flip(x, axes), x=x, axes=axes)


@CHECK
@given(x=arrays(), data=st.data())
def test_broadcast_to(child, x, data):
    lead = tuple(data.draw(st.lists(st.integers(0, 3), max_size=2)))
    tail = tuple(d if d != 1 or not data.draw(st.booleans()) else data.draw(st.integers(0, 3))
                 for d in x.shape)
    target = data.draw(st.sampled_from([lead + tail, (2**32, 2**32), tail[:-1] + (7,)]))
    code = "result = nd.array(x, dtype=str(x.dtype)).broadcast_to(target).compact().numpy()"
    check(child, code, lambda: np.broadcast_to(x, target), x=x, target=target)


@CHECK
@given(x=arrays(nonempty_shapes), data=st.data())
def test_as_strided(child, x, data):
    n = data.draw(st.integers(0, 3))
    shape = tuple(data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)))
    strides = tuple(data.draw(st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(HUGE[:3])),
                                       min_size=n, max_size=n)))
    flat = x.ravel()
    # numpy's as_strided does no bounds check; the reference is the elementwise definition.
    def expected():
        if any(s >= 2**63 or s < -(2**63) for s in strides):
            raise OverflowError
        idx = np.zeros(shape, dtype=object)
        for i, (d, s) in enumerate(zip(shape, strides)):
            idx = idx + (np.arange(d) * s).reshape((-1,) + (1,) * (n - i - 1))
        idx = np.asarray(idx, dtype=object).reshape(shape)
        if idx.size and (idx.min() < 0 or idx.max() >= flat.size):
            raise ValueError("outside")
        return flat[np.asarray(idx, dtype=np.int64)] if idx.size else np.zeros(shape, x.dtype)

    check(child, "result = nd.array(flat, dtype=str(flat.dtype)).as_strided(shape, strides).numpy()",
          expected, flat=flat, shape=shape, strides=strides)


REDUCERS = ["sum", "max", "min"]


@CHECK
@given(x=arrays(), op=st.sampled_from(REDUCERS), keepdims=st.booleans(), data=st.data())
def test_reductions(child, x, op, keepdims, data):
    axes = data.draw(st.one_of(st.none(), axis_lists(x.ndim), st.integers(-x.ndim - 1, x.ndim)))
    np_axes = axes if axes is None or isinstance(axes, int) else tuple(axes)

    def expected():
        # numpy's legacy quirk: an int axis 0 / -1 of a 0-d array is accepted (axis=(0,) is
        # not). Needle treats both as numpy treats the tuple: a 0-d array has no axis.
        if x.ndim == 0 and isinstance(axes, int):
            raise IndexError("0-d")
        return getattr(np, op)(x, axis=np_axes, keepdims=keepdims)

    code = f"result = nd.array(x, dtype=str(x.dtype)).{op}(axis=axes, keepdims=keepdims).numpy()"
    check(child, code, expected, rtol=1e-4, x=x, axes=axes, keepdims=keepdims)


BINARY = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}


@st.composite
def broadcastable_pair(draw):
    shape = draw(shapes)
    other = tuple(d if not draw(st.booleans()) else draw(st.sampled_from([1, d, 3])) for d in shape)
    other = other[draw(st.integers(0, len(other))):]
    if draw(st.booleans()):
        shape, other = other, shape
    dt1, dt2 = draw(dtypes), draw(dtypes)
    s1, s2 = draw(st.integers(0, 2**31)), draw(st.integers(0, 2**31))
    return make_array(shape, dt1, s1), make_array(other, dt2, s2)


@CHECK
@given(pair=broadcastable_pair(), op=st.sampled_from(sorted(BINARY)))
def test_binary(child, pair, op):
    a, b = pair
    code = f"result = (nd.array(a, dtype=str(a.dtype)) {op} nd.array(b, dtype=str(b.dtype))).numpy()"
    check(child, code, lambda: BINARY[op](a, b), rtol=1e-4, a=a, b=b)


@CHECK
@given(x=arrays(), op=st.sampled_from(["exp", "log", "tanh", "sqrt", "abs", "__neg__"]))
def test_unary(child, x, op):
    x = np.abs(x) + 0.5 if op in ("log", "sqrt") else x
    ref = {"__neg__": np.negative, "abs": np.abs}.get(op, getattr(np, op, None))
    check(child, f"result = nd.array(x, dtype=str(x.dtype)).{op}().numpy()", lambda: ref(x),
          rtol=1e-4, x=x)


@CHECK
@given(data=st.data())
def test_matmul(child, data):
    m, k, n = (data.draw(st.integers(0, 4)) for _ in range(3))
    batch = tuple(data.draw(st.lists(st.integers(0, 3), max_size=2)))
    a_shape = data.draw(st.sampled_from([(k,), (m, k), batch + (m, k)]))
    k2 = k if data.draw(st.integers(0, 5)) else k + 1
    b_shape = data.draw(st.sampled_from([(k2,), (k2, n), batch + (k2, n), ()]))
    a = make_array(a_shape, data.draw(dtypes), 1)
    b = make_array(b_shape, data.draw(dtypes), 2)
    code = "result = (nd.array(a, dtype=str(a.dtype)) @ nd.array(b, dtype=str(b.dtype))).numpy()"
    check(child, code, lambda: np.matmul(a, b), rtol=1e-4, a=a, b=b)


@CHECK
@given(x=arrays(), data=st.data())
def test_pad(child, x, data):
    widths = tuple((data.draw(st.integers(-1, 2)), data.draw(st.sampled_from([0, 1, 2, 2**62])))
                   for _ in range(x.ndim))

    def expected():
        if any(lo < 0 or hi < 0 for lo, hi in widths):
            raise ValueError("negative")
        if any(hi >= 2**62 for _, hi in widths) and x.ndim:
            raise ValueError("too big")
        return np.pad(x, widths) if x.ndim else x

    check(child, "result = nd.array(x, dtype=str(x.dtype)).pad(widths).numpy()", expected,
          x=x, widths=widths)


@CHECK
@given(x=arrays(nonempty_shapes.filter(len)), count=st.integers(1, 3), data=st.data())
def test_concatenate_and_stack(child, x, count, data):
    axis = data.draw(st.integers(-x.ndim - 2, x.ndim + 1))
    xs = [x + i for i in range(count)]
    code = "result = nd.concatenate([nd.array(v, dtype=str(v.dtype)) for v in xs], axis).numpy()"
    check(child, code, lambda: np.concatenate(xs, axis), xs=xs, axis=axis)
    code = "result = nd.stack([nd.array(v, dtype=str(v.dtype)) for v in xs], axis).numpy()"
    check(child, code, lambda: np.stack(xs, axis), xs=xs, axis=axis)


# --- Tensor ops (forward against numpy; backward must not crash and keeps shapes) ---
@CHECK
@given(x=arrays(), data=st.data())
def test_summation_and_its_gradient(child, x, data):
    axes = data.draw(st.one_of(st.none(), axis_lists(x.ndim)))
    np_axes = None if axes is None else tuple(axes)
    code = """t = ndl.Tensor(x, dtype=str(x.dtype), requires_grad=True)
y = ops.summation(t, axes=axes)
y.sum().backward() if y.shape else y.backward()
assert t.grad.shape == t.shape
result = y.numpy()"""
    check(child, code, lambda: np.sum(x, axis=np_axes), rtol=1e-4, x=x, axes=axes)


@CHECK
@given(x=arrays(nonempty_shapes), data=st.data())
def test_logsumexp(child, x, data):
    axes = data.draw(st.one_of(st.none(), axis_lists(x.ndim)))
    special = data.draw(st.sampled_from([None, np.inf, -np.inf]))
    if special is not None and x.size:
        x = x.copy()
        x.flat[0] = special
    np_axes = None if axes is None else tuple(axes)

    def expected():
        if np_axes is not None:
            norm = [a + x.ndim if a < 0 else a for a in np_axes]
            if any(not 0 <= a < x.ndim for a in norm) or len(set(norm)) < len(norm):
                raise ValueError("bad axes")
        m = np.max(x, axis=np_axes, keepdims=True) if x.size else 0
        m = np.where(np.isfinite(m), m, 0)
        with np.errstate(divide="ignore", over="ignore"):
            return np.squeeze(np.log(np.sum(np.exp(x - m), axis=np_axes, keepdims=True)) + m, axis=np_axes)

    code = "result = ops.logsumexp(ndl.Tensor(x, dtype=str(x.dtype)), axes=axes).numpy()"
    check(child, code, expected, rtol=1e-4, x=x, axes=axes)


@CHECK
@given(x=arrays(), data=st.data())
def test_tensor_shape_ops(child, x, data):
    axes = data.draw(axis_lists(x.ndim))
    check(child, "result = ops.flip(ndl.Tensor(x, dtype=str(x.dtype)), axes).numpy()",
          lambda: np.flip(x, axes), x=x, axes=axes)
    pair = tuple(data.draw(st.lists(st.integers(-x.ndim - 1, x.ndim), min_size=2, max_size=2)))
    check(child, "result = ops.transpose(ndl.Tensor(x, dtype=str(x.dtype)), pair).numpy()",
          lambda: np.swapaxes(x, *pair), x=x, pair=pair)
    key = tuple(slice(data.draw(bound), data.draw(bound), data.draw(step)) for _ in x.shape)
    code = """t = ndl.Tensor(x, dtype=str(x.dtype), requires_grad=True)
y = t[key]
(y.sum() if y.shape else y).backward()
assert t.grad.shape == t.shape
result = y.numpy()"""
    check(child, code, lambda: x[saturate(key)], x=x, key=key)
