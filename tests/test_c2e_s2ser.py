"""C2E-S2SER (SPPE paper, section 5) on tiny random models built from configs.

The architectures are the real diffusers/transformers classes at toy sizes:
FluxTransformer2DModel (1 double + 1 single block, FLUX Fill input layout),
AutoencoderKL (one downsampling, 4 latent channels), CLIPTextModel and
T5EncoderModel (1 layer) and a word-level fast tokenizer whose vocabulary holds
the test words and the T5 sentinel tokens used as edit tags. Nothing is
downloaded; the base model is written in FLUX.1-Fill-dev's folder layout so the
real loading code runs.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from editmetrics.models.c2e_s2ser_net import (
    C2ES2SER,
    TAGS,
    Batch,
    C2EConfig,
    tag_index,
    weak_tag,
)

WORDS = ["make", "the", "cat", "blue", "paint", "rocket", "red", "add", "a", "hat", "remove", "person", "in", "style", "of", "van", "gogh", "photo", "sky", "change", "background", "to", "beach", "turn", "it", "into", "winter", "scene"]
LATENT = 4  # latent channels
VAE_SCALE = 2  # one downsampling block


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>", "<extra_id_0>", "<extra_id_1>", "<extra_id_2>"]
    vocab = {tok: i for i, tok in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   additional_special_tokens=specials[3:], model_max_length=16)


def components(seed: int = 0):
    """(transformer, vae, text encoder, scheduler) at toy sizes, seeded."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from editmetrics.models.c2e_s2ser_net import FluxTextEncoder

    torch.manual_seed(seed)
    tok = tokenizer()
    vocab = len(tok)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=8 * LATENT + 4 * VAE_SCALE**2, out_channels=4 * LATENT, num_layers=1,
        num_single_layers=1, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
        pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=(4, 6, 6),
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=LATENT, norm_num_groups=8, scaling_factor=0.3611, shift_factor=0.1159,
        use_quant_conv=False, use_post_quant_conv=False,
    )
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=16, projection_dim=32,
                                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                        bos_token_id=tok.eos_token_id))
    t5 = T5EncoderModel(T5Config(vocab_size=vocab, d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id))
    text = FluxTextEncoder(tok, clip, tok, t5, max_sequence_length=12, clip_max_length=12)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    return transformer, vae, text, scheduler


def save_base(folder: str, seed: int = 0) -> str:
    """Write the tiny components in FLUX.1-Fill-dev's diffusers folder layout."""
    transformer, vae, text, scheduler = components(seed)
    transformer.save_pretrained(os.path.join(folder, "transformer"))
    vae.save_pretrained(os.path.join(folder, "vae"))
    text.clip_model.save_pretrained(os.path.join(folder, "text_encoder"))
    text.t5_model.save_pretrained(os.path.join(folder, "text_encoder_2"))
    text.clip_tokenizer.save_pretrained(os.path.join(folder, "tokenizer"))
    text.t5_tokenizer.save_pretrained(os.path.join(folder, "tokenizer_2"))
    scheduler.save_pretrained(os.path.join(folder, "scheduler"))
    return folder


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

SIZE = 32  # training/working resolution of the tests


def tiny_config(**kw) -> C2EConfig:
    base = dict(lora_rank=4, lora_alpha=4.0, tag_hidden=16, warmup_steps=2, max_sequence_length=12, resolution=SIZE)
    base.update(kw)
    return C2EConfig(**base)


@pytest.fixture(scope="module")
def model() -> C2ES2SER:
    torch.manual_seed(0)
    return C2ES2SER(*components(0), tiny_config())


def photo_tensor(name: str, size: int = SIZE) -> torch.Tensor:
    from skimage import data

    img = Image.fromarray(getattr(data, name)()).convert("RGB").resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None] * 2 - 1


