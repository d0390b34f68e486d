"""The package's import graph: every import points down the layer order of docs/design.md, and nothing cycles.

Read from the source with `ast`, so the test sees function-level imports too; those are allowed only for the
optional heavy dependencies, each with a comment saying so.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "slowfast_trt"
# Bottom to top, in the order the data flows (docs/design.md, "Layers").
LAYERS = ["common", "model", "data", "dali_pipelines", "engines", "export", "training", "serving", "benchmarks", "cli"]
# Imported inside functions only: optional extras or heavy imports used by one command.
LAZY = {
    "nvidia",
    "av",
    "decord",
    "torchcodec",
    "onnx",
    "onnxruntime",
    "onnxconverter_common",
    "matplotlib",
    "PIL",
    "tensorrt",
    "modelopt",
    "tritonclient",
    "google.protobuf",
    "triton_python_backend_utils",
    "torch.utils.tensorboard",
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at function level) for every import in the file, resolved to module names."""
    tree = ast.parse(path.read_text())
    toplevel = {id(n) for n in tree.body} | {id(n) for top in tree.body if isinstance(top, (ast.If, ast.Try)) for n in ast.walk(top)}
    is_pkg = path.name == "__init__.py"
    out = []
    for n in ast.walk(tree):
        lazy = id(n) not in toplevel
        if isinstance(n, ast.Import):
            out += [(a.name, n.lineno, lazy) for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - n.level + 1] + ([base] if base else []))
            out += [(f"{base}.{a.name}", n.lineno, lazy) for a in n.names]
    return out


def _target(imported: str, modules: dict[str, Path]) -> str | None:
    """The project module an import refers to (`from pkg import sub` names a module, `from mod import f` a name)."""
    while imported and imported not in modules:
        imported = imported.rpartition(".")[0]
    return imported or None


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        m: {t for imp, _, _ in _imports(m, p) if imp.startswith("slowfast_trt") and (t := _target(imp, modules)) and t != m}
        for m, p in modules.items()
    }


def test_every_subpackage_has_a_layer():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages <= set(LAYERS), f"subpackages without a layer: {sorted(subpackages - set(LAYERS))}"


def test_imports_only_point_down():
    up = []
    for src, targets in _graph().items():
        ls = _layer(src)
        for t in targets:
            lt = _layer(t)
            if ls is None:  # slowfast_trt/__init__.py and __main__.py sit above every layer
                continue
            if lt is None or lt > ls:
                up.append(f"{src} -> {t}")
    assert not up, "imports pointing up the layer order:\n" + "\n".join(sorted(up))


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if t.startswith(m + "."):  # a package importing its own submodule is not a cycle
                continue
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t) :] + [t]) if t in stack else f"{m} -> {t}")
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_function_level_imports_are_optional_dependencies_with_a_comment():
    bad = []
    for m, p in _modules().items():
        lines = p.read_text().splitlines()
        for imp, line, lazy in _imports(m, p):
            if not lazy:
                continue
            allowed = any(imp == x or imp.startswith(x + ".") for x in LAZY)
            commented = "#" in lines[line - 1] or lines[line - 2].strip().startswith("#")
            if not (allowed and commented):
                bad.append(
                    f"{p.relative_to(PACKAGE.parent)}:{line}: {imp}"
                    + ("" if allowed else " (not an optional dependency)")
                    + ("" if commented else " (no comment)")
                )
    assert not bad, "function-level imports:\n" + "\n".join(bad)


def test_no_private_names_across_modules():
    """Helpers that other modules need are public: no `from slowfast_trt.x import _private` between modules."""
    bad = []
    for m, p in _modules().items():
        for imp, line, _ in _imports(m, p):
            if imp.startswith("slowfast_trt") and imp.rpartition(".")[2].startswith("_") and not imp.endswith("__"):
                bad.append(f"{p.relative_to(PACKAGE.parent)}:{line}: {imp}")
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


@pytest.mark.parametrize("case", ["up", "cycle", "lazy"])
def test_the_checks_catch_what_they_claim(case, tmp_path, monkeypatch):
    """The graph checks fail on a planted violation (a guard against a test that cannot fail)."""
    pkg = tmp_path / "slowfast_trt"
    for sub in ("common", "model"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    if case == "up":
        (pkg / "common" / "a.py").write_text("from slowfast_trt.model import b\n")
        (pkg / "model" / "b.py").write_text("")
        check = test_imports_only_point_down
    elif case == "cycle":
        (pkg / "model" / "a.py").write_text("from slowfast_trt.model.b import f\n")
        (pkg / "model" / "b.py").write_text("from slowfast_trt.model.a import g\n")
        check = test_no_import_cycles
    else:
        (pkg / "model" / "a.py").write_text("def f():\n    import json\n    return json\n")
        check = test_function_level_imports_are_optional_dependencies_with_a_comment
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    with pytest.raises(AssertionError):
        check()
