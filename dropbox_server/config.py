"""Server configuration: a commented TOML file in the data folder, validated at start-up."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dropbox_envelope.codes import CODE_KDF
from dropbox_envelope.errors import InvalidKey
from dropbox_envelope.keys import KdfParams, PublicKey, StaffPublicKey

from .errors import ConfigError

__all__ = ["CONFIG_NAME", "Config", "Limits", "OnionDefenses", "Recipient", "StaffMember",
           "load_config", "render_config", "slug"]

CONFIG_NAME = "dropbox.toml"


@dataclass(frozen=True)
class Recipient:
    """An agency (or support organisation) people can choose to report to."""

    id: str
    name: str
    description: str
    keys: tuple[PublicKey, ...]


@dataclass(frozen=True)
class StaffMember:
    name: str
    key: StaffPublicKey


@dataclass(frozen=True)
class Limits:
    max_report_bytes: int = 2 * 1024 * 1024 * 1024
    max_files: int = 20
    max_message_chars: int = 100_000
    max_field_chars: int = 2_000
    max_concurrent_uploads: int = 64
    code_workers: int = 2
    code_queue: int = 32
    new_report_code_queue: int = 16
    header_timeout_seconds: int = 10
    body_idle_timeout_seconds: int = 120
    session_minutes: int = 30
    staff_signature_window: int = 300
    # Retention (dropbox_server.retention): not limits strictly, but [server] integers too.
    source_retention_days: int = 90
    unfetched_warning_days: int = 7


#: Tor accepts rates and bursts up to INT32_MAX, stream limits up to 65535 (hs_config.c).
_TOR_RATE_MAX = 2**31 - 1
_TOR_STREAMS_MAX = 65535


@dataclass(frozen=True)
class OnionDefenses:
    """Tor's denial-of-service defences for both onion services (``[tor]`` in dropbox.toml).

    Defaults: proof-of-work with tor's own queue defaults, as SecureDrop enables it by default
    since 2.9; introduction-point rate limits on, with the values tor's manual gives as the
    defaults (25 introductions a second per introduction point, bursts of 200), which tor
    itself only applies when asked (HiddenServiceEnableIntroDoSDefense defaults to 0).
    """

    pow_defenses: bool = True
    pow_queue_rate: int = 250
    pow_queue_burst: int = 2500
    intro_dos_defense: bool = True
    intro_dos_rate_per_sec: int = 25
    intro_dos_burst_per_sec: int = 200
    # Concurrent streams per rendezvous circuit, beyond which tor closes the circuit: a
    # browser opening the site needs a handful, a staff client one or two.
    public_max_streams: int = 32
    staff_max_streams: int = 8

    def max_streams(self, which: str) -> int:
        """The stream limit for service ``which`` ("public" or "staff")."""
        return self.staff_max_streams if which == "staff" else self.public_max_streams


@dataclass(frozen=True)
class Config:
    data_dir: Path
    recipients: tuple[Recipient, ...]
    staff: tuple[StaffMember, ...] = ()
    public_port: int = 8080
    staff_port: int = 8081
    limits: Limits = field(default_factory=Limits)
    code_kdf: KdfParams = CODE_KDF
    questionnaire: Path | None = None
    onion_defenses: OnionDefenses = field(default_factory=OnionDefenses)

    def recipient(self, recipient_id: str) -> Recipient | None:
        return next((r for r in self.recipients if r.id == recipient_id), None)

    @property
    def staff_keys(self) -> dict[str, str]:
        """Public key text -> staff name."""
        return {m.key.encode(): m.name for m in self.staff}


def slug(name: str) -> str:
    """A short ASCII identifier for a display name ("City Police" -> "city-police")."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return s[:40] or "recipient"


def _read_key(ref: str, base: Path, where: str, kind: type[PublicKey] | type[StaffPublicKey]
              ) -> PublicKey | StaffPublicKey:
    """A key given either as its text or as a path (relative to the data folder) to a .pub file."""
    if ref.startswith("srdb1-"):
        text, origin = ref, where
    else:
        path = (base / ref) if not Path(ref).is_absolute() else Path(ref)
        origin = f"{where} ({path})"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{where}: key file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: cannot read key file {path}: {exc}") from None
    try:
        return kind.decode(text)
    except InvalidKey as exc:
        raise ConfigError(f"{origin}: malformed key: {exc}") from None


