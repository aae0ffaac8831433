"""A small client for the staff API (``dropbox_server.staff``): every request signed.

Each request is signed with the staff member's Ed25519 key (:func:`dropbox_envelope.staffauth.
sign_request`) just before it is sent, over whatever connector the caller's factory makes (the
Tor work passes a SOCKS connector; the default is a plain TCP one). Everything the server sends
is checked before use: ids become file names, so a malformed one is a protocol error, never a
path.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import hashlib
import io
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
from yarl import URL

from dropbox_envelope.errors import InvalidKey
from dropbox_envelope.keys import PublicKey, RandomSource, StaffSecretKey
from dropbox_envelope.staffauth import API_PREFIX, HEADER_BODY_SHA256, MAX_REPLY_BYTES, sign_request

from .errors import CliError, one_line
from .keyfiles import unlock_key_file

__all__ = [
    "HEADER_BODY_SHA256",
    "MAX_REPLY_BYTES",
    "ConnectorFactory",
    "EnvelopeListing",
    "NotFound",
    "ProtocolError",
    "RequestRejected",
    "ServerFailed",
    "ServerUnreachable",
    "SignatureRejected",
    "SourceInfo",
    "StaffApiError",
    "StaffClient",
    "add_connection_arguments",
    "is_id",
    "load_staff_identity",
]

DOWNLOAD_BLOCK = 256 * 1024
MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_ERROR_CHARS = 300

# Onion services take a while to reach; a stalled download still fails within minutes.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=120, sock_read=300)

ConnectorFactory = Callable[[], aiohttp.BaseConnector]
"""Makes the connector of each session, e.g. ``lambda: ProxyConnector.from_url(socks)``."""

_ID = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


# --- errors ----------------------------------------------------------------------------------

class StaffApiError(CliError):
    """Talking to the staff API failed; the message says why and what to check."""


class ServerUnreachable(StaffApiError):
    """The server could not be reached, or the connection broke."""


class SignatureRejected(StaffApiError):
    """The server refused the request signature (HTTP 401)."""


class NotFound(StaffApiError):
    """The server does not know this envelope or source (HTTP 404)."""


class RequestRejected(StaffApiError):
    """The server refused the request as invalid (HTTP 4xx other than 401 and 404)."""


class ServerFailed(StaffApiError):
    """The server failed while handling the request (HTTP 5xx)."""


class ProtocolError(StaffApiError):
    """The server's answer does not follow the staff API; nothing from it was used."""


def is_id(text: str) -> bool:
    """A server id (envelope, source, reply): 32 lowercase hex digits."""
    return _ID.fullmatch(text) is not None


# --- what the server returns -----------------------------------------------------------------

