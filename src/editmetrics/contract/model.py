"""The model contract: editors, recoverers and assessors produce what metrics score.

Models register through the ``register_models`` hook like metrics do. A model
receives decoded images (float32 HxWx3 arrays in [0, 1], see
``editmetrics.data.images``) and strings, and returns arrays or numbers; it never
reads files named in records itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from editmetrics.contract.metric import Param, SpecError

KINDS = ("editor", "recoverer", "assessor")


class ModelError(Exception):
    """A model cannot produce an output (for one record, or at all when raised
    by ``load``); the message is recorded as the reason."""


@dataclass(frozen=True)
class Weight:
    """A file or folder a model needs, looked up on local disk only."""

    name: str  # short id, e.g. "unet"
    hint: str  # where it goes and where to get it
    path: str | None = None  # default local path, if any
    setting: str | None = None  # settings key (and env EDITMETRICS_<KEY>) that overrides ``path``
    file: str | None = None  # a file inside the folder that ``setting`` / ``path`` names


class Model:
    """Base class of every model. Subclasses set:

    - ``id``, ``kind`` (one of ``KINDS``), ``description``;
    - ``inputs``: record fields read; ``optional_inputs``: fields read when
      present; ``outputs``: fields produced;
    - ``params``: name -> ``Param``; ``weights``: tuple of ``Weight``.
    """

    id: ClassVar[str]
    kind: ClassVar[str]
    description: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ("source", "instruction")
    optional_inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ("edited",)
    params: ClassVar[dict[str, Param]] = {}
    weights: ClassVar[tuple[Weight, ...]] = ()

    def __init__(self, **params: Any):
        values = {name: p.default for name, p in type(self).params.items()}
        for name, value in params.items():
            if name not in values:
                raise SpecError(f"model {self.id!r} has no parameter {name!r}; it has {sorted(values) or 'none'}")
            values[name] = value
        self.options = values
        self.settings: dict[str, Any] = {}

    def configure(self, settings: dict[str, Any]) -> "Model":
        """Take run settings (e.g. weight paths set with ``--set KEY=PATH``)."""
        self.settings = dict(settings or {})
        return self

    def weight_path(self, weight: Weight) -> str | None:
        """Where ``weight`` is: setting ``weight.setting``, then the environment
        variable ``EDITMETRICS_<SETTING>``, then ``weight.path`` (``weights.weight_path``)."""
        from editmetrics.weights.resolver import weight_path

        return weight_path(weight, self.settings)

    def require_weights(self) -> dict[str, str]:
        """Resolved paths of the weights with a path or setting; ``ModelError``
        naming the model, the weight, the path and where to put it when one is
        missing."""
        paths = {}
        for w in self.weights:
            path = self.weight_path(w)
            if path is None and not w.setting:
                continue  # located by the model itself (e.g. from a parameter): its load() reports it
            if not path or not _exists(path):
                where = f"not found at {path}" if path else "has no path configured"
                how = f"; set it with --set {w.setting}=PATH or EDITMETRICS_{w.setting.upper()}" if w.setting else ""
                raise ModelError(f"model {self.id!r}: weights {w.name!r} {where} ({w.hint}){how}")
            paths[w.name] = path
        return paths

    def weights_present(self) -> bool | None:
        """True/False when the model can tell whether its weights are on disk;
        None when it needs none."""
        if not self.weights:
            return None
        return all((p := self.weight_path(w)) is not None and _exists(p) for w in self.weights)

    def load(self, device: str = "cpu") -> None:
        """Load weights (from local paths only). Called once before ``predict``."""

    def predict(self, inputs: dict[str, Any], seed: int | None = None) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def describe(cls) -> dict:
        return {
            "id": cls.id,
            "kind": cls.kind,
            "description": cls.description,
            "inputs": list(cls.inputs),
            "optional_inputs": list(cls.optional_inputs),
            "outputs": list(cls.outputs),
            "params": {name: p.describe() for name, p in cls.params.items()},
            "weights": [{"name": w.name, "hint": w.hint, "path": w.path, "setting": w.setting} for w in cls.weights],
        }


def _exists(path: str) -> bool:
    import os

    return os.path.exists(os.path.expanduser(path))


def validate_model_class(cls) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise TypeError(f"{cls!r} is not a subclass of editmetrics.Model")
    for attr in ("id", "kind", "description"):
        if not hasattr(cls, attr):
            raise TypeError(f"model class {cls.__name__} does not declare {attr}")
    if cls.kind not in KINDS:
        raise TypeError(f"model {cls.id!r}: kind {cls.kind!r} is not one of {KINDS}")
