"""Adversarial inputs (issue 8, section 3): each is a clear Python exception naming the op,
or the right answer; never a crash, a hang or a silently wrong result.

Each case runs in a persistent child process (tests/python/child.py), so an input that
crashes the library fails its own test, with the snippet shown, instead of the whole run.
"""
import os
import re
import stat
import struct
import tempfile

import numpy as np
import pytest

from child import Child


@pytest.fixture(scope="module")
def child():
    with Child(timeout=60) as c:
        yield c


def expect_error(child, code, error, pattern, **kwargs):
    out = child.run(code, **kwargs)
    assert out.kind == "error", f"{code!r} gave {out}"
    assert out.value == error, f"{code!r} raised {out.value}: {out.message}"
    assert re.search(pattern, out.message), f"{code!r}: message {out.message!r} lacks {pattern!r}"


def expect_result(child, code, **kwargs):
    out = child.run(code, **kwargs)
    assert out.kind == "ok", f"{code!r} gave {out}"
    return out.value


SCALAR = "x = nd.array(np.float32(1.5)); t = ndl.Tensor(np.float32(1.5), requires_grad=True)\n"

# --- Axis 0 on a 0-d array: numpy has no axis there (AxisError, an IndexError). ---
ZERO_D = [
    ("x.flip((0,))", "flip"),
    ("x.swapaxes(0, 0)", "swapaxes"),
    ("x.sum(axis=0)", "sum"),
    ("x.max(axis=0)", "max"),
    ("ops.split(t, 0)", "split"),
    ("ops.mean(t, (0,))", "sum|mean"),
    ("ops.summation(t, axes=(0,)).backward()", "sum"),
    ("ops.max(t, axes=(0,))", "max"),
    ("ops.dilate(t, (0,), 1)", "dilate"),
    ("ops.undilate(t, (0,), 1)", "undilate"),
    ("ops.transpose(t, (0, 1))", "transpose"),
    ("ops.logsoftmax(t)", "logsoftmax"),
    ("ops.flip(t, (0,))", "flip"),
]


@pytest.mark.parametrize("code,op", ZERO_D, ids=[c for c, _ in ZERO_D])
def test_axis_of_0d_array_is_index_error(child, code, op):
    expect_error(child, SCALAR + code, "IndexError", rf"\[({op})\].*0 dimensions")


def test_0d_reductions_without_axes_still_work(child):
    assert expect_result(child, SCALAR + "result = float(x.sum().numpy())") == 1.5
    assert expect_result(child, SCALAR + "result = x.sum(axis=()).numpy().shape") == ()
    got = expect_result(child, SCALAR + "ops.summation(t).backward(); result = t.grad.numpy()")
    assert got == 1.0


# --- Sizes that do not fit in 64 bits, or that no allocator can satisfy ---
HUGE = [
    ("nd.empty((1 << 62,)).fill(1.0)", "ValueError", r"\[empty\].*too large"),
    ("nd.full((1 << 62,), 1.0)", "ValueError", r"\[empty\].*too large"),
    ("init.ones(1 << 62)", "ValueError", r"\[empty\].*too large"),
    ("nd.empty((1 << 32, 1 << 32))", "ValueError", r"\[empty\].*\(4294967296, 4294967296\)"),
    ("nd.empty((0, 1 << 62, 1 << 62))", "ValueError", r"\[empty\].*too large"),
    ("nd.empty((0,)).reshape((1 << 32, 1 << 32))", "ValueError", r"\[reshape\]"),
    ("nd.empty((0, 3)).reshape((0, 1 << 62, 1 << 62))", "ValueError", r"\[reshape\]"),
    ("nd.empty((0,)).reshape((-1, 1 << 62, 1 << 62))", "ValueError", r"\[reshape\]"),
    ("nd.array(np.ones((2, 2))).pad(((1 << 62, 0), (0, 0)))", "ValueError", r"\[pad\]"),
    ("nd.array(np.ones((2, 2))).pad((((1 << 63) - 1, 5), (0, 0)))", "ValueError", r"\[pad\]"),
    ("nd.empty((1 << 32, 0)) @ nd.empty((0, 1 << 32))", "ValueError", r"\[matmul\]"),
    ("x = nd.array(np.ones((1, 1), np.float32)); x.broadcast_to((1 << 32, 1 << 32)).sum()",
     "ValueError", r"\[broadcast_to\]"),
    ("nd.cpu().Array(-1)", "ValueError", r"\[Array\] negative size"),
    ("nd.cpu().Array(1 << 62)", "ValueError", r"\[allocate\].*too large"),
    ("nd.empty((1 << 45,), dtype='float32')", "MemoryError", r"\[cpu\] out of memory"),
]


@pytest.mark.parametrize("code,error,pattern", HUGE, ids=[c for c, _, _ in HUGE])
def test_huge_sizes(child, code, error, pattern):
    expect_error(child, code, error, pattern)


