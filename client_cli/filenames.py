"""Turning names chosen by an untrusted sender into file names that are safe on every system.

Pure functions, no I/O. An attachment name in a manifest is whatever the sender typed or its
browser reported; docs/PROTOCOL.md §4.1 requires sanitising it before it names a file.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_NAME_BYTES", "RESERVED_NAMES", "name_key", "safe_name"]

MAX_NAME_BYTES = 150
"""Cap on a sanitised name, in UTF-8 bytes (file systems allow 255; leave room for paths)."""

RESERVED_NAMES = frozenset({"report.json", "report.txt", "envelope.json"})
"""Names the decrypt command writes itself; never given to an attachment."""

FALLBACK_NAME = "attachment"
_REPLACEMENT = "_"
_MAX_EXT_CHARS = 16

# Path separators, characters Windows (or macOS's Finder: ':') refuses, and the separators
# Unicode considers line/paragraph breaks.
_UNSAFE_CHARS = frozenset('/\\<>:"|?*\u2028\u2029')
# Unicode categories replaced: controls, format characters (bidi overrides such as U+202E,
# zero-width characters, BOM), lone surrogates (not encodable), unassigned code points.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}
)
_DOT_RUN = re.compile(r"\.{2,}")
_SPACE_RUN = re.compile(r" {2,}")


def name_key(name: str) -> str:
    """How file systems compare names: case-insensitively (Windows, macOS) and regardless of
    Unicode normalisation (macOS). Two names with the same key must not both be used."""
    return unicodedata.normalize("NFC", name).casefold()


def _clean(name: str) -> str:
    name = unicodedata.normalize("NFC", name)
    chars = []
    for ch in name:
        if ch in _UNSAFE_CHARS or unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            chars.append(_REPLACEMENT)
        elif ch.isspace():
            chars.append(" ")  # tabs, NBSP, ideographic space...: one plain space
        else:
            chars.append(ch)
    name = "".join(chars)
    name = _DOT_RUN.sub(".", name)  # no ".." anywhere
    name = _SPACE_RUN.sub(" ", name)
    # Leading dots hide files (and "." / ".." are special); a leading "-" reads as an option
    # to shell tools. Trailing dots and spaces are silently dropped by Windows.
    name = name.lstrip(". -").rstrip(". ")
    return name


def _split_ext(name: str) -> tuple[str, str]:
    """(stem, ".ext") when the name ends in a plausible extension, else (name, "")."""
    stem, dot, ext = name.rpartition(".")
    if dot and stem and 0 < len(ext) <= _MAX_EXT_CHARS and " " not in ext:
        return stem, "." + ext
    return name, ""


def _truncate_utf8(text: str, limit: int) -> str:
    if limit <= 0:
        return ""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _is_windows_reserved(name: str) -> bool:
    # Windows ignores everything from the first dot, and trailing spaces before it: "con .txt",
    # "NUL.tar.gz" and "com1" are all devices.
    base = name.split(".", 1)[0].rstrip(" ")
    return base.upper() in _WINDOWS_RESERVED


def _assemble(stem: str, ext: str, suffix: str) -> str:
    """``stem + suffix + ext`` within :data:`MAX_NAME_BYTES`, shortening the stem first."""
    budget = MAX_NAME_BYTES - len(ext.encode("utf-8")) - len(suffix.encode("utf-8"))
    stem = _truncate_utf8(stem, budget).rstrip(". ")
    if not stem:
        stem = FALLBACK_NAME
    return f"{stem}{suffix}{ext}"


def safe_name(name: str, taken: set[str]) -> str:
    """A file name for ``name`` that is safe on Linux, macOS and Windows and unlike any in
    ``taken`` (compared with :func:`name_key`) or :data:`RESERVED_NAMES`.

    ``taken`` is not modified: add the result to it before naming the next file. The result is
    non-empty, at most :data:`MAX_NAME_BYTES` UTF-8 bytes, has no path separator, control or
    format character, nor any of ``<>:"|?*``, does not start with ``.`` or ``-``, does not end
    with ``.`` or a space, contains no ``..``, and is not a Windows device name. Duplicates become
    ``name (2).ext``, ``name (3).ext``...
    """
    cleaned = _clean(name) or FALLBACK_NAME
    if _is_windows_reserved(cleaned):
        cleaned = _REPLACEMENT + cleaned
    stem, ext = _split_ext(cleaned)
    used = {name_key(t) for t in taken} | {name_key(r) for r in RESERVED_NAMES}
    candidate = _assemble(stem, ext, "")
    counter = 1
    while name_key(candidate) in used or _is_windows_reserved(candidate):
        counter += 1
        candidate = _assemble(stem, ext, f" ({counter})")
    return candidate
