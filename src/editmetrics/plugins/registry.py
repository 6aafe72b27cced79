"""Plugin manager: entry-point discovery, failure isolation, the registry.

Built-in plugins are modules listed in ``BUILTIN_PLUGINS``; they always load
first, through the same hooks as any plugin (as llm and datasette register
their defaults). Third-party plugins are modules listed under the
``editmetrics`` entry-point group. A plugin that fails to import or to
register is recorded with its error and skipped; the others keep working.

Environment:
- ``EDITMETRICS_LOAD_PLUGINS=a,b`` loads only the named third-party entry
  points (built-ins always load).
- ``EDITMETRICS_STRICT_PLUGINS=1`` makes any plugin failure an exception.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import os
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from editmetrics.plugins import hookspecs
from editmetrics.contract.metric import validate_metric_class
from editmetrics.contract.model import validate_model_class

GROUP = "editmetrics"

# name -> module of every built-in plugin; registered before any entry point.
BUILTIN_PLUGINS = {
    "pixel": "editmetrics.metrics.pixel",
    "baselines": "editmetrics.models.baselines",
    "diffusion": "editmetrics.models.diffusion",
    "c2e-s2ser": "editmetrics.models.c2e_s2ser",
    "semantic": "editmetrics.metrics.semantic",
    "iqa": "editmetrics.metrics.iqa",
    "sppe": "editmetrics.sppe",
    "datasets": "editmetrics.data.datasets",
    "bpm": "editmetrics.bpm.plugin",
    "settings": "editmetrics.engine.settings",
    "judges": "editmetrics.judges.plugin",
}


class PluginError(RuntimeError):
    """A plugin failed to load or register while strict mode is on."""


class UnknownNameError(LookupError):
    """An unknown metric/model/... id; the message carries suggestions."""


@dataclass
class PluginInfo:
    name: str
    version: str | None
    module: str
    error: str | None = None
    metrics: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "error": self.error,
            "hooks": self.hooks,
            "metrics": self.metrics,
            "models": self.models,
        }


# The hooks whose ``register`` callback collects items into a kind of registry.
KIND_HOOKS = {
    "metrics": "register_metrics",
    "models": "register_models",
    "backbones": "register_backbones",
    "parsers": "register_parsers",
    "grounders": "register_grounders",
    "datasets": "register_datasets",
    "settings": "register_settings",
}


def _strict() -> bool:
    return os.environ.get("EDITMETRICS_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes")


def _item_id(kind: str, args: tuple) -> str:
    if kind == "backbones":
        return args[0]
    if kind == "settings":
        return args[0].name
    obj = args[0]
    return getattr(obj, "id", None) or getattr(obj, "name", None) or repr(obj)


class Registry:
    """Loaded plugins and everything they registered."""

    def __init__(self):
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.items: dict[str, dict[str, Any]] = {kind: {} for kind in KIND_HOOKS}
        self.owner: dict[tuple[str, str], str] = {}

    # -- loading --------------------------------------------------------
    def load_builtins(self) -> None:
        """Register every built-in plugin (always; not filtered by the environment)."""
        import importlib

        for name, module_name in BUILTIN_PLUGINS.items():
            if name in self.plugins:
                continue
            info = PluginInfo(name=name, version=_own_version(), module=module_name)
            self.plugins[name] = info
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:  # noqa: BLE001 - a broken built-in is reported like any plugin
                self._fail(info, f"import failed: {type(exc).__name__}: {exc}", exc)
                continue
            self.add(module, name, info)

    def load_entry_points(self) -> None:
        """Register third-party plugins (entry-point group ``editmetrics``)."""
        wanted = os.environ.get("EDITMETRICS_LOAD_PLUGINS")
        only = {n.strip() for n in wanted.split(",") if n.strip()} if wanted is not None else None
        for ep in sorted(md.entry_points(group=GROUP), key=lambda e: e.name):
            if only is not None and ep.name not in only:
                continue
            if ep.name in self.plugins:
                continue  # the same distribution seen twice on sys.path, or a built-in's name
            version = ep.dist.version if ep.dist is not None else None
            info = PluginInfo(name=ep.name, version=version, module=ep.value)
            self.plugins[ep.name] = info
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - isolate any plugin failure
                self._fail(info, f"import failed: {type(exc).__name__}: {exc}", exc)
                continue
            self.add(module, ep.name, info)

    def add(self, plugin: Any, name: str, info: PluginInfo | None = None) -> PluginInfo:
        """Register an in-process plugin object or module (also used for entry points)."""
        info = info or PluginInfo(name=name, version=None, module=getattr(plugin, "__name__", repr(plugin)))
        self.plugins[name] = info
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001
            self._fail(info, f"registration failed: {type(exc).__name__}: {exc}", exc)
            return info
        callers = self.pm.get_hookcallers(plugin) or []
        info.hooks = sorted(h.name for h in callers)
        unknown = sorted(h.name for h in callers if not h.has_spec())
        if unknown:  # a misspelt hook name would otherwise be ignored silently (pluggy's check_pending)
            self.pm.unregister(name=name)
            close = difflib.get_close_matches(unknown[0], [n for n in dir(hookspecs) if n.startswith("register_")], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self._fail(info, f"hook implementation {unknown[0]!r} matches no editmetrics hook{hint}",
                       PluginError(unknown[0]))
            return info
        added_all: list[tuple[str, str]] = []
        for kind, hook in KIND_HOOKS.items():
            impl = self._impl(hook, name)
            if impl is None:
                continue
            added: list[str] = []
            try:
                impl.function(register=self._collector(kind, name, added))
            except Exception as exc:  # noqa: BLE001
                # a half-registered plugin registers nothing, and none of its hooks run
                for item_kind, item in added_all + [(kind, i) for i in added]:
                    self.items[item_kind].pop(item, None)
                    self.owner.pop((item_kind, item), None)
                self.pm.unregister(name=name)
                self._fail(info, f"{hook} failed: {type(exc).__name__}: {exc}", exc)
                return info
            added_all += [(kind, i) for i in added]
            if kind == "metrics":
                info.metrics = added
            elif kind == "models":
                info.models = added
        return info

    def _impl(self, hook: str, plugin_name: str):
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.plugin_name == plugin_name:
                return impl
        return None

    def _collector(self, kind: str, plugin_name: str, added: list[str]) -> Callable:
        def register(*args):
            if kind == "metrics":
                validate_metric_class(args[0])
            elif kind == "models":
                validate_model_class(args[0])
            elif kind == "settings":
                from editmetrics.engine.settings import Setting

                if len(args) != 1 or not isinstance(args[0], Setting):
                    raise TypeError("register_settings: call register(editmetrics.Setting(...))")
            item_id = _item_id(kind, args)
            if item_id in self.items[kind]:
                raise ValueError(  # the newcomer is refused: built-ins load first, so they always win
                    f"refused: {kind[:-1]} {item_id!r} is already registered by plugin {self.owner[(kind, item_id)]!r}"
                )
            self.items[kind][item_id] = args[1] if kind == "backbones" else args[0]
            self.owner[(kind, item_id)] = plugin_name
            added.append(item_id)

        return register

    def _fail(self, info: PluginInfo, message: str, exc: BaseException) -> None:
        info.error = message
        if _strict():
            raise PluginError(f"plugin {info.name!r}: {message}") from exc
        info.traceback = "".join(traceback.format_exception(exc))  # type: ignore[attr-defined]

    # -- lookup ---------------------------------------------------------
    def get(self, kind: str, item_id: str):
        table = self.items[kind]
        if item_id in table:
            return table[item_id]
        close = difflib.get_close_matches(item_id, list(table), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown {kind[:-1]} {item_id!r}{hint} (see `editmetrics {kind}`)")

    def plugin_of(self, kind: str, item_id: str) -> str:
        return self.owner[(kind, item_id)]

    def metric_rows(self) -> list[dict]:
        rows = []
        for mid, cls in sorted(self.items["metrics"].items()):
            row = cls.describe()
            row["plugin"] = self.plugin_of("metrics", mid)
            rows.append(row)
        return rows

    def model_rows(self, settings: dict | None = None) -> list[dict]:
        """Every model's metadata; weight paths resolved under ``settings``
        (``weights.weight_path``, as loading does)."""
        rows = []
        for mid, cls in sorted(self.items["models"].items()):
            row = cls.describe()
            row["plugin"] = self.plugin_of("models", mid)
            instance = cls().configure(settings or {})
            row["weights_present"] = instance.weights_present()
            for weight, described in zip(instance.weights, row["weights"]):
                described["resolved_path"] = instance.weight_path(weight)
            rows.append(row)
        return rows


def _own_version() -> str | None:
    try:
        return md.version("editmetrics")
    except md.PackageNotFoundError:
        return None


_lock = threading.Lock()
_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _registry
    with _lock:
        if _registry is None:
            registry = Registry()
            registry.load_builtins()
            registry.load_entry_points()
            _registry = registry
        return _registry


def reset_registry() -> None:
    """Forget loaded plugins (tests, or after installing a plugin in-process)."""
    global _registry
    with _lock:
        _registry = None
