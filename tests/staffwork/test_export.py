"""`dropbox-client export`: the HTML page and JSON bundle of one report, the original
attachments byte for byte, the safe-to-share copies without metadata, the hashes re-checked,
and the chain of custody."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from client_cli.questionnaire import default_files
from tests.staffwork import images
from tests.staffwork.conftest import Inbox, Run, decrypt_all

STAFF_FINGERPRINT = "12345 67890 12345 67890 12345 67890"
HOSTILE_MESSAGE = ("They said <script>alert('x')</script> and \u202egnp.exe\u202c.\n"
                   'Second line with "quotes" & <img src=https://evil.example/x>.')
HOSTILE_NAME = "<img src=x onerror=alert(1)>.txt"
ANSWERS = {"what_happening": ["not_paid", "documents_taken"], "danger_now": ["weapons"],
           "business": "Sunny Farms Ltd", "contact": "safe_contact",
           "contact_details": "WhatsApp +44 7700 900123 after 9pm", "made_up_question": 7}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def english(tmp_path: Path) -> Path:
    """The shipped English questionnaire, copied so the test does not depend on which
    translations are installed."""
    [source] = [p for p in default_files() if p.name == "questionnaire.json"]
    target = tmp_path / "questionnaire.json"
    target.write_bytes(source.read_bytes())
    return target


@pytest.fixture
def report_dir(inbox: Inbox) -> Path:
    envelope = inbox.add(
        answers=ANSWERS, message=HOSTILE_MESSAGE, language="es", name="ab" * 16,
        files=[("photo.jpg", images.jpeg_with_metadata()),
               ("screenshot.png", images.png_with_metadata()),
               ("payslip.pdf", images.pdf_with_photo()),
               (HOSTILE_NAME, b"plain text evidence\n")],
        received_day="2025-03-04", source_id="5" * 32, fetched_day="2025-03-05",
        fetched_by=STAFF_FINGERPRINT)
    assert decrypt_all(inbox).code == 0
    return inbox.folder / "reports" / envelope.name.removesuffix(".srdb")


def _export(run: Run, report_dir: Path, out: Path, *extra: str | Path) -> dict[str, Any]:
    result = run("export", report_dir, "--out", out, *extra)
    assert result.code == 0, result.err
    doc: dict[str, Any] = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    return doc


def test_export_bundle_hashes_copies_and_custody(run: Run, report_dir: Path, inbox: Inbox,
                                                 english: Path, tmp_path: Path) -> None:
    out = tmp_path / "case" / "case-17.html"
    out.parent.mkdir()
    doc = _export(run, report_dir, out, "--questionnaire", english)
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))

    # Attachments: hashes as in the report, originals byte for byte, safe copies cleaned.
    by_name = {a["name"]: a for a in doc["attachments"]}
    assert list(by_name) == ["photo.jpg", "screenshot.png", "payslip.pdf", HOSTILE_NAME]
    for entry in report["attachments"]:
        item = by_name[entry["name"]]
        stored = (report_dir / entry["file"]).read_bytes()
        copied = (out.parent / item["original"]["file"]).read_bytes()
        assert copied == stored
        assert item["sha256"] == entry["sha256"] == sha256(copied)
        assert item["size"] == len(copied) and item["original"]["verified"] is True
    assert (out.parent / by_name["photo.jpg"]["original"]["file"]).read_bytes() == \
        images.jpeg_with_metadata()

    photo = by_name["photo.jpg"]["safe_copy"]
    assert photo["file"] == "case-17-files/safe-to-share/photo.jpg"
    safe_photo = (out.parent / photo["file"]).read_bytes()
    assert safe_photo == images.jpeg_clean() and photo["sha256"] == sha256(safe_photo)
    assert "APP1 Exif (camera, GPS, dates)" in photo["removed"]
    safe_png = (out.parent / by_name["screenshot.png"]["safe_copy"]["file"]).read_bytes()
    assert safe_png == images.png_clean()
    safe_pdf = (out.parent / by_name["payslip.pdf"]["safe_copy"]["file"]).read_bytes()
    assert images.CAMERA_MODEL not in safe_pdf and b"Jane Reporter" not in safe_pdf
    assert images.CAMERA_MODEL in (out.parent / by_name["payslip.pdf"]["original"]["file"]
                                   ).read_bytes()
    text = by_name[HOSTILE_NAME]
    assert text["safe_copy"] is None and text["safe_copy_status"].startswith("no safe copy")

    # The envelope's own hash, re-checked against the file in the inbox.
    envelope = inbox.folder / ("ab" * 16 + ".srdb")
    assert doc["envelope"]["sha256"] == doc["envelope"]["server_sha256"] == \
        sha256(envelope.read_bytes())
    assert doc["envelope"]["verified_now"] == "matches"

    # Chain of custody: received, fetched (by whom), decrypted (with which key), verified.
    events = {e["event"]: e for e in doc["custody"]}
    assert events["received by the server"]["day"] == "2025-03-04"
    assert events["fetched from the server"]["day"] == "2025-03-05"
    assert STAFF_FINGERPRINT in events["fetched from the server"]["detail"]
    assert inbox.agency.key.public_key.fingerprint in events["decrypted"]["detail"]
    assert "4 of 4 match" in events["hashes verified at export"]["detail"]

    # Answers with the questionnaire's wording; English only, and said so.
    answers = {a["question_id"]: a for a in doc["answers"]}
    assert answers["what_happening"]["question_en"] == "What is happening?"
    assert answers["what_happening"]["answer_en"] == [
        "Not paid, paid much less than agreed, or wages held back",
        "Someone has taken or keeps identity documents"]
    assert answers["made_up_question"]["question_en"] is None
    assert "available here in en only" in doc["questionnaire"]["wording"]
    assert doc["triage"]["urgent"] and doc["message"] == HOSTILE_MESSAGE

    # Every file the export wrote is listed with its SHA-256, the page included.
    page = out.read_bytes()
    assert doc["files_sha256"]["case-17.html"] == sha256(page)
    assert doc["files_sha256"][photo["file"]] == sha256(safe_photo)


def test_html_is_self_contained_and_escaped(run: Run, report_dir: Path, english: Path,
                                            tmp_path: Path) -> None:
    out = tmp_path / "case.html"
    _export(run, report_dir, out, "--questionnaire", english)
    page = out.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "<script" not in page.lower()
    assert not re.search(r"""<[^>]*\s(src|href)=["']?(https?:|//)""", page)
    assert "&lt;img src=https://evil.example/x&gt;" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in page
    assert "\u202e" not in page and "\\u202e" in page  # the bidi override is made visible
    assert page.count('src="data:image/') == 2  # the two cleaned images, inline
    assert "@media print" in page
    assert "Original" in page and "Safe to share" in page
    assert "This export contains the reporter's contact details" in page
    assert "WhatsApp +44 7700 900123" in page


