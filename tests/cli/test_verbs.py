"""Verbs load on demand: the table names every verb, and a planning command imports no heavy layer."""

import importlib
import pkgutil
import subprocess
import sys

import typer

import suanli.cli
from suanli.cli import VERB_MODULES, app


def test_the_verb_table_names_every_registered_verb_and_nothing_else():
    for module in pkgutil.iter_modules(suanli.cli.__path__):
        importlib.import_module(f"suanli.cli.{module.name}")
    group = typer.main.get_command(app)
    registered = set(group.commands)
    assert registered == set(VERB_MODULES)
    for verb, module in VERB_MODULES.items():
        callback = group.commands[verb]
        defined_in = (
            getattr(callback.callback, "__module__", None)
            or next(iter(getattr(callback, "commands", {}).values())).callback.__module__
        )
        assert defined_in == f"suanli.cli.{module}", verb


def test_planning_imports_neither_the_service_nor_torch_nor_the_porter():
    probe = (
        "import sys\n"
        "from suanli.cli import app\n"
        "try:\n"
        "    app(['plan', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'fastapi', 'sqlalchemy', 'libcst', 'lifelines', 'sklearn',"
        " 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_a_verb_whose_extra_is_not_installed_names_the_extra_in_one_line():
    probe = (
        "import sys\n"
        "sys.modules['libcst'] = None  # as if suanli[port] were not installed\n"
        "from suanli.cli import app\n"
        "app(['port', 'x.py', '--target', 'cpu'])\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "error: this command needs 'libcst': pip install 'suanli[port]'"
