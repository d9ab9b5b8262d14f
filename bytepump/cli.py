"""The ``bytepump`` command (also ``python -m bytepump``), DESIGN.md §5.

``bytepump copy SRC DST`` splices between paths, standard input/output,
TCP connections and HTTP(S) URLs; ``bytepump serve [DIR]`` runs the static
file server of :mod:`bytepump._serve`. Every expected failure (bad
arguments, a missing file, a refused connection, an HTTP error status, a
timeout) is reported as one line on stderr and a non-zero exit status,
never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from typing import Any, Callable, NoReturn, Optional

from . import __version__
from ._errors import DownstreamTimeout, HTTPStatusError, UpstreamTimeout
from .edge import splice_from
from .pump import splice_to

Progress = Optional[Callable[[int], object]]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # what a shell reports for a process ended by SIGINT
EXIT_BROKEN_PIPE = 141  # ... and by SIGPIPE, as cat is when its reader quits
MAX_NUMBER = 2**63 - 1
"""The largest count or offset the kernel takes (loff_t)."""
MAX_TIMEOUT = 1e9
"""Seconds (31 years); more does not fit the sockets' and the loop's clocks."""
_URL_SCHEMES = ("http://", "https://")


class CommandError(Exception):
    """A failure to report as one line, without a traceback."""


class QuietExit(Exception):
    """An end to report with an exit status only."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def shown(text: str) -> str:
    """``text`` with control characters escaped, so that a name holding CR,
    LF or ESC is echoed on one line and cannot rewrite the terminal."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


# --- arguments -------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse's default prints the whole usage first; one line naming
        # the cause is the rule for every error of this command.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {shown(message)} (see --help)\n")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    if value > MAX_NUMBER:
        raise argparse.ArgumentTypeError(f"must be at most 2**63 - 1: {text}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    if value > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"must be at most 1e9 seconds: {text}")
    return value


def _port(text: str) -> int:
    value = _count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text}")
    return value


def tcp_address(spec: str) -> tuple[str, int] | None:
    """``(host, port)`` for ``tcp:HOST:PORT`` (IPv6 hosts in brackets),
    ``None`` for anything not starting with ``tcp:``; ``CommandError`` for
    a malformed one."""
    if not spec.startswith("tcp:"):
        return None
    host, sep, port = spec[4:].rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = _port(port)
    except argparse.ArgumentTypeError:
        number = 0
    if not sep or not host or number == 0:
        raise CommandError(f"{spec}: expected tcp:HOST:PORT")
    return host, number


# --- copy ------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """What went wrong, in the words of the exception, on one line."""
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror  # the caller names the file or address
    else:
        reason = str(exc) or type(exc).__name__
    return " ".join(reason.split())


@contextlib.contextmanager
def _failing(what: str) -> Iterator[None]:
    """Turn an expected exception into a :class:`CommandError` naming ``what``."""
    try:
        yield
    except (OSError, ValueError, TypeError) as exc:
        raise CommandError(f"{what}: {_reason(exc)}") from exc


def _connect(spec: str, address: tuple[str, int], timeout: float) -> socket.socket:
    with _failing(f"cannot connect to {spec}"):
        return socket.create_connection(address, timeout=timeout)


def _remaining(fd: int, offset: int | None) -> int | None:
    """The bytes left to read in ``fd`` from ``offset`` (default: its
    position) if it is a regular file. ``IsADirectoryError`` for a
    directory, so that DST is not truncated for nothing."""
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
    if not stat.S_ISREG(info.st_mode):
        return None
    if offset is None:
        offset = os.lseek(fd, 0, os.SEEK_CUR)
    return max(info.st_size - offset, 0)


def _open_fd(path: str, flags: int, stack: contextlib.ExitStack) -> int:
    fd = os.open(path, flags | os.O_CLOEXEC, 0o666)
    stack.callback(os.close, fd)
    return fd


def _open_source(
    args: argparse.Namespace, stack: contextlib.ExitStack
) -> tuple[Any, int | None]:
    """The source's descriptor object, and the bytes it has from
    ``--offset`` on if that is known in advance."""
    spec = args.src
    address = tcp_address(spec)
    if address is not None:
        return stack.enter_context(_connect(spec, address, args.timeout)), None
    with _failing(f"cannot read {spec}"):
        if spec == "-":
            return 0, _remaining(0, args.offset)
        fd = _open_fd(spec, os.O_RDONLY, stack)
        return fd, _remaining(fd, args.offset)


def _open_destination(spec: str, timeout: float, stack: contextlib.ExitStack) -> Any:
    address = tcp_address(spec)
    if address is not None:
        return stack.enter_context(_connect(spec, address, timeout))
    if spec.startswith(_URL_SCHEMES):
        raise CommandError(f"{spec}: DST cannot be a URL")
    if spec == "-":
        return 1
    with _failing(f"cannot write {spec}"):
        return _open_fd(spec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stack)


def _check_distinct(src: Any, args: argparse.Namespace) -> None:
    # Opening DST truncates it: copying a file onto itself (also through
    # stdin, ``copy - f < f``) would empty it first. Standard output being
    # SRC (``copy f - >> f``) would grow it without end, as cat knows.
    if not isinstance(src, int) or tcp_address(args.dst):
        return
    if args.dst == "-":
        with contextlib.suppress(OSError):  # no stdout: writing will say so
            info = os.fstat(1)
            if stat.S_ISREG(info.st_mode) and os.path.samestat(os.fstat(src), info):
                raise CommandError(f"{args.src}: input file is output file")
        return
    try:
        same = os.path.samestat(os.fstat(src), os.stat(args.dst))
    except OSError:
        return  # DST does not exist yet, or opening it will say what is wrong
    if same:
        raise CommandError(f"{args.src} and {args.dst} are the same file")


class _Counter:
    """A plain progress line on stderr: bytes so far, of how many if known,
    rewritten at most ten times a second."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.done = 0
        self._next = 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now >= self._next:
            self._next = now + 0.1
            self._show("")

    def _show(self, end: str) -> None:
        line = f"{self.done:,} bytes"
        if self.total:
            line += f" of {self.total:,} ({100 * self.done // self.total}%)"
        sys.stderr.write(f"\r{line}{end}")
        sys.stderr.flush()

    def close(self) -> None:
        self._show("\n")


