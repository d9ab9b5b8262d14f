"""ZipArchive: size, ETag and Last-Modified before anything is written, and
every byte range of the archive on its own.

Whole archives are written to files and checked by zipfile, unzip -t, 7z t
and bsdtar; windows are compared with slices of the whole archive, byte for
byte (hypothesis picks them). Zip64 by size and offset is reached with
sparse files: their data regions are holes, cheap to read, and the checks
that would read gigabytes of data are left to listings.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import socket
import ssl
import struct
import threading
import zipfile
import zlib
from pathlib import Path

import pytest
from conftest import (
    CLASHING_ZIP_NAMES,
    MIB,
    ORIGIN_FILES,
    SIZES,
    UNSAFE_ZIP_NAMES,
    WAIT,
    OriginRequest,
    check_zip,
    open_fds,
    payload,
    sha,
    tool,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bytepump import DownstreamTimeout, ZipArchive, ZipEntry, _zip

WHEN = datetime.datetime(2024, 2, 29, 13, 37, 42)
UTC = datetime.timezone.utc
MAX_32 = 0xFFFFFFFF
GIB = 1 << 30
CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
STAMP = 9  # bytes of the 0x5455 extra field in every record


def write_whole(archive: ZipArchive, path: Path) -> bytes:
    """Write the whole archive to ``path``; check that its size is the one
    promised, and its ETag the hash of the central directory and end
    records as written."""
    with open(path, "wb") as dst:
        n = archive.splice_to(dst)
    data = path.read_bytes()
    assert n == len(data) == archive.size
    with zipfile.ZipFile(path) as z:
        directory = data[z.start_dir :]
    assert archive.etag == f'"{hashlib.sha256(directory).hexdigest()[:40]}"'
    return data


def local_files(directory: Path) -> dict[str, Path]:
    """One local file per size in SIZES, named for the archive."""
    made = {}
    for i, size in enumerate(SIZES):
        path = directory / f"src{i}"
        path.write_bytes(payload(size))
        made[f"files/é{i}.bin"] = path
    return made


# --- size, ETag, Last-Modified equal what is written ---


def test_empty_archive(tmp_path):
    archive = ZipArchive([])
    assert archive.size == 22
    assert archive.last_modified is None
    data = write_whole(archive, tmp_path / "out.zip")
    assert data == b"PK\x05\x06" + bytes(18)
    with zipfile.ZipFile(tmp_path / "out.zip") as z:
        assert z.namelist() == []
    assert ZipArchive([], modified=WHEN).etag == archive.etag
    assert ZipArchive([], modified=WHEN).last_modified == WHEN.astimezone(UTC)


def test_one_entry(tmp_path):
    archive = ZipArchive([ZipEntry("a.txt", b"hello", modified=WHEN)])
    assert archive.size == 30 + 5 + STAMP + 5 + 46 + 5 + STAMP + 22
    assert archive.last_modified == WHEN.astimezone(UTC)
    write_whole(archive, tmp_path / "out.zip")
    check_zip(tmp_path / "out.zip", {"a.txt": b"hello"})


def test_every_source_kind(tmp_path, nginx):
    """Paths, descriptors, file objects, URLs, inline bytes, directories in
    one archive; names, modes and times read back as given."""
    files = local_files(tmp_path)
    fd = os.open(files["files/é1.bin"], os.O_RDONLY)
    obj = open(files["files/é2.bin"], "rb")  # noqa: SIM115
    obj.read(100)  # its position does not matter: entries start at byte 0
    stamp = datetime.datetime(2001, 2, 3, 4, 5, 6).timestamp()
    os.utime(files["files/é0.bin"], (stamp, stamp))
    entries = [
        ZipEntry("files/", None, modified=WHEN),
        ZipEntry("files/é0.bin", files["files/é0.bin"]),
        ZipEntry("files/é1.bin", fd, mode=0o600, modified=WHEN),
        ZipEntry("files/é2.bin", obj, modified=WHEN),
        ZipEntry("files/é3.bin", str(files["files/é3.bin"]), crc32=None),
        ZipEntry("files/é4.bin", files["files/é4.bin"], size=SIZES[4]),
        ZipEntry("inline/hello", b"hello", mode=0o755),
        ZipEntry("empty/", None, mode=0o700),
    ]
    expected = {
        "files/": b"",
        **{name: path.read_bytes() for name, path in files.items()},
        "inline/hello": b"hello",
        "empty/": b"",
    }
    for name, size in ORIGIN_FILES.items():
        data = payload(size)
        url = nginx.url("/" + name.replace(" ", "%20"))
        entries.append(ZipEntry(f"web/{name}", url, size=size, crc32=zlib.crc32(data)))
        expected[f"web/{name}"] = data
    try:
        archive = ZipArchive(entries, modified=WHEN)
        size, etag = archive.size, archive.etag
        data = write_whole(archive, tmp_path / "out.zip")
        assert len(data) == size
        assert ZipArchive(entries, modified=WHEN).etag == etag
    finally:
        os.close(fd)
        obj.close()
    check_zip(tmp_path / "out.zip", expected)
    with zipfile.ZipFile(tmp_path / "out.zip") as z:
        info = {i.filename: i for i in z.infolist()}
    assert info["files/é0.bin"].date_time == (2001, 2, 3, 4, 5, 6)
    assert info["files/é1.bin"].date_time == (2024, 2, 29, 13, 37, 42)
    assert info["files/é1.bin"].external_attr >> 16 == 0o100600
    assert info["inline/hello"].external_attr >> 16 == 0o100755
    assert info["files/"].external_attr >> 16 == 0o40755
    assert info["empty/"].external_attr >> 16 == 0o40700
    assert info["web/big.bin"].external_attr >> 16 == 0o100644
    assert archive.last_modified == datetime.datetime.fromtimestamp(
        max(WHEN.timestamp(), *(p.stat().st_mtime for p in files.values())) // 1, UTC
    )


def test_70000_entries(tmp_path):
    """Past 65,535 entries: the Zip64 end records, as the tools read them."""
    entries = [
        ZipEntry(f"d{i // 1000}/", None, modified=WHEN)
        if i % 1000 == 0
        else ZipEntry(f"d{i // 1000}/{i}", b"", modified=WHEN)
        for i in range(70000)
    ]
    archive = ZipArchive(entries)
    data = write_whole(archive, tmp_path / "many.zip")
    assert len(data) == archive.size
    tail = data[-(56 + 20 + 22) :]
    assert struct.unpack_from("<QQ", tail, 24) == (70000, 70000)
    with zipfile.ZipFile(tmp_path / "many.zip") as z:
        assert z.namelist() == [entry.name for entry in entries]
    path = str(tmp_path / "many.zip")
    assert "No errors detected" in tool("/usr/bin/unzip", "-tq", path)
    assert "Everything is Ok" in tool("/usr/bin/7z", "t", path)
    assert len(tool("/usr/bin/bsdtar", "-tf", path).splitlines()) == 70000


def test_exactly_65535_entries_is_zip64():
    """The classic count field's all-ones value is the sentinel: Zip64."""
    plan = _zip.layout(
        [_zip.Member(f"{i}", 0, 0, WHEN, None, b"") for i in range(65535)]
    )
    tail = plan.pieces[-1].data
    eocd = struct.unpack("<IHHHHIIH", tail[-22:])
    assert eocd[3:5] == (0xFFFF, 0xFFFF)
    zip64_eocd = tail[-(22 + 20 + 56) :]
    assert zip64_eocd[:4] == b"PK\x06\x06"
    assert struct.unpack_from("<QQ", zip64_eocd, 24) == (65535, 65535)


