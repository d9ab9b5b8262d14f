"""``bytepump copy`` (and the command line's error handling), run as a real
process: between paths, standard input/output pipes, loopback TCP peers and
the nginx origin, checked with SHA-256."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import MIB, WAIT, payload, read_to_eof, sha

from bytepump import cli

DATA = payload(3 * MIB + 7)
"""What every source holds; the nginx origin serves it as /big.bin."""

SRC_KINDS = ("path", "stdin-pipe", "stdin-file", "tcp", "http")
DST_KINDS = ("path", "stdout", "tcp")


def bytepump(
    *args: str, stdin=subprocess.DEVNULL, input: bytes | None = None, env=None
) -> subprocess.CompletedProcess:
    """Run ``python -m bytepump`` with ``args``; output captured."""
    if input is not None:
        stdin = None
    return subprocess.run(
        [sys.executable, "-m", "bytepump", *args],
        stdin=stdin,
        input=input,
        capture_output=True,
        timeout=WAIT,
        env=env,
        check=False,
    )


def failure_line(result: subprocess.CompletedProcess) -> str:
    """The one stderr line of a failed run (checked to be just that)."""
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


class Peer:
    """A loopback TCP peer in a thread, for one connection: it sends
    ``send`` and closes, or (``send=None``) keeps what arrives until end of
    stream. ``hold`` keeps it silent until :meth:`release`."""

    def __init__(self, send: bytes | None = None, hold: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(WAIT)
        self.spec = f"tcp:127.0.0.1:{self.listener.getsockname()[1]}"
        self.send = send
        self.received: bytes | None = None
        self._released = threading.Event()
        self.accepted = threading.Event()
        if not hold:
            self._released.set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self.listener, self.listener.accept()[0] as conn:
            self.accepted.set()
            self._released.wait(WAIT)
            if self.send is None:
                self.received = read_to_eof(conn.fileno())
            else:
                # The command may close after --count bytes: not an error.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    conn.sendall(self.send)

    def release(self) -> None:
        self._released.set()

    def result(self) -> bytes | None:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the peer did not finish"
        return self.received


@pytest.fixture
def src_file(tmp_path: Path) -> Path:
    path = tmp_path / "src.bin"
    path.write_bytes(DATA)
    return path


def test_version() -> None:
    result = bytepump("--version")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == "0.1.0"


def copy_from(kind: str, src_file: Path, request, *args: str):
    """Run ``bytepump copy SRC *args`` with a SRC of ``kind`` holding DATA."""
    if kind == "path":
        return bytepump("copy", str(src_file), *args)
    if kind == "http":
        url = request.getfixturevalue("nginx").url("/big.bin")
        return bytepump("copy", url, *args)
    if kind == "tcp":
        peer = Peer(send=DATA)
        result = bytepump("copy", peer.spec, *args)
        peer.result()
        return result
    if kind == "stdin-pipe":
        return bytepump("copy", "-", *args, input=DATA)
    with src_file.open("rb") as stdin:  # stdin-file: a regular file
        return bytepump("copy", "-", *args, stdin=stdin)


@pytest.mark.parametrize("dst_kind", DST_KINDS)
@pytest.mark.parametrize("src_kind", SRC_KINDS)
def test_copy_every_pair(src_kind, dst_kind, src_file, tmp_path, request) -> None:
    if dst_kind == "path":
        dst_path = tmp_path / "dst.bin"
        dst_path.write_bytes(b"x" * (len(DATA) + 100))  # to be truncated
        dst = str(dst_path)
    elif dst_kind == "tcp":
        sink = Peer()
        dst = sink.spec
    else:
        dst = "-"
    result = copy_from(src_kind, src_file, request, dst)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""  # no progress bar: stderr is not a terminal
    if dst_kind == "path":
        copied = dst_path.read_bytes()
    elif dst_kind == "tcp":
        copied = sink.result()
    else:
        copied = result.stdout
    assert sha(copied) == sha(DATA)


@pytest.mark.parametrize("src_kind", ["path", "stdin-file", "http"])
def test_offset_and_count(src_kind, src_file, request) -> None:
    offset, count = 1_000_003, 1_500_000
    window = ("--offset", str(offset), "--count", str(count))
    result = copy_from(src_kind, src_file, request, "-", *window)
    assert result.returncode == 0, result.stderr
    assert sha(result.stdout) == sha(DATA[offset : offset + count])


@pytest.mark.parametrize("src_kind", ["tcp", "stdin-pipe"])
def test_count_on_a_stream(src_kind, src_file, request) -> None:
    result = copy_from(src_kind, src_file, request, "-", "--count", "100000")
    assert result.returncode == 0, result.stderr
    assert result.stdout == DATA[:100000]


def test_offset_past_the_end_copies_nothing(src_file) -> None:
    result = bytepump("copy", str(src_file), "-", "--offset", str(len(DATA) + 5))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""


def test_progress_counter(src_file, tmp_path) -> None:
    result = bytepump("copy", str(src_file), str(tmp_path / "out"), "--progress")
    assert result.returncode == 0
    last = result.stderr.decode().rsplit("\r", 1)[-1]
    assert last == f"{len(DATA):,} bytes of {len(DATA):,} (100%)\n"


def test_progress_on_a_terminal(src_file, tmp_path) -> None:
    controller, terminal = pty.openpty()
    try:
        with os.fdopen(terminal, "wb", closefd=False) as stderr:
            result = subprocess.run(
                [sys.executable, "-m", "bytepump", "copy", str(src_file), "-"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                timeout=WAIT,
                check=False,
            )
        os.close(terminal)
        shown = read_terminal(controller)
    finally:
        os.close(controller)
    assert result.returncode == 0
    assert sha(result.stdout) == sha(DATA)
    assert shown.endswith(f"{len(DATA):,} bytes of {len(DATA):,} (100%)\r\n")


def read_terminal(fd: int) -> str:
    """What was written to a pseudo-terminal whose other end is closed."""
    out = bytearray()
    while select.select([fd], [], [], WAIT)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end is closed and all was read
            break
        if not chunk:
            break
        out += chunk
    return out.decode()


def test_progress_counts_from_the_offset(src_file) -> None:
    result = bytepump("copy", str(src_file), "-", "--progress", "--offset", "7")
    assert result.returncode == 0
    size = len(DATA) - 7
    last = result.stderr.decode().rsplit("\r", 1)[-1]
    assert last == f"{size:,} bytes of {size:,} (100%)\n"


def test_progress_uses_tqdm_when_installed(src_file, tmp_path) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "tqdm.py").write_text(
        "import contextlib\n"
        "class tqdm:\n"
        "    def __init__(self, total, file, **kw):\n"
        "        self.n, self.total, self.file, self.kw = 0, total, file, kw\n"
        "    def update(self, n):\n"
        "        self.n += n\n"
        "    def __enter__(self):\n"
        "        return self\n"
        "    def __exit__(self, *exc):\n"
        "        unit = self.kw['unit']\n"
        "        print('fake tqdm', self.n, self.total, unit, file=self.file)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(fake)}
    result = bytepump(
        "copy", str(src_file), str(tmp_path / "out"), "--progress", env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode() == f"fake tqdm {len(DATA)} {len(DATA)} B\n"


def test_tcp_destination_sees_end_of_stream_and_count(src_file) -> None:
    sink = Peer()
    result = bytepump("copy", str(src_file), sink.spec, "--count", "12345")
    assert result.returncode == 0, result.stderr
    assert sink.result() == DATA[:12345]


# --- errors: one line, non-zero, no traceback ---------------------------------


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connecting is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_missing_source(tmp_path) -> None:
    line = failure_line(bytepump("copy", str(tmp_path / "nope"), "-"))
    assert (
        line == f"bytepump: cannot read {tmp_path / 'nope'}: No such file or directory"
    )


def test_missing_source_does_not_touch_destination(tmp_path) -> None:
    dst = tmp_path / "dst"
    dst.write_bytes(b"keep")
    failure_line(bytepump("copy", str(tmp_path / "nope"), str(dst)))
    assert dst.read_bytes() == b"keep"


def test_unwritable_destination(src_file, tmp_path) -> None:
    line = failure_line(bytepump("copy", str(src_file), str(tmp_path / "no/dir")))
    assert "cannot write" in line
    assert "No such file or directory" in line


@pytest.mark.parametrize("side", ["src", "dst"])
def test_connection_refused(side, src_file) -> None:
    spec = f"tcp:127.0.0.1:{free_port()}"
    args = (spec, "-") if side == "src" else (str(src_file), spec)
    line = failure_line(bytepump("copy", *args))
    assert line == f"bytepump: cannot connect to {spec}: Connection refused"


def test_http_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    line = failure_line(bytepump("copy", url, "-"))
    assert "Connection refused" in line
    assert url in line


def test_http_status(nginx) -> None:
    url = nginx.url("/missing.bin")
    result = bytepump("copy", url, "-")
    assert failure_line(result) == f"bytepump: {url}: HTTP 404 Not Found"
    assert result.stdout == b""


def test_silent_tcp_source_times_out() -> None:
    peer = Peer(send=b"", hold=True)
    try:
        line = failure_line(bytepump("copy", peer.spec, "-", "--timeout", "0.3"))
    finally:
        peer.release()
    assert line == f"bytepump: {peer.spec}: nothing received for 0.3 s"
    peer.result()


def test_interrupted(tmp_path) -> None:
    peer = Peer(send=b"", hold=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "bytepump", "copy", peer.spec, str(tmp_path / "out")],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert peer.accepted.wait(WAIT), "the command did not connect"
        process.send_signal(signal.SIGINT)  # while it waits for the silent peer
        _, err = process.communicate(timeout=WAIT)
    finally:
        peer.release()
    assert process.returncode == cli.EXIT_INTERRUPTED
    assert err == b"bytepump: interrupted\n"
    peer.result()


def test_directory_source_leaves_destination_alone(tmp_path) -> None:
    dst = tmp_path / "dst"
    dst.write_bytes(b"keep")
    line = failure_line(bytepump("copy", str(tmp_path), str(dst)))
    assert line == f"bytepump: cannot read {tmp_path}: Is a directory"
    assert dst.read_bytes() == b"keep"


def test_offset_on_a_pipe() -> None:
    line = failure_line(bytepump("copy", "-", "-", "--offset", "3", input=b"abcdef"))
    assert "offset" in line
    assert "seekable" in line


def test_same_file(src_file, tmp_path) -> None:
    link = tmp_path / "link"
    link.symlink_to(src_file)
    line = failure_line(bytepump("copy", str(src_file), str(link)))
    assert line == f"bytepump: {src_file} and {link} are the same file"
    with src_file.open("rb") as stdin:
        line = failure_line(bytepump("copy", "-", str(src_file), stdin=stdin))
    assert line == f"bytepump: - and {src_file} are the same file"
    assert src_file.read_bytes() == DATA


@pytest.mark.parametrize(
    "args, cause",
    [
        ((), "required"),
        (("copy", "a"), "required: DST"),
        (("copy", "a", "b", "--count", "-1"), "must not be negative"),
        (("copy", "a", "b", "--offset", "x"), "not a whole number"),
        (("copy", "a", "b", "--timeout", "0"), "must be a positive number"),
        (("copy", "a", "b", "--timeout", "nan"), "must be a positive number"),
        (("copy", "a", "b", "--timeout", "inf"), "must be a positive number"),
        (("copy", "a", "b", "--timeout", "1e308"), "must be at most 1e9 seconds"),
        (("copy", "a", "b", "--offset", str(2**63)), "must be at most 2**63 - 1"),
        (("copy", "a", "b", "--count", str(2**63)), "must be at most 2**63 - 1"),
        (("serve", "--max-connections", "0"), "must be positive"),
        (("frobnicate",), "invalid choice"),
        (("serve", "--port", "70000"), "not a port number"),
    ],
)
def test_bad_arguments(args, cause) -> None:
    result = bytepump(*args)
    assert result.returncode == 2
    assert cause in failure_line(result)


@pytest.mark.parametrize(
    "option", [("--offset", str(2**63)), ("--timeout", "1e308"), ("--timeout", "inf")]
)
def test_bad_numbers_leave_destination_alone(option, tmp_path) -> None:
    # Checked before DST is opened (truncated): one line, exit status 2.
    dst = tmp_path / "dst"
    dst.write_bytes(b"keep")
    result = bytepump("copy", f"tcp:127.0.0.1:{free_port()}", str(dst), *option)
    assert result.returncode == 2
    failure_line(result)
    assert dst.read_bytes() == b"keep"


def test_stdout_is_the_source(src_file) -> None:
    # ``bytepump copy g - >> g`` grew g without end; cat refuses it.
    for args in ((str(src_file), "-"), ("-", "-")):
        with src_file.open("ab") as stdout, src_file.open("rb") as stdin:
            result = subprocess.run(
                [sys.executable, "-m", "bytepump", "copy", *args],
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                timeout=WAIT,
                check=False,
            )
        line = failure_line(result)
        assert line == f"bytepump: {args[0]}: input file is output file"
        assert src_file.read_bytes() == DATA


def test_control_characters_echoed_escaped(tmp_path) -> None:
    name = str(tmp_path / "a\r\nb\x1bc")
    line = failure_line(bytepump("copy", name, "-"))
    assert (
        line
        == f"bytepump: cannot read {tmp_path}/a\\r\\nb\\x1bc: No such file or directory"
    )


def test_reader_of_stdout_quits(src_file) -> None:
    # ``bytepump copy big - | head``: quiet, with cat's status (SIGPIPE).
    process = subprocess.Popen(
        [sys.executable, "-m", "bytepump", "copy", str(src_file), "-"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout.read(10) == DATA[:10]
    process.stdout.close()
    err = process.stderr.read()
    process.stderr.close()
    assert process.wait(WAIT) == cli.EXIT_BROKEN_PIPE
    assert err == b""


@pytest.mark.parametrize(
    "spec, cause",
    [
        ("tcp:127.0.0.1", "expected tcp:HOST:PORT"),
        ("tcp::80", "expected tcp:HOST:PORT"),
        ("tcp:localhost:http", "expected tcp:HOST:PORT"),
        ("tcp:localhost:0", "expected tcp:HOST:PORT"),
        ("http://127.0.0.1/x", "DST cannot be a URL"),
    ],
)
def test_bad_destination(spec, cause, src_file) -> None:
    assert cause in failure_line(bytepump("copy", str(src_file), spec))


def test_bad_url_scheme_part() -> None:
    line = failure_line(bytepump("copy", "http://exa mple/", "-"))
    assert line.startswith("bytepump: ")


def test_tcp_address_forms() -> None:
    assert cli.tcp_address("tcp:[::1]:8080") == ("::1", 8080)
    assert cli.tcp_address("tcp:example.org:1") == ("example.org", 1)
    assert cli.tcp_address("/some/path") is None


def test_main_returns_status(src_file, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert cli.main(["copy", str(src_file), str(out)]) == 0
    assert sha(out.read_bytes()) == sha(DATA)
    assert cli.main(["copy", str(tmp_path / "nope"), str(out)]) == 1
    assert capsys.readouterr().err.startswith("bytepump: cannot read ")
