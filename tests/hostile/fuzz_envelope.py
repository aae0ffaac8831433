"""Coverage-guided fuzzing of the envelope readers with atheris (libFuzzer). Not part of the
test suite (pytest does not collect this file, and nothing imports atheris); run it by hand:

    pip install atheris            # a wheel exists for CPython 3.11 on x86-64 Linux
    python tests/hostile/fuzz_envelope.py -max_total_time=300 [corpus_dir]

Each input is fed, in pieces of a size it chooses, to a keyless ``StructureChecker`` (what the
server runs on browser envelopes and staff replies) and to a ``Decryptor`` holding the key
of a valid seed envelope, and unwrapped as an at-rest file (``dropbox_envelope.atrest``) under
a fixed key. The property: every input ends in a result or an ``EnvelopeError``; anything else
(another exception, a crash, a hang caught by ``-timeout``) is a finding, saved by libFuzzer
as ``crash-<hash>``. The seed envelopes are written into the corpus folder (if given) first,
so the fuzzer starts from valid structure instead of random bytes.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from dropbox_envelope import Decryptor, Encryptor, EnvelopeError, StructureChecker
    from dropbox_envelope.atrest import unwrap, wrap
    from dropbox_envelope.keys import SecretKey

KEY = SecretKey(bytes(range(32)))
WRAP_KEY = bytes(range(100, 132))


def _seed(size: int, attachments: int) -> bytes:
    encryptor = Encryptor([KEY.public_key])
    out: list[bytes] = []
    for i in range(attachments):
        out += encryptor.add_attachment(f"f{i}.txt", "text/plain", b"x" * size)
    out += encryptor.finish(kind="report", language="en", message="seed",
                            answers={"q": ["a"]})
    return b"".join(out)


SEEDS = [_seed(0, 0), _seed(10, 1), _seed(70_000, 2)]


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


def test_one_input(raw: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(raw)
    piece = fdp.ConsumeIntInRange(1, 70_000)
    data = fdp.ConsumeBytes(fdp.remaining_bytes())
    checker = StructureChecker(max_size=1 << 24)
    try:
        for block in _pieces(data, piece):
            checker.feed(block)
        checker.close()
    except EnvelopeError:
        pass
    decryptor = Decryptor([KEY])
    try:
        for block in _pieces(data, piece):
            decryptor.feed(block)
        decryptor.close()
    except EnvelopeError:
        pass
    with contextlib.suppress(EnvelopeError):
        unwrap(WRAP_KEY, data)


def main() -> None:
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    if corpus:
        folder = Path(corpus[0])
        folder.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(SEEDS):
            # The first two bytes choose the piece size (see test_one_input).
            (folder / f"seed-{i}").write_bytes(b"\x00\x10" + seed)
            for version in (1, 2):  # at-rest format versions (docs/PROTOCOL.md §11)
                (folder / f"seed-wrapped-v{version}-{i}").write_bytes(
                    b"\x00\x10" + wrap(WRAP_KEY, seed, version=version))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