# --- Zip64 by size and by offset: sparse files ---


def sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def records_only(archive: ZipArchive, path: Path) -> None:
    """Write the archive to ``path`` with its entries' data left as holes
    (they are zeros, as the sparse sources are): only the record windows are
    spliced, each at its place, so gigabytes cost nothing."""
    with open(path, "wb") as out:
        out.truncate(archive.size)
        for piece in archive._layout.pieces:
            if piece.data is not None:
                out.seek(piece.start)
                archive.splice_to(
                    out, start=piece.start, end=piece.start + piece.length
                )
    assert os.path.getsize(path) == archive.size


def central_headers(data_tail: bytes) -> list[tuple]:
    out = []
    pos = data_tail.find(b"PK\x01\x02")
    while pos >= 0 and data_tail[pos : pos + 4] == b"PK\x01\x02":
        fields = CENTRAL.unpack_from(data_tail, pos)
        name_len, extra_len = fields[10], fields[11]
        extra = data_tail[pos + 46 + name_len : pos + 46 + name_len + extra_len]
        out.append((fields, extra))
        pos += 46 + name_len + extra_len
    return out


def test_zip64_by_size_and_offset(tmp_path):
    """A 5 GiB entry (Zip64 local and central), one past 4 GiB (Zip64
    central by offset), the first entry classic. The archive is assembled
    from its record windows around the sparse data (the same bytes: zeros)
    and listed by every tool."""
    big = sparse(tmp_path / "big", 5 * GIB)
    entries = [
        ZipEntry("first.txt", b"first"),
        ZipEntry("big.bin", big, crc32=0),  # CRC not read: 5 GiB of zeros
        ZipEntry("after.txt", b"after"),
    ]
    archive = ZipArchive(entries, modified=WHEN)
    out = tmp_path / "out.zip"
    records_only(archive, out)
    # Windows of the data across 4 GiB of the source, and from its end
    # into the next records: the same bytes as in the whole archive.
    data_start = archive._layout.pieces[1].start
    for start in (data_start + MAX_32 - 4096, data_start + 5 * GIB - 4096):
        end = min(start + 8192, archive.size)
        with open(tmp_path / "window", "wb") as dst:
            assert archive.splice_to(dst, start=start, end=end) == end - start
        with open(out, "rb") as f:
            f.seek(start)
            assert (tmp_path / "window").read_bytes() == f.read(end - start)
    with zipfile.ZipFile(out) as z:
        _, huge, after = z.infolist()
        assert huge.file_size == 5 * GIB
        assert after.header_offset > MAX_32
        assert z.read("first.txt") == b"first"
        assert z.read("after.txt") == b"after"
    with open(out, "rb") as f:
        f.seek(archive.size - 2000)
        headers = central_headers(f.read())
    (c1, x1), (c2, x2), (c3, x3) = headers
    assert (c1[2], c1[8], c1[16]) == (10, 5, 0)  # first: classic
    assert x1[:2] == b"UT"
    assert (c2[2], c2[8], c2[9], c2[16]) == (45, MAX_32, MAX_32, MAX_32)
    assert struct.unpack_from("<HHQQQ", x2) == (
        1,
        24,
        5 * GIB,
        5 * GIB,
        huge.header_offset,
    )
    assert (c3[2], c3[8], c3[16]) == (45, MAX_32, MAX_32)
    assert struct.unpack_from("<HHQQQ", x3) == (1, 24, 5, 5, after.header_offset)
    for args in (
        ["/usr/bin/unzip", "-l", str(out)],
        ["/usr/bin/7z", "l", str(out)],
        ["/usr/bin/bsdtar", "-tvf", str(out)],
    ):
        assert str(5 * GIB) in tool(*args)
    # Not big.bin: reading its 5 GiB would take the tools half a minute.
    tested = tool("/usr/bin/unzip", "-t", str(out), "first.txt", "after.txt")
    assert tested.count("OK\n") == 2


