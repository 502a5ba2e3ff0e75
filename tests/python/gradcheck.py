"""Shared helpers for the op tests: devices, random tensors (also as non-contiguous views),
and a finite-difference gradient checker in float64.

``check_gradients(f, *tensors)`` contracts ``f``'s output with a random array ``c``, runs
backward on ``sum(f(x) * c)`` and compares each input's ``.grad`` with central differences
of the same scalar; ``second_order_check`` does the same for a gradient's gradient.
``gradient_check`` is the course's checker (same name and arguments), for tests written
against the course framework. ``close`` compares a needle result with a numpy or PyTorch
one.
"""
import contextlib

import numpy as np
import pytest

import needle as ndl
from needle import backend_ndarray as nd

DEVICES = [
    nd.cpu(),
    pytest.param(nd.cuda(), marks=pytest.mark.skipif(not nd.cuda().enabled(), reason="no CUDA device")),
]


@contextlib.contextmanager
def kernels_off(*names):
    """Fused kernels `names` off on every enabled device: ops run their composites (the code
    the homework writes, which the fused kernels would otherwise bypass)."""
    from needle import _needle

    with contextlib.ExitStack() as stack:
        for device in (nd.cpu(), nd.cuda()):
            if device.enabled():
                stack.enter_context(_needle.kernels.disabled(*names, device=device))
        yield


def tensor(array, device=None, dtype=None, requires_grad=True, noncontiguous=False):
    """A leaf tensor; with noncontiguous=True its data is a strided, permuted view."""
    array = np.asarray(array)
    dtype = dtype or ("float64" if array.dtype == np.float64 else "float32")
    if noncontiguous and array.ndim >= 1:
        # Every other element of an array twice as wide, with the axes stored reversed.
        rev = tuple(reversed(range(array.ndim)))
        wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), dtype=array.dtype)
        wide[..., ::2] = array
        stored = nd.NDArray(np.ascontiguousarray(wide.transpose(rev)), device=device, dtype=dtype)
        data = stored.permute(rev)[..., ::2]
        assert not data.is_compact()
        return ndl.Tensor(data, requires_grad=requires_grad)
    return ndl.Tensor(array, device=device, dtype=dtype, requires_grad=requires_grad)


def randn(*shape, device=None, dtype="float64", low=None, high=None, **kwargs):
    if low is not None:
        values = np.random.uniform(low, high, size=shape)
    else:
        values = np.random.randn(*shape)
    return tensor(values.astype(dtype), device=device, dtype=dtype, **kwargs)


def check_gradients(f, *args, eps=1e-6, tol=1e-5):
    """Finite-difference check of every input that requires grad (float64 inputs)."""
    for x in args:
        if isinstance(x, ndl.Tensor):
            x.grad = None  # grads accumulate across backward calls
    out = f(*args)
    c = np.random.randn(*out.shape)
    loss = ndl.summation(out * ndl.Tensor(c, device=out.device, dtype=out.dtype, requires_grad=False))
    loss.backward()
    for i, x in enumerate(args):
        if not isinstance(x, ndl.Tensor) or not x.requires_grad:
            continue
        base = x.numpy().astype(np.float64)
        numeric = np.zeros_like(base)
        probe = list(args)
        with ndl.autograd.no_grad():
            for idx in np.ndindex(*base.shape):
                values = []
                for delta in (eps, -eps):
                    shifted = base.copy()
                    shifted[idx] += delta
                    probe[i] = ndl.Tensor(shifted, device=x.device, dtype=x.dtype, requires_grad=False)
                    values.append(float((f(*probe).numpy() * c).sum()))
                numeric[idx] = (values[0] - values[1]) / (2 * eps)
        grad = x.grad
        if grad is None:  # no gradient is right only where f is flat in x
            np.testing.assert_allclose(numeric, 0, atol=tol, err_msg=f"input {i} got no gradient")
            continue
        assert grad.shape == x.shape, f"input {i}: gradient shape {grad.shape} != {x.shape}"
        assert grad.dtype == x.dtype, f"input {i}: gradient dtype {grad.dtype} != {x.dtype}"
        np.testing.assert_allclose(grad.numpy(), numeric, rtol=tol, atol=tol, err_msg=f"input {i}")


