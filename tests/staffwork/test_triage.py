"""Triage: indicators and urgency recomputed from the answers, the order of the inbox, its
filters, and `inbox --key-file` decrypting what is new (with a custody record)."""

from __future__ import annotations

import json
from pathlib import Path

from client_cli import questionnaire as qn
from client_cli.triage import assess, matches
from tests.staffwork.conftest import Inbox, Run, decrypt_all

QUESTIONNAIRES = qn.from_args(None)
DEFAULT = QUESTIONNAIRES.find("default-en-1")

WAGES_AND_DOCUMENTS = {"what_happening": ["not_paid", "documents_taken", "threats"],
                       "contact": "safe_contact",
                       "contact_details": "Text after 8pm, say it is the dentist"}
WEAPONS = {"what_happening": ["violence"], "danger_now": ["weapons", "threats_to_kill"]}
DEBT_ONLY = {"what_happening": ["debt"], "contact": "return_code_only"}
GETTING_WORSE = {"what_happening": ["domestic_abuse"], "danger_now": ["getting_worse"]}


def test_the_shipped_questionnaire_is_found_without_importing_the_server() -> None:
    assert DEFAULT is not None
    assert DEFAULT.question("danger_now") is not None
    assert "questionnaire.json" in {f.name for f in qn.default_files()}


def test_indicators_and_urgency_come_from_the_answers() -> None:
    assert DEFAULT is not None
    a = assess({"answers": WAGES_AND_DOCUMENTS}, DEFAULT)
    assert a.indicators == ("ilo:intimidation_and_threats",
                            "ilo:retention_of_identity_documents", "ilo:withholding_of_wages")
    assert (a.urgent, a.urgent_reasons, a.ilo_count, a.verified) == (False, (), 3, True)
    assert a.contact.choice == "safe_contact"
    assert a.contact.details == "Text after 8pm, say it is the dentist"
    b = assess({"answers": WEAPONS}, DEFAULT)
    assert b.urgent and b.urgent_reasons == ("There are weapons",
                                             "Someone has threatened to kill")
    assert b.indicators == ("ilo:physical_violence",)
    assert not b.flags


def test_a_claimed_triage_that_disagrees_is_flagged_and_never_lowers_urgency() -> None:
    assert DEFAULT is not None
    inflated = assess({"answers": DEBT_ONLY, "questionnaire": "default-en-1",
                       "triage": {"urgent": True, "indicators": ["ilo:debt_bondage",
                                                                 "ilo:isolation"]}}, DEFAULT)
    assert inflated.urgent  # kept urgent, but flagged for a person to look at
    assert inflated.indicators == ("ilo:debt_bondage",)  # the recomputed ones
    assert any("says urgent, its answers say not urgent" in f for f in inflated.flags)
    assert any("claims ilo:isolation not supported" in f for f in inflated.flags)
    hidden = assess({"answers": WEAPONS, "triage": {"urgent": False,
                                                    "indicators": ["ilo:physical_violence"]}},
                    DEFAULT)
    assert hidden.urgent
    assert hidden.flags == ("the report's own triage says not urgent, its answers say urgent",)
    agreeing = assess({"answers": WEAPONS, "triage": {"urgent": True,
                                                      "indicators": ["ilo:physical_violence"]}},
                      DEFAULT)
    assert agreeing.flags == ()


def test_unknown_options_and_missing_questionnaire_are_flagged() -> None:
    assert DEFAULT is not None
    odd = assess({"answers": {"danger_now": ["in_danger_now", "made_up"]}}, DEFAULT)
    assert odd.urgent
    assert any("'made_up'" in f for f in odd.flags)
    questionnaire, note = QUESTIONNAIRES.for_report({"questionnaire": "agency-custom-7"})
    assert questionnaire is None and "agency-custom-7" in note
    unverified = assess({"answers": WEAPONS, "triage": {"urgent": True, "indicators": ["x"]}},
                        None, note)
    assert (unverified.urgent, unverified.indicators, unverified.verified) == (True, ("x",),
                                                                               False)
    assert any("not verified" in f for f in unverified.flags)


def test_filters() -> None:
    assert DEFAULT is not None
    a = assess({"answers": WAGES_AND_DOCUMENTS}, DEFAULT)
    assert matches(a, "2025-03-02", indicators=["ilo:withholding_of_wages"])
    assert matches(a, "2025-03-02", indicators=["withholding_of_wages",
                                                "retention_of_identity_documents"])
    assert not matches(a, "2025-03-02", indicators=["withholding_of_wages", "debt_bondage"])
    assert not matches(a, "2025-03-02", urgent_only=True)
    assert matches(a, "2025-03-02", since="2025-03-02", until="2025-03-02")
    assert not matches(a, "2025-03-02", since="2025-03-03")
    assert not matches(a, None, until="2025-12-31")