@pytest.mark.parametrize("what", ["size", "offset"])
def test_exact_sentinels(tmp_path, what):
    """An entry of exactly 0xFFFFFFFF bytes, and one whose local header is
    at exactly 0xFFFFFFFF: both Zip64 (the value itself is the sentinel)."""
    name = "s"
    # The second: the first's header and data end exactly at MAX_32.
    size = MAX_32 if what == "size" else MAX_32 - (30 + len(name) + STAMP)
    src = sparse(tmp_path / "src", size)
    archive = ZipArchive(
        [ZipEntry(name, src, crc32=0), ZipEntry("next", b"n")], modified=WHEN
    )
    out = tmp_path / "out.zip"
    records_only(archive, out)
    with open(out, "rb") as f:
        f.seek(archive.size - 500)
        (c1, x1), (c2, x2) = central_headers(f.read())
    if what == "size":
        assert (c1[2], c1[8], x1[:2]) == (45, MAX_32, b"\x01\x00")
        with open(out, "rb") as f:
            local = f.read(30)
        assert struct.unpack_from("<H", local, 4)[0] == 45
        assert struct.unpack_from("<II", local, 18) == (MAX_32, MAX_32)
    else:
        assert (c1[2], c1[8], x1[:2]) == (10, size, b"UT")
        assert (c2[2], c2[16]) == (45, MAX_32)
        assert struct.unpack_from("<HHQQQ", x2)[4] == MAX_32
    with zipfile.ZipFile(out) as z:
        assert z.infolist()[0].file_size == size
        assert z.read("next") == b"n"
    assert "No errors detected" in tool("/usr/bin/unzip", "-t", str(out), "next")


# --- windows ---


@pytest.fixture(scope="module")
def small_sources(tmp_path_factory) -> dict[str, Path]:
    return local_files(tmp_path_factory.mktemp("sources"))