def test_zero_size_shapes_that_fit_still_work(child):
    assert expect_result(child, "result = nd.empty((0, 1 << 30, 4)).shape") == (0, 1 << 30, 4)
    assert expect_result(child, "result = (nd.empty((3, 0)) @ nd.empty((0, 2))).numpy()").tolist() == [[0, 0]] * 3
    assert expect_result(child, "result = nd.empty((0, 6)).reshape((3, 0, 2)).shape") == (3, 0, 2)


AS_STRIDED = [
    "(2,), (1 << 62,)",
    "(3,), ((1 << 63) - 1,)",
    "(2, 2), (-(1 << 62), 1 << 62)",
    "(2, 2, 2), (1 << 62, 1 << 62, -(1 << 62))",
    "(1 << 62, 2), (0, 1 << 62)",
]


@pytest.mark.parametrize("args", AS_STRIDED)
def test_as_strided_bounds_do_not_overflow(child, args):
    expect_error(child, f"nd.array(np.arange(4.0)).as_strided({args})", "ValueError",
                 r"\[as_strided\].*(reaches outside|too large)")


# --- The course's raw kernels on handles check their views against the handle ---
HANDLES = [
    ("d.compact(a, o, (4,), (1000,), 0)", "compact"),
    ("d.compact(a, o, (2,), (1 << 62,), 0)", "compact"),
    ("d.compact(a, o, (4,), (1,), -1)", "compact"),
    ("d.compact(a, o, (2, 2), (1,), 0)", "compact"),
    ("d.ewise_setitem(a, o, (4,), (1000,), 0)", "ewise_setitem"),
    ("d.ewise_setitem(a, o, (2,), (1 << 63) - 1, 3)" .replace("(1 << 63) - 1", "((1 << 63) - 1,)"), "ewise_setitem"),
    ("d.scalar_setitem(4, 1.0, o, (4,), (1000,), 0)", "scalar_setitem"),
    ("d.scalar_setitem(4, 1.0, o, (4,), (1,), 1)", "scalar_setitem"),
    ("d.to_numpy(o, (4,), (1000,), 0)", "to_numpy"),
    ("d.to_numpy(o, (5,), (1,), 0)", "to_numpy"),
    ("d.reduce_sum(a, o, -2)", "reduce_sum"),
    ("d.reduce_max(a, o, 0)", "reduce_max"),
    ("d.reduce_sum(a, o, 1 << 62)", "reduce_sum"),
    ("d.matmul(a, a, a, -2, -2, 1)", "matmul"),
    ("d.matmul(a, a, a, 1 << 32, 1 << 32, 1)", "matmul"),
    ("d.matmul(a, a, a, 2, 3, 2)", "matmul"),
]


@pytest.mark.parametrize("code,op", HANDLES, ids=[c for c, _ in HANDLES])
def test_raw_kernels_check_the_handle(child, code, op):
    setup = "d = nd.cpu(); a = d.Array(4); o = d.Array(4)\n"
    expect_error(child, setup + code, "ValueError", rf"\[{op}\]")


def test_raw_kernels_in_bounds_still_work(child):
    code = """d = nd.cpu(); a = d.Array(6); d.from_numpy(np.arange(6, dtype=np.float32), a)
o = d.Array(3)
d.compact(a, o, (3,), (2,), 0)
result = d.to_numpy(o, (3,), (1,), 0)"""
    assert expect_result(child, code).tolist() == [0, 2, 4]


# --- Slices: every int64 is a valid start/stop/step; a bool is not an int index ---
SLICES = ["::-2**63", "::2**63-1", "::-(2**63-1)", "2**63::", ":-2**63:", "-2**70:2**70:",
          "::2**64", "::-2**64", "5:-2**63:-1", "-2**63::2**63-1", "1::-2**63"]


@pytest.mark.parametrize("key", SLICES)
def test_extreme_slices_match_numpy(child, key):
    ref = eval(f"np.arange(4.0)[{key}]")
    got = expect_result(child, f"result = nd.array(np.arange(4.0))[{key}].numpy()")
    np.testing.assert_array_equal(got, ref)


def test_extreme_slice_setitem_matches_numpy(child):
    ref = np.arange(12.0).reshape(4, 3)
    ref[::-2**63] = 5
    got = expect_result(child, "a = nd.array(np.arange(12.0).reshape(4, 3)); a[::-2**63] = 5; result = a.numpy()")
    np.testing.assert_array_equal(got, ref)


NEW_AXES = ["True", "False", "1, True", "None", "None, 1", "..., None", "True, ..., False",
            "0, None, ::-1, None", "None, None, 1, 0", "True, True", "True, 0", "0, :, True",
            "None, True", "::-1, True, 1", "False, 1, None"]


