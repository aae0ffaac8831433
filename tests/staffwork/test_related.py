"""Possibly related reports: normalising, the reasons given for each suggested link, threads of
a returning source, and the `related` command on reports made with `encrypt`."""

from __future__ import annotations

import json
from typing import Any

from client_cli.related import (
    Feature,
    clusters,
    features,
    normalise_business,
    normalise_phone,
    suggest_links,
    threads,
)
from tests.staffwork.conftest import Inbox, Run, decrypt_all

SOURCE = "5" * 32


def test_business_names_are_normalised() -> None:
    assert normalise_business("The Sunny Farms Ltd.") == "sunny farms"
    assert normalise_business("SUNNY FARMS LIMITED") == "sunny farms"
    assert normalise_business("Sunny  Farms (UK) Co") == "sunny farms"
    assert normalise_business("Café Rosé & Co") == "cafe rose"
    assert normalise_business("Ltd") == ""
    assert normalise_business("A1") == ""


def test_phone_numbers_are_normalised() -> None:
    assert normalise_phone("+44 7700 900123") == "07700900123"
    assert normalise_phone("0044 (0)7700-900-123") == "07700900123"
    assert normalise_phone("07700 900123") == "07700900123"
    assert normalise_phone("+351 912 345 678") == "+351912345678"
    assert normalise_phone("2024-03-31") == ""


def test_features_found_in_answers_and_message() -> None:
    report: dict[str, Any] = {
        "message": "The van is AB12 CDE. Call the boss on +44 7700 900123. We live at "
                   "ng7 2rd.",
        "answers": {"business": "Sunny Farms Ltd; Quick Staff Agency",
                    "vehicles": "white transit, reg y123 abc",
                    "location": "Unit 4, Marsh Lane, Boston PE21 7AA",
                    "last_time": "2025-03-01"},
        "attachments": [{"sha256": "ab" * 32},
                        {"sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"
                                   "7852b855"}]}
    found = features(report)
    assert found == {
        Feature("business", "sunny farms"), Feature("business", "quick staff agency"),
        Feature("vehicle", "AB12 CDE"), Feature("vehicle", "Y123 ABC"),
        Feature("phone", "07700900123"),
        Feature("postcode", "NG7 2RD"), Feature("postcode", "PE21 7AA"),
        Feature("address", "unit 4 marsh lane boston pe21 7aa"),
        Feature("attachment", "ab" * 32)}  # the empty file's hash is not evidence of a link


def test_links_carry_every_shared_detail_as_a_reason() -> None:
    reports: list[tuple[str, dict[str, Any]]] = [
        ("r1", {"answers": {"business": "Sunny Farms Ltd", "phones": "07700 900123"},
                "message": "near PE21 7AA"}),
        ("r2", {"answers": {"business": "sunny farms limited"},
                "message": "He called from +44 7700 900123, postcode pe217aa"}),
        ("r3", {"answers": {"vehicles": "AB12CDE"}, "attachments": [{"sha256": "cd" * 32}]}),
        ("r4", {"message": "the car AB12 CDE", "attachments": [{"sha256": "cd" * 32}]}),
        ("r5", {"message": "nothing in common"}),
    ]
    links = suggest_links(reports)
    assert [(link.a, link.b) for link in links] == [("r1", "r2"), ("r3", "r4")]
    assert [r.describe() for r in links[0].reasons] == [
        "same business or employer name: sunny farms",
        "same phone number: 07700900123",
        "same postcode: PE21 7AA"]
    assert [r.describe() for r in links[1].reasons] == [
        f"identical attachment (same SHA-256): {'cd' * 32}",
        "same vehicle registration: AB12 CDE"]
    assert links[1].to_json()["reports"] == ["r3", "r4"]
    assert clusters([r for r, _ in reports], links) == [["r1", "r2"], ["r3", "r4"]]


def test_a_returning_source_is_one_thread_not_a_link() -> None:
    reports: list[tuple[str, dict[str, Any]]] = [
        ("late", {"server": {"source_id": SOURCE, "received_day": "2025-03-09"},
                  "answers": {"business": "Sunny Farms"}}),
        ("early", {"server": {"source_id": SOURCE, "received_day": "2025-03-01"},
                   "answers": {"business": "Sunny Farms"}}),
        ("other", {"server": {"source_id": None}, "answers": {"business": "Sunny Farms"}}),
    ]
    [thread] = threads(reports)
    assert thread.reports == ("early", "late")
    links = suggest_links(reports)
    assert [(link.a, link.b) for link in links] == [("early", "other"), ("late", "other")]
    assert clusters([r for r, _ in reports], links, [thread]) == [["early", "late", "other"]]


def test_related_command_on_encrypted_reports(inbox: Inbox, run: Run) -> None:
    photo = b"\xff\xd8\xff\xe0 the same photo twice"
    inbox.add(answers={"business": "Green Valley Farms Ltd", "phones": "07700 900 456"},
              message="No pay.", name="1" * 32)
    inbox.add(answers={"business": "GREEN VALLEY FARMS"}, message="Call 07700900456",
              files=[("p.jpg", photo)], name="2" * 32, source_id=SOURCE,
              received_day="2025-03-02")
    inbox.add(message="More photos", files=[("same.jpg", photo)], name="3" * 32,
              source_id=SOURCE, received_day="2025-03-04")
    inbox.add(message="Unrelated", name="4" * 32)
    assert decrypt_all(inbox).code == 0

    result = run("related", "--json", inbox.folder)
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["threads"] == [{"source_id": SOURCE, "reports": ["2" * 8, "3" * 8]}]
    pairs = {tuple(link["reports"]): [r["kind"] for r in link["reasons"]]
             for link in doc["links"]}
    assert pairs == {("1" * 8, "2" * 8): ["business", "phone"]}
    assert doc["clusters"] == [["1" * 8, "2" * 8, "3" * 8]]

    text = run("inbox", "--related", inbox.folder).out
    assert f"source {SOURCE}: {'2' * 8} -> {'3' * 8}" in text
    assert "same business or employer name: green valley farms" in text
    assert "same phone number: 07700900456" in text