def mixed_entries(sources: dict[str, Path]) -> list[ZipEntry]:
    entries: list[ZipEntry] = [ZipEntry("files/", None)]
    entries += [ZipEntry(name, path) for name, path in sources.items()]
    entries += [ZipEntry("inline.txt", b"x" * 1000), ZipEntry("z/", None)]
    return entries


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_every_window_is_the_same_slice(small_sources, tmp_path, data):
    archive = ZipArchive(mixed_entries(small_sources), modified=WHEN)
    whole_path = tmp_path / "whole.zip"
    if not whole_path.exists():
        write_whole(archive, whole_path)
    whole = whole_path.read_bytes()
    start = data.draw(st.integers(0, archive.size), label="start")
    end = data.draw(st.integers(start, archive.size), label="end")
    seen: list[int] = []
    part = tmp_path / "part"
    with open(part, "wb") as dst:
        n = archive.splice_to(dst, start=start, end=end, on_progress=seen.append)
    assert n == sum(seen) == end - start
    assert part.read_bytes() == whole[start:end]


def test_download_cut_and_resumed_into_a_socket(
    small_sources, nginx, endpoints, tmp_path
):
    """Windows cut at every piece boundary ±1 and in the middle of data,
    sent through one TCP socket, make up the whole archive (URL entries
    fetched with ranges from nginx)."""
    entries = mixed_entries(small_sources)
    big = ORIGIN_FILES["big.bin"]
    url = nginx.url("/big.bin")
    entries.append(
        ZipEntry("web/big.bin", url, size=big, crc32=zlib.crc32(payload(big)))
    )
    archive = ZipArchive(entries, modified=WHEN)
    whole = write_whole(archive, tmp_path / "whole.zip")
    cuts = {0, archive.size}
    for piece in archive._layout.pieces:
        middle = piece.start + piece.length // 2
        for cut in (piece.start - 1, piece.start, piece.start + 1, middle):
            if 0 <= cut <= archive.size:
                cuts.add(cut)
    bounds = sorted(cuts)
    sink = endpoints.sink("tcp")
    for start, end in zip(bounds, bounds[1:]):
        assert archive.splice_to(sink.obj, start=start, end=end) == end - start
    received = sink.received()
    assert sha(received) == sha(whole)
    check_zip(tmp_path / "whole.zip", {e.name: _content(e) for e in entries})


def _content(entry: ZipEntry) -> bytes:
    if entry.source is None:
        return b""
    if isinstance(entry.source, bytes):
        return entry.source
    if isinstance(entry.source, str) and entry.source.startswith("http"):
        return payload(entry.size)
    return Path(entry.source).read_bytes()


@pytest.mark.parametrize("window", [(-1, None), (0, -1), (5, 4), (0, 10**9)])
def test_bad_windows(tmp_path, window):
    archive = ZipArchive([ZipEntry("a", b"abc")], modified=WHEN)
    start, end = window
    with open(tmp_path / "out", "wb") as dst, pytest.raises(ValueError, match="window"):
        archive.splice_to(dst, start=start, end=end)
    assert os.path.getsize(tmp_path / "out") == 0


def test_empty_window_writes_nothing(tmp_path):
    archive = ZipArchive([ZipEntry("a", b"abc")], modified=WHEN)
    with open(tmp_path / "out", "wb") as dst:
        assert archive.splice_to(dst, start=7, end=7) == 0
    assert os.path.getsize(tmp_path / "out") == 0


# --- what is refused before anything is written ---


@pytest.mark.parametrize("name", UNSAFE_ZIP_NAMES)
def test_unsafe_names(name):
    with pytest.raises(ValueError) as info:
        ZipArchive([ZipEntry(name, b"x")], modified=WHEN)
    assert repr(name)[1:-1] in str(info.value)


@pytest.mark.parametrize("names", CLASHING_ZIP_NAMES)
def test_clashing_names(names):
    entries = [ZipEntry(n, None if n.endswith("/") else b"") for n in names]
    with pytest.raises(ValueError, match=repr(names[1])):
        ZipArchive(entries, modified=WHEN)


def test_names_are_checked_before_files_are_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # would be refused too, but the name comes first
    with pytest.raises(ValueError, match="evil"):
        ZipArchive([ZipEntry("f", fifo), ZipEntry("../evil", b"")], modified=WHEN)


@pytest.mark.timeout(10)
def test_fifo_and_proc_sources_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        ZipArchive([ZipEntry("f", fifo)], modified=WHEN)
    with pytest.raises(ValueError, match="more than the 0 bytes"):
        ZipArchive([ZipEntry("p", "/proc/self/status")], modified=WHEN)
    with pytest.raises(ValueError, match="more than the 0 bytes"):
        ZipArchive([ZipEntry("p", "/proc/version", crc32=0)], modified=WHEN)