def _populate(inbox: Inbox) -> dict[str, Path]:
    return {
        "wages": inbox.add(answers=WAGES_AND_DOCUMENTS, message="No pay for 3 months.",
                           received_day="2025-03-01", name="a" * 32),
        "debt": inbox.add(answers=DEBT_ONLY, message="I owe the agency £4000.",
                          received_day="2025-02-20", name="b" * 32),
        "weapons": inbox.add(answers=WEAPONS, message="The boss has a gun.", language="pl",
                             received_day="2025-03-05", name="c" * 32,
                             files=[("photo.jpg", b"\xff\xd8\xff not a real photo")]),
        "worse": inbox.add(answers=GETTING_WORSE, message="It is getting worse.",
                           received_day="2025-03-03", name="d" * 32),
    }


def test_inbox_decrypts_new_envelopes_and_sorts_most_urgent_first(inbox: Inbox,
                                                                    run: Run) -> None:
    _populate(inbox)
    listed = run("inbox", inbox.folder)
    assert listed.code == 0
    assert "4 envelope(s)" in listed.err and "--key-file" in listed.err
    assert listed.out.strip() == "no reports"

    result = decrypt_all(inbox)
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert len(doc["decrypted_now"]) == 4
    order = [r["reference"] for r in doc["reports"]]
    # Two danger answers beat one; then the ILO count (3 beats 1); then the oldest.
    assert order == ["c" * 8, "d" * 8, "a" * 8, "b" * 8]
    weapons = doc["reports"][0]
    assert weapons["urgent"] and weapons["urgent_reasons"] == [
        "There are weapons", "Someone has threatened to kill"]
    assert (weapons["language"], weapons["attachments"], weapons["received_day"]) == (
        "pl", 1, "2025-03-05")
    wages = doc["reports"][2]
    assert wages["indicators"] == ["ilo:intimidation_and_threats",
                                   "ilo:retention_of_identity_documents",
                                   "ilo:withholding_of_wages"]
    assert wages["contact"]["choice"] == "safe_contact"

    # Each report decrypted by inbox has its custody record.
    custody = json.loads((inbox.folder / "reports" / ("a" * 32) / "custody.json").read_text())
    assert custody["decrypted_with"]["agency_key_fingerprint"] == \
        inbox.agency.key.public_key.fingerprint
    assert custody["decrypted_day"] == weapons["decrypted_day"]

    # A second run decrypts nothing and needs no key.
    again = run("inbox", inbox.folder)
    assert again.code == 0 and again.err == ""
    lines = again.out.splitlines()
    assert lines[0].split() == ["REF", "RECEIVED", "RECIPIENT", "LANG", "URGENT", "INDICATORS",
                                "FILES", "CONTACT"]
    assert [line.split()[0] for line in lines[1:5]] == order
    assert "YES (2)" in lines[1] and "safe contact given" in lines[3]


def test_inbox_filters_and_plain_decrypt_output(inbox: Inbox, run: Run,
                                                tmp_path: Path) -> None:
    _populate(inbox)
    reports = tmp_path / "decrypted"
    decrypted = run("decrypt", "--key-file", inbox.agency.key_file, "--passphrase-file",
                    inbox.agency.passphrase_file, "--out", reports, inbox.folder)
    assert decrypted.code == 0, decrypted.err

    def refs(*args: str) -> list[str]:
        result = run("inbox", "--json", reports, *args)
        assert result.code == 0, result.err
        return [r["reference"] for r in json.loads(result.out)["reports"]]

    assert refs() == ["c" * 8, "d" * 8, "a" * 8, "b" * 8]
    assert refs("--urgent") == ["c" * 8, "d" * 8]
    assert refs("--indicator", "debt_bondage") == ["b" * 8]
    assert refs("--indicator", "ilo:withholding_of_wages") == ["a" * 8]
    assert refs("--since", "2025-03-01", "--until", "2025-03-03") == ["d" * 8, "a" * 8]
    bad = run("inbox", reports, "--since", "March")
    assert bad.code == 2
    table = run("inbox", reports, "--urgent")
    assert "(2 more not shown by the filters)" in table.out


def test_a_claimed_triage_disagreement_shows_in_the_inbox(inbox: Inbox, run: Run) -> None:
    inbox.add_sealed({"questionnaire": "default-en-1",
                      "triage": {"urgent": True, "indicators": ["ilo:debt_bondage"]}},
                     answers=DEBT_ONLY, message="please read me first", name="e" * 32)
    assert decrypt_all(inbox).code == 0
    result = run("inbox", inbox.folder)
    assert "YES (claimed) !" in result.out
    assert "eeeeeeee: the report's own triage says urgent" in result.out


def test_a_bad_envelope_does_not_hide_the_others(inbox: Inbox, run: Run) -> None:
    _populate(inbox)
    (inbox.folder / ("f" * 32 + ".srdb")).write_bytes(b"SRDB-ENV garbage")
    result = decrypt_all(inbox)
    assert result.code == 1
    doc = json.loads(result.out)
    assert len(doc["reports"]) == 4
    assert [Path(f["envelope"]).name for f in doc["failed"]] == ["f" * 32 + ".srdb"]

