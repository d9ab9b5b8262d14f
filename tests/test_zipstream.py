"""ZipStreamer writing real archives: into files and sockets, from files,
pipes and an HTTP origin, checked by zipfile (entry by sha256) and by
Info-ZIP unzip -t; and every misuse refused before it corrupts an archive.
"""

from __future__ import annotations

import datetime
import io
import os
import socket
import ssl
import zipfile
import zlib
from pathlib import Path

import pytest
from conftest import (
    CLASHING_ZIP_NAMES,
    MIB,
    SIZES,
    UNSAFE_ZIP_NAMES,
    WAIT,
    check_zip,
    payload,
)

import bytepump
from bytepump import DownstreamTimeout, ZipStreamer

NAMES = ("plain.txt", "dir/é ü.bin", "日本語/😀.dat", "odd name", "dir/last")


def check_archive(data: bytes, expected: dict[str, bytes], tmp_path: Path) -> None:
    """``data`` is a zip holding exactly ``expected`` (name → content), in
    that order, by zipfile, unzip -t, 7z t and bsdtar."""
    path = tmp_path / "check.zip"
    path.write_bytes(data)
    check_zip(path, expected)


def files_for(tmp_path: Path) -> dict[str, Path]:
    """Source files named after NAMES, of every size in SIZES."""
    made = {}
    for i, (name, size) in enumerate(zip(NAMES, SIZES)):
        path = tmp_path / f"src{i}"
        path.write_bytes(payload(size))
        made[name] = path
    return made


def test_files_into_a_file(tmp_path):
    sources = files_for(tmp_path)
    out = tmp_path / "out.zip"
    sizes = []
    with open(out, "wb") as dst:
        with ZipStreamer(dst) as streamer:
            for name, path in sources.items():
                sizes.append(streamer.write_stored_file(name, path))
        total = streamer.close()  # again: the same answer
        assert not dst.closed
        assert dst.tell() == total
    assert sizes == list(SIZES)
    assert out.stat().st_size == total
    check_archive(
        out.read_bytes(), {n: p.read_bytes() for n, p in sources.items()}, tmp_path
    )


@pytest.mark.parametrize("how", ["path", "fd", "raw", "buffered", "pathlib"])
def test_source_forms_start_at_byte_0(tmp_path, how):
    """A source whose position is not 0 (or which has read ahead into its
    buffer) still gives the whole file; the streamer closes only what it
    opened."""
    src = tmp_path / "src"
    src.write_bytes(payload(65537))
    opened = None
    if how == "path":
        arg = str(src)
    elif how == "pathlib":
        arg = src
    elif how == "fd":
        arg = opened = os.open(src, os.O_RDONLY)
        os.lseek(opened, 100, os.SEEK_SET)
    else:
        arg = opened = open(src, "rb", buffering=0 if how == "raw" else 8192)  # noqa: SIM115
        arg.read(10)
    with open(tmp_path / "out.zip", "wb") as dst, ZipStreamer(dst) as streamer:
        assert streamer.write_stored_file("f", arg) == 65537
    if isinstance(opened, int):
        os.fstat(opened)  # still open
        os.close(opened)
    elif opened is not None:
        assert not opened.closed
        opened.close()
    check_archive((tmp_path / "out.zip").read_bytes(), {"f": payload(65537)}, tmp_path)


def test_file_date_is_its_mtime(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"x")
    stamp = datetime.datetime(2001, 2, 3, 4, 5, 6).timestamp()
    os.utime(src, (stamp, stamp))
    with open(tmp_path / "out.zip", "wb") as dst, ZipStreamer(dst) as streamer:
        streamer.write_stored_file("x", src)
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        assert archive.getinfo("x").date_time == (2001, 2, 3, 4, 5, 6)