def load_config(data_dir: Path) -> Config:
    """Read and validate ``DATA_DIR/dropbox.toml``; raises :class:`ConfigError`."""
    path = data_dir / CONFIG_NAME
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; run `dropbox-server init` first") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    server = _table(doc, "server", path)
    limits = Limits(**{k: _int(server, k, getattr(Limits(), k), path)
                       for k in Limits.__dataclass_fields__})
    recipients: list[Recipient] = []
    seen_keys: dict[bytes, str] = {}
    for i, entry in enumerate(_list(doc, "recipient", path)):
        where = f"{path}: [[recipient]] #{i + 1}"
        name = _str(entry, "name", where, required=True)
        rid = _str(entry, "id", where) or slug(name)
        keys = entry.get("keys")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise ConfigError(f"{where} ({name}): 'keys' must be a non-empty list of key files")
        parsed: list[PublicKey] = []
        for k in keys:
            key = _read_key(k, data_dir, f"{where} ({name})", PublicKey)
            assert isinstance(key, PublicKey)  # noqa: S101 - _read_key returns the kind asked
            if key.raw in seen_keys:
                raise ConfigError(f"{where} ({name}): key {k} is listed twice "
                                  f"(also in {seen_keys[key.raw]})")
            seen_keys[key.raw] = f"{where} ({name})"
            parsed.append(key)
        if any(r.id == rid for r in recipients):
            raise ConfigError(f"{where}: recipient id {rid!r} is used twice")
        recipients.append(Recipient(rid, name, _str(entry, "description", where), tuple(parsed)))
    if limits.source_retention_days < 1:
        raise ConfigError(f"{path}: [server] source_retention_days must be at least 1")
    for timeout in ("header_timeout_seconds", "body_idle_timeout_seconds"):
        if getattr(limits, timeout) < 1:
            raise ConfigError(f"{path}: [server] {timeout} must be at least 1")
    if not recipients:
        raise ConfigError(f"{path}: no [[recipient]] configured; reports would have nowhere to go")
    staff: list[StaffMember] = []
    staff_seen: dict[bytes, str] = {}
    for i, entry in enumerate(_list(doc, "staff", path)):
        where = f"{path}: [[staff]] #{i + 1}"
        name = _str(entry, "name", where, required=True)
        key = _read_key(_str(entry, "key", where, required=True), data_dir, f"{where} ({name})",
                        StaffPublicKey)
        assert isinstance(key, StaffPublicKey)  # noqa: S101
        if key.raw in staff_seen:
            raise ConfigError(f"{where} ({name}): staff key is listed twice "
                              f"(also for {staff_seen[key.raw]})")
        if any(m.name == name for m in staff):
            raise ConfigError(f"{where}: staff name {name!r} is used twice")
        staff_seen[key.raw] = name
        staff.append(StaffMember(name, key))
    questionnaire = server.get("questionnaire", "")
    if not isinstance(questionnaire, str):
        raise ConfigError(f"{path}: [server] questionnaire must be a file path")
    kdf = KdfParams(_int(server, "code_kdf_opslimit", CODE_KDF.opslimit, path),
                    _int(server, "code_kdf_memlimit", CODE_KDF.memlimit, path))
    defenses = _onion_defenses(_table(doc, "tor", path), path)
    return Config(
        data_dir=data_dir,
        recipients=tuple(recipients),
        staff=tuple(staff),
        public_port=_int(server, "public_port", 8080, path),
        staff_port=_int(server, "staff_port", 8081, path),
        limits=limits,
        code_kdf=kdf,
        questionnaire=(data_dir / questionnaire) if questionnaire else None,
        onion_defenses=defenses,
    )


