"""The model contract: editors, recoverers and assessors produce what metrics score.

Models register through the ``register_models`` hook like metrics do. A model
receives decoded images (float32 HxWx3 arrays in [0, 1], see
``editmetrics.images``) and strings, and returns arrays or numbers; it never
reads files named in records itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .metric import Param, SpecError

KINDS = ("editor", "recoverer", "assessor")


@dataclass(frozen=True)
class Weight:
    """A file or folder a model needs, looked up on local disk only."""

    name: str  # short id, e.g. "unet"
    hint: str  # where it goes and where to get it
    path: str | None = None  # default local path, if any


class Model:
    """Base class of every model. Subclasses set:

    - ``id``, ``kind`` (one of ``KINDS``), ``description``;
    - ``inputs``: record fields read; ``outputs``: fields produced;
    - ``params``: name -> ``Param``; ``weights``: tuple of ``Weight``.
    """

    id: ClassVar[str]
    kind: ClassVar[str]
    description: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ("source", "instruction")
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

    def weights_present(self) -> bool | None:
        """True/False when the model can tell whether its weights are on disk;
        None when it needs none."""
        return None if not self.weights else all(w.path and _exists(w.path) for w in self.weights)

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
            "outputs": list(cls.outputs),
            "params": {name: p.describe() for name, p in cls.params.items()},
            "weights": [{"name": w.name, "hint": w.hint, "path": w.path} for w in cls.weights],
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