@contextlib.contextmanager
def _progress(enabled: bool, total: int | None) -> Iterator[Progress]:
    """An ``on_progress`` callback drawing a bar on stderr, or ``None``."""
    if not enabled:
        yield None
        return
    try:
        from tqdm import tqdm  # optional: a plain counter without it
    except ImportError:
        counter = _Counter(total)
        try:
            yield counter
        finally:
            counter.close()
        return
    with tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr
    ) as bar:
        yield bar.update


def _transfer_error(exc: BaseException, args: argparse.Namespace) -> CommandError:
    if isinstance(exc, UpstreamTimeout):
        return CommandError(f"{args.src}: nothing received for {args.timeout:g} s")
    if isinstance(exc, DownstreamTimeout):
        return CommandError(f"{args.dst}: nothing accepted for {args.timeout:g} s")
    if isinstance(exc, HTTPStatusError):
        reason = getattr(exc.head, "reason", "")
        return CommandError(f"{args.src}: HTTP {exc.status} {reason}".rstrip())
    return CommandError(f"copying {args.src} to {args.dst}: {_reason(exc)}")


def copy(args: argparse.Namespace) -> None:
    """``bytepump copy``: SRC to DST with splice_to, or splice_from for a URL."""
    timeout = args.timeout
    with contextlib.ExitStack() as stack:
        is_url = args.src.startswith(_URL_SCHEMES)
        total: int | None = args.count
        if is_url:
            src = None
        else:
            src, size = _open_source(args, stack)
            _check_distinct(src, args)
            if size is not None:
                total = size if total is None else min(total, size)
        dst = _open_destination(args.dst, timeout, stack)
        show = args.progress or sys.stderr.isatty()
        on_progress = stack.enter_context(_progress(show, total))
        try:
            if src is None:
                splice_from(
                    dst,
                    args.src,
                    timeout,
                    offset=args.offset or 0,
                    length=args.count,
                    on_progress=on_progress,
                )
            else:
                splice_to(
                    src,
                    dst,
                    timeout,
                    count=args.count,
                    offset=args.offset,
                    on_progress=on_progress,
                )
            if isinstance(dst, socket.socket):
                dst.shutdown(socket.SHUT_WR)  # the peer sees end of stream now
        except BrokenPipeError as exc:
            if args.dst != "-":
                raise _transfer_error(exc, args) from exc
            # The reader of standard output has quit (``| head``): end as
            # quietly as cat does, killed by SIGPIPE.
            raise QuietExit(EXIT_BROKEN_PIPE) from exc
        except (OSError, ValueError) as exc:  # ProtocolError is a ValueError
            raise _transfer_error(exc, args) from exc