def gradient_check(f, *args, tol=1e-6, backward=False, **kwargs):
    """The course's checker: numerical gradient of sum(f(*args) * 1) against either the
    op's gradient (``out.op.gradient_as_tuple``) or ``backward()``."""
    eps = 1e-4
    numerical_grads = [np.zeros(a.shape) for a in args]
    for i in range(len(args)):
        base = args[i].numpy().astype(np.float64)
        for idx in np.ndindex(*base.shape):
            shifted = base.copy()
            shifted[idx] += eps
            args[i].data = ndl.Tensor(shifted, dtype=args[i].dtype, device=args[i].device)
            f1 = float(f(*args, **kwargs).numpy().sum())
            shifted[idx] -= 2 * eps
            args[i].data = ndl.Tensor(shifted, dtype=args[i].dtype, device=args[i].device)
            f2 = float(f(*args, **kwargs).numpy().sum())
            args[i].data = ndl.Tensor(base, dtype=args[i].dtype, device=args[i].device)
            numerical_grads[i][idx] = (f1 - f2) / (2 * eps)
    if not backward:
        out = f(*args, **kwargs)
        ones = ndl.Tensor(np.ones(out.shape), dtype=out.dtype, device=out.device)
        computed_grads = [x.numpy() for x in out.op.gradient_as_tuple(ones, out)]
    else:
        out = ndl.summation(f(*args, **kwargs))
        out.backward()
        computed_grads = [a.grad.numpy() for a in args]
    error = sum(np.linalg.norm(computed_grads[i] - numerical_grads[i]) for i in range(len(args)))
    assert error < tol, f"gradient error {error}"
    return computed_grads


def close(got, want, rtol=1e-4, err_msg=""):
    """assert_allclose of a needle Tensor / NDArray / array against a numpy array or a
    PyTorch tensor, with an absolute floor scaled to the reference's magnitude (float32
    sums of many terms lose digits in absolute, not relative, terms near zero)."""
    got = got.numpy() if hasattr(got, "numpy") else np.asarray(got)
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert got.shape == want.shape, f"{err_msg}: shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=err_msg)


def second_order_check(f, args, eps=1e-5, tol=1e-5):
    """Checks the gradient of phi = sum(d * d/dx0 sum(c * f(args))) with respect to every
    argument (a Hessian-vector product built by backward through the first backward)
    against central differences of phi, each evaluated with a first-order backward."""
    device = args[0].device
    base = [a.numpy().astype(np.float64) for a in args]

    def first_grad(values):
        ts = [tensor(v, device) for v in values]
        out = f(*ts)
        if first_grad.c is None:
            first_grad.c = np.random.randn(*out.shape)
        (out * tensor(first_grad.c, device, requires_grad=False)).sum().backward()
        return ts, ts[0].grad

    first_grad.c = None
    ts, g = first_grad(base)
    d = np.random.randn(*g.shape)
    for t in ts:
        t.grad = None
    (g * tensor(d, device, requires_grad=False)).sum().backward()
    for i, t in enumerate(ts):
        analytic = t.grad.numpy() if t.grad is not None else np.zeros(base[i].shape)
        numeric = np.zeros(base[i].shape)
        for idx in np.ndindex(*base[i].shape):
            phis = []
            for delta in (eps, -eps):
                values = [v.copy() for v in base]
                values[i][idx] += delta
                phis.append(float((first_grad(values)[1].numpy() * d).sum()))
            numeric[idx] = (phis[0] - phis[1]) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, rtol=tol, atol=tol, err_msg=f"second order, input {i}")
