"""Safe-to-share copies: exactly the metadata segments and chunks are removed, the picture data
is kept byte for byte, and files that do not parse are refused instead of passed through."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

import pypdf
import pytest

from client_cli.sanitize import SanitizeError, clean_jpeg, clean_png, detect, make_safe_copy
from tests.staffwork import images


def test_jpeg_exif_gps_xmp_iptc_comment_and_appended_data_are_removed() -> None:
    original = images.jpeg_with_metadata()
    copy = clean_jpeg(original)
    assert copy.data == images.jpeg_clean()
    assert copy.removed == ("APP1 Exif (camera, GPS, dates)", "APP1 XMP",
                            "APP13 (IPTC/Photoshop)", "COM (comment)",
                            f"{len(images.APPENDED)} bytes after the end of the image")
    for secret in (b"Exif", images.CAMERA_MODEL, images.JPEG_COMMENT, b"GPSLatitude",
                   b"Boston", images.APPENDED):
        assert secret in original
        assert secret not in copy.data


def test_jpeg_without_metadata_is_unchanged() -> None:
    assert clean_jpeg(images.jpeg_clean()).data == images.jpeg_clean()
    assert clean_jpeg(images.jpeg_clean()).removed == ()


@pytest.mark.parametrize("data", [
    b"\xff\xd8",  # no end
    b"\xff\xd8\xff\xe1\x00\x40Exif",  # segment runs past the end
    b"\xff\xd8" + images.SOS + b"\x12\x34",  # ends inside the scan
    b"\xff\xd8\x00\x00",  # not a marker
])
def test_malformed_jpeg_is_refused(data: bytes) -> None:
    with pytest.raises(SanitizeError):
        clean_jpeg(data)


def test_png_text_time_and_exif_chunks_are_removed() -> None:
    original = images.png_with_metadata()
    copy = clean_png(original)
    assert copy.data == images.png_clean()
    assert copy.removed == ("tEXt chunk", "iTXt chunk", "zTXt chunk", "tIME chunk",
                            "eXIf chunk", "14 bytes after the end of the image")
    assert images.PNG_SECRET in original and images.PNG_SECRET not in copy.data


def test_damaged_png_is_refused() -> None:
    data = bytearray(images.png_with_metadata())
    data[len(images.PNG_SIGNATURE) + 10] ^= 0xFF  # inside IHDR: its CRC no longer matches
    with pytest.raises(SanitizeError, match="bad CRC"):
        clean_png(bytes(data))
    with pytest.raises(SanitizeError, match="without an IEND"):
        clean_png(images.PNG_SIGNATURE + images.IHDR)


def test_pdf_information_and_xmp_are_removed() -> None:
    original = images.pdf_with_metadata()
    assert b"Jane Reporter" in original and b"GPSLatitude" in original
    copy = make_safe_copy(original)
    assert copy is not None and copy.kind == "pdf"
    assert b"Jane Reporter" not in copy.data and b"GPSLatitude" not in copy.data
    assert b"X-200" not in copy.data
    assert copy.removed[0] == "document information (Author, Creator, Producer, Title)"
    assert "1 XMP metadata stream(s)" in copy.removed
    reader = pypdf.PdfReader(io.BytesIO(copy.data))
    assert len(reader.pages) == 1 and not reader.metadata


def test_kind_comes_from_the_bytes_not_the_name() -> None:
    assert detect(images.jpeg_with_metadata()) == "jpeg"
    assert detect(images.png_with_metadata()) == "png"
    assert detect(b"%PDF-1.7\n") == "pdf"
    assert make_safe_copy(b"just text, even if named photo.jpg") is None
    with pytest.raises(SanitizeError):
        make_safe_copy(b"%PDF-1.4 but nothing else")


def test_pure_modules_load_no_network_or_server_code() -> None:
    script = ("import json, sys\n"
              "import client_cli.sanitize, client_cli.triage, client_cli.related\n"
              "import client_cli.questionnaire\n"
              "client_cli.questionnaire.default_files()\n"
              "print(json.dumps(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, timeout=60)
    loaded = {name.split(".")[0] for name in json.loads(result.stdout)}
    assert not loaded & {"aiohttp", "aiosqlite", "stem", "pypdf"}
    assert "dropbox_server.questionnaire" not in json.loads(result.stdout)


def test_photo_metadata_inside_a_pdf_is_removed() -> None:
    original = images.pdf_with_photo()
    assert images.CAMERA_MODEL in original
    copy = make_safe_copy(original)
    assert copy is not None
    assert "metadata of 1 embedded JPEG image(s)" in copy.removed
    for secret in (images.CAMERA_MODEL, images.JPEG_COMMENT, b"Jane Reporter", b"Exif"):
        assert secret not in copy.data
    reader = pypdf.PdfReader(io.BytesIO(copy.data))
    resources: Any = reader.pages[0]["/Resources"]
    image = resources["/XObject"]["/Im1"].get_object()
    assert image._data == images.jpeg_clean()
