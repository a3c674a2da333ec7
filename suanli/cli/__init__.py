"""The `suanli` command line. Each verb lives in its own module and registers itself here."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from suanli.spec.errors import SpecError

USER_ERROR_EXIT = 2


def fail(message: str) -> typer.Exit:
    """Print a user error as one line on stderr; return the Exit to raise (status 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(USER_ERROR_EXIT)


class SuanliGroup(TyperGroup):
    """Turns every user-facing error raised by a command into one line and exit status 2."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except (SpecError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None


app = typer.Typer(
    cls=SuanliGroup,
    help="Suanli (算力): plan, schedule, run and keep alive AI and HPC work on heterogeneous clusters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from suanli.cli import comm, ft, perf, plan, service, show, sim, train, validate  # noqa: E402  (the verbs register themselves on `app`)

__all__ = ["app", "comm", "fail", "ft", "perf", "plan", "service", "show", "sim", "train", "validate"]