def test_reporter_language_wording_when_a_translation_is_given(
        run: Run, report_dir: Path, english: Path, tmp_path: Path) -> None:
    spanish = json.loads(english.read_text(encoding="utf-8"))
    spanish["language"] = "es"
    translated = copy.deepcopy(spanish)
    for section in translated["sections"]:
        for question in section["questions"]:
            if question["id"] == "what_happening":
                question["label"] = "¿Qué está pasando?"
                for option in question["options"]:
                    if option["id"] == "not_paid":
                        option["label"] = "No me pagan"
    path = tmp_path / "questionnaire.es.json"
    path.write_text(json.dumps(translated, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "es.html"
    doc = _export(run, report_dir, out, "--questionnaire", english, "--questionnaire", path)
    answers = {a["question_id"]: a for a in doc["answers"]}
    assert answers["what_happening"]["question_reporter_language"] == "¿Qué está pasando?"
    assert answers["what_happening"]["answer_reporter_language"][0] == "No me pagan"
    assert doc["questionnaire"]["reporter_language_available"] is True
    assert "¿Qué está pasando?" in out.read_text(encoding="utf-8")


def test_omit_contact_and_tampering_and_no_overwrite(run: Run, report_dir: Path,
                                                    english: Path, tmp_path: Path) -> None:
    out = tmp_path / "share.html"
    doc = _export(run, report_dir, out, "--questionnaire", english, "--omit-contact")
    assert "contact_details" not in {a["question_id"] for a in doc["answers"]}
    assert "7700 900123" not in out.read_text(encoding="utf-8")
    assert "7700 900123" not in out.with_suffix(".json").read_text(encoding="utf-8")

    again = run("export", report_dir, "--out", out, "--questionnaire", english)
    assert again.code == 1 and "refusing to overwrite" in again.err

    stored = report_dir / "attachments" / "photo.jpg"
    stored.write_bytes(stored.read_bytes() + b"changed")
    tampered = run("export", report_dir, "--out", tmp_path / "t.html", "--questionnaire",
                   english)
    assert tampered.code == 0
    assert "photo.jpg: its SHA-256 no longer matches the report" in tampered.out
    doc = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert doc["attachments"][0]["original"]["verified"] is False
    assert "3 of 4 match" in doc["custody"][3]["detail"]


def test_report_decrypted_with_plain_decrypt_says_custody_not_recorded(
        run: Run, inbox: Inbox, english: Path, tmp_path: Path) -> None:
    inbox.add(answers={"what_happening": ["debt"]}, message="hello", name="cd" * 16)
    reports = tmp_path / "plain"
    assert run("decrypt", "--key-file", inbox.agency.key_file, "--passphrase-file",
               inbox.agency.passphrase_file, "--out", reports, inbox.folder).code == 0
    out = tmp_path / "plain.html"
    doc = _export(run, reports / ("cd" * 16), out, "--questionnaire", english, "--envelope",
                  inbox.folder / ("cd" * 16 + ".srdb"))
    events = {e["event"]: e for e in doc["custody"]}
    assert events["decrypted"]["day"] is None
    assert "not recorded" in events["decrypted"]["detail"]
    assert "staff key was not recorded" in events["fetched from the server"]["detail"]
    assert doc["envelope"]["verified_now"] == "matches"
    assert not (tmp_path / "plain-files" / "safe-to-share").exists()