@dataclass(frozen=True)
class EnvelopeListing:
    """One envelope waiting on the server, as listed (and checked)."""

    id: str
    source_id: str | None
    recipient: str
    day: str
    size: int
    sha256: str

    @property
    def etag(self) -> str:
        return f'"sha256:{self.sha256}"'

    def sidecar(self) -> dict[str, Any]:
        """What ``fetch`` writes next to the envelope as ``<id>.meta.json``."""
        return {"envelope_id": self.id, "source_id": self.source_id,
                "received_day": self.day, "recipient": self.recipient,
                "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, item: Any) -> EnvelopeListing:
        if not isinstance(item, dict):
            raise ProtocolError("the envelope list holds something that is not an object")
        envelope_id, source_id = item.get("id"), item.get("source_id")
        recipient, day = item.get("recipient"), item.get("day")
        size, sha256 = item.get("size"), item.get("sha256")
        if not (isinstance(envelope_id, str) and is_id(envelope_id)):
            raise ProtocolError("the envelope list holds a malformed envelope id")
        if not (source_id is None or (isinstance(source_id, str) and is_id(source_id))):
            raise ProtocolError(f"envelope {envelope_id}: malformed source id")
        if not (isinstance(recipient, str) and 0 < len(recipient) <= 200):
            raise ProtocolError(f"envelope {envelope_id}: malformed recipient")
        if not (isinstance(day, str) and _DAY.fullmatch(day)):
            raise ProtocolError(f"envelope {envelope_id}: malformed day")
        if not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
            raise ProtocolError(f"envelope {envelope_id}: malformed size")
        if not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
            raise ProtocolError(f"envelope {envelope_id}: malformed SHA-256")
        return cls(envelope_id, source_id, recipient, day, size, sha256)


@dataclass(frozen=True)
class SourceInfo:
    """A source that can receive replies: its X25519 reply key and chosen recipient."""

    source_id: str
    public_key: PublicKey
    recipient: str


# --- the client ------------------------------------------------------------------------------

class StaffClient:
    """``async with StaffClient(url, key) as api: await api.list_envelopes()``."""

    def __init__(self, server_url: str, key: StaffSecretKey, *,
                 connector: ConnectorFactory | None = None,
                 timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
                 clock: Callable[[], float] = time.time,
                 random: RandomSource = os.urandom) -> None:
        url = URL(server_url)
        if url.scheme not in ("http", "https") or not url.host or url.query_string or \
                url.fragment:
            raise StaffApiError(f"--server {server_url!r} is not a server address like "
                                "http://xxxxxxxx.onion/ or http://127.0.0.1:8081/")
        self.server_url = server_url
        self._origin = str(url.origin())
        self._base_path = url.raw_path.rstrip("/")
        self._key = key
        self._connector = connector
        self._timeout = timeout
        self._clock = clock
        self._random = random
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> StaffClient:
        connector = self._connector() if self._connector is not None else None
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the API ------------------------------------------------------------------------------

    async def list_envelopes(self) -> list[EnvelopeListing]:
        try:
            doc = await self._get_json("/envelopes")
        except NotFound:
            raise NotFound(f"there is no staff API at {self.server_url}; is it the staff API's "
                           "address (not the public site's)?") from None
        items = doc.get("envelopes")
        if not isinstance(items, list):
            raise ProtocolError("the server's envelope list has no \"envelopes\" array")
        listings = [EnvelopeListing.from_json(item) for item in items]
        if len({e.id for e in listings}) != len(listings):
            raise ProtocolError("the server listed the same envelope twice")
        return listings

    async def download(self, listing: EnvelopeListing, out: BinaryIO, *, offset: int = 0,
                       progress: Callable[[int], None] | None = None) -> None:
        """Write the envelope into ``out``, which already holds its first ``offset`` bytes.

        With ``offset`` > 0 only the rest is asked for (``Range`` + ``If-Range``); if the server
        sends the whole file instead, ``out`` is rewound and truncated first. The caller still
        has to check the SHA-256 of the result: this only checks the ETag and the length.
        """
        headers = {"Range": f"bytes={offset}-", "If-Range": listing.etag} if offset else {}
        async with self._request("GET", f"/envelopes/{listing.id}", headers=headers) as resp:
            if resp.headers.get("ETag") != listing.etag:
                raise ProtocolError(f"envelope {listing.id}: the server sent a different version "
                                    "than it listed (ETag mismatch); it was not acknowledged")
            start = self._start_of(resp, listing, offset)
            if start == 0:
                out.seek(0)
                out.truncate()
            received = start
            async for block in resp.content.iter_chunked(DOWNLOAD_BLOCK):
                received += len(block)
                if received > listing.size:
                    raise ProtocolError(f"envelope {listing.id}: the server sent more than the "
                                        f"{listing.size} bytes it listed")
                out.write(block)
                if progress is not None:
                    progress(len(block))
            if received != listing.size:
                raise ServerUnreachable(f"envelope {listing.id}: the download stopped after "
                                        f"{received} of {listing.size} bytes; run fetch again "
                                        "to resume it")

    @staticmethod
    def _start_of(resp: aiohttp.ClientResponse, listing: EnvelopeListing, offset: int) -> int:
        if resp.status == 200:
            if resp.content_length not in (None, listing.size):
                raise ProtocolError(f"envelope {listing.id}: the server's length differs from "
                                    "the listed size")
            return 0
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
        if resp.status != 206 or not offset or match is None or \
                (int(match[1]), int(match[2]), int(match[3])) != \
                (offset, listing.size - 1, listing.size):
            raise ProtocolError(f"envelope {listing.id}: the server answered the resumed "
                                "download with a range other than the one asked for")
        return offset

    async def ack(self, envelope_id: str) -> None:
        """Tell the server the envelope is stored safely here, so it deletes its copy. An
        envelope that is already gone counts as acknowledged (the server answers 204, or 404)."""
        try:
            async with self._request("POST", f"/envelopes/{_checked(envelope_id)}/ack") as resp:
                if resp.status != 204:
                    raise ProtocolError(f"acknowledging {envelope_id}: unexpected HTTP "
                                        f"{resp.status}")
        except NotFound:
            return

    async def source(self, source_id: str) -> SourceInfo:
        try:
            doc = await self._get_json(f"/sources/{_checked(source_id)}")
        except NotFound:
            raise NotFound(f"there is no source {source_id} on this server (check the ID in "
                           "the report's report.txt)") from None
        public_key, recipient = doc.get("public_key"), doc.get("recipient")
        if doc.get("source_id") != source_id or not isinstance(public_key, str) or \
                not isinstance(recipient, str):
            raise ProtocolError(f"the server's answer about source {source_id} is malformed")
        try:
            key = PublicKey.decode(public_key)
        except InvalidKey as exc:
            raise ProtocolError(f"the server sent a malformed reply key for source "
                                f"{source_id}: {exc}") from None
        return SourceInfo(source_id, key, recipient)

    async def waiting_sources(self) -> list[dict[str, Any]]:
        """Sources with replies they have not read yet."""
        doc = await self._get_json("/sources?waiting=1")
        items = doc.get("sources")
        if not isinstance(items, list) or not all(
                isinstance(i, dict) and isinstance(i.get("source_id"), str) and
                is_id(i["source_id"]) for i in items):
            raise ProtocolError("the server's list of sources is malformed")
        return items

    async def send_reply(self, source_id: str, envelope: bytes) -> str:
        """Store a reply envelope for ``source_id``; returns the reply id."""
        try:
            async with self._request("POST", f"/sources/{_checked(source_id)}/replies",
                                     body=envelope) as resp:
                doc = await _json_body(resp)
        except NotFound:
            raise NotFound(f"there is no source {source_id} on this server (check the ID in "
                           "the report's report.txt)") from None
        reply_id = doc.get("reply_id")
        if resp.status != 201 or not isinstance(reply_id, str) or not is_id(reply_id):
            raise ProtocolError("the server did not confirm the reply with a reply id")
        return reply_id

    # -- signing and errors -------------------------------------------------------------------

    async def _get_json(self, path_qs: str) -> dict[str, Any]:
        async with self._request("GET", path_qs) as resp:
            if resp.status != 200:
                raise ProtocolError(f"GET {path_qs}: unexpected HTTP {resp.status}")
            return await _json_body(resp)

    @contextlib.asynccontextmanager
    async def _request(self, method: str, path_qs: str, *, body: bytes = b"",
                       headers: Mapping[str, str] | None = None
                       ) -> AsyncIterator[aiohttp.ClientResponse]:
        if self._session is None:
            raise RuntimeError("use StaffClient as 'async with'")
        full = self._base_path + API_PREFIX + path_qs
        digest = hashlib.sha256(body).hexdigest()
        signed = sign_request(self._key, method, full, digest, now=int(self._clock()),
                              random=self._random)
        all_headers = dict(headers or {}) | signed.as_dict()
        if body:
            all_headers[HEADER_BODY_SHA256] = digest
            all_headers["Content-Type"] = "application/octet-stream"
        url = URL(self._origin + full, encoded=True)
        try:
            # A BytesIO, not bytes: aiohttp warns that a large bytes body blocks the loop.
            async with self._session.request(method, url,
                                             data=io.BytesIO(body) if body else None,
                                             headers=all_headers,
                                             allow_redirects=False) as resp:
                await self._raise_for_status(resp)
                yield resp
        except aiohttp.ClientPayloadError as exc:
            raise ServerUnreachable(f"the connection to {self.server_url} broke during the "
                                    f"transfer ({exc}); try again") from None
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            reason = str(exc) or type(exc).__name__
            raise ServerUnreachable(f"cannot reach the server at {self.server_url} "
                                    f"({one_line(reason)}). Check the address, and that Tor "
                                    "is running if it is an onion address.") from None

    async def _raise_for_status(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status < 300:
            return
        said = await _error_text(resp)
        if resp.status == 401:
            raise SignatureRejected(
                f"the server rejected the request signature: {said}. Is your staff key "
                "authorised on this server (its public key listed under [[staff]] in the "
                f"server's dropbox.toml)?{self._clock_hint(resp)}")
        if resp.status == 404:
            raise NotFound(f"not found on the server: {said}")
        if resp.status < 400:
            raise ProtocolError(f"the server answered with a redirect (HTTP {resp.status}); "
                                "check the --server address")
        if resp.status < 500:
            raise RequestRejected(f"the server refused the request (HTTP {resp.status}): {said}")
        raise ServerFailed(f"the server failed (HTTP {resp.status}): {said}")

    def _clock_hint(self, resp: aiohttp.ClientResponse) -> str:
        date = resp.headers.get("Date")
        try:
            server_time = email.utils.parsedate_to_datetime(date).timestamp() if date else None
        except (TypeError, ValueError):
            server_time = None
        if server_time is None or abs(server_time - self._clock()) < 60:
            return ""
        return (f" Also, this computer's clock differs from the server's by about "
                f"{abs(server_time - self._clock()) / 60:.0f} minutes; signatures are only "
                "valid for a few minutes.")


def _checked(server_id: str) -> str:
    if not is_id(server_id):
        raise StaffApiError(f"{server_id!r} is not an ID (32 lowercase hex digits)")
    return server_id


async def _json_body(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    # read(n) returns what has arrived so far, so a long listing needs several reads.
    data = bytearray()
    while len(data) <= MAX_JSON_BYTES:
        piece = await resp.content.read(MAX_JSON_BYTES + 1 - len(data))
        if not piece:
            break
        data += piece
    if len(data) > MAX_JSON_BYTES:
        raise ProtocolError("the server's answer is implausibly large")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, absurd numbers
        raise ProtocolError("the server's answer is not JSON; is this the staff API "
                            "address (not the public site)?") from None
    if not isinstance(doc, dict):
        raise ProtocolError("the server's answer is not a JSON object")
    return doc


async def _error_text(resp: aiohttp.ClientResponse) -> str:
    """The server's ``{"error": ...}`` message, made safe to print."""
    try:
        data = await resp.content.read(64 * 1024)
        message = json.loads(data.decode("utf-8")).get("error")
    except (aiohttp.ClientError, UnicodeDecodeError, ValueError, AttributeError):
        message = None
    if not isinstance(message, str) or not message:
        message = resp.reason or f"HTTP {resp.status}"
    return one_line(message[:MAX_ERROR_CHARS])


# --- shared command-line pieces --------------------------------------------------------------

def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--server``, ``--identity`` and ``--passphrase-file``, shared by the online commands."""
    parser.add_argument("--server", metavar="URL", required=True,
                        help="the staff API address, e.g. http://xxxxxxxx.onion/")
    parser.add_argument("--identity", metavar="STAFF_KEY", type=Path, required=True,
                        help="your staff signing secret key file (keygen --kind staff)")
    parser.add_argument("--passphrase-file", metavar="F", type=Path,
                        help="read the passphrase from the first line of F "
                             "(default: ask on the terminal)")


def load_staff_identity(path: Path, passphrase_file: Path | None) -> StaffSecretKey:
    """Unlock the staff signing key; an agency (encryption) key is refused with advice."""
    key = unlock_key_file(path, passphrase_file)
    if not isinstance(key, StaffSecretKey):
        raise CliError(f"{path} is an agency encryption key; --identity needs your staff "
                       "signing key (made with `dropbox-client keygen --kind staff`)")
    return key