@pytest.fixture(scope="module")
def batch() -> Batch:
    """Two SPPE-like records from real photographs: S is X with a patch replaced, S' an edit of S, Y the same edit of X."""
    xs = torch.cat([photo_tensor("astronaut"), photo_tensor("coffee")])
    mask = torch.zeros(2, 1, SIZE, SIZE)
    mask[:, :, 8:20, 10:26] = 1
    sur = xs * (1 - mask) + photo_tensor("chelsea").expand(2, -1, -1, -1) * mask
    tint = torch.tensor([0.3, -0.2, -0.2]).view(1, 3, 1, 1)
    edited = (sur + tint).clamp(-1, 1)
    target = (xs + tint).clamp(-1, 1)
    return Batch(xs, sur, edited, target, mask, ["make the cat blue", "add a hat"],
                 torch.tensor([TAGS.index("attribute"), TAGS.index("object")]))


# ---------------------------------------------------------------------------
# tags
# ---------------------------------------------------------------------------


def test_weak_tags_follow_instruction_templates():
    assert TAGS[weak_tag("add a red hat to the man")] == "object"
    assert TAGS[weak_tag("Remove the person on the left")] == "object"
    assert TAGS[weak_tag("replace the dog with a cat")] == "object"
    assert TAGS[weak_tag("make the car blue")] == "attribute"
    assert TAGS[weak_tag("change her hair colour to blond")] == "attribute"
    assert TAGS[weak_tag("turn it into a Van Gogh painting")] == "global"
    assert TAGS[weak_tag("change the background to a beach")] == "global"
    assert TAGS[weak_tag("add snow to make it a winter scene")] == "global"  # scene vocabulary beats "add"
    assert tag_index("local") == TAGS.index("attribute") and tag_index("GLOBAL") == 2 and tag_index(0) == 0
    with pytest.raises(ValueError):
        tag_index("texture")


# ---------------------------------------------------------------------------
# token layout against diffusers' own FLUX Fill code
# ---------------------------------------------------------------------------


