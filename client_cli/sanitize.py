""""Safe to share" copies of images and PDFs: location and device metadata removed.

Pure: bytes in, bytes out. The original attachment is never changed; these functions make a
separate copy. The file type is recognised from the bytes, never from the name or the media
type the sender gave.

- JPEG: the file is re-assembled segment by segment, keeping only what is needed to show the
  image: the frame, Huffman, quantisation and restart segments, the scans, and the APP0 (JFIF),
  APP2 ICC colour profile and APP14 (Adobe colour transform) segments. Everything else goes:
  APP1 (Exif with GPS position, camera make and serial number, dates; XMP), APP13 (Photoshop
  IPTC), other APPn (vendor data, MPF multi-picture indexes), COM comments, and any bytes
  after the end-of-image marker (embedded previews, appended files).
- PNG: the eXIf, tEXt, iTXt, zTXt and tIME chunks are dropped, and anything after IEND.
- PDF (with pypdf, if installed): the document information dictionary, every XMP metadata
  stream, application private data (PieceInfo), and metadata inside embedded JPEG images are
  removed, and the file is rewritten (which also drops earlier revisions kept by incremental
  updates). Text, annotations (including their author names), form fields and embedded files
  are content and are left as they are.

Anything else gets no safe copy. A file that does not parse is refused rather than copied,
so a "safe" copy is never a silent pass-through of bytes that were not understood.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "SafeCopy",
    "SanitizeError",
    "clean_jpeg",
    "clean_pdf",
    "clean_png",
    "detect",
    "make_safe_copy",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_DROPPED = frozenset({b"eXIf", b"tEXt", b"iTXt", b"zTXt", b"tIME"})
_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length


class SanitizeError(ValueError):
    """The file could not be understood well enough to make a safe copy of it."""


@dataclass(frozen=True)
class SafeCopy:
    """A cleaned copy: its bytes, what kind of file it is, and what was removed."""

    data: bytes
    kind: str  # "jpeg", "png", "pdf"
    removed: tuple[str, ...]


def detect(data: bytes) -> str:
    """"jpeg", "png", "pdf" or "" from the first bytes."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data[:1024].lstrip(b"\x00\t\n\x0c\r ").startswith(b"%PDF-"):
        return "pdf"
    return ""


# --- JPEG ------------------------------------------------------------------------------------

_APP_NAMES = {0xE1: "APP1 (Exif/XMP)", 0xED: "APP13 (IPTC/Photoshop)", 0xFE: "COM (comment)"}


def _describe_jpeg_segment(marker: int, body: bytes) -> str:
    if marker == 0xE1:
        if body.startswith(b"Exif\x00"):
            return "APP1 Exif (camera, GPS, dates)"
        if body.startswith(b"http://ns.adobe.com/xap/1.0/"):
            return "APP1 XMP"
    if marker == 0xE2 and body.startswith(b"MPF\x00"):
        return "APP2 MPF (multi-picture index)"
    return _APP_NAMES.get(marker, f"APP{marker - 0xE0}" if 0xE0 <= marker <= 0xEF
                          else f"marker 0x{marker:02X}")


def _keep_app(marker: int, body: bytes) -> bool:
    if marker == 0xE0:
        return body.startswith((b"JFIF\x00", b"JFXX\x00"))
    if marker == 0xE2:
        return body.startswith(b"ICC_PROFILE\x00")
    return marker == 0xEE and body.startswith(b"Adobe")