@pytest.mark.parametrize("key", NEW_AXES)
def test_none_and_bool_indices_add_axes_as_numpy(child, key):
    x = np.arange(6.0).reshape(2, 3)
    ref = eval(f"x[{key}]")
    got = expect_result(child, f"result = nd.array(x)[{key}].numpy()", x=x)
    np.testing.assert_array_equal(got, ref)
    code = f"""t = ndl.Tensor(x, requires_grad=True)
y = t[{key}]
(y * ndl.Tensor(np.arange(int(np.prod(y.shape)), dtype=np.float64).reshape(y.shape))).sum().backward()
result = (y.numpy(), t.grad.numpy())"""
    y, grad = expect_result(child, code, x=x)
    np.testing.assert_array_equal(y, ref)
    ref_grad = np.zeros_like(x)
    np.add.at(ref_grad, key_of(x, key), np.arange(ref.size, dtype=np.float64).reshape(ref.shape))
    np.testing.assert_array_equal(grad, ref_grad)
    ref_set = x.copy()
    exec(f"ref_set[{key}] = -1")
    got = expect_result(child, f"a = nd.array(x); a[{key}] = -1; result = a.numpy()", x=x)
    np.testing.assert_array_equal(got, ref_set)


def key_of(x, key):
    """The index array of x's elements that x[key] selects (for the gradient's reference)."""
    idx = np.arange(x.size).reshape(x.shape)
    return np.unravel_index(eval(f"idx[{key}]"), x.shape)


@pytest.mark.parametrize("key", ["2**63", "-2**63 - 1", "2**100", "0, 2**64"])
def test_huge_int_index_is_index_error(child, key):
    expect_error(child, f"nd.array(np.ones((2, 2)))[{key}]", "IndexError", r"\[getitem\] index")
    expect_error(child, f"ndl.Tensor(np.ones((2, 2)))[{key}]", "IndexError", r"\[getitem\] index")


def test_int64_min_index_is_out_of_bounds(child):
    expect_error(child, "nd.array(np.ones(3))[-2**63]", "IndexError", r"out of bounds")


# --- Numerics ---
def test_logsumexp_of_inf_is_inf(child):
    got = expect_result(child, "result = ops.logsumexp(ndl.Tensor([[1.0, np.inf], [1.0, -np.inf], [-np.inf, -np.inf]]), axes=(1,)).numpy()")
    assert got[0] == np.inf and np.isclose(got[1], 1.0) and got[2] == -np.inf


def test_logsumexp_float64_keeps_its_range(child):
    got = expect_result(child, "result = ops.logsumexp(ndl.Tensor(np.array([[1e300, 1e300]])), axes=(1,)).numpy()")
    np.testing.assert_allclose(got, [1e300 + np.log(2)])


# --- Python-level validation ---
BAD_GRAD = """
class {name}(ndl.autograd.TensorOp):
    def compute(self, a, b):
        return a + b
    def gradient(self, out_grad, node):
        return {ret}
x = ndl.Tensor(np.ones((2, 3)), requires_grad=True)
{name}()(x, x).sum().backward()
"""


@pytest.mark.parametrize("ret,pattern", [
    ("(out_grad,)", r"\[WrongCount\] gradient returned 1 gradient for 2 inputs"),
    ("(ops.summation(out_grad), out_grad)", r"\[WrongShape\] gradient 0 has shape \(\) but input 0 has shape \(2, 3\)"),
])
def test_python_op_with_a_bad_gradient(child, ret, pattern):
    name = "WrongCount" if "summation" not in ret else "WrongShape"
    expect_error(child, BAD_GRAD.format(name=name, ret=ret), "ValueError", pattern)


