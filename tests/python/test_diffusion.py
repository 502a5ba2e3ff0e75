"""needle.diffusion (GaussianDiffusion: schedules, q_sample, the loss, the DDPM and DDIM
samplers), needle.optim.EMA, and the diffusion job (needle.apps.diffusion_demo) with its
Fréchet distance.

The samplers are checked on a toy problem with a known answer: data x0 ~ N(mu, s²) per
entry, for which the exact noise predictor is E[eps | x_t] = sqrt(1 - abar) (x_t -
sqrt(abar) mu) / (abar s² + 1 - abar); fed that predictor, DDPM and DDIM must turn noise
into samples of N(mu, s²). Homework 6 writes q_sample, the loss and both samplers; the
schedules, EMA, the Fréchet distance and the job's options are framework code (the job's
end-to-end run needs homework 6's code, so it grades hw6).
"""
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
import needle.nn as nn
from needle.apps.diffusion_demo import frechet_distance
from needle.diffusion import GaussianDiffusion

from gradcheck import DEVICES

hw6 = pytest.mark.hw6


class ExactNoise(nn.Module):
    """The exact noise predictor for x0 ~ N(mu, s²): a function of x_t and abar_t only."""

    def __init__(self, alphas_cumprod, mu, s):
        super().__init__()
        self.alphas_cumprod, self.mu, self.s = alphas_cumprod, mu, s
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        abar = self.alphas_cumprod[t.numpy()].reshape((-1,) + (1,) * (len(x.shape) - 1))
        eps = np.sqrt(1 - abar) * (x.numpy() - np.sqrt(abar) * self.mu) / (abar * self.s ** 2 + 1 - abar)
        return ndl.Tensor(eps, device=x.device, dtype=x.dtype)


class Affine(nn.Module):
    """A model with one parameter: a * x_t + t / T, for the loss test."""

    def __init__(self, timesteps):
        super().__init__()
        self.a = nn.Parameter(ndl.Tensor(np.array([0.5], dtype=np.float32)))
        self.timesteps = timesteps

    def forward(self, x, t):
        shift = ndl.Tensor((t.numpy() / self.timesteps).reshape(-1, 1, 1, 1).astype(np.float32), device=x.device)
        return x * self.a.reshape((1, 1, 1, 1)).broadcast_to(x.shape) + shift.broadcast_to(x.shape)


# --- schedules ---

def test_linear_schedule_is_np_linspace():
    d = GaussianDiffusion(nn.Identity(), timesteps=1000)
    np.testing.assert_array_equal(d.betas, np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(d.alphas_cumprod, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)), rtol=1e-12)
    assert d.alphas_cumprod_prev[0] == 1.0 and d.alphas_cumprod_prev[1] == d.alphas_cumprod[0]
    assert d.betas.dtype == np.float64


def test_cosine_schedule_closed_form():
    T, s = 1000, 0.008
    d = GaussianDiffusion(nn.Identity(), timesteps=T, beta_schedule="cosine")

    def abar(t):  # Nichol & Dhariwal (2021), eq. 17
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2

    want = np.array([min(1 - abar(t) / abar(t - 1), 0.999) for t in range(1, T + 1)])
    np.testing.assert_allclose(d.betas, want, rtol=1e-10, atol=1e-15)
    assert d.betas.max() == 0.999  # the clip is reached at the end
    assert np.all(np.diff(d.alphas_cumprod) < 0)