def _scan_end(data: bytes, pos: int) -> int:
    """The offset of the first marker after entropy-coded data starting at ``pos``."""
    while True:
        found = data.find(b"\xff", pos)
        if found < 0 or found + 1 >= len(data):
            raise SanitizeError("the JPEG ends inside image data")
        following = data[found + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos = found + 2  # a stuffed 0xFF byte, or a restart marker inside the scan
        else:
            return found  # a marker, possibly after fill bytes (0xFF 0xFF...), dropped


def clean_jpeg(data: bytes) -> SafeCopy:
    """The JPEG with every segment not needed to show the image removed."""
    if not data.startswith(b"\xff\xd8"):
        raise SanitizeError("not a JPEG file")
    out = bytearray(b"\xff\xd8")
    removed: list[str] = []
    pos = 2
    while True:
        if pos >= len(data):
            raise SanitizeError("the JPEG ends without an end-of-image marker")
        if data[pos] != 0xFF:
            raise SanitizeError(f"malformed JPEG: expected a marker at byte {pos}")
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1  # fill bytes
        if pos >= len(data):
            raise SanitizeError("the JPEG ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            out += b"\xff\xd9"
            if pos < len(data):
                removed.append(f"{len(data) - pos} bytes after the end of the image")
            break
        if marker in _STANDALONE:
            out += bytes((0xFF, marker))
            continue
        if marker in (_SOI, 0x00):
            raise SanitizeError(f"malformed JPEG: unexpected marker 0x{marker:02X}")
        if pos + 2 > len(data):
            raise SanitizeError("the JPEG ends inside a segment header")
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if length < 2 or pos + length > len(data):
            raise SanitizeError("malformed JPEG: a segment runs past the end of the file")
        body = data[pos + 2:pos + length]
        segment = data[pos - 2:pos + length]
        pos += length
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            if _keep_app(marker, body):
                out += segment
            else:
                removed.append(_describe_jpeg_segment(marker, body))
            continue
        out += segment
        if marker == _SOS:
            end = _scan_end(data, pos)
            out += data[pos:end]
            pos = end
    return SafeCopy(bytes(out), "jpeg", tuple(removed))


# --- PNG -------------------------------------------------------------------------------------

def clean_png(data: bytes) -> SafeCopy:
    """The PNG without text, time and Exif chunks (CRCs are checked on the chunks kept)."""
    if not data.startswith(PNG_SIGNATURE):
        raise SanitizeError("not a PNG file")
    out = bytearray(PNG_SIGNATURE)
    removed: list[str] = []
    pos = len(PNG_SIGNATURE)
    seen_end = False
    while pos < len(data):
        if pos + 12 > len(data):
            raise SanitizeError("the PNG ends inside a chunk")
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data) or not kind.isalpha():
            raise SanitizeError("malformed PNG chunk")
        chunk = data[pos:end]
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(data[pos + 4:end - 4]) != crc:
            raise SanitizeError(f"the PNG chunk {kind.decode('ascii')} is damaged (bad CRC)")
        pos = end
        if kind in PNG_DROPPED:
            removed.append(f"{kind.decode('ascii')} chunk")
            continue
        out += chunk
        if kind == b"IEND":
            seen_end = True
            break
    if not seen_end:
        raise SanitizeError("the PNG ends without an IEND chunk")
    if pos < len(data):
        removed.append(f"{len(data) - pos} bytes after the end of the image")
    return SafeCopy(bytes(out), "png", tuple(removed))


# --- PDF -------------------------------------------------------------------------------------

def pdf_supported() -> bool:
    """Whether pypdf is installed (PDFs get no safe copy without it)."""
    try:
        import pypdf  # noqa: F401
    except ImportError:
        return False
    return True


def clean_pdf(data: bytes) -> SafeCopy:
    """The PDF rewritten without document metadata (see the module docstring)."""
    try:
        import pypdf
        from pypdf.generic import DictionaryObject, NameObject, StreamObject
    except ImportError:
        raise SanitizeError("pypdf is not installed, so PDFs cannot be cleaned") from None
    removed: list[str] = []
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise SanitizeError("the PDF is encrypted")
        if reader.metadata:
            removed.append("document information (" + ", ".join(
                sorted(str(k).lstrip("/") for k in reader.metadata)) + ")")
        writer = pypdf.PdfWriter(clone_from=reader)
        writer.metadata = None
        counts = {"/Metadata": 0, "/PieceInfo": 0, "jpeg": 0}
        for obj in list(writer._objects):  # every object: catalog, pages, images, fonts...
            if not isinstance(obj, DictionaryObject):
                continue
            for key in ("/Metadata", "/PieceInfo"):
                if key in obj:
                    del obj[NameObject(key)]
                    counts[key] += 1
            if isinstance(obj, StreamObject) and obj.get("/Filter") == "/DCTDecode":
                raw = obj._data
                try:
                    cleaned = clean_jpeg(raw)
                except SanitizeError:
                    continue
                if cleaned.removed:
                    obj._data = cleaned.data
                    obj[NameObject("/Length")] = pypdf.generic.NumberObject(len(cleaned.data))
                    counts["jpeg"] += 1
        if counts["/Metadata"]:
            removed.append(f"{counts['/Metadata']} XMP metadata stream(s)")
        if counts["/PieceInfo"]:
            removed.append(f"{counts['/PieceInfo']} application data (PieceInfo) entries")
        if counts["jpeg"]:
            removed.append(f"metadata of {counts['jpeg']} embedded JPEG image(s)")
        # The catalog no longer points at the information dictionary and the XMP streams, but
        # they are still objects of the file: drop every object nothing refers to.
        writer.compress_identical_objects(remove_duplicates=False, remove_unreferenced=True)
        out = io.BytesIO()
        writer.write(out)
    except SanitizeError:
        raise
    except Exception as exc:  # pypdf raises many types on hostile input
        raise SanitizeError(f"the PDF could not be read ({type(exc).__name__})") from None
    return SafeCopy(out.getvalue(), "pdf", tuple(removed))


def make_safe_copy(data: bytes) -> SafeCopy | None:
    """A cleaned copy of an image or PDF; None for other kinds of file. Raises
    :class:`SanitizeError` for a JPEG, PNG or PDF that cannot be cleaned."""
    kind = detect(data)
    if kind == "jpeg":
        return clean_jpeg(data)
    if kind == "png":
        return clean_png(data)
    if kind == "pdf":
        return clean_pdf(data)
    return None