VALIDATION = [
    ("p = nn.Parameter(np.ones((2, 3))); o = optim.SGD([p], lr=0.1); p.grad = ndl.Tensor(np.ones((3,))); o.step()",
     "ValueError", r"\[SGD.step\] parameter 0 has shape \(2, 3\) but its grad has shape \(3,\)"),
    ("p = nn.Parameter(np.ones((2, 3))); o = optim.Adam([p]); p.grad = ndl.Tensor(np.ones((3,))); o.step()",
     "ValueError", r"\[Adam.step\]"),
    ("nn.SoftmaxLoss()(ndl.Tensor(np.ones((2, 3))), ndl.Tensor([1.7, 0.0]))", "ValueError", r"\[SoftmaxLoss\].*integers"),
    ("nn.SoftmaxLoss()(ndl.Tensor(np.ones((2, 3))), ndl.Tensor([np.nan, 0.0]))", "ValueError", r"\[SoftmaxLoss\]"),
    ("nn.SoftmaxLoss()(ndl.Tensor(np.ones(3)), ndl.Tensor([1.0]))", "ValueError", r"\[SoftmaxLoss\].*2-D.*\(3,\)"),
    ("nn.SoftmaxLoss()(ndl.Tensor(np.ones((2, 3))), ndl.Tensor([1.0]))", "ValueError", r"\[SoftmaxLoss\] labels"),
    ("nn.BatchNorm2d(3)(ndl.Tensor(np.ones((2, 3, 4))))", "ValueError", r"\[BatchNorm2d\].*4-D.*\(2, 3, 4\)"),
    ("nn.BatchNorm2d(3)(ndl.Tensor(np.ones((2, 4, 2, 2))))", "ValueError", r"\[BatchNorm2d\] expects 3 channels"),
    ("nn.BatchNorm1d(3)(ndl.Tensor(np.ones((2, 4))))", "ValueError", r"\[BatchNorm1d\].*\(batch, 3\).*\(2, 4\)"),
    ("nn.BatchNorm1d(3)(ndl.Tensor(np.ones((2, 3, 1))))", "ValueError", r"\[BatchNorm1d\]"),
    ("nn.LayerNorm1d(3)(ndl.Tensor(np.ones((2, 4))))", "ValueError", r"\[LayerNorm1d\].*\(\.\.\., 3\)"),
    ("nn.Flatten()(ndl.Tensor(np.float32(1)))", "ValueError", r"\[Flatten\]"),
    ("ops.conv(ndl.Tensor(np.ones((1, 4, 4, 2))), ndl.Tensor(np.ones((3, 3, 2, 2))), padding=2**62)",
     "ValueError", r"\[conv\] the padded size overflows"),
    ("ops.max_pool2d(ndl.Tensor(np.ones((1, 4, 4, 1))), 2, padding=2**62)", "ValueError",
     r"\[max_pool2d\] the padded size overflows"),
    ("nd.NDArray.make((2**62,), strides=(0,), handle=nd.cpu().Array(1))", "ValueError", r"\[as_strided\].*too large"),
    ("optim.SGD([nn.Parameter(np.ones(2))], lr=float('inf'))", "ValueError", r"\[SGD\] lr"),
    ("nn.Linear(0, 3)", "ValueError", r"\[Linear\] in_features"),
    ("nn.Linear(3, -1)", "ValueError", r"\[Linear\] out_features"),
    ("init.kaiming_uniform(0, 3)", "ValueError", r"\[kaiming_uniform\]"),
    ("nn.Dropout(-0.5)", "ValueError", r"\[Dropout\]"),
    ("nn.Dropout(2)", "ValueError", r"\[Dropout\]"),
    ("nn.Dropout(float('nan'))", "ValueError", r"\[Dropout\]"),
    ("ops.max_pool2d(ndl.Tensor(np.ones((1, 4, 4, 1))), 2, stride=0)", "ValueError", r"\[max_pool2d\] stride"),
    ("ops.avg_pool2d(ndl.Tensor(np.ones((1, 4, 4, 1))), 2, stride=-1)", "ValueError", r"\[avg_pool2d\] stride"),
    ("ops.avg_pool2d(ndl.Tensor(np.ones((1, 1, 2, 2))), 5)", "ValueError", r"\[avg_pool2d\] kernel"),
    ("optim.SGD([nn.Parameter(np.ones(2))], lr=-1)", "ValueError", r"\[SGD\] lr"),
    ("optim.SGD([nn.Parameter(np.ones(2))], lr=float('nan'))", "ValueError", r"\[SGD\] lr"),
    ("optim.SGD([nn.Parameter(np.ones(2))], momentum=-0.1)", "ValueError", r"\[SGD\] momentum"),
    ("optim.Adam([nn.Parameter(np.ones(2))], beta1=1)", "ValueError", r"\[Adam\] beta1"),
    ("optim.Adam([nn.Parameter(np.ones(2))], beta2=1.5)", "ValueError", r"\[Adam\] beta2"),
    ("optim.Adam([nn.Parameter(np.ones(2))], lr=float('nan'))", "ValueError", r"\[Adam\] lr"),
    ("optim.AdamW([nn.Parameter(np.ones(2))], weight_decay=-1)", "ValueError", r"\[AdamW\] weight_decay"),
    ("ndl.set_num_threads(10**6)", "ValueError", r"\[set_num_threads\]"),
    ("ops.EWiseAdd()(ndl.Tensor([1.0]), 5)", "TypeError", r"\[EWiseAdd\] input 1 must be a Tensor.*int"),
    ("ops.transpose(ndl.Tensor(np.ones((2, 3))), (0, 5))", "IndexError", r"\[transpose\] axis 5"),
    ("ops.lstm_cell(ndl.Tensor(np.ones((2, 6))), ndl.Tensor(np.ones((2, 2))))", "ValueError",
     r"\[lstm_cell\] expects gates of shape \(B, 4H\).*got shape \(2, 6\)"),
    ("ops.lstm_cell(ndl.Tensor(np.ones(8)), ndl.Tensor(np.ones(2)))", "ValueError",
     r"\[lstm_cell\] expects gates of shape \(B, 4H\).*\(8,\)"),
    ("ops.lstm_cell(ndl.Tensor(np.ones((2, 8))), ndl.Tensor(np.ones((2, 3))))", "ValueError",
     r"\[lstm_cell\] gates of shape \(2, 8\) need c_prev of shape \(2, 2\), got shape \(2, 3\)"),
    ("ops.lstm_cell(ndl.Tensor(np.ones((2, 8))), ndl.Tensor(np.ones((1, 2))))", "ValueError",
     r"\[lstm_cell\] .*need c_prev of shape \(2, 2\)"),
    ("ops.lstm_cell(ndl.Tensor(np.ones((2, 8), dtype=np.float32)), ndl.Tensor(np.ones((2, 2))))",
     "TypeError", r"\[lstm_cell\] gates of dtype float32 and c_prev of dtype float64 differ"),
    ("ops.lstm_cell(ndl.Tensor(np.ones((2, 8), dtype=np.int64)), ndl.Tensor(np.ones((2, 2), dtype=np.int64)))",
     "TypeError", r"\[lstm_cell\] needs float32 or float64"),
    ("ops.lstm_cell_grad(*[ndl.Tensor(np.ones(s)) for s in [(2, 8), (2, 2), (2, 2), (2, 3)]])",
     "ValueError", r"\[lstm_cell_grad\] dc of shape \(2, 3\) does not match c_prev of shape \(2, 2\)"),
    ("ops.lstm_sequence(*[ndl.Tensor(np.ones(s)) for s in [(0, 2, 8), (2, 2), (2, 2), (2, 8)]])",
     "ValueError", r"\[lstm_sequence\] expects xw of shape \(T, B, 4H\) with T >= 1.*\(0, 2, 8\)"),
    ("ops.lstm_sequence(*[ndl.Tensor(np.ones(s)) for s in [(3, 2, 8), (2, 3), (2, 2), (2, 8)]])",
     "ValueError", r"\[lstm_sequence\] xw of shape \(3, 2, 8\) needs h0 and c0 of shape \(2, 2\)"
     r" and w_hh of shape \(2, 8\), got \(2, 3\)"),
    ("ops.lstm_sequence(*[ndl.Tensor(np.ones(s), dtype=d) for s, d in "
     "[((3, 2, 8), 'float64'), ((2, 2), 'float64'), ((2, 2), 'float64'), ((2, 8), 'float32')]])",
     "TypeError", r"\[lstm_sequence\] xw of dtype float64 and an operand of dtype float32 differ"),
    ("ops.scaled_dot_product_attention(*[ndl.Tensor(np.ones(s)) for s in [(2, 3, 4), (2, 3, 4), (2, 3, 4)]])",
     "ValueError", r"\[scaled_dot_product_attention\] expects q \(B, H, Tq, D\).*\(2, 3, 4\)"),
    ("ops.scaled_dot_product_attention(*[ndl.Tensor(np.ones(s)) for s in [(1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 6, 4)]])",
     "ValueError", r"\[scaled_dot_product_attention\] k of shape \(1, 2, 5, 4\) and v of shape \(1, 2, 6, 4\) differ"),
    ("ops.scaled_dot_product_attention(*[ndl.Tensor(np.ones(s)) for s in [(1, 2, 3, 4), (1, 3, 5, 4), (1, 3, 5, 4)]])",
     "ValueError", r"\[scaled_dot_product_attention\] q of shape \(1, 2, 3, 4\) and k, v of shape \(1, 3, 5, 4\) disagree"),
    ("ops.scaled_dot_product_attention(*[ndl.Tensor(np.ones(s)) for s in [(2, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 4)]])",
     "ValueError", r"\[scaled_dot_product_attention\] .*disagree in B, H or D"),
    ("ops.scaled_dot_product_attention(*[ndl.Tensor(np.ones(s)) for s in [(1, 2, 3, 4), (1, 2, 5, 8), (1, 2, 5, 8)]])",
     "ValueError", r"\[scaled_dot_product_attention\] .*disagree in B, H or D"),
    ("ops.scaled_dot_product_attention(*[ndl.Tensor(np.ones((1, 2, 3, 4)))] * 3, mask=np.ones((3, 2), bool))",
     "ValueError", r"\[scaled_dot_product_attention\] mask of shape \(3, 2\) does not broadcast to \(B, H, Tq, Tk\) = \(1, 2, 3, 3\)"),
    ("ops.scaled_dot_product_attention(*[ndl.Tensor(np.ones((1, 2, 3, 4)))] * 3, mask=np.ones((1, 1, 1, 1, 3), bool))",
     "ValueError", r"\[scaled_dot_product_attention\] mask of shape \(1, 1, 1, 1, 3\) does not broadcast"),
    ("ops.scaled_dot_product_attention(*[ndl.Tensor(np.ones((1, 2, 3, 4)))] * 3, mask=np.ones(3, np.int64))",
     "TypeError", r"\[scaled_dot_product_attention\] mask must be bool .*int64"),
    ("ops.scaled_dot_product_attention(*[ndl.Tensor(np.ones((1, 2, 3, 4), np.int64))] * 3)",
     "TypeError", r"\[scaled_dot_product_attention\] needs float32 or float64 .*int64"),
    ("ops.scaled_dot_product_attention(ndl.Tensor(np.ones((1, 2, 3, 4), np.float32)), *[ndl.Tensor(np.ones((1, 2, 3, 4)))] * 2)",
     "TypeError", r"\[scaled_dot_product_attention\] q, k and v must share a dtype"),
    ("ops.scaled_dot_product_attention(*[ndl.Tensor(np.ones((1, 2, 3, 4)))] * 3, dropout=1.0)",
     "ValueError", r"\[scaled_dot_product_attention\] dropout must be in \[0, 1\), got 1"),
    ("ops.scaled_dot_product_attention(*[ndl.Tensor(np.ones((1, 2, 3, 4)))] * 3, dropout=-0.1)",
     "ValueError", r"\[scaled_dot_product_attention\] dropout must be in \[0, 1\)"),
    ("ops.scaled_dot_product_attention(*[ndl.Tensor(np.ones((1, 2, 3, 4)))] * 3, dropout=float('nan'))",
     "ValueError", r"\[scaled_dot_product_attention\] dropout must be in \[0, 1\)"),
    ("ops.ScaledDotProductAttention()(*[ndl.Tensor(np.ones((1, 2, 3, 4)))] * 2)",
     "ValueError", r"\[scaled_dot_product_attention\] takes q, k, v and an optional mask, got 2"),
    # The fused norm and loss ops check before any kernel runs.
    ("ops.layer_norm(ndl.Tensor(np.ones((2, 3))), ndl.Tensor(np.ones(4)), ndl.Tensor(np.ones(3)))",
     "ValueError", r"\[layer_norm\] x of shape \(2, 3\) needs weight of shape \(3,\), got shape \(4,\)"),
    ("ops.layer_norm(ndl.Tensor(np.ones((2, 3))), ndl.Tensor(np.ones(3)), ndl.Tensor(np.ones((1, 3))))",
     "ValueError", r"\[layer_norm\] .*needs bias of shape \(3,\)"),
    ("ops.layer_norm(ndl.Tensor(np.float64(1)), ndl.Tensor(np.ones(1)), ndl.Tensor(np.ones(1)))",
     "ValueError", r"\[layer_norm\] .*rank >= 1"),
    ("ops.layer_norm(ndl.Tensor(np.ones((2, 3), np.float32)), ndl.Tensor(np.ones(3)), ndl.Tensor(np.ones(3)))",
     "TypeError", r"\[layer_norm\] weight of dtype float64 and x of dtype float32 differ"),
    ("ops.layer_norm(ndl.Tensor(np.ones((2, 3), np.int64)), ndl.Tensor(np.ones(3, np.int64)), ndl.Tensor(np.ones(3, np.int64)))",
     "TypeError", r"\[layer_norm\] needs float32 or float64"),
    ("nn.LayerNorm(4)(ndl.Tensor(np.ones((2, 3))))", "ValueError", r"\[LayerNorm\].*\(\.\.\., 4\)"),
    ("nn.LayerNorm(0)", "ValueError", r"\[LayerNorm\] dim"),
    ("ops.group_norm(ndl.Tensor(np.ones((2, 6, 4))), ndl.Tensor(np.ones(6)), ndl.Tensor(np.ones(6)), 4)",
     "ValueError", r"\[group_norm\] x of shape \(2, 6, 4\) has 6 channels, not divisible by num_groups = 4"),
    ("ops.group_norm(ndl.Tensor(np.ones((2, 6, 4))), ndl.Tensor(np.ones(3)), ndl.Tensor(np.ones(6)), 3)",
     "ValueError", r"\[group_norm\] x of shape \(2, 6, 4\) needs weight of shape \(6,\), got shape \(3,\)"),
    ("ops.group_norm(ndl.Tensor(np.ones((2, 6, 4))), ndl.Tensor(np.ones(6)), ndl.Tensor(np.ones((1, 6))), 3)",
     "ValueError", r"\[group_norm\] .*needs bias of shape \(6,\)"),
    ("ops.group_norm(ndl.Tensor(np.ones(6)), ndl.Tensor(np.ones(6)), ndl.Tensor(np.ones(6)), 3)",
     "ValueError", r"\[group_norm\] expects an \(N, C, \.\.\.\) input of rank >= 2, got shape \(6,\)"),
    ("ops.group_norm(ndl.Tensor(np.ones((2, 6))), ndl.Tensor(np.ones(6)), ndl.Tensor(np.ones(6)), 0)",
     "ValueError", r"\[group_norm\] num_groups must be positive, got 0"),
    ("ops.group_norm(ndl.Tensor(np.ones((2, 6), np.float32)), ndl.Tensor(np.ones(6)), ndl.Tensor(np.ones(6)), 2)",
     "TypeError", r"\[group_norm\] weight of dtype float64 and x of dtype float32 differ"),
    ("ops.group_norm(ndl.Tensor(np.ones((2, 6), np.int64)), ndl.Tensor(np.ones(6, np.int64)), ndl.Tensor(np.ones(6, np.int64)), 2)",
     "TypeError", r"\[group_norm\] needs float32 or float64"),
    ("ops.group_norm_grad(*[ndl.Tensor(np.ones(s)) for s in [(2, 4), (4,), (2, 2), (2, 3), (2, 4), (2, 2), (2, 2)]], 2)",
     "ValueError", r"\[group_norm_grad\] x of shape \(2, 4\) needs rstd of shape \(2, 2\), got shape \(2, 3\)"),
    ("nn.GroupNorm(4, 6)", "ValueError", r"\[GroupNorm\] num_channels \(6\) must be divisible by num_groups \(4\)"),
    ("nn.GroupNorm(0, 6)", "ValueError", r"\[GroupNorm\] num_groups must be a positive int, got 0"),
    ("nn.GroupNorm(2, 4.0)", "ValueError", r"\[GroupNorm\] num_channels must be a positive int"),
    ("nn.GroupNorm(2, 4)(ndl.Tensor(np.ones((2, 6, 3))))", "ValueError",
     r"\[GroupNorm\] expects input of shape \(N, 4, \.\.\.\), got \(2, 6, 3\)"),
    ("nn.GroupNorm(2, 4)(ndl.Tensor(np.ones(4)))", "ValueError", r"\[GroupNorm\] expects input of shape \(N, 4, \.\.\.\), got \(4,\)"),
    ("ops.softmax_cross_entropy(ndl.Tensor(np.ones((2, 3))), ndl.Tensor(np.array([0, 3])))",
     "ValueError", r"\[softmax_cross_entropy\] class labels must lie in \[0, 3\), got labels from 0 to 3"),
    ("ops.softmax_cross_entropy(ndl.Tensor(np.ones((2, 3))), ndl.Tensor(np.array([-1, 0])))",
     "ValueError", r"\[softmax_cross_entropy\] class labels must lie in \[0, 3\)"),
    ("ops.softmax_cross_entropy(ndl.Tensor(np.ones((2, 3))), ndl.Tensor(np.array([0.0, 1.0])))",
     "TypeError", r"\[softmax_cross_entropy\] needs integer class labels, got dtype float64"),
    ("ops.softmax_cross_entropy(ndl.Tensor(np.ones((2, 3))), ndl.Tensor(np.array([0, 1, 2])))",
     "ValueError", r"\[softmax_cross_entropy\] labels of shape \(3,\) do not match logits of shape \(2, 3\)"),
    ("ops.softmax_cross_entropy(ndl.Tensor(np.ones(3)), ndl.Tensor(np.array([0])))",
     "ValueError", r"\[softmax_cross_entropy\] expects logits of shape \(N, C\)"),
    ("ops.softmax_cross_entropy(ndl.Tensor(np.ones((2, 3), np.int64)), ndl.Tensor(np.array([0, 1])))",
     "TypeError", r"\[softmax_cross_entropy\] needs float32 or float64 logits"),
    ("ops.softmax_cross_entropy(ndl.Tensor(np.ones((2, 3))), ndl.Tensor(np.array([0, 1])), 'avg')",
     "ValueError", r"\[softmax_cross_entropy\] reduction must be"),
    ("ops.softmax_cross_entropy_grad(ndl.Tensor(np.ones((2, 3))), ndl.Tensor(np.array([0, 1])), ndl.Tensor(np.ones(3)))",
     "ValueError", r"\[softmax_cross_entropy_grad\] dloss must be \(2,\)"),
    ("ops.softmax_grad(ndl.Tensor(np.ones((2, 3))), ndl.Tensor(np.ones((2, 4))))",
     "ValueError", r"\[softmax_grad\] y of shape \(2, 3\) and dy of shape \(2, 4\) differ"),
    ("ops.silu_grad(ndl.Tensor(np.ones((2, 3))), ndl.Tensor(np.ones((2, 3)), dtype='float32'))",
     "TypeError", r"\[silu_grad\] x of dtype float64 and dy of dtype float32 differ"),
    ("ops.gelu(ndl.Tensor(np.ones(2)), 'erf')", "ValueError", r"\[gelu\] approximate must be"),
    ("nn.GELU('fast')", "ValueError", r"\[GELU\] approximate"),
    ("nn.ModuleList([nn.ReLU(), 3])", "TypeError", r"\[ModuleList\] holds Modules, got int"),
    ("nn.ModuleDict({'training': nn.ReLU()})", "ValueError", r"\[ModuleDict\] key 'training'"),
]


