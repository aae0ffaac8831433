"""The questionnaire data file and its validation (pure logic, no server)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dropbox_server.app import create_app
from dropbox_server.questionnaire import (
    DEFAULT_QUESTIONNAIRE,
    InvalidAnswers,
    QuestionnaireError,
    load_questionnaire,
    parse_questionnaire,
    triage,
    validate_answers,
    validate_report,
)
from tests.server.conftest import LABOUR, AgencyKeys, MakeClient, write_config
from tests.server.forms import get_csrf, post_report, report_parts

Q = load_questionnaire()
RAW: dict[str, Any] = json.loads(DEFAULT_QUESTIONNAIRE.read_text(encoding="utf-8"))

# Asking about any of these drives people away and endangers them. "immigration" may appear only
# in the threats option, which records a threat made against the person, not their status.
FORBIDDEN = re.compile(r"immigration|nationality|national insurance|\bNI\b|visa|passport|"
                       r"citizenship|right to work|home office|\bBRP\b|residence permit|"
                       r"status|asylum", re.IGNORECASE)


def visible_strings(doc: Any, path: str = "") -> list[tuple[str, str]]:
    """(where, text) for every string a person could see: keys starting with "_" are comments
    for the operator and are skipped."""
    found: list[tuple[str, str]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if not key.startswith("_") and key not in ("id", "type", "indicator", "language"):
                found += visible_strings(value, f"{path}.{key}")
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            where = f"{path}[{item.get('id', i)}]" if isinstance(item, dict) else f"{path}[{i}]"
            found += visible_strings(item, where)
    elif isinstance(doc, str):
        found.append((path, doc))
    return found


def test_no_question_about_status_nationality_or_papers() -> None:
    strings = visible_strings(RAW)
    assert len(strings) > 100  # the scan is live
    offending = [(where, text) for where, text in strings
                 for match in FORBIDDEN.finditer(text)
                 if not (match.group(0).lower() == "immigration"
                         and where.endswith("options[threats].label"))]
    assert offending == []
    threats = Q.question("what_happening").option("threats")  # type: ignore[union-attr]
    assert threats is not None and "immigration" in threats.label
    # And no question id or option id names such a thing either.
    ids = [q.id for q in Q.questions] + [o.id for q in Q.questions for o in q.options]
    assert not [i for i in ids if FORBIDDEN.search(i.replace("_", " "))]


def test_default_questionnaire_content() -> None:
    what = Q.question("what_happening")
    assert what is not None and what.type == "checkboxes" and what.required
    assert all(o.indicator for o in what.options)
    expected = {"not_paid", "debt", "documents_taken", "cannot_leave", "threats", "violence",
                "sexual_abuse", "control_money_phone", "housing_tied", "excessive_hours",
                "children_involved"}
    assert expected <= {o.id for o in what.options}
    danger = Q.question("danger_now")
    assert danger is not None and all(o.urgent for o in danger.options)
    assert {"in_danger_now", "weapons", "threats_to_kill", "getting_worse",
            "children_at_risk"} <= {o.id for o in danger.options}
    assert {s.id for s in Q.sections} >= {"you", "what", "danger", "where", "who", "when",
                                          "work", "wants", "contact"}
    wants = Q.question("wants")
    assert wants is not None and {o.id for o in wants.options} == {
        "record_only", "investigate", "recover_wages", "support_referral",
        "dont_approach_employer_yet"}
    types = {q.type for q in Q.questions}
    assert types == {"checkboxes", "radio", "text", "textarea", "date"}


def broken(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(RAW)
    change(doc)
    return doc


def first_question(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["sections"][0]["questions"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format=2), "'format' must be 1"),
    (lambda d: d.pop("sections"), "missing 'sections'"),
    (lambda d: d.update(sections=[]), "'sections' must be a non-empty list"),
    (lambda d: d.update(language="english language"), "'language' must be a language tag"),
    (lambda d: first_question(d).update(requried=True), "unknown key(s) 'requried'"),
    (lambda d: first_question(d).update(type="dropdown"), "'type' must be one of"),
    (lambda d: first_question(d).update(id="message"), "used by the form itself"),
    (lambda d: first_question(d).update(id="Who Are You"), "'id' must be 1-40 characters"),
    (lambda d: first_question(d).update(required="yes"), "'required' must be true or false"),
    (lambda d: first_question(d).update(options=[]), "needs a non-empty 'options'"),
    (lambda d: first_question(d).update(max_chars=5), "only text and textarea"),
    (lambda d: first_question(d).update(label=" "), "'label' must be non-empty text"),
    (lambda d: first_question(d)["options"].append({"id": "victim", "label": "again"}),
     "option id 'victim' is used twice"),
    (lambda d: first_question(d)["options"][0].update(urgent="very"),
     "'urgent' must be true or false"),
    (lambda d: d["sections"][1]["questions"].append(dict(first_question(d))),
     "question id 'reporter' is used twice"),
    (lambda d: d["sections"][0]["questions"][1].update(options=[{"id": "a", "label": "A"}]),
     "only checkboxes and radio questions have 'options'"),
])
def test_malformed_questionnaires_are_explained(change: Any, message: str) -> None:
    with pytest.raises(QuestionnaireError) as info:
        parse_questionnaire(broken(change), "custom.json")
    assert message in str(info.value)
    assert str(info.value).startswith("custom.json")


def test_comments_are_allowed() -> None:
    doc = broken(lambda d: first_question(d).update(_note="translator: keep it short"))
    assert parse_questionnaire(doc).question("reporter") is not None


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(QuestionnaireError, match="does not exist"):
        load_questionnaire(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(QuestionnaireError, match="not valid JSON"):
        load_questionnaire(tmp_path / "bad.json")


def answers_errors(fields: dict[str, list[str]], **kwargs: int) -> dict[str, str]:
    with pytest.raises(InvalidAnswers) as info:
        validate_answers(Q, fields, max_field_chars=kwargs.get("max_field_chars", 2000))
    return info.value.errors


def test_answers_are_normalised() -> None:
    answers = validate_answers(Q, {
        "what_happening": ["threats", "not_paid", "threats"],
        "reporter": [""],                       # "No answer"
        "location": ["  First line\r\nsecond\rthird  "],
        "business": ["   "],                    # blank: not answered
        "last_time": ["2024-02-29"],
    }, max_field_chars=2000)
    assert answers == {"what_happening": ["not_paid", "threats"],
                       "location": "First line\nsecond\nthird", "last_time": "2024-02-29"}


def test_answers_are_checked() -> None:
    assert answers_errors({"what_happening": ["not_paid"], "status": ["x"]}) == {
        "": "The form contained a field this site does not know ('status'). Reload the page "
            "and try again."}
    assert set(answers_errors({})) == {"what_happening"}
    assert "Choose only" in answers_errors({"what_happening": ["bribes"]})["what_happening"]
    errors = answers_errors({"what_happening": ["debt"], "reporter": ["victim", "friend_family"],
                             "workplace_type": ["castle"], "last_time": ["2023-02-29"],
                             "job": ["a", "b"]})
    assert set(errors) == {"reporter", "workplace_type", "last_time", "job"}
    # The per-question limit (300 for "business") and the global one, whichever is smaller.
    assert "at most 300" in answers_errors({"what_happening": ["debt"],
                                            "business": ["b" * 301]})["business"]
    assert "at most 50" in answers_errors({"what_happening": ["debt"], "business": ["b" * 51]},
                                          max_field_chars=50)["business"]


def test_a_whole_report_reports_every_problem_at_once() -> None:
    with pytest.raises(InvalidAnswers) as info:
        validate_report(Q, {"message": ["m" * 11], "language": ["en"], "job": ["j" * 6]},
                        max_field_chars=5, max_message_chars=10)
    assert set(info.value.errors) == {"message", "what_happening", "job"}
    report = validate_report(Q, {"message": ["hello\r\n"], "language": ["pt-BR"],
                                 "what_happening": ["debt"]},
                             max_field_chars=5, max_message_chars=10)
    assert (report.message, report.language, report.answers) == (
        "hello", "pt-BR", {"what_happening": ["debt"]})
    with pytest.raises(InvalidAnswers):
        validate_report(Q, {"language": ["<script>"], "what_happening": ["debt"]},
                        max_field_chars=5, max_message_chars=10)
    with pytest.raises(InvalidAnswers):
        validate_report(None, {"message": ["x"], "what_happening": ["debt"]},
                        max_field_chars=5, max_message_chars=10)


def test_triage() -> None:
    assert triage(Q, {"what_happening": ["debt", "violence"], "danger_now": ["weapons"]}) == {
        "urgent": True, "indicators": ["ilo:debt_bondage", "ilo:physical_violence"]}
    assert triage(Q, {"what_happening": ["something_else"], "reporter": "victim"}) == {
        "urgent": False, "indicators": ["other"]}


def test_the_module_is_pure() -> None:
    script = ("import sys, dropbox_server.questionnaire as q; q.load_questionnaire(); "
              "print(sorted({m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert "dropbox_server" in out
    for forbidden in ("aiohttp", "aiosqlite", "stem", "jinja2"):
        assert f"'{forbidden}'" not in out


@pytest.mark.asyncio
async def test_operators_can_point_to_their_own_file(make_client: MakeClient,
                                                     data_dir: Path) -> None:
    custom = {"format": 1, "id": "custom-1", "language": "en", "sections": [
        {"id": "only", "title": "Only section", "questions": [
            {"id": "what_happening", "type": "checkboxes", "label": "Pick", "required": True,
             "options": [{"id": "one", "label": "Option one", "indicator": "x:one"}]},
            {"id": "farm_name", "type": "text", "label": "Name of the farm"}]}]}
    (data_dir / "custom.json").write_text(json.dumps(custom), encoding="utf-8")
    client = await make_client(questionnaire="custom.json")
    html = await (await client.get("/report")).text()
    assert "Name of the farm" in html and "Who is making this report?" not in html
    csrf = await get_csrf(client)
    resp = await post_report(client, report_parts(
        csrf, recipient=LABOUR, answers={"what_happening": "one", "farm_name": "Green Acres"}))
    assert resp.status == 200


@pytest.mark.asyncio
async def test_a_broken_file_stops_start_up(data_dir: Path, agency_keys: AgencyKeys) -> None:
    (data_dir / "custom.json").write_text('{"format": 1}', encoding="utf-8")
    config = write_config(data_dir, agency_keys, questionnaire="custom.json")
    runner = web.AppRunner(create_app(config))
    try:
        with pytest.raises(QuestionnaireError, match=r"custom\.json: missing 'id'"):
            await runner.setup()
    finally:
        await runner.cleanup()
