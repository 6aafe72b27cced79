"""Hook specifications: the only way capabilities enter editmetrics.

Built-in metrics and models are plugins like any third-party package: each one
is a module listed under the ``editmetrics`` entry-point group that implements
some of these hooks with ``@editmetrics.hookimpl``.
"""

import pluggy

hookspec = pluggy.HookspecMarker("editmetrics")
hookimpl = pluggy.HookimplMarker("editmetrics")


@hookspec
def register_metrics(register):
    """Register metric classes: call ``register(MetricClass)`` once per metric.

    The class declares its metadata as class attributes (see
    ``editmetrics.contract.metric.Metric``); they are validated on registration.
    """


@hookspec
def register_models(register):
    """Register model classes (editors, recoverers, assessors): call
    ``register(ModelClass)`` once per model (see ``editmetrics.contract.model.Model``)."""


@hookspec
def register_backbones(register):
    """Register feature backbones (CLIP, DINO, ...): call
    ``register(name, factory)`` where ``factory(spec, device)`` returns an
    encoder used by the shared feature store (``editmetrics.engine.features``)."""


@hookspec
def register_parsers(register):
    """Register instruction parsers: call ``register(ParserClass)``; a parser
    turns an edit instruction into a structured edit description (BPM)."""


@hookspec
def register_grounders(register):
    """Register grounding implementations (phrase -> boxes and masks): call
    ``register(GrounderClass)``."""


@hookspec
def register_datasets(register):
    """Register dataset loaders: call ``register(LoaderClass)``; a loader turns a
    dataset on local disk into edit records."""


@hookspec
def register_settings(register):
    """Declare settings: call ``register(Setting(name, type, default, help,
    affects_scores))`` once per key the plugin reads from ``ctx.settings``
    (see ``editmetrics.engine.settings``); undeclared keys are refused."""


@hookspec
def register_commands(cli):
    """Add subcommands to the ``editmetrics`` click group ``cli``."""