def _onion_defenses(table: dict[str, Any], path: Path) -> OnionDefenses:
    d = OnionDefenses()
    names = list(OnionDefenses.__dataclass_fields__)
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise ConfigError(f"{path}: [tor] {unknown[0]} is not a setting (known: "
                          f"{', '.join(names)})")
    values: dict[str, Any] = {}
    for key in names:
        value = table.get(key, getattr(d, key))
        if isinstance(getattr(d, key), bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: [tor] {key} must be true or false")
        else:
            top = _TOR_STREAMS_MAX if key.endswith("_max_streams") else _TOR_RATE_MAX
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                # 0 would mean "no limit" to tor: a defence is turned off with its switch.
                raise ConfigError(f"{path}: [tor] {key} must be a whole number from 1 to "
                                  f"{top}")
        values[key] = value
    defenses = OnionDefenses(**values)
    for rate, burst in (("pow_queue_rate", "pow_queue_burst"),
                        ("intro_dos_rate_per_sec", "intro_dos_burst_per_sec")):
        if values[burst] < values[rate]:
            # Tor itself refuses such a service (hs_config.c); say so before it does.
            raise ConfigError(f"{path}: [tor] {burst} ({values[burst]}) must not be smaller "
                              f"than {rate} ({values[rate]})")
    return defenses


def _table(doc: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{key}] must be a table")
    return value


def _list(doc: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{path}: [[{key}]] entries must be tables")
    return value


def _int(table: dict[str, Any], key: str, default: int, path: Path) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{path}: [server] {key} must be a non-negative integer")
    return value


def _str(table: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = table.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ConfigError(f"{where}: '{key}' must be {'non-empty ' if required else ''}text")
    return value


def _q(text: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes for everything json.dumps emits.
    return json.dumps(text, ensure_ascii=False)


def _render_tor_section() -> list[str]:
    o = OnionDefenses()
    return [
        "",
        "[tor]",
        "# Tor's denial-of-service defences, for both onion services. They apply when",
        "# `dropbox-server run` starts its own tor; a system tor (--tor-control, --no-tor)",
        "# needs them in its torrc (see torrc.example). The limits in [server] apply as well.",
        "# Proof of work: when flooded, tor asks clients to solve a puzzle first and serves",
        "# those who did the most work first; dormant (no cost to anyone) otherwise. On by",
        "# default, as in SecureDrop since 2.9; queue rate and burst are tor's defaults.",
        f"pow_defenses = {str(o.pow_defenses).lower()}",
        f"pow_queue_rate = {o.pow_queue_rate}",
        f"pow_queue_burst = {o.pow_queue_burst}",
        "# Introduction-point rate limits: each introduction point lets at most",
        "# intro_dos_rate_per_sec introductions a second through to this server (bursts up to",
        "# intro_dos_burst_per_sec). Tor leaves this off unless asked; the numbers are the",
        "# defaults tor's manual gives, ample for people opening a reporting form.",
        f"intro_dos_defense = {str(o.intro_dos_defense).lower()}",
        f"intro_dos_rate_per_sec = {o.intro_dos_rate_per_sec}",
        f"intro_dos_burst_per_sec = {o.intro_dos_burst_per_sec}",
        "# Streams (HTTP connections) one client circuit may hold open at once; tor closes",
        "# a circuit that asks for more. A browser needs a handful, a staff client one or two.",
        f"public_max_streams = {o.public_max_streams}",
        f"staff_max_streams = {o.staff_max_streams}",
    ]


def render_config(recipients: list[tuple[str, str, list[str]]],
                  staff: list[tuple[str, str]], *, public_port: int = 8080,
                  staff_port: int = 8081) -> str:
    """The commented TOML file `dropbox-server init` writes.

    ``recipients``: (display name, description, key file paths relative to the data folder);
    ``staff``: (name, key file path).
    """
    d = Limits()
    lines = [
        "# Safe Report Drop Box server configuration.",
        "# Edit and restart `dropbox-server run` to apply. Paths are relative to this folder.",
        "",
        "[server]",
        "# Ports on 127.0.0.1: the public reporting site and the staff API. Each is published",
        "# as its own onion service; never expose them directly to the internet.",
        f"public_port = {public_port}",
        f"staff_port = {staff_port}",
        "# Largest report (all attachments together), in bytes.",
        f"max_report_bytes = {d.max_report_bytes}",
        f"max_files = {d.max_files}",
        f"max_message_chars = {d.max_message_chars}",
        f"max_field_chars = {d.max_field_chars}",
        "# Uploads in progress at once; more get a friendly 'busy, try again' page.",
        f"max_concurrent_uploads = {d.max_concurrent_uploads}",
        "# Argon2id runs on code_workers threads. A free thread goes first to a new report",
        "# (its return code; at most new_report_code_queue wait), then to return-code checks",
        "# at login (at most code_queue wait): a flood of guessed codes cannot hold up new",
        "# reports. More get the 'busy, try again' page at once.",
        f"code_workers = {d.code_workers}",
        f"code_queue = {d.code_queue}",
        f"new_report_code_queue = {d.new_report_code_queue}",
        "# Seconds a connection may take to send a request's headers (from when it opens, or",
        "# from its previous answer): slower ones are closed. Uploads already sending their",
        "# body are not affected, however long they take.",
        f"header_timeout_seconds = {d.header_timeout_seconds}",
        "# Seconds an upload may go without sending a single byte of its body before it is",
        "# stopped (and its upload slot freed). Slow uploads are not affected as long as",
        "# bytes keep arriving; over Tor, a minute of silence means the circuit is gone.",
        f"body_idle_timeout_seconds = {d.body_idle_timeout_seconds}",
        f"session_minutes = {d.session_minutes}",
        f"staff_signature_window = {d.staff_signature_window}",
        "# A source (someone with a return code) who has not logged in for this many days is",
        "# deleted with the replies to them, unless a report of theirs still waits to be",
        "# fetched. Reports themselves are never deleted until staff fetch them; the log warns",
        "# daily about reports waiting unfetched_warning_days or more.",
        f"source_retention_days = {d.source_retention_days}",
        f"unfetched_warning_days = {d.unfetched_warning_days}",
        "# Questionnaire file (JSON); empty = the built-in one.",
        'questionnaire = ""',
        *_render_tor_section(),
        "",
        "# Who people can report to. A report is sealed to every key of the chosen recipient:",
        "# list the agency key and its offline backup key.",
    ]
    for name, description, keys in recipients:
        lines += ["", "[[recipient]]", f"id = {_q(slug(name))}", f"name = {_q(name)}",
                  f"description = {_q(description)}",
                  "keys = [" + ", ".join(_q(k) for k in keys) + "]"]
    lines += ["", "# Staff allowed to use the staff API (Ed25519 request-signing keys)."]
    for name, key in staff:
        lines += ["", "[[staff]]", f"name = {_q(name)}", f"key = {_q(key)}"]
    return "\n".join(lines) + "\n"
