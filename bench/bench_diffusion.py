"""The DDPM U-Net: needle vs PyTorch (CPU) side by side, in one run.

    PYTHONPATH=python /usr/bin/python3 bench/bench_diffusion.py [--quick]

Cases (float32; needle.apps.models.UNet() as the diffusion job trains it: base 32,
channel mults (1, 2, 2), attention at 7x7, 1.11 M parameters):
  * one training step at batch 64 on 28x28: GaussianDiffusion.loss (timesteps and noise
    drawn, q_sample, the U-Net, the ε-prediction MSE), backward, an Adam update;
  * one DDIM step on 64 images (the U-Net without a graph, then the update); a 50-step
    sampling run is 50 of them, printed below the row in seconds.
PyTorch runs bench/torch_unet.py, the same network module for module, at 1 and 2 threads
(its better time counts); needle runs in a child process that never imports PyTorch (see
timing.compare). bench/bench_group_norm.py times GroupNorm alone.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import needle as ndl  # noqa: E402
import needle.optim  # noqa: E402,F401
from needle.apps.models import UNet  # noqa: E402
from needle.diffusion import GaussianDiffusion  # noqa: E402
from timing import compare, torch_unless_child  # noqa: E402

torch = torch_unless_child()
if torch is not None:
    import torch_unet  # noqa: E402  (imports torch: never in needle's child process)

BATCH, T, SAMPLE_STEPS = 64, 1000, 50


def images():
    return np.random.default_rng(0).uniform(-1, 1, (BATCH, 1, 28, 28)).astype(np.float32)


def torch_pieces():
    model = torch_unet.UNet()
    abar = torch.tensor(GaussianDiffusion(None, T).alphas_cumprod, dtype=torch.float32)
    return model, abar


def training_step():
    np.random.seed(0)
    model = UNet()
    diffusion = GaussianDiffusion(model, T)
    opt = ndl.optim.Adam(model.parameters(), lr=1e-4)
    x = ndl.Tensor(images(), requires_grad=False)

    def needle_fn():
        loss = diffusion.loss(x)
        opt.reset_grad()
        loss.backward()
        opt.step()

    if torch is None:
        return needle_fn, None
    tmodel, abar = torch_pieces()
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-4)
    tx = torch.tensor(images())

    def torch_fn():
        t = torch.randint(0, T, (BATCH,))
        noise = torch.randn_like(tx)
        a = abar[t].reshape(-1, 1, 1, 1)
        loss = ((tmodel(a.sqrt() * tx + (1 - a).sqrt() * noise, t) - noise) ** 2).mean()
        topt.zero_grad()
        loss.backward()
        topt.step()

    return needle_fn, torch_fn


def ddim_step():
    """One of the 50 steps of DDIM sampling (eta = 0), at a middle timestep."""
    np.random.seed(0)
    model = UNet()
    diffusion = GaussianDiffusion(model, T)
    noise = np.random.randn(BATCH, 1, 28, 28)

    def needle_fn():
        diffusion.ddim_sample(BATCH, (1, 28, 28), steps=1, noise=noise)

    if torch is None:
        return needle_fn, None
    tmodel, abar = torch_pieces()
    tmodel.eval()
    tx, t, t_next = torch.tensor(noise, dtype=torch.float32), 500, 480

    def torch_fn():
        with torch.no_grad():
            eps = tmodel(tx, torch.full((BATCH,), t))
            x0 = ((tx - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()).clamp(-1, 1)
            eps = (tx - abar[t].sqrt() * x0) / (1 - abar[t]).sqrt()
            return abar[t_next].sqrt() * x0 + (1 - abar[t_next]).sqrt() * eps

    return needle_fn, torch_fn


CASES = [
    (f"UNet training step (batch {BATCH}, 28x28), Adam", training_step),
    (f"DDIM step ({BATCH} images, no graph)", ddim_step),
]

if __name__ == "__main__":
    compare(__file__, CASES, torch, totals={CASES[1][0]: (SAMPLE_STEPS, f"DDIM, {SAMPLE_STEPS} steps, {BATCH} images")})
