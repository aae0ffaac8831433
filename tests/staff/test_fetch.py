"""``dropbox-client fetch`` against a real server process: download, verify, sidecar,
acknowledge; and every way a run can be interrupted or fed bad bytes."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from dropbox_envelope.atrest import BLOCK_SIZE, HEADER_SIZE, WRAPPED_BLOCK_SIZE, wrap
from dropbox_envelope.keys import TEST_KDF, lock_secret_key
from tests.staff.conftest import (
    PASSPHRASE,
    RECIPIENT,
    Result,
    Run,
    World,
    commit_envelope,
    create_source,
    open_storage,
    seal,
    sha256,
)


def _populate(world: World, bodies: list[bytes], *, with_source: bool = False
              ) -> tuple[list[str], str | None]:
    """Commit envelopes (the last one from a source, if asked) before the server starts."""
    with open_storage(world.data_dir) as (storage, loop):
        source_id = loop.run_until_complete(create_source(storage))[0] if with_source else None
        ids = [loop.run_until_complete(commit_envelope(
            storage, body, source_id=source_id if i == len(bodies) - 1 else None))
            for i, body in enumerate(bodies)]
    return ids, source_id


def _listed_on_server(world: World) -> set[str]:
    db = world.data_dir / "db" / "dropbox.sqlite"
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0] for row in connection.execute("SELECT id FROM envelopes")}
    finally:
        connection.close()


def _wrap_key(world: World, envelope_id: str) -> bytes:
    db = world.data_dir / "db" / "dropbox.sqlite"
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        [(key,)] = connection.execute("SELECT wrap_key FROM envelopes WHERE id = ?",
                                      (envelope_id,)).fetchall()
    finally:
        connection.close()
    return bytes(key)


def _fetch(run: Run, world: World, server: str, inbox: Path, *extra: str | Path,
           identity: Path | None = None) -> Result:
    return run("fetch", "--server", server, "--identity", identity or world.staff_key_file,
               "--passphrase-file", world.passphrase_file, "--out", inbox, *extra)


def _summary(result: Result) -> dict[str, object]:
    doc = json.loads(result.out)
    assert isinstance(doc, dict)
    return doc


def test_fetch_downloads_verifies_acknowledges_and_decrypts(
        world: World, start_server: Callable[[], str], run: Run, tmp_path: Path) -> None:
    agency = world.agency.public_key
    photo = os.urandom(1_500_000)
    bodies = [seal([agency], "first report"),
              seal([agency], "with a photo", [("photo.jpg", photo)]),
              seal([agency], "from a source with a code")]
    ids, source_id = _populate(world, bodies, with_source=True)
    server = start_server()
    inbox = tmp_path / "inbox"

    result = _fetch(run, world, server, inbox, "--json")
    assert result.code == 0, result.err
    assert _summary(result) == {"inbox": str(inbox), "ok": True, "fetched": sorted(ids),
                                "skipped": [], "errors": []}
    for envelope_id, body in zip(ids, bodies, strict=True):
        assert (inbox / f"{envelope_id}.srdb").read_bytes() == body
        sidecar = json.loads((inbox / f"{envelope_id}.meta.json").read_text())
        if envelope_id == ids[-1]:  # a returning source: its reply key, for offline replies
            assert sidecar.pop("source_public_key").startswith("srdb1-x25519-")
        assert sidecar == {"envelope_id": envelope_id,
                           "source_id": source_id if envelope_id == ids[-1] else None,
                           "received_day": sidecar["received_day"], "recipient": RECIPIENT,
                           "sha256": sha256(body), "size": len(body),
                           "fetched_day": sidecar["fetched_day"],
                           "fetched_by": world.staff.public_key.fingerprint}
    assert sorted(p.name for p in inbox.iterdir() if p.name.startswith(".")) == [".fetch.lock"]
    assert _listed_on_server(world) == set()
    assert list(world.envelopes_dir.iterdir()) == []

    again = _fetch(run, world, server, inbox)
    assert (again.code, again.out.strip()) == (0, "no new envelopes")

    out = tmp_path / "reports"
    decrypted = run("decrypt", "--key-file", world.agency_key_file, "--passphrase-file",
                    world.passphrase_file, "--out", out, inbox)
    assert decrypted.code == 0, decrypted.err
    reports = {envelope_id: json.loads((out / envelope_id / "report.json").read_text())
               for envelope_id in ids}
    assert [reports[i]["message"] for i in ids] == ["first report", "with a photo",
                                                    "from a source with a code"]
    assert (out / ids[1] / "attachments" / "photo.jpg").read_bytes() == photo
    assert reports[ids[-1]]["server"]["source_id"] == source_id


def test_rerun_acknowledges_a_finished_download_without_downloading_it(
        world: World, start_server: Callable[[], str], run: Run, tmp_path: Path) -> None:
    """A run stopped after the rename but before the acknowledgement."""
    body = seal([world.agency.public_key], "already downloaded")
    [envelope_id], _ = _populate(world, [body])
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / f"{envelope_id}.srdb").write_bytes(body)
    # Spoil the server's copy: a second download would now fail its SHA-256 check.
    (world.envelopes_dir / f"{envelope_id}.srdb").write_bytes(bytes(len(body)))
    server = start_server()

    result = _fetch(run, world, server, inbox, "--json")
    assert result.code == 0, result.err
    assert _summary(result)["skipped"] == [envelope_id]
    assert _summary(result)["fetched"] == []
    assert (inbox / f"{envelope_id}.srdb").read_bytes() == body
    assert json.loads((inbox / f"{envelope_id}.meta.json").read_text())["sha256"] == sha256(body)
    assert sorted(p.name for p in inbox.iterdir()) == [
        ".fetch.lock", f"{envelope_id}.meta.json", f"{envelope_id}.srdb"]
    assert _listed_on_server(world) == set()


def test_truncated_partial_download_is_resumed(
        world: World, start_server: Callable[[], str], run: Run, tmp_path: Path) -> None:
    body = seal([world.agency.public_key], "resume me", [("data", os.urandom(400_000))])
    [envelope_id], _ = _populate(world, [body])
    half = len(body) // 2
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / f".{envelope_id}.srdb.part").write_bytes(body[:half])
    # Spoil every stored block wholly before the resume point: only a resumed (Range)
    # download, which unwraps just the blocks it sends, can still succeed.
    stored = world.envelopes_dir / f"{envelope_id}.srdb"
    wrapped = bytearray(stored.read_bytes())
    spoilt = (half // BLOCK_SIZE) * WRAPPED_BLOCK_SIZE
    wrapped[HEADER_SIZE:HEADER_SIZE + spoilt] = bytes(spoilt)
    stored.write_bytes(wrapped)
    server = start_server()

    result = _fetch(run, world, server, inbox, "--json")
    assert result.code == 0, result.err
    assert _summary(result)["fetched"] == [envelope_id]
    assert (inbox / f"{envelope_id}.srdb").read_bytes() == body
    assert not (inbox / f".{envelope_id}.srdb.part").exists()
    assert _listed_on_server(world) == set()


def test_corrupted_download_is_not_acknowledged(
        world: World, start_server: Callable[[], str], run: Run, tmp_path: Path) -> None:
    bodies = [seal([world.agency.public_key], "intact"),
              seal([world.agency.public_key], "damaged", [("x", os.urandom(50_000))])]
    ids, _ = _populate(world, bodies)
    server = start_server()
    stored = world.envelopes_dir / f"{ids[1]}.srdb"  # listed with the original SHA-256...
    damaged = bytearray(bodies[1])
    damaged[len(damaged) // 2] ^= 0x01  # ...but now differs by one bit (validly wrapped)
    stored.write_bytes(wrap(_wrap_key(world, ids[1]), bytes(damaged)))
    inbox = tmp_path / "inbox"

    result = _fetch(run, world, server, inbox, "--json")
    assert result.code == 1
    summary = _summary(result)
    assert summary["fetched"] == [ids[0]]
    [error] = summary["errors"]  # type: ignore[misc]
    assert error["envelope_id"] == ids[1]
    assert "SHA-256 does not match" in error["error"]
    assert not (inbox / f"{ids[1]}.srdb").exists()
    assert not (inbox / f".{ids[1]}.srdb.part").exists()
    assert _listed_on_server(world) == {ids[1]}

    text = _fetch(run, world, server, inbox)  # the same failure, said on stderr
    assert text.code == 1
    assert f"error: {ids[1]}: envelope {ids[1]}: the downloaded file's SHA-256" in text.err


def test_unauthorised_staff_key_is_a_clear_error(
        world: World, start_server: Callable[[], str], run: Run, tmp_path: Path) -> None:
    stranger_file = tmp_path / "stranger.key"
    stranger_file.write_text(lock_secret_key(world.stranger, PASSPHRASE, params=TEST_KDF))
    server = start_server()
    result = _fetch(run, world, server, tmp_path / "inbox", identity=stranger_file)
    assert result.code == 1
    assert "not authorised" in result.err
    assert "Is your staff key authorised on this server" in result.err


def test_agency_key_is_not_an_identity(world: World, run: Run, tmp_path: Path) -> None:
    result = _fetch(run, world, "http://127.0.0.1:9/", tmp_path / "inbox",
                    identity=world.agency_key_file)
    assert result.code == 1
    assert "staff signing key" in result.err


def test_unreachable_server_is_a_clear_error(world: World, run: Run, tmp_path: Path) -> None:
    result = _fetch(run, world, "http://127.0.0.1:9/", tmp_path / "inbox")
    assert result.code == 1
    assert "cannot reach the server at http://127.0.0.1:9/" in result.err