@pytest.mark.parametrize(
    ("entry", "error", "match"),
    [
        (lambda: ZipEntry("u", "http://127.0.0.1:1/x", size=3), ValueError, "crc32"),
        (lambda: ZipEntry("u", "https://127.0.0.1:1/x", crc32=3), ValueError, "size"),
        (
            lambda: ZipEntry("u", "ftp://127.0.0.1/x", size=3, crc32=0),
            ValueError,
            "http",
        ),
        (lambda: ZipEntry("d/", b"x"), ValueError, "directory"),
        (lambda: ZipEntry("d", None), ValueError, "directory"),
        (lambda: ZipEntry("d/", None, size=1), ValueError, "no data"),
        (lambda: ZipEntry("b", b"abc", size=4), ValueError, "size"),
        (lambda: ZipEntry("b", b"abc", crc32=1), ValueError, "CRC"),
        (lambda: ZipEntry("b", b"abc", mode=0o10000), ValueError, "mode"),
        (lambda: ZipEntry("b", b"abc", modified="now"), TypeError, "datetime"),
        (lambda: ZipEntry("b", 3.5), TypeError, "source"),
        (lambda: ZipEntry("b", True), TypeError, "bool"),
        (lambda: ZipEntry(b"b", b""), TypeError, "str"),
        (lambda: ZipEntry("b", b"", size="1"), TypeError, "size"),
        (lambda: ZipEntry("b", __file__, size=1), ValueError, "size"),
    ],
)
def test_bad_entries(entry, error, match):
    with pytest.raises(error, match=match):
        ZipArchive([entry()], modified=WHEN)


def test_an_entry_without_a_time_is_refused():
    with pytest.raises(ValueError, match="'b' has no time"):
        ZipArchive([ZipEntry("a", b"", modified=WHEN), ZipEntry("b", b"")])
    ZipArchive([ZipEntry("f", __file__)])  # a file's mtime will do


def test_etag_follows_the_plan():
    base = [ZipEntry("a", b"abc"), ZipEntry("d/", None)]
    etag = ZipArchive(base, modified=WHEN).etag
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert ZipArchive(base, modified=WHEN).etag == etag
    later = WHEN + datetime.timedelta(seconds=2)
    changed = [
        ZipArchive(base, modified=later),
        ZipArchive([ZipEntry("a", b"abd"), base[1]], modified=WHEN),
        ZipArchive([ZipEntry("a", b"abc", mode=0o600), base[1]], modified=WHEN),
        ZipArchive([ZipEntry("b", b"abc"), base[1]], modified=WHEN),
        ZipArchive(base[::-1], modified=WHEN),
    ]
    assert len({etag, *(a.etag for a in changed)}) == 6


def test_tls_and_bad_dst_refused(tmp_path):
    archive = ZipArchive([ZipEntry("a", b"abc")], modified=WHEN)
    with socket.socket() as raw:
        tls = ssl.create_default_context().wrap_socket(
            raw, server_hostname="localhost", do_handshake_on_connect=False
        )
        with tls, pytest.raises(TypeError, match="TLS"):
            archive.splice_to(tls)
    with pytest.raises(TypeError):
        archive.splice_to(io.BytesIO())
    with pytest.raises(IsADirectoryError):
        archive.splice_to(os.open(tmp_path, os.O_RDONLY))


# --- sources that changed since the plan ---


@pytest.mark.parametrize("change", ["grew", "shrank", "touched"])
def test_changed_file(tmp_path, change):
    src = tmp_path / "src"
    src.write_bytes(payload(65537))
    entries = [ZipEntry("first", b"1"), ZipEntry("changed é", src)]
    archive = ZipArchive(entries, modified=WHEN)
    before = archive._layout.pieces[1].start  # the changed entry's data
    if change == "grew":
        src.write_bytes(payload(65537) + b"!")
    elif change == "shrank":
        src.write_bytes(payload(65536))
    else:
        os.utime(src, ns=(0, 10**18))
    out = tmp_path / "out"
    with open(out, "wb") as dst, pytest.raises(ValueError, match="'changed é'") as info:
        archive.splice_to(dst)
    assert info.value.transferred == before == os.path.getsize(out)


def test_file_shrinking_while_sent(tmp_path):
    """The file matched its plan when the entry began, then shrank under the
    transfer: the short count is a ValueError naming it, with .transferred.
    (Larger than one kernel call moves, 16 MiB, whichever path takes it.)"""
    src = tmp_path / "src"
    with open(src, "wb") as f:
        f.truncate(20 * MIB + 7)
    archive = ZipArchive([ZipEntry("f", src)], modified=WHEN)
    seen: list[int] = []

    def shrink(n: int) -> None:
        seen.append(n)
        if len(seen) == 2:  # the header went out, then some data
            os.truncate(src, sum(seen))

    with (
        open(tmp_path / "out", "wb") as dst,
        pytest.raises(ValueError, match="'f'") as info,
    ):
        archive.splice_to(dst, on_progress=shrink)
    assert info.value.transferred == sum(seen) == os.path.getsize(tmp_path / "out")
    assert info.value.transferred < archive.size


