"""Built-in plugin: learned full-reference IQA baselines (LPIPS, DISTS).

Both are permissively licensed (lpips: BSD-2, piq: Apache-2.0). The pyiqa
metrics of SPPE Table 4 (ST-LPIPS, TOPIQ-FR, AHIQ, A-FINE) live in the separate
plugin ``plugins/editmetrics-pyiqa`` because pyiqa is PolyForm Noncommercial.

Weights (see ``docs/iqa.md``) are read from local files only, never downloaded:
the folder is the setting ``iqa_weights`` (env ``EDITMETRICS_IQA_WEIGHTS``),
else torchvision's own cache ``$TORCH_HOME/hub/checkpoints`` (where a machine
that ever ran ``torchvision.models.alexnet(weights=...)`` already has them).
The networks are built with random backbones (so neither package reaches for
the network) and the local state dicts are loaded into them.

Which image is compared: ``image`` (default ``edited``) against the reference
(``@FIELD``, default ``source``); SPPE task 1 scores ``lpips(image=surrogate)``.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Callable

import numpy as np

from editmetrics.plugins.hookspecs import hookimpl
from editmetrics.contract.metric import Metric, MetricError, Param
from editmetrics.contract.model import Weight
from editmetrics.data.records import IMAGE_FIELDS

IMAGE = Param("edited", "image field compared with the reference", IMAGE_FIELDS)


def default_checkpoints_dir() -> str:
    """torch.hub's checkpoints folder by its documented rule ($TORCH_HOME, else
    $XDG_CACHE_HOME/torch, else ~/.cache/torch; then hub/checkpoints), without
    importing torch: the metrics and `weights list` look in the same place."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return os.path.join(os.path.expanduser(home), "hub", "checkpoints")


def _iqa_weight(name: str, file: str, hint: str) -> Weight:
    return Weight(name, f"{file}: {hint}; in the folder of setting iqa_weights (default: torch hub's checkpoints)",
                  path=default_checkpoints_dir(), setting="iqa_weights", file=file)


def weights_folder(settings: dict) -> str:
    folder = settings.get("iqa_weights")
    return os.path.expanduser(str(folder)) if folder else default_checkpoints_dir()


def require_file(folder: str, name: str, what: str, metric: str) -> str:
    """The path of a weight file, or a MetricError naming the file and folder."""
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise MetricError(
            f"{metric}: weight file {name} ({what}) not found in {folder}; put it there "
            "(or point the setting iqa_weights / env EDITMETRICS_IQA_WEIGHTS at its folder). "
            "Nothing is downloaded."
        )
    return path


def load_state(path: str) -> dict:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or pickled file: say which
        raise MetricError(f"cannot read weight file {path}: {type(exc).__name__}: {exc}") from None


def load_features(module, state: dict, path: str) -> None:
    """Load the ``features.*`` part of a torchvision classifier state dict into
    ``module`` (a ``features`` Sequential); the classifier head is not needed."""
    feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    try:
        module.load_state_dict(feats, strict=True)
    except RuntimeError as exc:
        raise MetricError(f"{path} does not fit the network: {str(exc).splitlines()[0]}") from None


