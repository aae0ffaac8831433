"""One questionnaire implementation for the server and the staff tools (dropbox_questionnaire):
where the server's and the CLI's own copies used to disagree, what was decided.

- Files: both read them with the server's strict check (a file the server would refuse to start
  with is not silently half-read offline), except that only the server needs the icon pictures.
- Triage: the server's manifest member and the offline recomputation are the same function, so
  a report made through the server's form never shows a disagreement; answers the server would
  never have accepted (repeated or unknown options, odd shapes, questions since removed) are
  read leniently offline, each option counted once, in the questionnaire's order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from client_cli import questionnaire as qn
from client_cli.errors import CliError
from client_cli.triage import assess
from dropbox_envelope import manifest
from dropbox_questionnaire import (
    DEFAULT_ID,
    DEFAULT_QUESTIONNAIRE,
    QuestionnaireError,
    assess_answers,
    load_file,
    load_questionnaire,
    triage,
)
from dropbox_questionnaire import format as format_
from dropbox_questionnaire.format import MAX_FILE_BYTES
from dropbox_server.errors import ConfigError
from dropbox_server.questionnaire import ICONS_DIR, validate_answers
from dropbox_server.questionnaire import load_questionnaire as server_load

SHIPPED = load_questionnaire()
RAW: dict[str, Any] = json.loads(DEFAULT_QUESTIONNAIRE.read_text(encoding="utf-8"))


def write(tmp_path: Path, doc: Any, name: str = "questionnaire.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_the_shipped_files_are_the_servers_and_the_clients() -> None:
    assert SHIPPED.id == DEFAULT_ID
    assert server_load() == SHIPPED
    assert server_load().languages == SHIPPED.languages
    offline = qn.from_args(None)
    assert offline.find(DEFAULT_ID) == SHIPPED
    assert {q.language for q in offline.items} == set(SHIPPED.languages)
    assert qn.default_files()[0] == DEFAULT_QUESTIONNAIRE


def test_the_server_and_the_staff_tools_agree_on_what_the_form_makes() -> None:
    fields = {"what_happening": ["threats", "not_paid", "threats"],
              "danger_now": ["threats_to_kill", "weapons"], "contact": ["safe_contact"]}
    answers = validate_answers(SHIPPED, fields, max_field_chars=2000)
    claim = triage(SHIPPED, answers)
    assert claim == {"urgent": True, "indicators": ["ilo:intimidation_and_threats",
                                                    "ilo:withholding_of_wages"]}
    offline = assess({"answers": answers, "triage": claim}, SHIPPED)
    assert offline.flags == ()
    assert (offline.urgent, list(offline.indicators)) == (claim["urgent"], claim["indicators"])


def test_answers_the_form_would_not_make_are_read_once_in_questionnaire_order() -> None:
    # As a modified browser might seal them: repeated, out of order, a radio sent as a list,
    # an option and a question the questionnaire does not have, a value that is no option id.
    answers = {"danger_now": ["threats_to_kill", "weapons", "weapons", 7, "made_up"],
               "what_happening": "debt", "contact": ["safe_contact"],
               "removed_question": ["x"], "location": "weapons"}
    found = assess_answers(SHIPPED, answers)
    assert [o.id for o in found.urgent_options] == ["weapons", "threats_to_kill"]
    assert found.indicators == ("ilo:debt_bondage",)
    assert found.unknown_options == (("danger_now", "made_up"),)
    a = assess({"answers": answers}, SHIPPED)
    assert a.urgent_reasons == ("There are weapons", "Someone has threatened to kill")
    assert a.flags == ("answer 'danger_now' has an option the questionnaire does not know: "
                       "'made_up'",)


def test_a_file_the_server_refuses_is_refused_offline_with_the_same_words(
        tmp_path: Path) -> None:
    doc = json.loads(json.dumps(RAW))
    doc["sections"][0]["questions"][0]["requried"] = True
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as server:
        server_load(path)
    with pytest.raises(CliError) as offline:
        qn.from_args([path])
    assert str(offline.value) == str(server.value)
    assert "unknown key(s) 'requried'" in str(offline.value)
    with pytest.raises(CliError, match="does not exist"):
        qn.from_args([tmp_path / "missing.json"])


def test_only_the_server_needs_the_pictures(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(RAW))
    doc["sections"][1]["questions"][0]["options"][0]["icon"] = "a-newer-picture"
    path = write(tmp_path, doc)
    where = re.escape(f"the icons are the files in {ICONS_DIR}")
    with pytest.raises(QuestionnaireError, match=where):
        server_load(path)
    assert load_file(path).question("what_happening") is not None
    doc["sections"][1]["questions"][0]["options"][0]["icon"] = "../style"
    with pytest.raises(QuestionnaireError, match=re.escape("there is no icon '../style'")):
        load_file(write(tmp_path, doc))


def test_an_oversized_file_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "questionnaire.json"
    path.write_bytes(b" " * (MAX_FILE_BYTES + 1))
    with pytest.raises(QuestionnaireError, match="too large"):
        load_file(path)


def test_a_form_language_fits_the_envelope_manifest() -> None:
    # Written twice on purpose: the questionnaire package imports the standard library only,
    # and importing dropbox_envelope would load PyNaCl.
    assert format_.MAX_LANGUAGE_CHARS == manifest.MAX_LANGUAGE_CHARS