def origin_object(conn, status: str, headers: dict[str, str], body: bytes) -> None:
    head = f"HTTP/1.1 {status}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    conn.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)


@pytest.mark.parametrize("answer", ["bigger", "smaller", "416", "200-other-size"])
def test_changed_origin_object(origin, tmp_path, answer):
    """The origin's object is not the planned one: ValueError naming the
    entry, before one byte of its body reaches dst."""
    planned = b"p" * 1000

    def handler(conn, request, index):
        rng = request.headers.get("Range", "")
        first = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if answer == "416":
            headers = {"Content-Range": "bytes */10"}
            origin_object(conn, "416 Range Not Satisfiable", headers, b"")
            return
        if answer == "200-other-size":
            headers = {"Content-Length": "1500", "ETag": '"e"'}
            origin_object(conn, "200 OK", headers, b"q" * 1500)
            return
        total = 1500 if answer == "bigger" else 600
        last = min(total, 1000) - 1
        body = b"q" * (last - first + 1)
        headers = {
            "Content-Range": f"bytes {first}-{last}/{total}",
            "Content-Length": str(len(body)),
            "ETag": '"e"',
        }
        origin_object(conn, "206 Partial Content", headers, body)

    origin.serve(handler)
    web = ZipEntry("web é", origin.url(), size=1000, crc32=zlib.crc32(planned))
    archive = ZipArchive([ZipEntry("first", b"1"), web], modified=WHEN)
    before = archive._layout.pieces[1].start
    for start in (0, before + 10):
        out = tmp_path / f"out{start}"
        with open(out, "wb") as dst, pytest.raises(ValueError, match="'web é'") as info:
            archive.splice_to(dst, start=start)
        written = max(before - start, 0)
        assert info.value.transferred == written == os.path.getsize(out)


# --- timeouts, progress and flags on a socket ---


def test_stalled_client_times_out_with_transferred(endpoints, small_sources):
    archive = ZipArchive(mixed_entries(small_sources), modified=WHEN)
    sink = endpoints.sink("tcp", drain=False, bufsize=4096)
    seen: list[int] = []
    with pytest.raises(DownstreamTimeout) as info:
        archive.splice_to(sink.obj, timeout=0.2, on_progress=seen.append)
    assert 0 < info.value.transferred == sum(seen) < archive.size
    assert os.get_blocking(sink.fd)  # the caller's mode, restored
    received = sink.received()
    assert len(received) == info.value.transferred


def test_into_a_pipe_read_by_a_thread(endpoints, small_sources, tmp_path):
    archive = ZipArchive(mixed_entries(small_sources), modified=WHEN)
    sink = endpoints.sink("pipe")
    assert archive.splice_to(sink.obj) == archive.size
    whole = write_whole(archive, tmp_path / "whole.zip")
    assert sha(sink.received()) == sha(whole)