def to_tensor(image: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class PairNetService:
    """Runs one loaded network on queued (image, reference) pairs in batches.

    Metrics queue pairs in ``prepare``; the runner calls ``flush`` once per
    batch; pairs of equal size go through the network together. ``fn`` maps
    two float tensors (B, 3, H, W) in [0, 1] to B scores.
    """

    def __init__(self, fn: Callable, max_batch: int = 16):
        self.fn = fn
        self.max_batch = max_batch
        self.queue: dict = {}
        self.results: dict = {}
        self.lock = threading.Lock()

    def request(self, key, image: np.ndarray, reference: np.ndarray) -> None:
        self.queue[key] = (image, reference)

    def flush(self) -> None:
        import torch

        by_shape: dict = {}
        for key, (a, b) in self.queue.items():
            by_shape.setdefault(a.shape, []).append((key, a, b))
        self.queue = {}
        for items in by_shape.values():
            for start in range(0, len(items), self.max_batch):
                chunk = items[start:start + self.max_batch]
                x = torch.stack([to_tensor(a) for _, a, _ in chunk])
                y = torch.stack([to_tensor(b) for _, _, b in chunk])
                try:
                    with torch.no_grad():
                        out = self.fn(x, y).reshape(-1).double().cpu().numpy()
                except Exception as exc:  # noqa: BLE001 - recorded per record
                    for key, _, _ in chunk:
                        self.results[key] = MetricError(f"{type(exc).__name__}: {exc}")
                    continue
                for (key, _, _), value in zip(chunk, out):
                    self.results[key] = float(value)

    def result(self, key) -> float:
        if key not in self.results:
            raise MetricError("no result: the pair was not queued")
        value = self.results.pop(key)
        if isinstance(value, Exception):
            raise value
        return value


class NetPairMetric(Metric):
    """Base of network FR metrics: ``image`` vs the reference through a shared
    ``PairNetService`` built once per run (``service_name``/``build``)."""

    fields = ("edited",)  # the default of the `image` parameter, which decides the field
    reference = "source"
    min_side = 32  # below this the backbones' pooling runs out of pixels

    def required_fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.options["image"], self.ref)))

    def service_name(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()) if k != "image")
        return f"iqa.{self.id}({opts})"

    def build(self, ctx) -> Callable:  # pragma: no cover - abstract
        raise NotImplementedError

    def setup(self, ctx) -> None:
        # Errors (missing weights) surface here: the runner records them for
        # every record of this metric and scores the other metrics.
        self.service = ctx.service(self.service_name(), lambda c: PairNetService(self.build(c)))

    def adapt(self, image: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Input constraints of the network (sizes); both arrays share a shape."""
        if min(image.shape[:2]) < self.min_side:
            raise MetricError(f"{self.id} needs images of at least {self.min_side} px per side, "
                              f"got {image.shape[1]}x{image.shape[0]}")
        return image, reference

    def prepare(self, rec) -> None:
        image, ref = rec.pair(self.options["image"], self.ref)
        image, ref = self.adapt(image, ref)
        self.service.request((rec.uid, id(self)), image, ref)

    def compute(self, rec):
        return self.service.result((rec.uid, id(self)))


# torchvision ImageNet weights by backbone (file names of torchvision's cache)
TORCHVISION_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


class LPIPS(NetPairMetric):
    id = "lpips"
    description = "LPIPS v0.1 learned perceptual distance (lpips package; ImageNet backbone from local file)"
    higher_is_better = False
    range = (0.0, None)
    params = {"image": IMAGE, "net": Param("alex", "backbone", ("alex", "vgg", "squeeze"))}
    weights = (_iqa_weight("alexnet", "alexnet-owt-7be5be79.pth",
                           "torchvision's ImageNet AlexNet (net=alex, the default; net=vgg needs vgg16-397923af.pth)"),)

    def build(self, ctx) -> Callable:
        import lpips

        net = self.options["net"]
        folder = weights_folder(ctx.settings)
        path = require_file(folder, TORCHVISION_FILES[net], f"torchvision ImageNet {net} weights", f"lpips(net={net})")
        state = load_state(path)
        # pnet_rand=True: lpips builds the backbone without asking torchvision to
        # download; its calibrated linear heads ship inside the lpips package.
        with warnings.catch_warnings():  # torchvision's 'pretrained' deprecation notice
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False).eval()
        features = _lpips_features(model.net)
        load_features(features, state, path)
        model.to(ctx.device)

        def run(x, y):
            return model(x.to(ctx.device), y.to(ctx.device), normalize=True)  # [0,1] -> [-1,1] inside

        return run


def _lpips_features(pnet):
    """A Sequential view over lpips' backbone slices, indexed like torchvision's
    ``features`` (lpips names each sliced layer by its features index)."""
    import torch

    layers = {}
    for name, child in pnet.named_children():
        if name.startswith("slice"):
            for idx, module in child.named_children():
                layers[int(idx)] = module
    seq = torch.nn.Sequential()
    for idx in range(max(layers) + 1):
        seq.add_module(str(idx), layers.get(idx, torch.nn.Identity()))
    return seq


DISTS_FILE = "dists_weights.pt"


class DISTS(NetPairMetric):
    id = "dists"
    description = "DISTS structure/texture distance (piq; VGG16 and alpha/beta weights from local files)"
    higher_is_better = False
    range = (0.0, 1.0)
    params = {"image": IMAGE}
    weights = (_iqa_weight("vgg16", "vgg16-397923af.pth", "torchvision's ImageNet VGG16"),
               _iqa_weight("alpha_beta", "dists_weights.pt", "DISTS alpha/beta of piq's release v0.4.1"))

    def build(self, ctx) -> Callable:
        import torch
        import torchvision
        from piq.perceptual import DISTS as PiqDISTS, VGG16_LAYERS, ContentLoss

        folder = weights_folder(ctx.settings)
        vgg_path = require_file(folder, TORCHVISION_FILES["vgg"], "torchvision ImageNet VGG16 weights", "dists")
        dists_path = require_file(folder, DISTS_FILE, "DISTS alpha/beta, piq release v0.4.1", "dists")
        # only the convolutional part: the random classifier (120M parameters)
        # would cost seconds to initialise for nothing
        features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"], batch_norm=False)
        load_features(features, load_state(vgg_path), vgg_path)
        ab = load_state(dists_path)
        if not {"alpha", "beta"} <= set(ab):
            raise MetricError(f"{dists_path} has no 'alpha'/'beta' tensors (expected piq's dists_weights.pt)")
        channels = [3, 64, 128, 256, 512, 512]
        weights = list(torch.split(ab["alpha"], channels, dim=1)) + list(torch.split(ab["beta"], channels, dim=1))
        # piq.DISTS.__init__ would fetch both files by URL; build the same
        # object through ContentLoss with the locally loaded VGG instead.
        model = PiqDISTS.__new__(PiqDISTS)
        layers = ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]
        ContentLoss.__init__(model, feature_extractor=features, layers=[VGG16_LAYERS[n] for n in layers],
                             weights=weights, replace_pooling=True, reduction="none",
                             normalize_features=False, allow_layers_weights_mismatch=True)
        model.eval().to(ctx.device)

        def run(x, y):
            return model(x.to(ctx.device), y.to(ctx.device))

        return run


@hookimpl
def register_metrics(register):
    register(LPIPS)
    register(DISTS)
