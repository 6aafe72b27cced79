"""R-SIE's region-wise diffusion and the InstructPix2Pix-family editors, on
tiny random diffusers models built offline (real architectures, toy sizes)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from editmetrics.contract.model import ModelError
from editmetrics.models.diffusion import InstructPix2Pix, fit_alpha, latent_mask, reconstruct, rwdp_sample
from editmetrics.testing.tiny import save_tiny_ip2p, sd_scheduler_config
from editmetrics.engine.model_runs import run_model

from helpers import photo, read_jsonl, save, write_pairs


@pytest.fixture(scope="module")
def tiny_ip2p(tmp_path_factory):
    return save_tiny_ip2p(str(tmp_path_factory.mktemp("tiny-ip2p")))


@pytest.fixture(scope="module")
def rwdp_model(tiny_ip2p):
    model = InstructPix2Pix(mode="rwdp", steps=10).configure({"ip2p": tiny_ip2p})
    model.load("cpu")
    return model


def _ddim(spacing="leading"):
    """DDIM as the rwdp mode builds it (Stable Diffusion 1.x's settings)."""
    return DDIMScheduler(**sd_scheduler_config(), timestep_spacing=spacing, clip_sample=False, set_alpha_to_one=False)


def _noised(scheduler, z0, eps, steps):
    scheduler.set_timesteps(steps)
    return scheduler.add_noise(z0, eps, scheduler.timesteps[:1])


def _mse(a, b):
    return torch.mean((a - b) ** 2).item()


def test_alpha_fit_repairs_the_schedule_mismatch():
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn((1, 4, 8, 8), generator=g), torch.randn((1, 4, 8, 8), generator=g)
    # DDIM's last step lands on alpha_bar_0 < 1, not on z0: alpha = 1 leaves sqrt(1 - alpha_bar_0) eps behind
    ddim = _ddim()
    fit = fit_alpha(ddim, _noised(ddim, z0, eps, 10), eps, z0, steps=10, iters=100, lr=0.01)
    assert fit["alpha"] > 1.0 and fit["recon_mse"] < fit["recon_mse_alpha1"] / 1000
    assert _mse(reconstruct(ddim, _noised(ddim, z0, eps, 10), eps, fit["alpha"], 10), z0) == pytest.approx(
        fit["recon_mse"], rel=1e-3)  # the reported loss is the real one
    # "linspace" timesteps with DDIM's fixed stride: forward and backward schedules differ.
    # 100 Adam steps reach the best scale found by an independent grid search.
    lin = _ddim("linspace")
    z_t = _noised(lin, z0, eps, 10)
    fit = fit_alpha(lin, z_t, eps, z0, steps=10, iters=100, lr=0.01)
    grid = min(_mse(reconstruct(lin, z_t, eps, a, 10), z0) for a in np.linspace(0.95, 1.1, 151))
    assert fit["recon_mse"] <= grid * 1.001 and fit["recon_mse"] < fit["recon_mse_alpha1"] / 2
    # Euler integrates the noise it added exactly: alpha = 1 is already optimal and stays best
    euler = EulerDiscreteScheduler(**sd_scheduler_config())
    fit = fit_alpha(euler, _noised(euler, z0, eps, 10), eps, z0, steps=10, iters=20, lr=0.01)
    assert fit["recon_mse_alpha1"] < 1e-10 and fit["alpha"] == 1.0


def test_region_wise_process_reproduces_input_latents_outside_the_mask(rwdp_model):
    pipe = rwdp_model.pipe
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn((1, 4, 8, 12), generator=g)  # unit-variance latents like Stable Diffusion's scaled ones
    image_latents = z0 / pipe.vae.config.scaling_factor
    mask = torch.zeros((1, 1, 8, 12))
    mask[..., 2:6, 3:9] = 1
    steps = 10
    z, info = rwdp_sample(pipe.unet, _ddim(), rwdp_model._encode_text("make the cat blue"), image_latents, z0, mask,
                          steps=steps, guidance_scale=7.5, image_guidance_scale=1.5,
                          generator=torch.Generator().manual_seed(5), alpha_steps=100)
    # rwdp_sample draws eps_reconst first, then z_gen
    eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(5))
    fitted = reconstruct(_ddim(), _noised(_ddim(), z0, eps, steps), eps, info["alpha"], steps)
    plain = reconstruct(_ddim(), _noised(_ddim(), z0, eps, steps), eps, 1.0, steps)
    bg = (mask == 0).expand_as(z0)
    # the background follows the scheduler-only reconstruction exactly, whatever the UNet does inside
    torch.testing.assert_close(z[bg], fitted[bg], atol=1e-5, rtol=0)
    err_fitted, err_plain = _mse(z[bg], z0[bg]), _mse(plain[bg], z0[bg])
    assert err_fitted < 1e-5 and err_fitted < err_plain / 100, (err_fitted, err_plain, info)
    # inside the mask the latent is generated, not reconstructed
    assert _mse(z[~bg], z0[~bg]) > 0.05
    assert info["mask_fraction"] == pytest.approx(mask.mean().item())