@pytest.mark.parametrize("code,error,pattern", VALIDATION, ids=[c for c, _, _ in VALIDATION])
def test_validation(child, code, error, pattern):
    expect_error(child, code, error, pattern)


def test_valid_hyperparameters_still_accepted(child):
    code = """optim.SGD([nn.Parameter(np.ones(2))], lr=0, momentum=0.9)
optim.Adam([nn.Parameter(np.ones(2))], lr=1e-3, beta1=0.0, beta2=0.999)
nn.Dropout(0); nn.Dropout(1)
ndl.set_num_threads(2); ndl.set_num_threads(0)
result = ops.max_pool2d(ndl.Tensor(np.arange(16.0).reshape(1, 4, 4, 1)), 2).numpy().ravel().tolist()"""
    assert expect_result(child, code) == [5, 7, 13, 15]


# --- Files ---
@pytest.fixture
def tmp(tmp_path):
    return str(tmp_path)


def test_load_of_a_fifo_does_not_block(child, tmp):
    path = os.path.join(tmp, "fifo")
    os.mkfifo(path)
    expect_error(child, "ndl.load(path)", "ValueError", r"not a regular file", path=path)
    expect_error(child, "ndl.data.MNISTDataset(path, path)", "ValueError", r"not a regular file", path=path)


