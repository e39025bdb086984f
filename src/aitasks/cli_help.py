"""How the `aitasks` command's help reads: Typer's command and group classes, with no value type
shown beside a flag (`cli.py` builds every command on them)."""

from __future__ import annotations

from typing import Annotated, Any

import typer.core

from aitasks.priority import Lane


def _flags_take_no_value(params: list[Any]) -> list[Any]:
    """Typer's rich help shows `<bool>` beside every flag (`--json`, `--help`), as if it took a
    value; an empty metavar leaves that column blank for flags alone."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(typer.core.TyperCommand):
    """A command whose help shows no value type beside its flags."""

    def get_params(self, ctx: Any) -> list[Any]:  # typer's own (vendored) click Context
        return _flags_take_no_value(super().get_params(ctx))


class Group(typer.core.TyperGroup):
    """A command group whose help shows no value type beside its flags."""

    def get_params(self, ctx: Any) -> list[Any]:  # typer's own (vendored) click Context
        return _flags_take_no_value(super().get_params(ctx))


# Options that several commands' signatures would otherwise spell out at length.
KeyWeight = Annotated[
    int | None,
    typer.Option(min=1, help="Its share in a lane beside other tenants. \\[default: 1]"),
]
MaxPriority = Annotated[
    Lane | None, typer.Option(help="The highest lane its tasks may use. \\[default: any]")
]
ExpiresAfter = Annotated[
    float | None,
    typer.Option(min=1, help="Seconds its tasks may wait to start when they name none."),
]
BatchId = Annotated[
    str | None, typer.Option("--batch", help="One batch's progress (with --watch, until it ends).")
]