def test_schedule_and_timestep_errors():
    with pytest.raises(ValueError, match="beta_schedule"):
        GaussianDiffusion(nn.Identity(), beta_schedule="quadratic")
    with pytest.raises(ValueError, match="timesteps"):
        GaussianDiffusion(nn.Identity(), timesteps=0)
    d = GaussianDiffusion(nn.Identity(), timesteps=10)
    x = ndl.Tensor(np.zeros((2, 1, 2, 2), dtype=np.float32))
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        d.q_sample(x, np.array([0, 10]), x)
    with pytest.raises(ValueError, match="noise of shape"):
        d.q_sample(x, np.array([0, 1]), ndl.Tensor(np.zeros((2, 1, 2, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match="steps"):
        d.ddim_sample(1, (1, 2, 2), steps=11)
    with pytest.raises(ValueError, match="eta"):
        d.ddim_sample(1, (1, 2, 2), steps=5, eta=2.0)


# --- q_sample and the loss ---

@hw6
@pytest.mark.parametrize("device", DEVICES, ids=["cpu", "cuda"])
def test_q_sample_formula(device):
    np.random.seed(0)
    d = GaussianDiffusion(nn.Identity(), timesteps=1000, beta_schedule="cosine")
    x0, noise = np.random.randn(4, 1, 3, 3), np.random.randn(4, 1, 3, 3)
    t = np.array([0, 17, 500, 999])
    got = d.q_sample(ndl.Tensor(x0, device=device, dtype="float64"), ndl.Tensor(t, device=device, dtype="int64"),
                     ndl.Tensor(noise, device=device, dtype="float64"))
    abar = d.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(got.numpy(), np.sqrt(abar) * x0 + np.sqrt(1 - abar) * noise, rtol=1e-12)
    assert got.device == device


@hw6
def test_loss_on_a_fixed_batch():
    T = 100
    model = Affine(T)
    d = GaussianDiffusion(model, timesteps=T)
    x0 = np.random.RandomState(1).uniform(-1, 1, (3, 1, 4, 4)).astype(np.float32)
    np.random.seed(7)
    loss = d.loss(ndl.Tensor(x0))
    np.random.seed(7)  # the same draws: timesteps first, then the noise
    t = np.random.randint(0, T, size=3)
    noise = np.random.randn(3, 1, 4, 4)
    abar = d.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    x_t = np.sqrt(abar) * x0 + np.sqrt(1 - abar) * noise
    want = np.mean((0.5 * x_t + t.reshape(-1, 1, 1, 1) / T - noise) ** 2)
    np.testing.assert_allclose(float(loss.numpy()), want, rtol=1e-5)
    loss.backward()  # and it trains the model: d loss / d a = mean(2 (pred - noise) x_t)
    np.testing.assert_allclose(model.a.grad.numpy(), [np.mean(2 * (0.5 * x_t + t.reshape(-1, 1, 1, 1) / T - noise)
                                                               * x_t)], rtol=1e-4)


# --- the samplers ---

@hw6
@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "ddim_eta1"])
def test_samplers_recover_a_gaussian(sampler):
    # DDIM's coarse steps under-disperse (each returns a posterior mean), so it runs 500 of
    # the 1000 steps here; its 50-step samples of this toy have about 10% less spread.
    np.random.seed(3)
    mu, s = 0.2, 0.3
    d = GaussianDiffusion(nn.Identity(), timesteps=1000)
    d.model = ExactNoise(d.alphas_cumprod, mu, s)
    if sampler == "ddpm":
        x = d.sample(5000, (1, 2, 2), dtype="float64")
        assert d.model.calls == 1000
    else:
        x = d.ddim_sample(5000, (1, 2, 2), steps=500, eta=1.0 if sampler == "ddim_eta1" else 0.0, dtype="float64")
        assert d.model.calls == 500
    values = x.numpy()
    assert values.shape == (5000, 1, 2, 2)
    assert abs(values.mean() - mu) < 0.01
    assert abs(values.std() - s) < 0.05 * s


@hw6
def test_ddim_eta0_is_deterministic_and_records_its_trajectory():
    d = GaussianDiffusion(nn.Identity(), timesteps=200)
    d.model = ExactNoise(d.alphas_cumprod, 0.1, 0.5)
    noise = np.random.RandomState(0).randn(5, 1, 3, 3)
    first, trajectory = d.ddim_sample(5, (1, 3, 3), steps=20, noise=noise, trajectory=[]), []
    np.random.seed(123)  # a different global RNG state changes nothing at eta = 0
    second = d.ddim_sample(5, (1, 3, 3), steps=20, noise=noise, trajectory=trajectory)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    assert len(trajectory) == 20 and trajectory[-1].shape == (5, 1, 3, 3)
    np.testing.assert_allclose(trajectory[-1], second.numpy(), rtol=1e-6)
    assert list(d.ddim_timesteps(5)) == [199, 149, 100, 50, 0]


@hw6
def test_samplers_restore_training_mode_and_build_no_graph():
    from needle.apps.models import UNet

    np.random.seed(0)
    model = UNet(base_channels=8, channel_mults=(1, 2), attention_levels=(1,), num_groups=4)
    d = GaussianDiffusion(model, timesteps=10)
    model.train()
    x = d.ddim_sample(2, (1, 8, 8), steps=3)
    assert model.training and not x.requires_grad and x.shape == (2, 1, 8, 8)
    assert np.all(np.abs(x.numpy()) <= 1.0 + 1e-6)  # the last step returns the clipped x0


# --- EMA ---

@pytest.mark.parametrize("warmup", [False, True])
def test_ema_arithmetic(warmup):
    p = nn.Parameter(ndl.Tensor(np.array([1.0, -2.0], dtype=np.float64), dtype="float64"))
    ema = ndl.optim.EMA([p], decay=0.9, warmup=warmup)
    shadow = p.numpy().copy()
    for n, value in enumerate([3.0, 5.0, -1.0, 0.5]):
        p.data = ndl.Tensor(np.full(2, value), dtype="float64")
        ema.update()
        d = min(0.9, (1 + n) / (10 + n)) if warmup else 0.9
        shadow = d * shadow + (1 - d) * value
        np.testing.assert_allclose(ema.shadow[0].numpy(), shadow, rtol=1e-12)


def test_ema_apply_to_and_restore():
    model = nn.Linear(3, 2)
    ema = ndl.optim.EMA(model.parameters(), decay=0.5, warmup=False)
    before = [q.numpy().copy() for q in model.parameters()]
    for q in model.parameters():
        q.data = q.data + 2.0
    ema.update()
    trained = [q.numpy().copy() for q in model.parameters()]
    ema.apply_to(model)
    for q, b in zip(model.parameters(), before):
        np.testing.assert_allclose(q.numpy(), b + 1.0, atol=1e-6)
    ema.restore(model)
    for q, t in zip(model.parameters(), trained):
        np.testing.assert_array_equal(q.numpy(), t)
    with pytest.raises(RuntimeError, match="restore"):
        ema.restore(model)
    with pytest.raises(ValueError, match="tracked"):
        ema.apply_to(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="decay"):
        ndl.optim.EMA(model.parameters(), decay=1.5)


# --- the Fréchet distance and the job ---

def test_frechet_distance_matches_scipy():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))
    b = rng.standard_normal((400, 6)) * 2 + 1
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy_linalg.sqrtm(s_a @ s_b).real
    want = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a + s_b - 2 * root)
    np.testing.assert_allclose(frechet_distance(a, b), want, rtol=1e-8)
    assert abs(frechet_distance(a, a)) < 1e-8
    np.testing.assert_allclose(frechet_distance(a, a + 3.0), 9.0 * 6, rtol=1e-8)


