"""The `suanli` command line. Each verb lives in its own module and registers itself here."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from suanli.spec.errors import SuanliError

USER_ERROR_EXIT = 2
FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class SuanliGroup(TyperGroup):
    """The one place a command's error meets the user: any `SuanliError` (or a file the user named that
    cannot be read) is printed as `error: <line>` on stderr, one line per problem, exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SuanliError as exc:
            lines = str(exc).splitlines() or [type(exc).__name__]
        except FILE_ERRORS as exc:
            lines = [f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)]
        for line in lines:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(USER_ERROR_EXIT)


app = typer.Typer(
    cls=SuanliGroup,
    help="Suanli (算力): plan, schedule, run and keep alive AI and HPC work on heterogeneous clusters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from suanli.cli import comm, ft, perf, plan, port, service, share, show, sim, train, validate  # noqa: E402  (the verbs register themselves on `app`)

__all__ = [
    "app", "comm", "ft", "perf", "plan", "port", "service", "share", "show", "sim", "train", "validate",
]  # fmt: skip
