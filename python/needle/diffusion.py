"""Gaussian diffusion (``needle.diffusion``): the forward noising process, the DDPM training
loss, and the DDPM and DDIM samplers, around any noise-predicting model called as
``model(x_t, t)`` (needle.apps.models.UNet).

The forward process adds noise in T steps with variances beta_1..beta_T; in closed form
    x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * eps,   abar_t = prod_{s <= t} (1 - beta_s),
so training draws a timestep and a noise per image and regresses the model's output on the
noise (Ho et al., 2020). Sampling runs the process backwards from pure noise: DDPM's
ancestral sampler takes all T steps; DDIM (Song et al., 2021) takes any subsequence of
them, deterministically for eta = 0. Both clip the predicted x_0 to [-1, 1], the range the
data is scaled to. The schedules are numpy float64 arrays; timesteps index them from 0.
"""
import contextlib
import math

import numpy as np

import needle as ndl
from needle.autograd import Tensor, no_grad

__all__ = ["linear_beta_schedule", "cosine_beta_schedule", "GaussianDiffusion"]


def linear_beta_schedule(timesteps):
    """Ho et al.'s betas: evenly spaced from 1e-4 to 0.02."""
    return np.linspace(1e-4, 0.02, timesteps, dtype=np.float64)


def cosine_beta_schedule(timesteps, s=0.008):
    """Nichol & Dhariwal's betas: abar(t) = f(t) / f(0) with f(t) = cos²((t / T + s) / (1 + s)
    · π / 2), beta_t = 1 - abar(t) / abar(t - 1), clipped at 0.999."""
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    return np.clip(1 - alphas_cumprod[1:] / alphas_cumprod[:-1], 0.0, 0.999)


_SCHEDULES = {"linear": linear_beta_schedule, "cosine": cosine_beta_schedule}