def test_load_of_a_directory(child, tmp):
    expect_error(child, "ndl.load(path)", "ValueError", r"is a directory", path=tmp)
    expect_error(child, "ndl.data.MNISTDataset(path, path)", "ValueError", r"directory", path=tmp)


def test_save_refuses_a_non_regular_target(child, tmp):
    # A FIFO stands in for a device node: both would be replaced by rename().
    path = os.path.join(tmp, "fifo")
    os.mkfifo(path)
    expect_error(child, "ndl.save({'a': ndl.Tensor([1.0])}, path)", "ValueError",
                 r"not a regular file", path=path)
    assert stat.S_ISFIFO(os.stat(path).st_mode)
    expect_error(child, "ndl.save({'a': ndl.Tensor([1.0])}, path)", "ValueError",
                 r"is a directory", path=tmp)


def test_save_removes_stale_temp_files_of_dead_writers(child, tmp):
    target = os.path.join(tmp, "m.safetensors")
    dead = target + ".tmp-999999999-abcdef"  # no such pid
    alive = target + f".tmp-{os.getpid()}-abcdef"  # a live writer's: kept
    other = os.path.join(tmp, "n.safetensors.tmp-999999999-abcdef")  # another target's: kept
    for p in (dead, alive, other):
        open(p, "wb").close()
    expect_result(child, "ndl.save({'a': ndl.Tensor([1.0])}, path)", path=target)
    assert not os.path.exists(dead)
    assert os.path.exists(alive) and os.path.exists(other)
    assert sorted(os.listdir(tmp)) == sorted(map(os.path.basename, [target, alive, other]))


