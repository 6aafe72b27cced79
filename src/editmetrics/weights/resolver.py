"""Local weights: where they are looked up, how they are loaded, what the CLI shows.

Rules (see ``docs/semantic.md``):

- Nothing is downloaded unless the setting ``allow_download`` is true
  (``--set allow_download=true`` or ``EDITMETRICS_ALLOW_DOWNLOAD=1``), and even
  then never while ``HF_HUB_OFFLINE`` is set.
- Checkpoints are read with safetensors or ``torch.load(weights_only=True)``.
  The one exception is an OpenAI TorchScript archive (``ViT-L-14.pt`` ...),
  which ``weights_only`` cannot read: it is loaded with ``torch.jit.load`` only
  after its sha256 matched the hash OpenAI publishes in its download URL.
- A missing file raises ``WeightsMissing`` whose message names the model, the
  file and where to put it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from editmetrics.contract.metric import MetricError

DEFAULT_WEIGHTS_DIR = "~/.cache/editmetrics/weights"
TRUE = ("1", "true", "yes", "on")


class WeightsMissing(MetricError):
    """A weight file or folder is not on local disk (and may not be downloaded)."""


class UnsafeCheckpoint(MetricError):
    """A checkpoint that cannot be read without unpickling arbitrary objects."""


def truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in TRUE


def hub_offline() -> bool:
    return truthy(os.environ.get("HF_HUB_OFFLINE", "")) or truthy(os.environ.get("TRANSFORMERS_OFFLINE", ""))


def downloads_allowed(settings: dict) -> bool:
    """The documented switch: setting ``allow_download``; HF_HUB_OFFLINE wins."""
    return truthy(settings.get("allow_download", False)) and not hub_offline()


def weights_dir(settings: dict) -> str:
    return os.path.expanduser(str(settings.get("weights_dir") or DEFAULT_WEIGHTS_DIR))


def weight_path(weight, settings: dict | None) -> str | None:
    """Where a ``Weight`` (of a model or metric) is: the setting ``weight.setting``
    (``--set``, environment, config file), then ``EDITMETRICS_<SETTING>``, then
    ``weight.path``. The one resolver behind model loading, `editmetrics
    models`, `weights list` and `weights verify`."""
    value = None
    if weight.setting:
        value = (settings or {}).get(weight.setting) or os.environ.get(f"EDITMETRICS_{weight.setting.upper()}")
    value = value or weight.path
    if value and weight.file:
        value = os.path.join(str(value), weight.file)
    return os.path.expanduser(str(value)) if value else None


def weight_present(path: str | None) -> bool:
    return bool(path) and os.path.exists(os.path.expanduser(path))


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def file_identity(path: str) -> str:
    """Cheap identity of a weight file for cache keys: real path, size, mtime.
    (Hashing a 1.7 GB checkpoint on every run would cost seconds.)"""
    real = os.path.realpath(path)
    if os.path.isdir(real):
        parts = []
        for name in sorted(os.listdir(real)):
            st = os.stat(os.path.join(real, name))
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
        return real + "|" + ",".join(parts)
    st = os.stat(real)
    return f"{real}|{st.st_size}|{st.st_mtime_ns}"


# ---------------------------------------------------------------------------
# Safe loading
# ---------------------------------------------------------------------------


def _is_torchscript(path: str) -> bool:
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in zf.namelist())


def load_state_dict(path: str) -> dict:
    """A flat ``name -> tensor`` dict from a checkpoint, never unpickling objects."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path, device="cpu")
    elif _is_torchscript(path):
        digest = sha256_file(path)
        if digest not in _published_hashes():
            raise UnsafeCheckpoint(
                f"{path} is a TorchScript archive, which torch.load(weights_only=True) cannot read, and its "
                f"sha256 {digest[:16]}... is not one of the published OpenAI CLIP hashes; convert it to "
                "safetensors (or a plain state dict) first"
            )
        state = torch.jit.load(path, map_location="cpu").state_dict()
        for key in ("input_resolution", "context_length", "vocab_size"):
            state.pop(key, None)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - the unpickler refused a non-tensor object
            raise UnsafeCheckpoint(
                f"{path} cannot be read with torch.load(weights_only=True) ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}); save a plain state dict or safetensors"
            ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise UnsafeCheckpoint(f"{path} does not hold a state dict (name -> tensor)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


# ---------------------------------------------------------------------------
# Known files (sha256): OpenAI publishes the hash in each download URL
# ---------------------------------------------------------------------------

def known_sha256(arch: str, tag: str) -> str | None:
    """The published sha256 of an open_clip tag's file, when its URL carries one
    (OpenAI's ``openaipublic.../models/<sha256>/<name>.pt``)."""
    try:
        import open_clip.pretrained as ocp
    except ImportError:  # pragma: no cover
        return None
    url = ocp.get_pretrained_cfg(arch, tag).get("url", "")
    match = re.search(r"openaipublic[^ ]*/models/([0-9a-f]{64})/", url)
    return match.group(1) if match else None


def _published_hashes() -> set[str]:
    import open_clip.pretrained as ocp

    return {h for h in (known_sha256(m, t) for m, t in ocp.list_pretrained()) if h}


# ---------------------------------------------------------------------------
# Locating open_clip weights for ARCH:TAG
# ---------------------------------------------------------------------------


@dataclass
class Located:
    """Result of a lookup: the path found (or None) and every place searched."""

    path: str | None
    searched: list[str] = field(default_factory=list)
    expected_name: str = ""
    home: str = ""  # where the user should put the file
    source: str = ""  # where it can be obtained


def open_clip_tag_files(arch: str, tag: str) -> tuple[dict, list[str], str]:
    """(pretrained cfg, candidate file names, human source) for an open_clip tag."""
    import open_clip.pretrained as ocp

    cfg = ocp.get_pretrained_cfg(arch, tag)
    names: list[str] = []
    sources = []
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, fname = os.path.split(hub)
        fname = fname or "open_clip_pytorch_model.bin"
        for alt in ("open_clip_model.safetensors", fname[:-4] + ".safetensors" if fname.endswith((".bin", ".pth")) else None, fname):
            if alt and alt not in names:
                names.append(alt)
        sources.append(f"huggingface.co/{repo} ({names[0]})")
    url = cfg.get("url", "")
    if url:
        names.append(os.path.basename(url))
        sources.append(url)
    return cfg, names, " or ".join(sources)


def locate_open_clip(arch: str, tag: str, settings: dict) -> Located:
    """Find the local file of an open_clip pretrained tag without any network."""
    cfg, names, source = open_clip_tag_files(arch, tag)
    home = os.path.join(weights_dir(settings), "open_clip", arch, tag)
    found = Located(None, expected_name=names[0] if names else "", home=home, source=source)
    # our weights folder, then open_clip's own URL cache, then the Hugging Face cache (read, never fetched)
    candidates = [os.path.join(home, name) for name in names]
    url = cfg.get("url", "")
    if url:
        candidates.append(os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url)))
    for candidate in candidates:
        found.searched.append(candidate)
        if os.path.isfile(candidate):
            found.path = candidate
            return found
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub comes with open_clip
            try_to_load_from_cache = None
        repo = os.path.split(hub)[0]
        if try_to_load_from_cache is not None:
            for name in names:
                hit = try_to_load_from_cache(repo, name)
                if isinstance(hit, str) and os.path.isfile(hit):
                    found.path = hit
                    return found
            found.searched.append(f"Hugging Face cache of {repo}")
    return found


