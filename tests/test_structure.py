"""The architecture is in the folders: each home imports only the layers below it, no module
imports itself back through others, and no module grows past the size a reader can hold."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "stoic_cli"
MAX_LINES = 400

# Each home and the homes it may import (besides itself). Lazy imports inside functions count.
ALLOWED = {
    "face": set(),
    "runtime": {"face"},
    "edit": {"runtime"},
    "render": {"face"},
    "pipeline": {"face", "runtime", "edit", "render"},
    "batch": {"face", "runtime", "edit", "render", "pipeline"},
    "train": {"face", "runtime", "edit", "render"},
    "evaluation": {"face", "runtime", "edit", "render", "pipeline", "batch", "train"},
    "cli": {"face", "runtime", "edit", "render", "pipeline", "batch", "train", "evaluation",
            "__init__"},
    "__main__": {"cli"},
    "__init__": set(),
}


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """stoic_cli modules that `path` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def home(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_home_imports_only_the_layers_below_it():
    mods = modules()
    wrong = []
    for name, path in mods.items():
        for target in imports(path, set(mods)):
            if home(target) != home(name) and home(target) not in ALLOWED[home(name)] and target != "stoic_cli":
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    cycles = []

    def visit(node, path):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for n in graph:
        if n not in state:
            visit(n, [n])
    return cycles


def test_no_import_cycles():
    mods = modules()
    graph = {}
    for name, path in mods.items():
        # A package importing its own submodules (the CLI registering its commands) is not a cycle.
        graph[name] = {t for t in imports(path, set(mods)) if t not in (name, "stoic_cli")
                       and t.rsplit(".", 1)[0] != name}
    assert not find_cycles(graph), find_cycles(graph)
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_module_is_longer_than_a_reader_can_hold():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_the_checker_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from stoic_cli.cli.options import err\n")
    assert imports(probe, {"stoic_cli.cli.options"}) == {"stoic_cli.cli.options"}


def test_editing_commands_import_no_torch_and_no_opencv(tmp_path):
    """The editing path runs on ONNX Runtime and numpy alone: `pip install stoic-cli` needs no
    torch and no OpenCV (stoic_cli.face.resample does its resampling)."""
    import subprocess
    import sys

    repo = PACKAGE.parent
    code = ("import sys\nfrom stoic_cli.cli import app\n"
            f"app(['neutralize', {str(repo / 'tests/data/london/011_smiling.jpg')!r}, '-o', {str(tmp_path)!r}, "
            "'--device', 'cpu'], standalone_mode=False)\n"
            "heavy = sorted(m for m in ('torch', 'torchvision', 'facenet_pytorch', 'cv2') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout, res.stdout
    assert (tmp_path / "011_smiling_neutral.jpg").exists()