def test_mask_and_latent_packing_match_flux_fill_pipeline(model):
    from types import SimpleNamespace

    from diffusers import FluxFillPipeline

    mask = (torch.rand(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    fake = SimpleNamespace(vae=model.vae, vae_scale_factor=model.vae_scale, _pack_latents=FluxFillPipeline._pack_latents)
    z = model.encode_images(photo_tensor("astronaut"))
    # passing latents as masked_image skips the VAE: only the packing/mask layout is compared
    ref_mask, _ = FluxFillPipeline.prepare_mask_latents(
        fake, mask, z, 1, model.latent_channels, 1, SIZE, SIZE, torch.float32, "cpu", None)
    assert torch.equal(model.mask_tokens(mask), ref_mask)
    # pack matches the pipeline's packing exactly, and unpack inverts it
    assert torch.equal(model.pack(z), FluxFillPipeline._pack_latents(z, 1, model.latent_channels, z.shape[2], z.shape[3]))
    assert torch.equal(model.unpack(model.pack(z), z.shape[2], z.shape[3]), z)
    # the noisy tokens carry exactly FLUX Fill's input width
    fill, cond = model.condition_tokens(z, z, z, mask)
    assert fill.shape[-1] + 4 * model.latent_channels == model.transformer.config.in_channels
    assert cond.shape == (1, 3 * fill.shape[1], model.transformer.config.in_channels)


def test_condition_tokens_blank_the_hole_and_keep_the_rest(model, batch):
    z = model.encode_images(batch.source[:1])
    mask = batch.mask[:1]
    fill, cond = model.condition_tokens(z, z * 0, z * 0, mask)
    c4 = 4 * model.latent_channels
    m_lat = model.pack(model.latent_mask(mask).expand(-1, model.latent_channels, -1, -1))
    blank = model.pack(model.blank_latent(SIZE, SIZE))
    keep = m_lat == 0
    assert keep.any() and (~keep).any()
    assert torch.equal(fill[..., :c4][keep], model.pack(z)[keep])  # outside M: the source latent
    assert torch.equal(fill[..., :c4][~keep], blank.expand_as(fill[..., :c4])[~keep])  # inside M: Fill's blank
    n = fill.shape[1]
    assert torch.equal(cond[:, :n, :c4], model.pack(z)) and torch.equal(cond[:, :n, c4:2 * c4], model.pack(z))
    assert torch.count_nonzero(cond[:, :, 2 * c4:]) == 0  # condition tokens: nothing to fill
    ids = model.image_ids(z.shape[2], z.shape[3])
    assert ids.shape == (4 * n, 3) and ids[:, 0].tolist() == [k for k in range(4) for _ in range(n)]
    assert torch.equal(ids[:n, 1:], ids[3 * n:, 1:])  # spatially aligned RoPE for X, S, S'


# ---------------------------------------------------------------------------
# losses, schedule, gradients
# ---------------------------------------------------------------------------


def test_cycle_loss_is_off_during_warmup_and_on_after(model, batch):
    cfg = model.config
    warm = model.losses(batch, cfg.warmup_steps - 1, torch.Generator().manual_seed(5))
    assert warm["cycle"] is None
    assert torch.allclose(warm["total"], warm["forward"] + cfg.tag_weight * warm["tag"])
    after = model.losses(batch, cfg.warmup_steps, torch.Generator().manual_seed(5))
    assert after["cycle"] is not None and after["cycle"].item() > 0
    # same generator seed: the forward and tag terms are the same draw
    assert torch.allclose(after["forward"], warm["forward"]) and torch.allclose(after["tag"], warm["tag"])
    assert torch.allclose(after["total"], warm["total"] + cfg.cycle_weight * after["cycle"])


def _grads(params):
    return [None if p.grad is None else p.grad.detach().clone() for p in params]


def test_reverse_path_and_tag_head_receive_gradients(model, batch):
    lora = model.lora_parameters()
    out = model.losses(batch, model.config.warmup_steps, torch.Generator().manual_seed(7))
    for p in model.trainable_parameters():
        p.grad = None
    out["cycle"].backward(retain_graph=True)
    grads = _grads(lora)
    named = [n for n, _ in model.transformer.named_parameters() if "lora_" in n]
    got = {n for n, g in zip(named, grads) if g is not None and g.abs().sum() > 0}
    # the reverse path trains the shared LoRA in double-stream and single-stream blocks
    assert any(n.startswith("transformer_blocks.") for n in got)
    assert any(n.startswith("single_transformer_blocks.") for n in got)
    assert all(p.grad is None for p in model.tag_head.parameters())  # tags enter as discrete tokens

    # the tag head learns from the weak-label cross-entropy
    for p in model.trainable_parameters():
        p.grad = None
    out["tag"].backward()
    tag_grads = [p.grad for p in model.tag_head.parameters()]
    assert all(g is not None for g in tag_grads) and sum(g.abs().sum() for g in tag_grads) > 0
    for p in model.trainable_parameters():
        p.grad = None


def test_cycle_gradient_flows_through_forward_estimate(model, batch, monkeypatch):
    """The cycle term also shapes the forward path through the estimate of the
    edited source (not detached): cutting that link changes the LoRA gradient."""
    lora = model.lora_parameters()

    def cycle_grads(detach: bool):
        if detach:  # cut the graph between the forward estimate and the reverse path
            real = model.condition_tokens

            def cut(z_src, z_sur, z_edit, mask):
                return real(z_src.detach() if z_src.requires_grad else z_src, z_sur, z_edit, mask)

            monkeypatch.setattr(model, "condition_tokens", cut)
        for p in lora:
            p.grad = None
        out = model.losses(batch, model.config.warmup_steps, torch.Generator().manual_seed(9))
        out["cycle"].backward()
        monkeypatch.undo()
        return torch.cat([p.grad.flatten() for p in lora])

    full, cut = cycle_grads(False), cycle_grads(True)
    assert not torch.allclose(full, cut)
    for p in lora:
        p.grad = None


def test_training_steps_lower_the_loss_on_a_fixed_batch(batch):
    torch.manual_seed(1)
    m = C2ES2SER(*components(1), tiny_config(warmup_steps=0))
    opt = torch.optim.AdamW(m.trainable_parameters(), lr=2e-2)
    history = []
    for _ in range(7):  # 6 updates; the same noise and sigma every step, so the objective is fixed
        out = m.losses(batch, 10, torch.Generator().manual_seed(11))
        history.append({k: out[k].item() for k in ("total", "forward", "cycle", "tag")})
        if len(history) < 7:
            opt.zero_grad()
            out["total"].backward()
            opt.step()
    first, last = history[0], history[-1]
    assert last["total"] < 0.85 * first["total"], history
    for key in ("forward", "cycle", "tag"):  # each of the three objectives improves
        assert last[key] < first[key], (key, history)


# ---------------------------------------------------------------------------
# end to end: `editmetrics train c2e-s2ser`, checkpoint, recoverer inference
# ---------------------------------------------------------------------------


def _sppe_files(folder: str) -> str:
    """Three SPPE-format records from real photographs at 40x28 (not a multiple of 16)."""
    from skimage import data

    rows = []
    patch = np.asarray(Image.fromarray(data.chelsea()).convert("RGB").resize((16, 12)), dtype=np.float32) / 255
    for name, instruction, tag in (("astronaut", "make the person red", None), ("coffee", "add a hat", None),
                                   ("rocket", "turn it into winter scene", "global")):
        x = np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB").resize((40, 28)), dtype=np.float32) / 255
        mask = np.zeros((28, 40), bool)
        mask[8:20, 12:28] = True
        s = x.copy()
        s[8:20, 12:28] = patch
        tint = np.array([0.25, -0.1, -0.1], np.float32)
        files = {"source": x, "surrogate": s, "edited_surrogate": np.clip(s + tint, 0, 1), "target": np.clip(x + tint, 0, 1)}
        row = {"id": name, "instruction": instruction, "mask": f"{name}_mask.png"}
        for key, arr in files.items():
            Image.fromarray((arr * 255).round().astype(np.uint8)).save(os.path.join(folder, f"{name}_{key}.png"))
            row[key] = f"{name}_{key}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(os.path.join(folder, f"{name}_mask.png"))
        if tag:
            row["edit_tag"] = tag
        rows.append(row)
    path = os.path.join(folder, "train.jsonl")
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny FLUX Fill folder and a checkpoint trained on it through the CLI command."""
    from click.testing import CliRunner

    from editmetrics.cli.app import cli

    root = tmp_path_factory.mktemp("c2e")
    base = save_base(str(root / "flux-fill"))
    pairs = _sppe_files(str(root))
    out = str(root / "ckpt")
    args = ["train", "c2e-s2ser", "--pairs", pairs, "--out", out, "--base", base, "--steps", "3",
            "--warmup-steps", "1", "--rank", "4", "--resolution", str(SIZE), "--optimizer", "adamw", "--lr", "1e-3",
            "--max-sequence-length", "12", "--tag-hidden", "16", "--device", "cpu", "--save-every", "2", "--log-every", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return {"base": base, "ckpt": out, "pairs": pairs, "output": result.output, "root": root}


def test_train_command_writes_a_staged_checkpoint(trained):
    from safetensors.torch import load_file

    out = trained["ckpt"]
    assert "3 training records (2 with tags from instruction templates)" in trained["output"]
    with open(os.path.join(out, "config.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    assert meta["format"] == "editmetrics-c2e-s2ser" and meta["step"] == 3
    assert meta["config"]["lora_rank"] == 4 and meta["config"]["warmup_steps"] == 1
    state = load_file(os.path.join(out, "c2e_s2ser.safetensors"))
    assert any(k.startswith("lora.") and "lora_B" in k for k in state)
    assert any(k.startswith("tag_head.") for k in state)
    with open(os.path.join(out, "train_log.jsonl"), encoding="utf-8") as fh:
        log = [json.loads(line) for line in fh]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert log[0]["cycle"] is None and all(r["cycle"] is not None for r in log[1:])  # warm-up of 1 step
    # LoRA B starts at zero in peft; after training it is not
    assert any(v.abs().sum() > 0 for k, v in state.items() if "lora_B" in k)


def test_recoverer_restores_source_size_and_reproduces_seeds(trained):
    from editmetrics.data.images import load_image, load_mask
    from editmetrics.models.c2e_s2ser import C2ES2SERRecoverer

    model = C2ES2SERRecoverer(steps=2).configure({"flux_fill": trained["base"], "c2e_s2ser": trained["ckpt"]})
    assert model.weights_present() is True
    model.load("cpu")
    # the trained tensors are the ones in use
    from safetensors.torch import load_file

    saved = load_file(os.path.join(trained["ckpt"], "c2e_s2ser.safetensors"))
    live = model.net.trainable_state_dict()
    assert saved.keys() == live.keys() and all(torch.equal(saved[k], live[k]) for k in saved)

    root = trained["root"]
    inputs = {k: load_image(str(root / f"coffee_{k}.png")) for k in ("source", "surrogate", "edited_surrogate")}
    inputs["mask"] = load_mask(str(root / "coffee_mask.png"))
    inputs["instruction"] = "add a hat"
    a = model.predict(inputs, seed=4)
    b = model.predict(inputs, seed=4)
    c = model.predict(inputs, seed=5)
    assert a["edited"].shape == inputs["source"].shape == (28, 40, 3) and a["edited"].dtype == np.float32
    assert 0.0 <= a["edited"].min() and a["edited"].max() <= 1.0
    assert np.array_equal(a["edited"], b["edited"])
    assert not np.array_equal(a["edited"], c["edited"])
    assert a["info"]["edit_tag"] in TAGS and a["info"]["tag_from"] == "head"
    forced = C2ES2SERRecoverer(steps=2, tag="global").configure(model.settings)
    forced.net = model.net  # same weights; the parameter forces the tag token
    assert forced.predict(inputs, seed=4)["info"]["edit_tag"] == "global"
    no_mask = {k: v for k, v in inputs.items() if k != "mask"}  # mask is optional: whole image
    assert model.predict(no_mask, seed=4)["edited"].shape == (28, 40, 3)


def test_missing_weights_name_what_and_where(trained, tmp_path):
    from click.testing import CliRunner

    from editmetrics.cli.app import cli
    from editmetrics.contract.model import ModelError
    from editmetrics.models.c2e_s2ser import C2ES2SERRecoverer

    missing = str(tmp_path / "nowhere")
    m = C2ES2SERRecoverer().configure({"flux_fill": trained["base"], "c2e_s2ser": missing})
    assert m.weights_present() is False
    with pytest.raises(ModelError, match="checkpoint not found.*c2e_s2ser.safetensors.*nowhere"):
        m.load("cpu")
    m = C2ES2SERRecoverer().configure({"flux_fill": missing, "c2e_s2ser": trained["ckpt"]})
    with pytest.raises(ModelError, match="FLUX.1-Fill-dev not found at .*nowhere"):
        m.load("cpu")
    half = tmp_path / "half"
    (half / "transformer").mkdir(parents=True)
    m = C2ES2SERRecoverer().configure({"flux_fill": str(half), "c2e_s2ser": trained["ckpt"]})
    with pytest.raises(ModelError, match="lacks vae/, text_encoder/"):
        m.load("cpu")
    result = CliRunner().invoke(cli, ["train", "c2e-s2ser", "--pairs", trained["pairs"], "--out", str(tmp_path / "o"),
                                      "--base", missing, "--optimizer", "adamw"])
    assert result.exit_code == 1 and "FLUX.1-Fill-dev not found" in result.output


def test_editmetrics_run_writes_recovered_images_of_source_size(trained, tmp_path):
    from editmetrics.models import c2e_s2ser
    from editmetrics.plugins.registry import Registry
    from editmetrics.engine.model_runs import run_model

    registry = Registry()
    registry.add(c2e_s2ser, "c2e-s2ser")
    settings = {"flux_fill": trained["base"], "c2e_s2ser": trained["ckpt"]}
    result = run_model("c2e-s2ser", trained["pairs"], str(tmp_path), seed=3, assignments={"steps": "1"},
                       settings=settings, registry=registry, progress=False)
    assert result.written == 3 and result.failed_records == 0
    with open(tmp_path / "pairs.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh][1:]  # line 1: the run header
    for row in rows:
        out = Image.open(tmp_path / row["edited"])
        src = Image.open(os.path.join(os.path.dirname(trained["pairs"]), os.path.basename(row["source"])))
        assert out.size == src.size == (40, 28)
        assert row["model_run"]["info"]["edit_tag"] in TAGS and row["model_run"]["params"]["steps"] == 1