def locate_hf(model_id: str, settings: dict) -> Located:
    """A transformers model folder: a local directory, ``<weights_dir>/hf/<id>``,
    or a complete snapshot in the Hugging Face cache."""
    if os.path.isdir(os.path.expanduser(model_id)):
        return Located(os.path.expanduser(model_id), searched=[model_id])
    if model_id.startswith(("/", ".", "~")):  # a folder the user named: nothing to download
        return Located(None, searched=[model_id], home=os.path.expanduser(model_id),
                       expected_name="config.json + model.safetensors")
    home = os.path.join(weights_dir(settings), "hf", model_id)
    found = Located(None, searched=[home], home=home, expected_name="config.json + model.safetensors",
                    source=f"huggingface.co/{model_id}")
    if os.path.isfile(os.path.join(home, "config.json")):
        found.path = home
        return found
    if "/" in model_id and not model_id.startswith(("/", ".", "~")):
        try:
            from huggingface_hub import snapshot_download

            path = snapshot_download(model_id, local_files_only=True)
        except Exception:  # noqa: BLE001 - not cached: reported below
            path = None
        found.searched.append(f"Hugging Face cache of {model_id}")
        if path and os.path.isfile(os.path.join(path, "config.json")):
            found.path = path
    return found


def missing_message(model: str, found: Located, setting: str, point_to_list: bool = True) -> str:
    """One clear line: which model, which file, where to put it, how to switch
    (``point_to_list``: end with the pointer to `weights list`, which that
    list itself leaves out)."""
    where = found.home or (found.searched[0] if found.searched else "?")
    text = f"{model}: weights not found on local disk. Put {found.expected_name or 'the weights'} in {where}"
    if found.source:
        text += f" (from {found.source})"
    text += (
        f", or point --{setting} / EDITMETRICS_{setting.upper()} at local weights. Downloads are off "
        "(allow with --set allow_download=true, HF_HUB_OFFLINE unset)"
    )
    return text + ("; `editmetrics weights list` shows all" if point_to_list else "")


# ---------------------------------------------------------------------------
# `editmetrics weights list|path|verify`
# ---------------------------------------------------------------------------


def weight_rows(settings: dict, registry=None) -> list[dict]:
    """What each metric/model needs and whether it is on disk (no loading)."""
    from editmetrics.weights.backbones import describe_spec, resolve_spec_setting
    from editmetrics.plugins.registry import get_registry

    registry = registry or get_registry()
    rows: list[dict] = []
    by_spec: dict[str, dict] = {}
    for mid, cls in sorted(registry.items["metrics"].items()):
        for setting in getattr(cls, "backbones", ()):
            spec = resolve_spec_setting(setting, settings)
            if spec not in by_spec:
                info = describe_spec(spec, settings, registry)
                info.update({"setting": setting, "spec": spec, "metrics": []})
                by_spec[spec] = info
                rows.append(info)
            by_spec[spec]["metrics"].append(mid)
    for kind in ("metrics", "models", "grounders"):
        for mid, cls in sorted(registry.items[kind].items()):
            user = f"bpm(grounder={mid})" if kind == "grounders" else mid
            for w in getattr(cls, "weights", ()):
                path = weight_path(w, settings)
                rows.append({"setting": w.setting, "spec": f"{mid}:{w.name}", "metrics": [user], "path": path,
                             "present": weight_present(path), "hint": w.hint, "sha256": None})
    return rows