@contextlib.contextmanager
def _sampling(model):
    """The model in eval mode with no autograd graph, its training mode restored after."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            yield
    finally:
        if was_training:
            model.train()


class GaussianDiffusion:
    """DDPM / DDIM around ``model`` (a Module called as model(x_t, t) -> predicted noise).

    Attributes (numpy float64, length T): ``betas``, ``alphas`` = 1 - betas,
    ``alphas_cumprod`` (abar_t) and ``alphas_cumprod_prev`` (abar_{t-1}, 1 at t = 0)."""

    def __init__(self, model, timesteps=1000, beta_schedule="linear", device=None):
        if not isinstance(timesteps, (int, np.integer)) or isinstance(timesteps, bool) or timesteps < 1:
            raise ValueError(f"[GaussianDiffusion] timesteps must be a positive int, got {timesteps!r}")
        if beta_schedule not in _SCHEDULES:
            raise ValueError(f"[GaussianDiffusion] beta_schedule must be one of {sorted(_SCHEDULES)}, "
                             f"got {beta_schedule!r}")
        self.model = model
        self.timesteps = int(timesteps)
        self.beta_schedule = beta_schedule
        self.device = device
        self.betas = _SCHEDULES[beta_schedule](self.timesteps)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = np.cumprod(self.alphas)
        self.alphas_cumprod_prev = np.concatenate([[1.0], self.alphas_cumprod[:-1]])

    # --- helpers ---

    def _per_image(self, values, like):
        """values (B,) as a constant (B, 1, ..., 1) tensor broadcast to ``like``'s shape."""
        shape = (len(values),) + (1,) * (len(like.shape) - 1)
        column = Tensor(np.asarray(values).reshape(shape), device=like.device, dtype=like.dtype,
                        requires_grad=False)
        return column.broadcast_to(like.shape)

    def _timesteps(self, t, batch):
        """t as an int64 numpy array of shape (batch,), checked against [0, T)."""
        steps = t.numpy() if isinstance(t, Tensor) else np.asarray(t)
        steps = np.broadcast_to(steps, (batch,)).astype(np.int64)
        if steps.size and (steps.min() < 0 or steps.max() >= self.timesteps):
            raise IndexError(f"[GaussianDiffusion] timesteps must lie in [0, {self.timesteps}), got "
                             f"values in [{steps.min()}, {steps.max()}]")
        return steps

    def _noise(self, shape, like_device, dtype="float32"):
        return Tensor(np.random.randn(*shape), device=like_device, dtype=dtype, requires_grad=False)

    def _predict_noise(self, x, steps):
        t = Tensor(steps, device=x.device, dtype="int64", requires_grad=False)
        return self.model(x, t).detach()

    def _device(self):
        if self.device is not None:
            return self.device
        params = self.model.parameters()
        return params[0].device if params else ndl.cpu()

    # --- the forward process and the loss ---

    def q_sample(self, x0, t, noise):
        """x_t = sqrt(abar_t) · x0 + sqrt(1 - abar_t) · noise, per image (t of shape (B,))."""
        if tuple(noise.shape) != tuple(x0.shape):
            raise ValueError(f"[GaussianDiffusion.q_sample] noise of shape {tuple(noise.shape)} and x0 "
                             f"of shape {tuple(x0.shape)} differ")
        steps = self._timesteps(t, x0.shape[0])
        # BEGIN SOLUTION hw6
        abar = self.alphas_cumprod[steps]
        return self._per_image(np.sqrt(abar), x0) * x0 + self._per_image(np.sqrt(1 - abar), x0) * noise
        # END SOLUTION

    def loss(self, x0):
        """The ε-prediction loss: t uniform in [0, T) and noise ~ N(0, I) per image (numpy's
        RNG, timesteps first), the mean over every entry of (model(x_t, t) - noise)²."""
        batch = x0.shape[0]
        # BEGIN SOLUTION hw6
        t = np.random.randint(0, self.timesteps, size=batch)
        noise = self._noise(x0.shape, x0.device, x0.dtype)
        x_t = self.q_sample(x0, t, noise)
        pred = self.model(x_t, Tensor(t, device=x0.device, dtype="int64", requires_grad=False))
        diff = pred - noise
        return (diff * diff).sum() / float(np.prod(x0.shape))
        # END SOLUTION

    # --- sampling ---

    def _start(self, n, shape, noise, dtype):
        full = (n,) + tuple(shape)
        if noise is None:
            return self._noise(full, self._device(), dtype)
        if tuple(noise.shape) != full:
            raise ValueError(f"[GaussianDiffusion] starting noise of shape {tuple(noise.shape)} must be {full}")
        return noise if isinstance(noise, Tensor) else Tensor(noise, device=self._device(), dtype=dtype,
                                                              requires_grad=False)

    def _predict_x0(self, x, eps, abar):
        """x0 = (x - sqrt(1 - abar) eps) / sqrt(abar), clipped to [-1, 1] (numpy in, numpy out)."""
        return np.clip((x - math.sqrt(1 - abar) * eps) / math.sqrt(abar), -1.0, 1.0)

    def sample(self, n, shape, noise=None, trajectory=None, dtype="float32"):
        """DDPM ancestral sampling of n images of ``shape`` (C, H, W) in T steps, from ``noise``
        (n, C, H, W) when given, else fresh N(0, I). At step t, with x0 the clipped prediction,
            x_{t-1} = c0 · x0 + c1 · x_t + sigma_t · z,  z ~ N(0, I) (none at t = 0),
        the posterior q(x_{t-1} | x_t, x0)'s mean and standard deviation:
            c0 = sqrt(abar_{t-1}) beta_t / (1 - abar_t),  c1 = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t),
            sigma_t² = beta_t (1 - abar_{t-1}) / (1 - abar_t).
        When ``trajectory`` is a list, each step's x_t (numpy) is appended to it."""
        x = self._start(n, shape, noise, dtype)
        with _sampling(self.model):
            # BEGIN SOLUTION hw6
            xs = x.numpy().astype(np.float64)
            for t in range(self.timesteps - 1, -1, -1):
                eps = self._predict_noise(x, np.full(n, t)).numpy().astype(np.float64)
                abar, abar_prev, beta = self.alphas_cumprod[t], self.alphas_cumprod_prev[t], self.betas[t]
                x0 = self._predict_x0(xs, eps, abar)
                c0 = math.sqrt(abar_prev) * beta / (1 - abar)
                c1 = math.sqrt(self.alphas[t]) * (1 - abar_prev) / (1 - abar)
                xs = c0 * x0 + c1 * xs
                if t > 0:
                    xs = xs + math.sqrt(beta * (1 - abar_prev) / (1 - abar)) * np.random.randn(*xs.shape)
                x = Tensor(xs, device=x.device, dtype=dtype, requires_grad=False)
                if trajectory is not None:
                    trajectory.append(xs.astype(np.float32))
            # END SOLUTION
        return x

    def ddim_timesteps(self, steps):
        """The DDIM subsequence: ``steps`` timesteps evenly spaced over [0, T - 1], descending."""
        if not isinstance(steps, (int, np.integer)) or not 1 <= steps <= self.timesteps:
            raise ValueError(f"[GaussianDiffusion.ddim_sample] steps must be an int in [1, {self.timesteps}], "
                             f"got {steps!r}")
        return np.unique(np.round(np.linspace(0, self.timesteps - 1, steps)).astype(np.int64))[::-1]

    def ddim_sample(self, n, shape, steps=50, eta=0.0, noise=None, trajectory=None, dtype="float32"):
        """DDIM sampling in ``steps`` steps of the subsequence ddim_timesteps(steps). From t to
        the next (earlier) timestep s, with eps the model's prediction, x0 the clipped
        prediction and eps re-derived from it:
            sigma = eta · sqrt((1 - abar_s) / (1 - abar_t)) · sqrt(1 - abar_t / abar_s),
            x_s = sqrt(abar_s) · x0 + sqrt(1 - abar_s - sigma²) · eps + sigma · z,
        with abar_s = 1 after the last step. eta = 0 is deterministic given ``noise``; eta = 1
        matches DDPM's variance. ``trajectory`` as in sample()."""
        if not isinstance(eta, (int, float, np.floating)) or not 0.0 <= eta <= 1.0:
            raise ValueError(f"[GaussianDiffusion.ddim_sample] eta must be a number in [0, 1], got {eta!r}")
        seq = self.ddim_timesteps(steps)
        x = self._start(n, shape, noise, dtype)
        with _sampling(self.model):
            # BEGIN SOLUTION hw6
            xs = x.numpy().astype(np.float64)
            for i, t in enumerate(seq):
                abar = self.alphas_cumprod[t]
                abar_next = self.alphas_cumprod[seq[i + 1]] if i + 1 < len(seq) else 1.0
                eps = self._predict_noise(x, np.full(n, t)).numpy().astype(np.float64)
                x0 = self._predict_x0(xs, eps, abar)
                eps = (xs - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
                sigma = eta * math.sqrt((1 - abar_next) / (1 - abar) * (1 - abar / abar_next))
                xs = math.sqrt(abar_next) * x0 + math.sqrt(max(1 - abar_next - sigma ** 2, 0.0)) * eps
                if sigma > 0:
                    xs = xs + sigma * np.random.randn(*xs.shape)
                x = Tensor(xs, device=x.device, dtype=dtype, requires_grad=False)
                if trajectory is not None:
                    trajectory.append(xs.astype(np.float32))
            # END SOLUTION
        return x
