"""safe_name: hostile attachment names become safe, portable, unique file names."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_cli.filenames import MAX_NAME_BYTES, RESERVED_NAMES, name_key, safe_name

_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{d}{n}" for d in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}


def assert_safe(name: str, taken: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    assert name
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert not set(name) & set('/\\<>:"|?*\u2028\u2029'), name
    assert all(unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"}
               for c in name), repr(name)
    assert not name.startswith((".", "-", " ")), name
    assert not name.endswith((".", " ")), name
    assert ".." not in name
    assert name.split(".", 1)[0].rstrip(" ").upper() not in _WINDOWS_DEVICES, name
    assert name_key(name) not in {name_key(t) for t in taken | RESERVED_NAMES}
    name.encode("utf-8")  # no lone surrogates


@pytest.mark.parametrize(("raw", "expected"), [
    ("photo.jpg", "photo.jpg"),
    ("Relatório policial.pdf", "Relatório policial.pdf"),
    ("شكوى.txt", "شكوى.txt"),
    ("../../etc/passwd", "_._etc_passwd"),
    ("/etc/shadow", "_etc_shadow"),
    ("a/b\\c", "a_b_c"),
    ("C:\\Windows\\evil.dll", "C__Windows_evil.dll"),
    ('what<>:"|?*.txt', "what_______.txt"),
    ("x\x00y.txt", "x_y.txt"),
    ("line\nbreak.txt", "line_break.txt"),
    ("tab\there", "tab_here"),
    ("no\u00a0break\u3000space", "no break space"),
    ("\u202egpj.exe", "_gpj.exe"),
    ("..", "attachment"),
    (".", "attachment"),
    ("...", "attachment"),
    ("   ", "attachment"),
    ("", "attachment"),
    (".bashrc", "bashrc"),
    ("-rf", "rf"),
    ("file.", "file"),
    ("file. . .", "file"),
    ("name ", "name"),
    ("CON", "_CON"),
    ("con.txt", "_con.txt"),
    ("CON.txt", "_CON.txt"),
    ("nul.tar.gz", "_nul.tar.gz"),
    ("COM1", "_COM1"),
    ("lpt9.doc", "_lpt9.doc"),
    ("AUX .txt", "_AUX.txt"),
    ("CONSOLE.txt", "CONSOLE.txt"),
    ("report.json", "report (2).json"),
    ("REPORT.TXT", "REPORT (2).TXT"),
    ("envelope.json", "envelope (2).json"),
    ("a..b.txt", "a.b.txt"),
])
def test_examples(raw: str, expected: str) -> None:
    assert safe_name(raw, set()) == expected
    assert_safe(expected)


def test_long_names_keep_their_extension() -> None:
    name = safe_name("A" * 300 + ".pdf", set())
    assert name.endswith(".pdf")
    assert len(name.encode("utf-8")) == MAX_NAME_BYTES
    # Multi-byte characters are never cut in half.
    name = safe_name("é" * 300 + ".jpeg", set())
    assert name.endswith(".jpeg")
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert_safe(name)
    # A 300-character name without an extension.
    name = safe_name("x" * 300, set())
    assert name == "x" * MAX_NAME_BYTES


def test_implausible_extension_is_not_kept_whole() -> None:
    name = safe_name("a." + "b" * 299, set())
    assert_safe(name)


def test_duplicates_are_numbered_case_and_normalisation_insensitively() -> None:
    taken: set[str] = set()
    results = []
    for raw in ["dup.txt", "dup.txt", "DUP.TXT", "dup (2).txt", "dup", "e\u0301.txt",
                "\u00e9.txt"]:
        name = safe_name(raw, taken)
        assert_safe(name, taken)
        taken.add(name)
        results.append(name)
    assert results == ["dup.txt", "dup (2).txt", "DUP (3).TXT", "dup (2) (2).txt", "dup",
                       "\u00e9.txt", "\u00e9 (2).txt"]


def test_numbered_duplicates_of_long_names_stay_within_the_cap() -> None:
    taken: set[str] = set()
    for _ in range(12):
        name = safe_name("L" * 300 + ".txt", taken)
        assert_safe(name, taken)
        taken.add(name)
    assert len(taken) == 12


def test_taken_is_not_modified() -> None:
    taken = {"a.txt"}
    assert safe_name("a.txt", taken) == "a (2).txt"
    assert taken == {"a.txt"}


@given(st.text(max_size=300), st.sets(st.text(max_size=20), max_size=5))
def test_any_text_gives_a_safe_name(raw: str, taken: set[str]) -> None:
    assert_safe(safe_name(raw, taken), taken)


@given(st.lists(st.sampled_from(["a.txt", "A.TXT", "a .txt", "a.txt.", ".a.txt", "a", "CON"]),
                max_size=30))
def test_sequences_of_collisions_stay_unique(raws: list[str]) -> None:
    taken: set[str] = set()
    for raw in raws:
        name = safe_name(raw, taken)
        assert_safe(name, taken)
        taken.add(name)


def test_hostile_names_create_files_inside_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "attachments"
    folder.mkdir()
    hostile = ["../../etc/passwd", "..", "/abs", "a/b\\c", "x\x00y", "l\nb", "CON.txt",
               "\ud800lone-surrogate", "Z" * 300, "é" * 255, "dup", "dup", "DUP", "?" * 10]
    taken: set[str] = set()
    for raw in hostile:
        name = safe_name(raw, taken)
        taken.add(name)
        path = folder / name
        path.write_bytes(b"x")
        assert path.resolve().parent == folder.resolve()
    assert len(list(folder.iterdir())) == len(hostile)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attachments"]
