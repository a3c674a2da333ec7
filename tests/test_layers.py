"""The package's layers import downward only, and no module imports itself back through others.

Layers, lowest first (docs/architecture.md): spec (with the data rooms catalog/ and calibration/)
→ comm and port → perf → plan → sched → ft → runtime → service → cli. `ft` and `runtime` sit side
by side in the architecture, but the runtime calls the checkpoint engine and never the reverse, so
`ft` ranks below `runtime`. Every import counts, including one hidden inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "suanli"

LAYER_OF = {
    "spec": 0,
    "catalog": 0,
    "calibration": 0,
    "comm": 1,
    "port": 1,
    "perf": 2,
    "plan": 3,
    "sched": 4,
    "ft": 5,
    "runtime": 6,
    "service": 7,
    "cli": 8,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, package: str) -> set[str]:
    """Every `suanli.*` module a file of `package` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("suanli"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module.startswith("suanli"):
                found.add(module)
    return found


def _import_graph() -> nx.DiGraph:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target in _imports(path, package):
            # `from suanli.x import y` may name a submodule y or an attribute of x: take the longest module.
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target in modules and target != name:
                graph.add_edge(name, target)
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYER_OF.get(parts[1]) if len(parts) > 1 else None


def test_every_subpackage_has_a_layer():
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    unranked = subpackages - set(LAYER_OF)
    assert not unranked, f"give these a layer in docs/architecture.md: {unranked}"


def test_imports_go_downward_only():
    upward = []
    for source, target in _import_graph().edges:
        source_layer, target_layer = _layer(source), _layer(target)
        if source_layer is not None and target_layer is not None and target_layer > source_layer:
            upward.append(f"{source} → {target}")
    assert not upward, "imports that reach a higher layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    graph = _import_graph()
    # A package's __init__ re-exporting its own submodules is not a cycle of logic.
    for source, target in list(graph.edges):
        is_package = PACKAGE.joinpath(*source.split(".")[1:], "__init__.py").exists()
        if is_package and target.startswith(source + "."):
            graph.remove_edge(source, target)
    cycles = [" → ".join(cycle) for cycle in nx.simple_cycles(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles[:10])


def test_the_checker_sees_an_import_hidden_in_a_function(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from suanli.service.app import create_app\n", encoding="utf-8")
    assert "suanli.service.app" in _imports(module, "suanli.spec")