def test_latent_mask_covers_every_touched_cell():
    mask = torch.zeros((1, 1, 16, 16), dtype=torch.bool)
    mask[0, 0, 5, 9] = True  # one pixel
    m = latent_mask(mask, 8)
    assert m.shape == (1, 1, 2, 2) and m[0, 0, 0, 1] == 1 and m.sum() == 1


def _pairs(folder, with_mask=True):
    """One photo twice under two ids: the records differ only in their seeds."""
    source = save(photo("astronaut", (48, 40)), os.path.join(folder, "astronaut.png"))
    m = np.zeros((40, 48), np.uint8)
    m[8:28, 10:30] = 255
    mask = save(m, os.path.join(folder, "mask.png"))
    recs = [{"id": f"e{i}", "instruction": "make it blue", "source": source, **({"mask": mask} if with_mask else {})}
            for i in range(2)]
    return write_pairs(os.path.join(folder, "pairs.jsonl"), recs)


def _images(out):
    rows = read_jsonl(os.path.join(out, "pairs.jsonl"))
    assert all("error" not in r for r in rows), rows
    return rows, [open(os.path.join(out, r["edited"]), "rb").read() for r in rows]


def test_editors_run_seeded_at_source_size(tiny_ip2p, tmp_path):
    from PIL import Image

    pairs = _pairs(str(tmp_path))
    fast = {"steps": "3", "resolution": "32", "alpha_steps": "10"}
    settings = {"ip2p": tiny_ip2p, "magicbrush": tiny_ip2p}
    runs = {}
    for name, model, mode in [("a", "ip2p", "rwdp"), ("b", "ip2p", "rwdp"), ("s", "magicbrush", "standard")]:
        run_model(model, pairs, str(tmp_path / name), seed=0, assignments={**fast, "mode": mode}, settings=settings)
        runs[name] = _images(str(tmp_path / name))
    rows, images = runs["a"]
    assert images == runs["b"][1]  # seeds reproduce outputs, byte for byte
    assert images[0] != images[1]  # the same input under another record seed
    assert runs["s"][1][0] != images[0]
    assert Image.open(tmp_path / "a" / rows[0]["edited"]).size == (48, 40)  # back on the source's grid
    assert Image.open(tmp_path / "s" / runs["s"][0][0]["edited"]).size == (48, 40)
    run = rows[0]["model_run"]
    assert run["params"]["mode"] == "rwdp" and run["params"]["steps"] == 3
    assert run["info"]["scheduler"] == "DDIMScheduler" and run["info"]["working_size"] == [32, 26]
    assert run["info"]["recon_mse"] <= run["info"]["recon_mse_alpha1"] and run["info"]["region_field"] == "mask"
    weights = run["weights"]["instruct-pix2pix"]
    assert weights["path"] == os.path.abspath(tiny_ip2p) and len(weights["fingerprint"]) == 16
    # MagicBrush: the same pipeline class, here pointed at the same folder
    assert runs["s"][0][0]["model_run"]["weights"]["magicbrush"]["fingerprint"] == weights["fingerprint"]


def test_rwdp_needs_a_mask_and_a_deterministic_scheduler(tiny_ip2p, tmp_path):
    pairs = _pairs(str(tmp_path), with_mask=False)
    run_model("ip2p", pairs, str(tmp_path / "o"), assignments={"mode": "rwdp", "steps": "2", "resolution": "16"},
              settings={"ip2p": tiny_ip2p})
    rows = read_jsonl(str(tmp_path / "o" / "pairs.jsonl"))
    assert all("needs a 'mask'" in r["error"] and "edited" not in r for r in rows)
    run_model("r-sie", pairs, str(tmp_path / "r"), settings={"rsie": tiny_ip2p})  # rwdp by default
    assert all("needs a 'mask'" in r["error"] for r in read_jsonl(str(tmp_path / "r" / "pairs.jsonl")))
    model = InstructPix2Pix(mode="rwdp", scheduler="euler_ancestral").configure({"ip2p": tiny_ip2p})
    with pytest.raises(ModelError, match="deterministic"):
        model.load("cpu")
