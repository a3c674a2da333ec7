"""The CLI's one error handler: any `SuanliError` (or a file that cannot be read) raised by any
command is printed as `error: <line>` on stderr, one line per problem, with exit status 2."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from suanli.cli import USER_ERROR_EXIT, SuanliGroup, app
from suanli.ft.checkpoint.manifest import CheckpointError
from suanli.spec.errors import DatasetError, ExecutorError, PlanInfeasible, SpecError, StoreError

runner = CliRunner()


def _failing_app(error: BaseException) -> typer.Typer:
    """A CLI built like `suanli`'s (same group class) whose commands raise `error`."""
    probe = typer.Typer(cls=SuanliGroup, pretty_exceptions_enable=False)

    @probe.command("boom")
    def boom() -> None:
        raise error

    @probe.command("other")
    def other() -> None:
        raise error

    return probe


@pytest.mark.parametrize(
    "kind", [SpecError, DatasetError, PlanInfeasible, ExecutorError, StoreError, CheckpointError]
)
def test_every_error_kind_is_one_line_per_problem_and_exit_2(kind):
    probe = _failing_app(kind("jobs.yaml: pools[0].nodes: must be > 0\njobs.yaml: name: is required"))
    result = runner.invoke(probe, ["boom"])
    assert result.exit_code == USER_ERROR_EXIT == 2
    assert result.stderr.splitlines() == [
        "error: jobs.yaml: pools[0].nodes: must be > 0",
        "error: jobs.yaml: name: is required",
    ]
    assert result.stdout == ""


def test_an_unreadable_file_is_one_line_naming_it():
    result = runner.invoke(_failing_app(IsADirectoryError(21, "Is a directory", "runs/")), ["other"])
    assert result.exit_code == 2 and result.stderr == "error: runs/: Is a directory\n"


def test_a_file_error_without_a_name_is_still_one_line():
    result = runner.invoke(_failing_app(FileNotFoundError("no checkpoint folder yet")), ["boom"])
    assert result.exit_code == 2 and result.stderr == "error: no checkpoint folder yet\n"


def test_a_bug_is_not_dressed_up_as_a_user_error():
    result = runner.invoke(_failing_app(KeyError("slot")), ["boom"])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)


def test_an_infeasible_plan_from_the_real_cli(tmp_path, examples):
    job = tmp_path / "big.yaml"
    job.write_text("name: big\nmodel: llama3.1-405b\nresources: {accelerators: 'H100:16'}\ntraining: {}\n")
    result = runner.invoke(app, ["plan", str(job), "--cluster", str(examples / "clusters/mixed-center.yaml")])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: no feasible plan: ") and "llama3.1-405b needs ≥ " in line


def test_an_unreachable_store_from_the_real_cli_hides_the_password(tmp_path):
    db = "postgresql://someone:hunter2@127.0.0.1:1/suanli"
    result = runner.invoke(app, ["up", "--db", db, "--port", "0", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "error: --db: cannot open the store at postgresql+psycopg://someone:***@127.0.0.1:1/"
    )
    assert "hunter2" not in result.output


def test_an_unreachable_service_from_the_real_cli():
    result = runner.invoke(app, ["queue", "--server", "http://127.0.0.1:1"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: cannot reach the Suanli service at http://127.0.0.1:1: is `suanli up` running?\n"
    )
