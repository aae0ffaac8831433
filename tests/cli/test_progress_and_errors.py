"""The progress display and the one-line error messages."""

from __future__ import annotations

import io

from client_cli.errors import CliError, describe_error, one_line
from client_cli.progress import Progress
from dropbox_envelope.errors import WrongPassphrase


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_for_big_inputs() -> None:
    stream = FakeTerminal()
    with Progress("decrypting x.srdb", 20 * 1024 * 1024, stream=stream) as progress:
        for _ in range(20):
            progress(1024 * 1024)
    shown = stream.getvalue()
    assert "\rdecrypting x.srdb:   5%" in shown
    assert "\rdecrypting x.srdb: 100%" in shown
    assert shown.endswith("\r")  # the line is cleared at the end
    assert "\n" not in shown


def test_no_progress_for_small_inputs_or_pipes() -> None:
    stream = FakeTerminal()
    with Progress("x", 1024, stream=stream) as progress:
        progress(1024)
    assert stream.getvalue() == ""
    pipe = io.StringIO()
    with Progress("x", 100 * 1024 * 1024, stream=pipe) as progress:
        progress(100 * 1024 * 1024)
    assert pipe.getvalue() == ""


def test_error_messages_are_one_line() -> None:
    assert one_line("a\nb\x1b[31m\r\u2028c") == "a\\x0ab\\x1b[31m\\x0d\\u2028c"
    assert one_line("bad \udcff byte") == "bad \\udcff byte"
    assert describe_error(FileNotFoundError(2, "No such file or directory", "x\ny")) == \
        "x\\x0ay: No such file or directory"
    assert describe_error(CliError("plain")) == "plain"
    assert describe_error(WrongPassphrase()).startswith(
        "The passphrase does not unlock this secret key file. Check the keyboard layout")
