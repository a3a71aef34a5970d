"""The gateway's modules depend one way: only ``app`` assembles, nothing imports it; each fits on a screen."""

from __future__ import annotations

import ast
from pathlib import Path

import datasources.gateway

GATEWAY = Path(datasources.gateway.__file__).resolve().parent
MODULES = sorted(GATEWAY.glob("*.py"))
MAX_LINES = 400


def _imported_gateway_modules(path: Path) -> set[str]:
    """The gateway modules ``path`` imports (``from .x import``, ``from . import x``, absolute forms)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.level == 0 and node.module and node.module.startswith("datasources.gateway"):
                rest = node.module.removeprefix("datasources.gateway").lstrip(".")
                found.update([rest.split(".")[0]] if rest else [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("datasources.gateway."):
                    found.add(alias.name.split(".")[2])
    return found


def test_the_scan_sees_the_modules_and_their_imports() -> None:
    names = {p.stem for p in MODULES}
    assert {"app", "state", "qido", "wado_metadata", "wado_frames", "stow", "browser"} <= names
    assert {"qido", "stow", "wado_frames", "wado_metadata", "browser", "state"} <= _imported_gateway_modules(
        GATEWAY / "app.py"
    )
    assert "state" in _imported_gateway_modules(GATEWAY / "qido.py")


def test_only_the_package_entry_imports_the_app(tmp_path: Path) -> None:
    offenders = {p.name for p in MODULES if p.stem not in ("app", "__init__") and "app" in _imported_gateway_modules(p)}
    assert offenders == set(), f"gateway modules importing app.py: {sorted(offenders)}"
    # the check can fail: a module that imports the app is caught
    bad = tmp_path / "bad.py"
    bad.write_text("from .app import Gateway\nfrom datasources.gateway import app\n", encoding="utf-8")
    assert "app" in _imported_gateway_modules(bad)


def test_gateway_modules_have_no_import_cycle() -> None:
    graph = {p.stem: _imported_gateway_modules(p) & {q.stem for q in MODULES} for p in MODULES if p.stem != "__init__"}
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        seen[name] = 1
        for dep in sorted(graph.get(name, ())):
            assert seen.get(dep) != 1, f"import cycle: {' -> '.join([*path, name, dep])}"
            if dep not in seen:
                visit(dep, [*path, name])
        seen[name] = 2

    for name in graph:
        if name not in seen:
            visit(name, [])


def test_gateway_modules_fit_on_a_screen_and_say_what_they_are() -> None:
    for path in MODULES:
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        assert lines <= MAX_LINES, f"{path.name} has {lines} lines (at most {MAX_LINES})"
        doc = ast.get_docstring(ast.parse(text))
        assert doc and doc.splitlines()[0].strip(), f"{path.name} has no first docstring line"


def test_the_public_api_is_unchanged() -> None:
    from datasources.gateway import Gateway, create_app
    from datasources.gateway.app import Gateway as AppGateway
    from datasources.gateway.app import status_for

    assert AppGateway is Gateway and callable(create_app) and status_for(ValueError()) == 500
    assert set(datasources.gateway.__all__) == {"Gateway", "create_app"}
