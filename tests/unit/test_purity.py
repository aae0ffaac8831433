"""dropbox_envelope and dropbox_questionnaire are pure logic shared by the server and the staff
CLI: they must never pull in the server's I/O stack (aiohttp, aiosqlite), Tor control (stem), or
the server or CLI themselves. Their package docstrings promise PyNaCl and the standard library
only (the questionnaire: the standard library only), so both sides can rely on them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import dropbox_envelope

FORBIDDEN = {"aiohttp", "aiosqlite", "stem", "dropbox_server", "client_cli"}
# Each pure package, and what it may import besides the standard library.
ALLOWED_THIRD_PARTY = {"dropbox_envelope": {"nacl"}, "dropbox_questionnaire": set[str]()}
ROOT = Path(dropbox_envelope.__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "dropbox_envelope"
SOURCES = sorted(p for package in ALLOWED_THIRD_PARTY for p in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_sources_found() -> None:
    names = {module_name(p) for p in SOURCES}
    assert {"dropbox_envelope", "dropbox_envelope.envelope", "dropbox_envelope.keys",
            "dropbox_envelope.streams", "dropbox_envelope.header", "dropbox_questionnaire",
            "dropbox_questionnaire.format", "dropbox_questionnaire.triage"} <= names


@pytest.mark.parametrize("package", sorted(ALLOWED_THIRD_PARTY))
def test_importing_every_module_loads_no_forbidden_package(package: str) -> None:
    """In a fresh interpreter (this one has pytest plugins loaded), import every module."""
    script = f"""
import importlib, json, pkgutil, sys
import {package}
names = sorted(m.name for m in pkgutil.walk_packages({package}.__path__, "{package}."))
for name in names:
    importlib.import_module(name)
print(json.dumps({{"names": names, "modules": sorted(sys.modules)}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, timeout=60)
    report = json.loads(result.stdout)
    expected = {module_name(p) for p in SOURCES if module_name(p).startswith(f"{package}.")}
    assert set(report["names"]) == expected
    assert set(report["names"]) <= set(report["modules"])
    loaded = {m.split(".")[0] for m in report["modules"]}
    # The check is live: the package and its real dependencies show up.
    assert {package, *ALLOWED_THIRD_PARTY[package]} <= loaded
    assert not loaded & FORBIDDEN, f"{package} pulls in {sorted(loaded & FORBIDDEN)}"


def imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in ``tree``, wherever it appears."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                target = arg.value if isinstance(arg, ast.Constant) else "<dynamic>"
                found.append((node.lineno, str(target).split(".")[0]))
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_static_imports_are_stdlib_or_allowed(path: Path) -> None:
    allowed = ALLOWED_THIRD_PARTY[module_name(path).split(".")[0]]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for line, top in imports(tree):
        assert top not in FORBIDDEN, f"{path.name}:{line} imports {top}"
        assert top in sys.stdlib_module_names or top in allowed or top == "__future__", \
            f"{path.name}:{line} imports {top}, not stdlib or {sorted(allowed)}"


def test_static_check_sees_forbidden_imports() -> None:
    """The AST walk catches every spelling, including ones nested in functions."""
    source = """
import aiohttp.web
from stem.control import Controller
def later():
    import aiosqlite
    importlib.import_module("aiohttp")
from . import sibling
"""
    tops = [top for _line, top in imports(ast.parse(source))]
    assert tops.count("aiohttp") == 2
    assert {"stem", "aiosqlite"} <= set(tops)
    assert "sibling" not in tops


def test_onion_key_formats_are_shared_pure_logic() -> None:
    assert "dropbox_envelope.onion" in {module_name(p) for p in SOURCES}


CLIENT_DIR = PACKAGE_DIR.parent / "client_cli"


@pytest.mark.parametrize("path", sorted(CLIENT_DIR.rglob("*.py")),
                         ids=lambda p: p.relative_to(CLIENT_DIR).as_posix())
def test_staff_cli_does_not_import_the_server(path: Path) -> None:
    """What the staff CLI shares with the server (envelope, key formats, onion keys) lives in
    dropbox_envelope; the CLI runs on a machine that need not have the server's stack."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for line, top in imports(tree):
        assert top != "dropbox_server", f"{path.name}:{line} imports dropbox_server"
