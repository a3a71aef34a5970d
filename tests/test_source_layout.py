"""The built-in sources are written the one way, and each of their modules fits on a screen."""

from __future__ import annotations

import ast
from pathlib import Path

import datasources_default
import datasources_imagefolder

PACKAGES = [
    Path(datasources_default.__file__).resolve().parent,
    Path(datasources_imagefolder.__file__).resolve().parent,
]
MODULES = sorted(p for root in PACKAGES for p in root.rglob("*.py"))
FACTORIES = {
    "dicomweb/source.py": "create_dicomweb_api",
    "dicomjson/source.py": "create_dicomjson_api",
    "dicomlocal/source.py": "create_dicomlocal_api",
    "merge/source.py": "create_merge_api",
    "dimse/source.py": "create_dimse_api",
    "source.py": "create_imagefolder_api",
}
MAX_LINES = 400


def _wiring_by_hand(tree: ast.AST) -> list[int]:
    """Lines that call ``IWebApiDataSource.create`` (the per-source wiring from_source replaces)."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "create"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "IWebApiDataSource"
    ]


def _factory_is_one_from_source_call(tree: ast.Module, name: str) -> bool:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            body = [
                n
                for n in node.body
                if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))  # the docstring
                and not (isinstance(n, ast.If) and all(isinstance(b, ast.Raise) for b in n.body))  # a guard
            ]
            if len(body) != 1 or not isinstance(body[0], ast.Return) or not isinstance(body[0].value, ast.Call):
                return False
            func = body[0].value.func
            return isinstance(func, ast.Attribute) and func.attr == "from_source"
    return False


def test_the_scan_sees_every_source_module() -> None:
    names = {p.relative_to(p.parents[1]).as_posix() for p in MODULES}
    assert {"dicomweb/source.py", "dicomlocal/index.py", "merge/routing.py", "merge/search.py"} <= names
    assert len([p for p in MODULES if p.name == "source.py"]) == len(FACTORIES)


def test_every_source_module_fits_on_a_screen_and_says_what_it_is() -> None:
    too_long = {p.name: n for p in MODULES if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert too_long == {}, f"modules over {MAX_LINES} lines: {too_long}"
    undocumented = [str(p) for p in MODULES if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert undocumented == []


def test_every_factory_is_one_from_source_call_and_nothing_wires_by_hand() -> None:
    found = 0
    for path in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert _wiring_by_hand(tree) == [], f"{path} calls IWebApiDataSource.create"
        rel = path.relative_to(path.parents[1]).as_posix()
        key = rel if rel in FACTORIES else path.name if path.parent.name == "datasources_imagefolder" else None
        if key in FACTORIES:
            assert _factory_is_one_from_source_call(tree, FACTORIES[key]), f"{path}: {FACTORIES[key]}"
            found += 1
    assert found == len(FACTORIES)


def test_the_checks_can_fail() -> None:
    wired = ast.parse("def create_x_api(c, h):\n    x = 1\n    return IWebApiDataSource.create(initialize=f)\n")
    assert _wiring_by_hand(wired) == [3]
    assert not _factory_is_one_from_source_call(wired, "create_x_api")
    good = ast.parse('def create_x_api(c, h):\n    """Doc."""\n    return IWebApiDataSource.from_source(X(c, h))\n')
    assert _factory_is_one_from_source_call(good, "create_x_api")
    guarded = ast.parse(
        "def create_x_api(c, h):\n    if c is None:\n        raise E\n    return IWebApiDataSource.from_source(X())\n"
    )
    assert _factory_is_one_from_source_call(guarded, "create_x_api")