def test_safetensors_invalid_utf8_header(child, tmp):
    path = os.path.join(tmp, "bad.safetensors")
    header = b'{"\xff\xfe":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    expect_error(child, "ndl.load(path)", "ValueError", re.escape(path) + r".*UTF-8", path=path)


def test_safetensors_shape_too_large(child, tmp):
    path = os.path.join(tmp, "big.safetensors")
    header = b'{"a":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}}'
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
    expect_error(child, "ndl.load(path)", "ValueError", re.escape(path) + r".*too large", path=path)


def _idx(magic, dims, payload):
    return struct.pack(">I", magic) + struct.pack(">" + "I" * len(dims), *dims) + payload


def test_mnist_checks_the_header_before_decompressing(child, tmp):
    import gzip

    # A gzip "bomb" with a bad magic number: rejected after reading a few bytes.
    bomb = os.path.join(tmp, "bomb.gz")
    with gzip.open(bomb, "wb") as f:
        f.write(b"\x12\x34\x56\x78")
        f.write(b"\0" * (64 << 20))
    code = "from needle.data.datasets.mnist_dataset import read_idx; read_idx(path, 0x803)"
    expect_error(child, code, "ValueError", r"wrong magic number 0x12345678", path=bomb)
    # A valid header followed by far more data than it declares: only the declared bytes are read.
    labels = os.path.join(tmp, "labels.gz")
    with gzip.open(labels, "wb") as f:
        f.write(_idx(0x801, [3], bytes([1, 2, 3])))
        f.write(b"\0" * (64 << 20))
    code = ("from needle.data.datasets.mnist_dataset import read_idx\n"
            "result = read_idx(path, 0x801).tolist()")
    assert expect_result(child, code, path=labels) == [1, 2, 3]
    short = os.path.join(tmp, "short")
    with open(short, "wb") as f:
        f.write(_idx(0x801, [10], bytes([1, 2, 3])))
    code = "from needle.data.datasets.mnist_dataset import read_idx; read_idx(path, 0x801)"
    expect_error(child, code, "ValueError", r"truncated data.*10 bytes.*holds 3", path=short)
