"""docs/THREAT_MODEL.md points every claim to the tests that check it; this keeps the pointers
from rotting: each named test exists, is not an expected failure or skipped, and every claim line
names at least one test."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THREAT_MODEL = ROOT / "docs" / "THREAT_MODEL.md"
POINTER = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
ANY_TEST_PATH = re.compile(r"`(tests/[^`]*)`")
# Sections that state no claims: who and what, and what we do not protect against.
NOT_CLAIMS = {"Who uses it and what they fear", "Assets", "What we do not protect against"}


def claims(text: str) -> list[tuple[str, str]]:
    """(section, claim) for every bullet and table row outside NOT_CLAIMS. A bullet runs on
    over its indented lines; "Not claimed" bullets are exempt unless they name a test."""
    out: list[tuple[str, str]] = []
    section = ""
    current: list[str] | None = None

    def flush() -> None:
        nonlocal current
        if current is not None:
            out.append((section, " ".join(current)))
        current = None

    for line in text.splitlines():
        if line.startswith("#"):
            flush()
            section = line.lstrip("#").strip()
            continue
        if any(section == s for s in NOT_CLAIMS):
            continue
        if line.startswith(("- ", "* ")):
            flush()
            current = [line[2:]]
        elif line.startswith("|"):
            flush()
            if not re.fullmatch(r"\|[-| ]+\|", line) and not line.startswith("| stored |"):
                out.append((section, line))
        elif current is not None and line.startswith("  ") and line.strip():
            current.append(line.strip())
        else:
            flush()
    flush()
    return out


def defined_tests(path: Path) -> dict[str, list[ast.expr]]:
    """Test functions of a file (module level or in a class), with their decorators."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name: node.decorator_list for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")}


def _unconditional_xfail_or_skip(decorator: ast.expr) -> bool:
    text = ast.unparse(decorator)
    if not re.match(r"pytest\.mark\.(xfail|skip)\b", text):
        return False
    # skipif(...) and xfail(condition, ...) depend on the machine; a bare mark never checks.
    return not (isinstance(decorator, ast.Call) and decorator.args)


def pointers() -> list[tuple[str, str]]:
    return POINTER.findall(THREAT_MODEL.read_text(encoding="utf-8"))


def test_the_threat_model_points_to_tests() -> None:
    assert len(pointers()) >= 50


@pytest.mark.parametrize(("path", "name"), sorted(set(pointers())),
                         ids=[f"{p}::{n}" for p, n in sorted(set(pointers()))])
def test_each_pointed_to_test_exists_and_runs(path: str, name: str) -> None:
    file = ROOT / path
    assert file.is_file(), f"{path} does not exist"
    found = defined_tests(file)
    assert name in found, f"{path} has no test {name}"
    assert not any(_unconditional_xfail_or_skip(d) for d in found[name]), \
        f"{path}::{name} is marked as not checking anything (xfail or skip)"


def test_every_test_reference_names_one_test() -> None:
    # A folder or a whole file is not a pointer: say which test checks the claim.
    loose = [ref for ref in ANY_TEST_PATH.findall(THREAT_MODEL.read_text(encoding="utf-8"))
             if not POINTER.fullmatch(f"`{ref}`")]
    assert loose == []


def test_every_claim_names_a_test() -> None:
    found = claims(THREAT_MODEL.read_text(encoding="utf-8"))
    assert len(found) >= 30
    missing = [f"{section}: {claim[:80]}" for section, claim in found
               if not POINTER.search(claim) and not claim.startswith("Not claimed")]
    assert missing == []


def test_the_claim_parser_sees_what_it_must() -> None:
    text = ("## Assets\n- not a claim\n## Them\n\n- a claim\n  `tests/x.py::test_y`\n"
            "- Not claimed: this\n| a | b |\n|---|---|\n| row | `tests/z.py::test_w` |\n")
    assert claims(text) == [("Them", "a claim `tests/x.py::test_y`"),
                            ("Them", "Not claimed: this"),
                            ("Them", "| a | b |"),
                            ("Them", "| row | `tests/z.py::test_w` |")]
    assert not _unconditional_xfail_or_skip(ast.parse("pytest.mark.skipif(x, reason='')",
                                                      mode="eval").body)
    assert _unconditional_xfail_or_skip(ast.parse("pytest.mark.xfail(strict=True)",
                                                  mode="eval").body)
