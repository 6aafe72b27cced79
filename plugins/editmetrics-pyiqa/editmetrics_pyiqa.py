"""editmetrics plugin: learned FR-IQA metrics of SPPE Table 4 through pyiqa.

pyiqa is PolyForm Noncommercial (see LICENSE-NOTE.md); this module only
imports it when a metric is set up.

Nothing is downloaded. pyiqa's constructors fetch checkpoints by URL and timm
backbones from the Hugging Face hub; here every network is built with
``pretrained=False`` and its weights are loaded from local files in the folder
``pyiqa_weights`` (setting / env ``EDITMETRICS_PYIQA_WEIGHTS``), default
``$TORCH_HOME/hub/pyiqa`` (pyiqa's own cache folder, so files pyiqa downloaded
on another machine can be copied as they are). File names: ``FILES`` below and
docs/iqa.md.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

from editmetrics.plugins.hookspecs import hookimpl
from editmetrics.data.images import resize
from editmetrics.contract.metric import MetricError, Param
from editmetrics.metrics.iqa import IMAGE, NetPairMetric, require_file

# metric -> files it needs in the pyiqa weights folder
FILES = {
    "stlpips": {"alex": "alex_shift_tolerant.pth", "vgg": "vgg_shift_tolerant.pth"},
    "topiq_fr": {"kadid": "cfanet_fr_kadid_res50-2c4cc61d.pth", "pipal": "cfanet_fr_pipal_res50-69bbe5ba.pth"},
    "ahiq": {"head": "AHIQ_vit_p8_epoch33-da3ea303.pth",
             # timm ImageNet backbones (the hub files timm/<name>/model.safetensors, renamed)
             "resnet50": "resnet50.a1_in1k.safetensors",
             "vit": "vit_base_patch8_224.augreg2_in21k_ft_in1k.safetensors"},
    "afine": {"afine": "afine.pth"},
}

_patch_lock = threading.Lock()


def pyiqa_folder(settings: dict) -> str:
    folder = settings.get("pyiqa_weights")
    if folder:
        return os.path.expanduser(str(folder))
    import torch

    return os.path.join(torch.hub.get_dir(), "pyiqa")


def _need(settings, metric, key, what) -> str:
    folder = pyiqa_folder(settings)
    try:
        return require_file(folder, FILES[metric][key], what, metric)
    except MetricError as exc:  # name this plugin's setting, not the core one
        raise MetricError(str(exc).replace("iqa_weights / env EDITMETRICS_IQA_WEIGHTS",
                                           "pyiqa_weights / env EDITMETRICS_PYIQA_WEIGHTS")) from None


def _require_pyiqa() -> None:
    try:
        import pyiqa  # noqa: F401
    except ImportError as exc:
        raise MetricError(f"this metric needs pyiqa ({exc}); install the plugin with its dependencies: "
                          "pip install -c constraints.txt -e plugins/editmetrics-pyiqa "
                          "(pyiqa is PolyForm Noncommercial, see LICENSE-NOTE.md)") from None


def _torch_load(path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise MetricError(f"cannot read weight file {path}: {type(exc).__name__}: {exc}") from None


def _load_strict(module, state, path, what):
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MetricError(f"{path} does not fit {what}: {str(exc).splitlines()[0]}") from None


class _NoPretrainedTimm:
    """Stands in for the ``timm`` module inside a pyiqa arch module while it is
    built: every ``create_model`` gets ``pretrained=False`` (no hub access);
    the real weights are loaded from local files afterwards."""

    def __init__(self, timm):
        self._timm = timm

    def create_model(self, *args, **kwargs):
        kwargs["pretrained"] = False
        return self._timm.create_model(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._timm, name)


@contextmanager
def _patched(module, name, value):
    with _patch_lock:
        old = getattr(module, name)
        setattr(module, name, value)
        try:
            yield
        finally:
            setattr(module, name, old)


class _PyiqaMetric(NetPairMetric):
    def setup(self, ctx) -> None:
        _require_pyiqa()  # a clear reason for every record when pyiqa is absent
        super().setup(ctx)

    def _run(self, model, ctx):
        import torch

        model.eval().to(ctx.device)

        def run(x, y):  # x: compared image, y: reference; both [0, 1]
            with torch.no_grad():
                return model(x.to(ctx.device), y.to(ctx.device))

        return run


class STLPIPS(_PyiqaMetric):
    id = "stlpips"
    description = "ST-LPIPS shift-tolerant perceptual distance (pyiqa; local weights)"
    higher_is_better = False
    range = (0.0, None)
    params = {"image": IMAGE, "net": Param("alex", "backbone", ("alex", "vgg"))}

    def build(self, ctx):
        from pyiqa.archs.stlpips_arch import STLPIPS as Arch

        net = self.options["net"]
        path = _need(ctx.settings, "stlpips", net, f"ST-LPIPS {net} shift-tolerant network")
        model = Arch(net=net, variant="shift_tolerant", pretrained=False)
        state = _torch_load(path)
        # pyiqa loads this checkpoint non-strictly; require that it covers every
        # parameter so a wrong file cannot leave random weights in place.
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if k in dict(model.named_parameters())]
        if missing:
            raise MetricError(f"{path} lacks {len(missing)} parameter(s) of ST-LPIPS ({missing[0]}, ...)")

        import torch

        model.eval().to(ctx.device)

        def run(x, y):
            with torch.no_grad():  # normalize=True: inputs in [0, 1]
                return model(x.to(ctx.device), y.to(ctx.device), normalize=True)

        return run


class TopiqFR(_PyiqaMetric):
    id = "topiq_fr"
    description = "TOPIQ-FR (CFANet, ResNet-50) full-reference quality (pyiqa; local weights)"
    higher_is_better = True
    range = (0.0, 1.0)
    params = {"image": IMAGE, "train_set": Param("kadid", "checkpoint: trained on KADID-10k or PIPAL",
                                                 ("kadid", "pipal"))}

    def build(self, ctx):
        from pyiqa.archs.topiq_arch import CFANet

        which = self.options["train_set"]
        path = _need(ctx.settings, "topiq_fr", which, f"TOPIQ-FR checkpoint ({which})")
        model = CFANet(semantic_model_name="resnet50", model_name=f"cfanet_fr_{which}_res50", use_ref=True,
                       backbone_pretrain=False, pretrained=False)
        state = _torch_load(path)
        _load_strict(model, state.get("params", state), path, "TOPIQ-FR")
        return self._run(model, ctx)


class AHIQ(_PyiqaMetric):
    id = "ahiq"
    description = "AHIQ hybrid CNN/ViT full-reference quality (pyiqa; 224 px crops; local weights)"
    higher_is_better = True
    range = (0.0, 1.0)
    params = {"image": IMAGE}

    def build(self, ctx):
        import pyiqa.archs.ahiq_arch as arch
        from safetensors.torch import load_file

        head = _need(ctx.settings, "ahiq", "head", "AHIQ regressor/deformable-fusion checkpoint (PIPAL)")
        resnet = _need(ctx.settings, "ahiq", "resnet50", "timm resnet50.a1_in1k ImageNet weights")
        vit = _need(ctx.settings, "ahiq", "vit", "timm vit_base_patch8_224.augreg2_in21k_ft_in1k weights")
        with _patched(arch, "timm", _NoPretrainedTimm(arch.timm)):
            model = arch.AHIQ(pretrained=False)
        _load_strict(model.resnet50, load_file(resnet), resnet, "timm resnet50")
        _load_strict(model.vit, load_file(vit), vit, "timm vit_base_patch8_224")
        ckpt = _torch_load(head)
        try:
            _load_strict(model.regressor, ckpt["regressor_model_state_dict"], head, "AHIQ regressor")
            _load_strict(model.deform_net, ckpt["deform_net_model_state_dict"], head, "AHIQ deformable fusion")
        except KeyError as exc:
            raise MetricError(f"{head} has no {exc} (expected pyiqa's AHIQ checkpoint)") from None
        return self._run(model, ctx)

    # Inputs whose shorter side is <= 224 px are enlarged (bilinear) to 225 px by
    # pyiqa's own uniform_crop before its 224 px crops are taken: no resizing here.


class AFINE(_PyiqaMetric):
    id = "afine"
    description = "A-FINE generalised full-reference quality (pyiqa; sides made divisible by 32; local weights)"
    higher_is_better = False
    range = (None, None)
    params = {"image": IMAGE, "output": Param("all_scale", "A-FINE output: final scaled score (all_scale), "
                                              "unscaled (all), fidelity term (fr) or naturalness term (nr)",
                                              ("all_scale", "all", "fr", "nr"))}

    def build(self, ctx):
        import pyiqa.archs.afine_arch as arch
        from pyiqa.archs.afineclip_model import build_model

        path = _need(ctx.settings, "afine", "afine", "A-FINE checkpoint (fine-tuned CLIP ViT-B/32 + heads)")
        state = _torch_load(path)
        if "finetuned_clip" not in state:
            raise MetricError(f"{path} has no 'finetuned_clip' (expected pyiqa's afine.pth)")

        def local_clip(name, device="cpu", jit=False, download_root=None):
            # A-FINE overwrites every CLIP weight with its fine-tuned copy, so the
            # architecture is built from that state dict instead of OpenAI's file.
            return build_model({k: v.clone() for k, v in state["finetuned_clip"].items()}).float(), None

        with _patched(arch, "load", local_clip):
            model = arch.AFINE(model_type=f"afine_{self.options['output']}", pretrained_model_path=path)
        import torch

        model.eval().to(ctx.device)

        def run(x, y):
            # A-FINE's forward works on one pair at a time (it squeezes the batch axis)
            with torch.no_grad():
                return torch.cat([model(a[None].to(ctx.device), b[None].to(ctx.device)).reshape(1)
                                  for a, b in zip(x, y)])

        return run

    def adapt(self, image, reference):
        # CLIP ViT-B/32 patches: both sides must be divisible by 32. Resize
        # (bicubic) to the nearest multiple of 32 (at least 32) per side.
        h, w = image.shape[:2]
        size = (max(32, int(round(w / 32)) * 32), max(32, int(round(h / 32)) * 32))
        if size != (w, h):
            image, reference = resize(image, size), resize(reference, size)
        return image, reference


@hookimpl
def register_metrics(register):
    for cls in (STLPIPS, TopiqFR, AHIQ, AFINE):
        register(cls)


__all__ = ["FILES", "STLPIPS", "TopiqFR", "AHIQ", "AFINE", "pyiqa_folder"]


@hookimpl
def register_settings(register):
    from editmetrics.engine.settings import Setting

    register(Setting("pyiqa_weights", "path", None, "Folder of the pyiqa metrics' weight files "
                     "(default: <torch hub>/pyiqa)", True))
