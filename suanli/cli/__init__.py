"""The `suanli` command line. Each verb lives in its own module and registers itself on `app` when
that module is imported — which happens only when the verb runs, so `suanli plan` never pays for the
service, the porter or the failure predictor (`VERB_MODULES` is the one table of verbs)."""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

from suanli.spec.errors import SuanliError

USER_ERROR_EXIT = 2

# an optional dependency → the extra that installs it (pyproject.toml)
EXTRA_OF_MODULE = {
    "torch": "train",
    "isal": "train",
    "fastapi": "service",
    "uvicorn": "service",
    "sqlalchemy": "service",
    "prometheus_client": "service",
    "lifelines": "ft",
    "sklearn": "ft",
    "matplotlib": "plots",
    "libcst": "port",
}

# verb → the module under suanli/cli/ that defines it (tests/cli/test_verbs.py keeps this complete).
VERB_MODULES: dict[str, str] = {
    "cancel": "service",
    "cluster": "cluster",
    "comm": "comm",
    "ft": "ft",
    "history": "service",
    "hold": "service",
    "logs": "service",
    "nodes": "service",
    "perf": "perf",
    "plan": "plan",
    "port": "port",
    "queue": "service",
    "release": "service",
    "requeue": "service",
    "share": "share",
    "show": "show",
    "sim": "sim",
    "status": "service",
    "submit": "service",
    "train": "train",
    "up": "service",
    "validate": "validate",
}
FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class SuanliGroup(TyperGroup):
    """The one place a command's error meets the user: any `SuanliError` (or a file the user named that
    cannot be read) is printed as `error: <line>` on stderr, one line per problem, exit status 2."""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(set(VERB_MODULES) | set(super().list_commands(ctx)))

    def get_command(self, ctx: Any, name: str) -> Any:
        command = super().get_command(ctx, name)
        if command is None and name in VERB_MODULES:
            importlib.import_module(f"suanli.cli.{VERB_MODULES[name]}")
            command = getattr(typer.main.get_command(app), "commands", {}).get(name)
            if command is not None:
                self.add_command(command, name)
        return command

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SuanliError as exc:
            lines = str(exc).splitlines() or [type(exc).__name__]
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").partition(".")[0]
            if missing not in EXTRA_OF_MODULE:
                raise
            lines = [f"this command needs {missing!r}: pip install 'suanli[{EXTRA_OF_MODULE[missing]}]'"]
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


@app.callback()
def _root() -> None:
    """Makes `app` a group before any verb module has registered on it."""


__all__ = ["USER_ERROR_EXIT", "VERB_MODULES", "SuanliGroup", "app"]
