"""SPPE task 1 plugin: the ERMA assessor (model + ``erma`` metric), SPPE and
InstructPix2Pix-style dataset loaders, ``train erma`` and ``sppe`` commands.

See docs/sppe.md. Heavy imports (torch, open_clip) happen only when used.
"""

from editmetrics.plugins.hookspecs import hookimpl
from editmetrics.sppe.erma import ErmaAssessor, ErmaMetric
from editmetrics.sppe.loader import InstructPix2PixLoader, SppeLoader


@hookimpl
def register_metrics(register):
    register(ErmaMetric)


@hookimpl
def register_models(register):
    register(ErmaAssessor)


@hookimpl
def register_datasets(register):
    register(SppeLoader)
    register(InstructPix2PixLoader)


@hookimpl
def register_commands(cli):
    from editmetrics.sppe.commands import sppe_group

    cli.add_command(sppe_group, "sppe")
