"""Built-in plugin: the judge metrics and the ``meta-eval`` command."""

from __future__ import annotations

from ..hookspecs import hookimpl


@hookimpl
def register_metrics(register):
    from .editreward import EditReward
    from .viescore import EditScore, VIEScore

    register(VIEScore)
    register(EditScore)
    register(EditReward)


@hookimpl
def register_commands(cli):
    from ..metaeval.command import add_command

    add_command(cli)
