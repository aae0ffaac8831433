"""``dropbox-client reply`` against a real server process: the source's key is fetched, the
reply sealed to it alone, stored for that source, and opened with the key the return code
derives."""

from __future__ import annotations

import io
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from dropbox_envelope.keys import SecretKey
from dropbox_envelope.streams import decrypt
from dropbox_server.staff import MAX_REPLY_BYTES
from tests.server.datafolder import stored_bytes
from tests.staff.conftest import MemorySink, Result, Run, World, create_source, open_storage


def _new_source(world: World) -> tuple[str, SecretKey]:
    with open_storage(world.data_dir) as (storage, loop):
        return loop.run_until_complete(create_source(storage))


def _reply(run: Run, world: World, server: str, source_id: str, message_file: Path,
           *extra: str | Path) -> Result:
    return run("reply", "--server", server, "--identity", world.staff_key_file,
               "--passphrase-file", world.passphrase_file, "--source", source_id,
               "--message-file", message_file, *extra)


def test_reply_round_trip(world: World, start_server: Callable[[], str], run: Run,
                          tmp_path: Path) -> None:
    source_id, source_key = _new_source(world)
    server = start_server()
    message = "Merci. Nous avons bien reçu votre signalement.\nPouvez-vous préciser la date ?"
    message_file = tmp_path / "message.txt"
    message_file.write_text(message, encoding="utf-8")
    attachment = tmp_path / "form.pdf"
    attachment.write_bytes(os.urandom(20_000))

    result = _reply(run, world, server, source_id, message_file, "--language", "fr",
                    attachment)
    assert result.code == 0, result.err
    reply_id = result.out.strip()
    stored = world.replies_dir / f"{reply_id}.srdb"
    db = world.data_dir / "db" / "dropbox.sqlite"
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT id, source_id, size FROM replies").fetchall()
    finally:
        connection.close()
    envelope = stored_bytes(stored)  # unwrapped with the server's key for it
    assert rows == [(reply_id, source_id, len(envelope))]

    sink = MemorySink()
    manifest = decrypt(io.BytesIO(envelope), [source_key], sink)
    assert (manifest.kind, manifest.language, manifest.message) == ("reply", "fr", message)
    assert [a.name for a in manifest.attachments] == ["form.pdf"]
    assert sink.files[0].getvalue() == attachment.read_bytes()


def test_reply_to_unknown_source_is_a_clear_error(
        world: World, start_server: Callable[[], str], run: Run, tmp_path: Path) -> None:
    server = start_server()
    message_file = tmp_path / "message.txt"
    message_file.write_text("hello")
    result = _reply(run, world, server, "d" * 32, message_file)
    assert result.code == 1
    assert f"there is no source {'d' * 32} on this server" in result.err
    assert list(world.replies_dir.iterdir()) == []


def test_malformed_source_id_is_refused_before_anything(
        world: World, run: Run, tmp_path: Path) -> None:
    message_file = tmp_path / "message.txt"
    message_file.write_text("hello")
    result = _reply(run, world, "http://127.0.0.1:9/", "../../etc", message_file)
    assert result.code == 1
    assert "is not a source ID" in result.err


def test_reply_over_the_limit_is_refused_locally(
        world: World, start_server: Callable[[], str], run: Run, tmp_path: Path) -> None:
    source_id, _key = _new_source(world)
    server = start_server()
    message_file = tmp_path / "message.txt"
    message_file.write_text("see attached")
    big = tmp_path / "video.mp4"
    big.write_bytes(bytes(MAX_REPLY_BYTES))
    result = _reply(run, world, server, source_id, message_file, big)
    assert result.code == 1
    assert "larger than" in result.err
    assert list(world.replies_dir.iterdir()) == []