def test_progress_adds_up(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(payload(3 * MIB + 7))
    seen: list[int] = []
    with open(tmp_path / "out.zip", "wb") as dst, ZipStreamer(dst) as streamer:
        n = streamer.write_stored_file("f", src, on_progress=seen.append)
    assert sum(seen) == n == 3 * MIB + 7
    assert all(count > 0 for count in seen)


@pytest.mark.parametrize("kind", ["pipe", "tcp"])
def test_spliced_entries_from_a_stream(endpoints, tmp_path, kind):
    """The data of each entry comes through splice_to from a pipe or socket;
    the streamer only hears how much of it went out."""
    expected = {}
    dst_path = tmp_path / "out.zip"
    with open(dst_path, "wb") as dst, ZipStreamer(dst) as streamer:
        for name, size in zip(NAMES, SIZES):
            data = payload(size)
            src = endpoints.source(kind, data)
            streamer.add_stored_entry(name, size, zlib.crc32(data))
            streamer.simulate_write(bytepump.splice_to(src.obj, dst, WAIT))
            expected[name] = data
    check_archive(dst_path.read_bytes(), expected, tmp_path)


@pytest.mark.parametrize("kind", ["tcp", "unix", "pipe"])
@pytest.mark.parametrize("nonblocking", [False, True])
def test_into_a_stream(endpoints, tmp_path, kind, nonblocking):
    """Files into a socket or pipe drained by a thread; small buffers make
    the records wait for room too."""
    sources = files_for(tmp_path)
    sink = endpoints.sink(kind, nonblocking=nonblocking, bufsize=4096)
    with ZipStreamer(sink.obj) as streamer:
        for name, path in sources.items():
            streamer.write_stored_file(name, path)
        for i in range(2000):  # a central directory bigger than the buffer
            streamer.add_stored_entry(f"empty/{i}", 0, 0)
    total = streamer.close()
    assert not sink.obj.closed if kind == "pipe" else sink.obj.fileno() >= 0
    assert os.get_blocking(sink.fd) is not nonblocking
    data = sink.received()
    assert len(data) == total
    expected = {n: p.read_bytes() for n, p in sources.items()}
    expected.update((f"empty/{i}", b"") for i in range(2000))
    check_archive(data, expected, tmp_path)


def test_s3_style_example_from_an_origin(nginx, endpoints, tmp_path):
    """DESIGN §3's example: objects fetched with splice_from straight into
    the client's socket, between records the streamer writes."""
    objects = {"small.bin": 1000, "empty.bin": 0, "big.bin": 3 * MIB + 7}
    sink = endpoints.sink("tcp")
    sock = sink.obj
    with ZipStreamer(sock) as zf:
        for name, size in objects.items():
            zf.add_stored_entry(name, size=size, crc32=zlib.crc32(payload(size)))
            n = bytepump.splice_from(sock, nginx.url("/" + name))
            zf.simulate_write(n)
    expected = {name: payload(size) for name, size in objects.items()}
    check_archive(sink.received(), expected, tmp_path)


def test_int_fd_and_buffered_dst(tmp_path):
    """Bytes the caller put in a buffered dst go out before the records;
    zipfile and unzip accept an archive after a prefix."""
    out = tmp_path / "out.zip"
    with open(out, "wb") as dst:  # buffered
        dst.write(b"#!prefix\n")
        with ZipStreamer(dst) as streamer:
            streamer.add_stored_entry("a", 3, zlib.crc32(b"abc"))
            dst.write(b"abc")
            dst.flush()
            streamer.simulate_write(3)
    data = out.read_bytes()
    assert data.startswith(b"#!prefix\nPK\x03\x04")
    with zipfile.ZipFile(out) as archive:
        assert archive.read("a") == b"abc"
    fd = os.open(tmp_path / "fd.zip", os.O_WRONLY | os.O_CREAT)
    try:
        with ZipStreamer(fd) as streamer:
            streamer.add_stored_entry("b", 0, 0)
        os.fstat(fd)  # not closed
    finally:
        os.close(fd)
    check_archive((tmp_path / "fd.zip").read_bytes(), {"b": b""}, tmp_path)


# --- misuse and failures: refused before the archive is corrupt ---


@pytest.mark.parametrize("written", [2, 4])
def test_size_mismatch_at_next_entry(tmp_path, written):
    out = tmp_path / "out.zip"
    with open(out, "wb", buffering=0) as dst:
        streamer = ZipStreamer(dst)
        streamer.add_stored_entry("first é", 3, 0)
        os.write(dst.fileno(), b"x" * written)
        streamer.simulate_write(written)
        before = out.stat().st_size
        with pytest.raises(ValueError, match="first é"):
            streamer.add_stored_entry("second", 0, 0)
        with pytest.raises(ValueError, match="first é"):
            streamer.write_stored_file("second", out)
        with pytest.raises(ValueError, match="first é"):
            streamer.close()
        assert out.stat().st_size == before


def test_size_mismatch_when_leaving_the_block(tmp_path):
    out = tmp_path / "out.zip"
    with (
        open(out, "wb") as dst,
        pytest.raises(ValueError, match="'short'"),
        ZipStreamer(dst) as streamer,
    ):
        streamer.add_stored_entry("short", 10, 0)
        streamer.simulate_write(9)
    assert out.stat().st_size == 30 + len("short") + 9  # 9: the 0x5455 field


def test_exception_in_the_block_writes_no_central_directory(tmp_path):
    out = tmp_path / "out.zip"
    with open(out, "wb") as dst:
        with pytest.raises(KeyError), ZipStreamer(dst) as streamer:
            streamer.write_stored_file("a", __file__)
            raise KeyError("boom")
        assert not dst.closed
        with pytest.raises(ValueError, match="incomplete"):
            streamer.close()
        with pytest.raises(ValueError, match="incomplete"):
            streamer.add_stored_entry("b", 0, 0)
    data = out.read_bytes()
    assert len(data) == 30 + 1 + 9 + os.path.getsize(__file__)
    assert b"PK\x01\x02" not in data[-100:]
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(out)


def test_closed_streamer_refuses_more(tmp_path):
    with open(tmp_path / "out.zip", "wb") as dst:
        streamer = ZipStreamer(dst)
        assert streamer.close() == 22  # an empty archive: the end record alone
        assert streamer.close() == 22
        for call in (
            lambda: streamer.add_stored_entry("a", 0, 0),
            lambda: streamer.simulate_write(0),
            lambda: streamer.write_stored_file("a", __file__),
        ):
            with pytest.raises(ValueError, match="closed"):
                call()
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        assert archive.namelist() == []


def test_bad_arguments_write_nothing(tmp_path, endpoints):
    out = tmp_path / "out.zip"
    with open(out, "wb", buffering=0) as dst:
        streamer = ZipStreamer(dst)
        with pytest.raises(ValueError, match="no entry open"):
            streamer.simulate_write(1)
        with pytest.raises(ValueError):
            streamer.add_stored_entry("", 0, 0)
        with pytest.raises(ValueError):
            streamer.add_stored_entry("a", -1, 0)
        with pytest.raises(TypeError):
            streamer.add_stored_entry("a", 0, 0, modified="yesterday")
        with pytest.raises(FileNotFoundError):
            streamer.write_stored_file("a", tmp_path / "missing")
        src = endpoints.source("pipe", b"data")
        with pytest.raises(ValueError, match="not a regular file"):
            streamer.write_stored_file("a", src.obj)
        with pytest.raises(IsADirectoryError):
            streamer.write_stored_file("a", tmp_path)
        assert out.stat().st_size == 0
        streamer.add_stored_entry("a", 0, 0)
        with pytest.raises(ValueError, match="negative"):
            streamer.simulate_write(-1)
        streamer.close()
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["a"]
    with pytest.raises(ValueError, match="negative"):
        ZipStreamer(1, timeout=-1)
    with pytest.raises(TypeError):
        ZipStreamer(io.BytesIO())


def test_tls_dst_refused():
    with socket.socket() as raw:
        tls = ssl.create_default_context().wrap_socket(
            raw, server_hostname="localhost", do_handshake_on_connect=False
        )
        with tls, pytest.raises(TypeError, match="TLS"):
            ZipStreamer(tls)


def fill_fd(fd: int) -> None:
    """Write into ``fd`` until it would block, leaving its flags as they were."""
    was = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(fd, was)


@pytest.mark.parametrize("kind", ["tcp", "pipe"])
@pytest.mark.parametrize("nonblocking", [False, True])
def test_stalled_peer_times_out_and_breaks(endpoints, kind, nonblocking):
    """Blocking or not, a dst nobody reads raises DownstreamTimeout after
    the timeout, with its flags as they were; the streamer is then broken."""
    sink = endpoints.sink(kind, nonblocking=nonblocking, drain=False, bufsize=4096)
    fill_fd(sink.fd)
    streamer = ZipStreamer(sink.obj, timeout=0.05)
    with pytest.raises(DownstreamTimeout):
        streamer.add_stored_entry("a", 0, 0)
    assert os.get_blocking(sink.fd) is not nonblocking
    with pytest.raises(ValueError, match="incomplete"):
        streamer.close()


def test_failed_splice_breaks_the_streamer(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(payload(65537))

    def stop(n: int) -> None:
        raise RuntimeError("stop")

    with open(tmp_path / "out.zip", "wb") as dst:
        streamer = ZipStreamer(dst)
        with pytest.raises(RuntimeError, match="stop"):
            streamer.write_stored_file("a", src, on_progress=stop)
        with pytest.raises(ValueError, match="incomplete"):
            streamer.add_stored_entry("b", 0, 0)


# --- names (issue 7, item 10) and sources that are not plain files (item 8) ---


@pytest.mark.parametrize("name", UNSAFE_ZIP_NAMES)
def test_unsafe_names_refused_before_writing(tmp_path, name):
    out = tmp_path / "out.zip"
    with open(out, "wb", buffering=0) as dst:
        streamer = ZipStreamer(dst)
        with pytest.raises(ValueError, match=r"entry|NUL") as info:
            streamer.add_stored_entry(name, 0, 0)
        assert repr(name)[1:-1] in str(info.value)
        with pytest.raises(ValueError):
            streamer.write_stored_file(name, __file__)
        assert out.stat().st_size == 0
        streamer.add_stored_entry("fine", 0, 0)  # still usable
        streamer.close()


@pytest.mark.parametrize("names", CLASHING_ZIP_NAMES)
def test_duplicates_and_file_directory_clashes(tmp_path, names):
    out = tmp_path / "out.zip"
    with open(out, "wb", buffering=0) as dst:
        streamer = ZipStreamer(dst)
        streamer.add_stored_entry(names[0], 0, 0)
        before = out.stat().st_size
        with pytest.raises(ValueError, match=repr(names[1])):
            streamer.add_stored_entry(names[1], 0, 0)
        assert out.stat().st_size == before


def test_a_directory_and_names_below_it_are_fine(tmp_path):
    with open(tmp_path / "out.zip", "wb") as dst, ZipStreamer(dst) as streamer:
        for name in ("d/", "d/a", "d/e/", "d/e/f", "g/h", "g/i", "ab:c", "..x"):
            streamer.add_stored_entry(name, 0, 0)
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        assert len(archive.namelist()) == 8


@pytest.mark.timeout(10)
def test_fifo_path_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with open(tmp_path / "out.zip", "wb", buffering=0) as dst:
        streamer = ZipStreamer(dst)
        with pytest.raises(ValueError, match="not a regular file"):
            streamer.write_stored_file("f", fifo)
        assert os.path.getsize(tmp_path / "out.zip") == 0


@pytest.mark.parametrize("path", ["/proc/self/status", "/proc/version"])
def test_proc_file_of_size_0_is_refused(tmp_path, path):
    """fstat says 0 bytes but reading yields some: not an empty entry."""
    assert os.stat(path).st_size == 0
    with open(tmp_path / "out.zip", "wb", buffering=0) as dst:
        streamer = ZipStreamer(dst)
        with pytest.raises(ValueError, match="more than the 0 bytes"):
            streamer.write_stored_file("p", path)
        assert os.path.getsize(tmp_path / "out.zip") == 0