# --- serve -----------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """``bytepump serve``: run the static file server until interrupted."""
    # Imported here: http.server and its imports are not needed for copy.
    from ._serve import Server

    if not os.path.isdir(args.dir):
        raise CommandError(f"{args.dir}: not a directory")
    with _failing(f"cannot listen on {args.bind} port {args.port}"):
        server = Server(
            (args.bind, args.port), args.dir, args.timeout, args.max_connections
        )
    with server:
        host, port = server.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        # How a server is stopped; from the moment it says where it listens,
        # which is when a supervisor (or a test) may send SIGINT.
        with contextlib.suppress(KeyboardInterrupt):
            print(f"Serving {server.root} on http://{host}:{port}/", flush=True)
            server.serve_forever()


# --- main ------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bytepump",
        description="Move bytes between files, pipes and sockets with splice(2).",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    copy_parser = commands.add_parser(
        "copy",
        help="copy SRC to DST",
        description="Copy SRC to DST. SRC: a path, - (stdin), tcp:HOST:PORT or "
        "an http(s):// URL. DST: a path (created or truncated), - (stdout) "
        "or tcp:HOST:PORT.",
    )
    copy_parser.add_argument("src", metavar="SRC")
    copy_parser.add_argument("dst", metavar="DST")
    copy_parser.add_argument(
        "--count", type=_count, metavar="N", help="copy at most N bytes"
    )
    copy_parser.add_argument(
        "--offset", type=_count, metavar="N", help="start at byte N of SRC"
    )
    copy_parser.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        metavar="S",
        help="give up when a side is idle for S seconds (default 60)",
    )
    copy_parser.add_argument(
        "--progress",
        action="store_true",
        help="show progress on stderr even when it is not a terminal",
    )
    copy_parser.set_defaults(run=copy)

    serve_parser = commands.add_parser(
        "serve",
        help="serve the files in DIR over HTTP",
        description="Serve the regular files below DIR over HTTP/1.1, the "
        "bodies spliced from file to socket.",
    )
    serve_parser.add_argument("dir", metavar="DIR", nargs="?", default=".")
    serve_parser.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS")
    serve_parser.add_argument("--port", type=_port, default=8000)
    serve_parser.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        metavar="S",
        help="drop a client idle for S seconds (default 60)",
    )
    serve_parser.add_argument(
        "--max-connections",
        type=_positive,
        default=512,
        metavar="N",
        help="hold at most N client connections at once (default 512)",
    )
    serve_parser.set_defaults(run=serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except CommandError as exc:
        print(f"bytepump: {shown(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except QuietExit as exc:
        return exc.status
    except KeyboardInterrupt:
        print("bytepump: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