def test_many_threads_one_archive(small_sources, endpoints, tmp_path):
    archive = ZipArchive(mixed_entries(small_sources), modified=WHEN)
    whole = write_whole(archive, tmp_path / "whole.zip")
    sinks = [endpoints.sink("unix") for _ in range(4)]
    threads = [threading.Thread(target=archive.splice_to, args=(s.obj,)) for s in sinks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert all(sha(s.received()) == sha(whole) for s in sinks)


def test_steps_run_on_an_event_loop(endpoints, small_sources, nginx, tmp_path):
    """What an asyncio adapter does: the same steps, driven by bytepump.aio."""
    import asyncio

    import bytepump.aio

    entries = mixed_entries(small_sources)
    size = ORIGIN_FILES["small.bin"]
    url = nginx.url("/small.bin")
    entries.append(ZipEntry("web", url, size=size, crc32=zlib.crc32(payload(size))))
    archive = ZipArchive(entries, modified=WHEN)
    whole = write_whole(archive, tmp_path / "whole.zip")
    sink = endpoints.sink("tcp", nonblocking=True)
    start = archive.size // 3

    async def main() -> int:
        run = archive.steps(sink.obj, (start, None), 30.0, None)
        return await bytepump.aio.drive(run, 30.0)

    assert asyncio.run(main()) == archive.size - start
    assert sink.received() == whole[start:]


def test_origin_object_replaced_between_windows(origin, tmp_path):
    """The first window remembers the object's ETag; the next one asks with
    If-Match, and the origin's 412 (a new version) is a ValueError."""
    body = b"v" * 1000

    def handler(conn, request, index):
        if index == 0:
            assert request.headers.get("If-Match") is None
            headers = {"Content-Length": "1000", "ETag": '"v1"'}
            origin_object(conn, "200 OK", headers, body)
        else:
            assert request.headers.get("If-Match") == '"v1"'
            origin_object(conn, "412 Precondition Failed", {"Content-Length": "0"}, b"")

    origin.serve(handler)
    web = ZipEntry("web", origin.url(), size=1000, crc32=zlib.crc32(body))
    archive = ZipArchive([web], modified=WHEN)
    whole = write_whole(archive, tmp_path / "whole.zip")
    check_zip(tmp_path / "whole.zip", {"web": body})
    with (
        open(tmp_path / "part", "wb") as dst,
        pytest.raises(ValueError, match="changed"),
    ):
        archive.splice_to(dst, start=100)
    assert len(whole) == archive.size
    assert origin.connections == 2


# --- origin connections kept alive across the URL entries of one call ---

N_URLS = 12


def read_request(rfile) -> OriginRequest | None:
    """The next request head on a kept-alive connection (None at its end)."""
    import http.client

    line = rfile.readline(65537)
    if not line:
        return None
    headers = http.client.parse_headers(rfile)
    return OriginRequest(line.decode("latin-1").rstrip("\r\n"), headers)


class KeptAlive:
    """A FaultOrigin handler answering ranged GETs of ``objects`` (path →
    bytes) one request after another on each connection, as nginx does;
    ``quirk`` names the way it departs from that. ``requests`` records
    (connection index, request) for every request received."""

    def __init__(self, objects: dict[str, bytes], quirk: str | None = None) -> None:
        self.objects = objects
        self.quirk = quirk
        self.requests: list[tuple[int, OriginRequest]] = []

    def __call__(self, conn, request, index) -> None:
        with conn.makefile("rb") as rfile:
            served = 0
            while request is not None:
                self.requests.append((index, request))
                if served and self.quirk in ("close-on-next", "reset-on-next"):
                    if self.quirk == "reset-on-next":
                        linger = struct.pack("ii", 1, 0)
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    return  # dropped unanswered: an origin's idle timeout
                self.answer(conn, request)
                served += 1
                if self.quirk == "close-idle":
                    return
                request = read_request(rfile)
                if self.quirk == "chunked" and request is not None:
                    # The end of the last body, held back until now: a
                    # client that took the connection for done reads it
                    # as the next response's head.
                    conn.sendall(b"\r\n0\r\n\r\n")

    def answer(self, conn, request) -> None:
        body = self.objects[request.target]
        first, last = 0, len(body) - 1
        rng = request.headers.get("Range")
        if rng:
            a, _, b = rng.split("=")[1].partition("-")
            first, last = int(a), int(b) if b else last
        version, status = "HTTP/1.1", "206 Partial Content"
        fields = {"ETag": '"v1"'}
        part = body[first : last + 1]
        if self.quirk == "chunked":
            # The whole object in one chunk, its end not sent yet.
            status, part = "200 OK", body
            fields["Transfer-Encoding"] = "chunked"
            data = b"%x\r\n%s" % (len(part), part)
        else:
            fields["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
            fields["Content-Length"] = str(len(part))
            data = part
        if self.quirk == "connection-close":
            fields["Connection"] = "close"
        if self.quirk == "http/1.0":
            version = "HTTP/1.0"
        if self.quirk == "stray":
            data += b"HTTP/1.1 200 OK\r\n"  # bytes past the body's end
        head = f"{version} {status}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in fields.items()
        )
        conn.sendall(head.encode() + b"\r\n" + data)


def url_archive(base_url: str, objects: dict[str, bytes]) -> ZipArchive:
    entries = [ZipEntry("local.txt", b"first, inline")]
    entries += [
        ZipEntry(f"web{path}", base_url + path, size=len(body), crc32=zlib.crc32(body))
        for path, body in objects.items()
    ]
    return ZipArchive(entries, modified=WHEN)


def planned_bytes(objects: dict[str, bytes], tmp_path: Path) -> bytes:
    """The whole archive url_archive plans, built from inline data."""
    entries = [ZipEntry("local.txt", b"first, inline")]
    entries += [ZipEntry(f"web{path}", body) for path, body in objects.items()]
    return write_whole(ZipArchive(entries, modified=WHEN), tmp_path / "planned.zip")


def some_objects() -> dict[str, bytes]:
    return {f"/o{i}": payload(1000 + 37 * i) for i in range(N_URLS)}


@pytest.fixture
def connects(monkeypatch) -> list[int]:
    """Counts the origin connections bytepump makes (one item each)."""
    from bytepump import edge

    made: list[int] = []
    real = edge._connect_any

    def counting(addresses, what):
        made.append(1)
        return (yield from real(addresses, what))

    monkeypatch.setattr(edge, "_connect_any", counting)
    return made


def test_one_connection_to_nginx_for_many_url_entries(nginx, connects, tmp_path):
    size = ORIGIN_FILES["small.bin"]
    crc = zlib.crc32(payload(size))
    entries = [
        ZipEntry(f"n{i}.bin", nginx.url("/small.bin"), size=size, crc32=crc)
        for i in range(50)
    ]
    archive = ZipArchive(entries, modified=WHEN)
    whole = write_whole(archive, tmp_path / "whole.zip")
    check_zip(tmp_path / "whole.zip", {f"n{i}.bin": payload(size) for i in range(50)})
    assert len(connects) == 1
    # A window from the middle of one entry on: ranges over one connection.
    start = archive._layout.pieces[7].start + 100
    with open(tmp_path / "part", "wb") as dst:
        assert archive.splice_to(dst, start=start) == archive.size - start
    assert (tmp_path / "part").read_bytes() == whole[start:]
    assert len(connects) == 2


def test_requests_on_a_kept_alive_connection(origin, tmp_path):
    objects = some_objects()
    handler = KeptAlive(objects)
    origin.serve(handler)
    archive = url_archive(origin.url(""), objects)
    planned = planned_bytes(objects, tmp_path)
    with open(tmp_path / "out", "wb") as dst:
        assert archive.splice_to(dst) == len(planned)
    assert sha((tmp_path / "out").read_bytes()) == sha(planned)
    origin.wait_idle()
    assert origin.connections == 1
    assert [r.target for _, r in handler.requests] == list(objects)
    for _, request in handler.requests:
        assert request.headers.get("Connection") is None
        assert request.headers["Range"].startswith("bytes=0-")


@pytest.mark.parametrize(
    "quirk",
    [
        "close-idle",
        "close-on-next",
        "reset-on-next",
        "connection-close",
        "http/1.0",
        "chunked",
        "stray",
    ],
)
def test_connections_not_used_again(origin, quirk, tmp_path):
    """An origin that drops a kept-alive connection, before or on the next
    request (that request goes again on a new connection), a response that
    says it closes, an HTTP/1.0 one, a body not read to its end (its last
    chunk unread), bytes past a body's end: one connection per entry, and
    the archive is the planned one, byte for byte."""
    objects = some_objects()
    origin.serve(KeptAlive(objects, quirk))
    archive = url_archive(origin.url(""), objects)
    with open(tmp_path / "out", "wb") as dst:
        assert archive.splice_to(dst) == archive.size
    assert sha((tmp_path / "out").read_bytes()) == sha(planned_bytes(objects, tmp_path))
    origin.wait_idle()
    assert origin.connections == N_URLS


def test_kept_alive_on_the_event_loop(origin, endpoints, tmp_path):
    import asyncio

    import bytepump.aio

    objects = some_objects()
    origin.serve(KeptAlive(objects))
    archive = url_archive(origin.url(""), objects)
    sink = endpoints.sink("tcp", nonblocking=True)

    async def main() -> int:
        return await bytepump.aio.drive(
            archive.steps(sink.obj, (0, None), 30.0, None), 30.0
        )

    assert asyncio.run(main()) == archive.size
    assert sha(sink.received()) == sha(planned_bytes(objects, tmp_path))
    origin.wait_idle()
    assert origin.connections == 1


def test_no_descriptor_left_by_kept_alive_connections(origin, tmp_path):
    """Every kept connection is closed when splice_to returns, and when it
    raises (an entry whose origin object changed size: ValueError)."""
    objects = some_objects()
    origin.serve(KeptAlive(objects))
    archive = url_archive(origin.url(""), objects)
    changed = dict(objects)
    changed[list(objects)[5]] = b"shorter"
    wrong = url_archive(origin.url(""), changed)

    def fds() -> int:
        origin.wait_idle()  # the origin's ends are this process's too
        return open_fds()

    with open(tmp_path / "out", "wb") as dst:
        archive.splice_to(dst)  # the pipe pool and imports settle first
        before = fds()
        for _ in range(3):
            archive.splice_to(dst)
            assert fds() == before
            with pytest.raises(ValueError, match="/o5") as info:
                wrong.splice_to(dst)
            assert info.value.transferred > 0
            assert fds() == before
    assert origin.connections == 1 + 3 * 2