def run_job(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "needle.apps.diffusion_demo", *args], capture_output=True,
                          text=True, env=env, timeout=600)


@hw6
@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset-fashion-mnist not installed")
def test_job_trains_samples_and_scores(tmp_path):
    quick = ["--out", str(tmp_path), "--base-channels", "8", "--fd-samples", "16", "--ddim-steps", "2",
             "--timesteps", "50"]
    r = run_job("--steps", "3", "--train-images", "640", "--classifier-epochs", "1", *quick)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "trained 3 steps" in r.stdout
    for name in ("unet_ema_fashion_mnist.safetensors", "unet_fashion_mnist.json", "fashion_classifier.safetensors",
                 "diffusion_samples.png", "diffusion_denoising.png"):
        assert (tmp_path / name).is_file(), name
    last = r.stdout.strip().splitlines()[-1]
    fd, real, noise = (float(v) for v in
                       re.fullmatch(r"Frechet distance: (\S+) \(real: (\S+), noise: (\S+)\)", last).groups())
    assert real < noise  # the figure's scale: real images are far closer than noise
    r = run_job("--sample", *quick)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "training:" not in r.stdout and "checkpoint:" in r.stdout


def test_job_argument_errors(tmp_path):
    r = run_job("--ddim-steps", "0")
    assert r.returncode == 2 and "--ddim-steps must be positive" in r.stderr
    r = run_job("--sample", "--out", str(tmp_path))
    assert r.returncode == 2 and "no checkpoint" in r.stderr
