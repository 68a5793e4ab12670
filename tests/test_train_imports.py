"""stoic_cli/train's modules import each other without cycles, and of the rest of the package only
the inference layers below it (never the CLI, the evaluations or the pipeline)."""
from __future__ import annotations

import ast

from tests.conftest import REPO

TRAIN = REPO / "stoic_cli" / "train"
BELOW = ("stoic_cli.train", "stoic_cli.face", "stoic_cli.runtime", "stoic_cli.render", "stoic_cli.edit")


def imported(path) -> set[str]:
    """Every stoic_cli module a file imports, lazy imports inside functions included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "stoic_cli.train":
                names |= {f"stoic_cli.train.{a.name}" for a in node.names}
    return {n for n in names if n.startswith("stoic_cli")}


def test_train_imports_only_what_lies_below_it():
    upward = {(p.stem, n) for p in TRAIN.glob("*.py") for n in imported(p) if not n.startswith(BELOW)}
    assert not upward


def test_train_modules_form_no_import_cycle():
    graph = {p.stem: {n.split(".")[2] for n in imported(p) if n.startswith("stoic_cli.train.")} - {p.stem}
             for p in TRAIN.glob("*.py")}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join(path + (module,))
        if module in done:
            return
        for dep in sorted(graph.get(module, ())):
            visit(dep, path + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())
