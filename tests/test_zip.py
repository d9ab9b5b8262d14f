"""The sans-IO zip records (bytepump._zip), and Zip64 at its thresholds.

Records are parsed back with struct, whole archives built from them are read
by zipfile, and hypothesis varies names, sizes and dates. Zip64 sizes and
offsets are reached without writing gigabytes: through simulate_write on
/dev/null, and in a sparse file whose data region is a hole.
"""

from __future__ import annotations

import datetime
import io
import os
import shutil
import struct
import subprocess
import zipfile
import zlib

import pytest
from conftest import WAIT
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bytepump import ZipStreamer, _zip

MAX_32 = 0xFFFFFFFF
GIB = 1 << 30
WHEN = datetime.datetime(2024, 2, 29, 13, 37, 42)
UNZIP = shutil.which("unzip") or "/usr/bin/unzip"

LOCAL = struct.Struct("<IHHHHHIIIHH")
CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
EOCD = struct.Struct("<IHHHHIIH")
ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")
ZIP64_LOCATOR = struct.Struct("<IIQI")


def entry(name: str = "a.txt", size: int = 5, crc: int = 0x1234, offset: int = 0):
    return _zip.make_entry(name, size, crc, WHEN, offset)


def extra_fields(extra: bytes) -> list[tuple[int, bytes]]:
    """An extra field's ``(id, data)`` blocks, in order, covering all of it."""
    fields = []
    pos = 0
    while pos < len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        fields.append((tag, extra[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    assert pos == len(extra)
    return fields


def zip64_values(extra: bytes) -> list[int]:
    """The 64-bit values of the Zip64 extra field, which must come first,
    followed by the extended timestamp (0x5455) of WHEN and nothing else."""
    fields = extra_fields(extra)
    assert fields[-1] == (0x5455, struct.pack("<BI", 1, int(WHEN.timestamp())))
    if len(fields) == 1:
        return []
    assert len(fields) == 2
    tag, data = fields[0]
    assert tag == 1
    assert len(data) % 8 == 0
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


def parse_local(record: bytes) -> tuple[tuple, bytes, bytes]:
    fields = LOCAL.unpack_from(record)
    name_len, extra_len = fields[9], fields[10]
    assert len(record) == LOCAL.size + name_len + extra_len
    name = record[LOCAL.size : LOCAL.size + name_len]
    return fields, name, record[LOCAL.size + name_len :]


def parse_central(record: bytes) -> tuple[tuple, bytes, bytes]:
    fields = CENTRAL.unpack_from(record)
    name_len, extra_len, comment_len = fields[10], fields[11], fields[12]
    assert comment_len == 0
    assert len(record) == CENTRAL.size + name_len + extra_len
    name = record[CENTRAL.size : CENTRAL.size + name_len]
    return fields, name, record[CENTRAL.size + name_len :]


def build(files: list[tuple[str, bytes, datetime.datetime]]) -> bytes:
    """A whole archive made from the record builders alone."""
    out = bytearray()
    entries = []
    for name, data, when in files:
        made = _zip.make_entry(name, len(data), zlib.crc32(data), when, len(out))
        entries.append(made)
        out += _zip.local_header(made) + data
    cd_offset = len(out)
    for made in entries:
        out += _zip.central_header(made)
    out += _zip.end_records(len(entries), cd_offset, len(out) - cd_offset)
    return bytes(out)


def unzip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [UNZIP, *args], capture_output=True, text=True, timeout=WAIT, check=False
    )


# --- names and dates ---


def test_name_is_utf8():
    assert _zip.encode_name("dir/é 😀.txt") == "dir/é 😀.txt".encode()


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", ValueError),
        ("a\0b", ValueError),
        ("\udcff", ValueError),
        ("x" * 65536, ValueError),
        (b"a.txt", TypeError),
    ],
)
def test_bad_names(name, error):
    with pytest.raises(error):
        _zip.encode_name(name)


def test_longest_name():
    assert len(_zip.encode_name("é" * 32767)) == 65534


def test_dos_datetime_known_value():
    time, date = _zip.dos_datetime(WHEN)
    assert time == (13 << 11) | (37 << 5) | 21
    assert date == (44 << 9) | (2 << 5) | 29


def test_dos_datetime_clamps_and_ignores_zone():
    assert _zip.dos_datetime(datetime.datetime(1970, 1, 1)) == (0, (1 << 5) | 1)
    last = _zip.dos_datetime(datetime.datetime(2200, 1, 1))
    assert last == _zip.dos_datetime(datetime.datetime(2107, 12, 31, 23, 59, 59))
    zoned = WHEN.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=5)))
    assert _zip.dos_datetime(zoned) == _zip.dos_datetime(WHEN)
    with pytest.raises(TypeError):
        _zip.dos_datetime(datetime.date(2024, 1, 1))


@given(st.datetimes(datetime.datetime(1980, 1, 1), datetime.datetime(2107, 12, 31)))
def test_dos_datetime_round_trips(when):
    time, date = _zip.dos_datetime(when)
    assert 0 <= time <= 0xFFFF
    assert 0 <= date <= 0xFFFF
    back = (
        (date >> 9) + 1980,
        (date >> 5) & 15,
        date & 31,
        time >> 11,
        (time >> 5) & 63,
        (time & 31) * 2,
    )
    assert back == (*when.timetuple()[:5], when.second // 2 * 2)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("size", -1, ValueError),
        ("size", 1 << 64, ValueError),
        ("size", 1.0, TypeError),
        ("size", True, TypeError),
        ("crc", -1, ValueError),
        ("crc", 1 << 32, ValueError),
        ("offset", -1, ValueError),
    ],
)
def test_bad_entry_fields(field, value, error):
    args = {"size": 0, "crc": 0, "offset": 0, field: value}
    with pytest.raises(error):
        entry(**args)


# --- records ---


def test_local_header_classic():
    made = entry("é.txt", 5, 0xDEADBEEF)
    fields, name, extra = parse_local(_zip.local_header(made))
    sig, version, flags, method, time, date, crc, csize, usize, _, _ = fields
    assert sig == 0x04034B50
    assert version == 10
    assert flags == 1 << 11
    assert method == 0
    assert (time, date) == _zip.dos_datetime(WHEN)
    assert (crc, csize, usize) == (0xDEADBEEF, 5, 5)
    assert name == "é.txt".encode()
    assert zip64_values(extra) == []


@pytest.mark.parametrize("size", [MAX_32 - 1, MAX_32, 5 * GIB, (1 << 64) - 1])
def test_local_header_zip64_threshold(size):
    fields, _, extra = parse_local(_zip.local_header(entry(size=size)))
    if size < MAX_32:
        assert (fields[1], fields[7], fields[8]) == (10, size, size)
        assert zip64_values(extra) == []
    else:
        assert (fields[1], fields[7], fields[8]) == (45, MAX_32, MAX_32)
        assert zip64_values(extra) == [size, size]  # both, in a local header


@pytest.mark.parametrize("size", [0, MAX_32 - 1, MAX_32, 5 * GIB])
@pytest.mark.parametrize("offset", [0, MAX_32 - 1, MAX_32, 6 * GIB])
def test_central_header_zip64_fields(size, offset):
    """Zip64 as soon as the size or the offset needs it, and then all three
    values in it, their classic fields 0xFFFFFFFF (unzip 6.0 needs that)."""
    made = entry("b", size, 7, offset)
    fields, name, extra = parse_central(_zip.central_header(made))
    sig, made_by, version, flags, method = fields[:5]
    assert sig == 0x02014B50
    assert (flags, method, name) == (1 << 11, 0, b"b")
    assert made_by == (3 << 8) | 63  # Unix, APPNOTE 6.3
    assert fields[15] == 0o100644 << 16
    zip64 = size >= MAX_32 or offset >= MAX_32
    assert zip64_values(extra) == ([size, size, offset] if zip64 else [])
    assert version == (45 if zip64 else 10)
    assert fields[7] == 7
    assert fields[8] == fields[9] == (MAX_32 if zip64 else size)
    assert fields[16] == (MAX_32 if zip64 else offset)


def test_directory_records():
    made = _zip.make_entry("d/", 0, 0, WHEN, 0)
    local, _, _ = parse_local(_zip.local_header(made))
    central, _, _ = parse_central(_zip.central_header(made))
    assert local[1] == central[2] == 20  # 2.0: a directory
    assert central[15] == (0o40755 << 16) | 0x10
    with pytest.raises(ValueError, match="directory"):
        _zip.make_entry("d/", 1, 0, WHEN, 0)


@pytest.mark.parametrize("mode", [0o600, 0o755, 0o4711])
def test_modes(mode):
    made = _zip.make_entry("f", 0, 0, WHEN, 0, mode)
    assert parse_central(_zip.central_header(made))[0][15] == (0o100000 | mode) << 16
    with pytest.raises(ValueError):
        _zip.make_entry("f", 0, 0, WHEN, 0, 0o10000)


def test_timestamp_only_where_readers_agree():
    """0x5455 holds 1970..2038; other times keep only the DOS fields."""
    utc = datetime.timezone.utc
    for when, present in [
        (datetime.datetime(1975, 1, 1, tzinfo=utc), True),
        (datetime.datetime(2038, 1, 19, 3, 14, 7, tzinfo=utc), True),
        (datetime.datetime(2038, 1, 19, 3, 14, 8, tzinfo=utc), False),
        (datetime.datetime(1969, 12, 31, tzinfo=utc), False),
    ]:
        _, _, extra = parse_local(
            _zip.local_header(_zip.make_entry("f", 0, 0, when, 0))
        )
        if present:
            stamp = int(when.timestamp())
            assert extra == struct.pack("<HHBI", 0x5455, 5, 1, stamp)
        else:
            assert extra == b""


@pytest.mark.parametrize(
    ("count", "cd_offset", "cd_size", "zip64"),
    [
        (0, 0, 0, False),
        (65534, MAX_32 - 1, MAX_32 - 1, False),
        (65535, 10, 20, True),
        (1, MAX_32, 46, True),
        (1, 0, MAX_32, True),
        (70000, 7 * GIB, 5 * GIB, True),
    ],
)
def test_end_records(count, cd_offset, cd_size, zip64):
    records = _zip.end_records(count, cd_offset, cd_size)
    eocd = EOCD.unpack(records[-EOCD.size :])
    assert eocd[0] == 0x06054B50
    assert eocd[1:5] == (0, 0, min(count, 0xFFFF), min(count, 0xFFFF))
    assert eocd[5:] == (min(cd_size, MAX_32), min(cd_offset, MAX_32), 0)
    if not zip64:
        assert len(records) == EOCD.size
        return
    assert len(records) == ZIP64_EOCD.size + ZIP64_LOCATOR.size + EOCD.size
    record = ZIP64_EOCD.unpack_from(records)
    assert record[0] == 0x06064B50
    assert record[1] == ZIP64_EOCD.size - 12
    assert record[4:] == (0, 0, count, count, cd_size, cd_offset)
    locator = ZIP64_LOCATOR.unpack_from(records, ZIP64_EOCD.size)
    assert locator == (0x07064B50, 0, cd_offset + cd_size, 1)


# --- whole archives from the builders, read by zipfile ---

names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
    min_size=1,
    max_size=40,
).filter(lambda name: not name.endswith("/"))
files = st.lists(
    st.tuples(
        names,
        st.binary(max_size=300),
        st.datetimes(datetime.datetime(1980, 1, 1), datetime.datetime(2107, 12, 31)),
    ),
    max_size=8,
    unique_by=lambda file: file[0],
)


@settings(max_examples=150, deadline=None)
@given(files)
@example([("a", b"", WHEN)])
@example([])
def test_archives_read_back(files):
    archive = zipfile.ZipFile(io.BytesIO(build(files)))
    assert archive.testzip() is None
    infos = archive.infolist()
    assert [info.filename for info in infos] == [name for name, _, _ in files]
    for info, (_, data, when) in zip(infos, files):
        assert archive.read(info) == data
        assert info.compress_type == zipfile.ZIP_STORED
        assert info.date_time == (*when.timetuple()[:5], when.second // 2 * 2)
        assert info.flag_bits & (1 << 11)


def test_archive_from_builders_passes_unzip(tmp_path):
    path = tmp_path / "built.zip"
    path.write_bytes(build([("é.txt", b"hello", WHEN), ("z", b"", WHEN)]))
    result = unzip("-t", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# --- Zip64 thresholds through the streamer ---


def test_big_sizes_on_devnull():
    """Declared sizes past 4 GiB cost nothing when the data is simulated."""
    with open(os.devnull, "wb") as sink:
        with ZipStreamer(sink) as streamer:
            streamer.add_stored_entry("big", 5 * GIB, 0)
            streamer.simulate_write(5 * GIB)
            streamer.add_stored_entry("after", 3, 0)
            streamer.simulate_write(3)
        total = streamer.close()
    stamp = 9  # the 0x5455 extra field
    local = 2 * (LOCAL.size + stamp) + len("big") + 20 + len("after")
    central = 2 * (CENTRAL.size + stamp + 28) + len("big") + len("after")
    ends = ZIP64_EOCD.size + ZIP64_LOCATOR.size + EOCD.size
    assert total == local + 5 * GIB + 3 + central + ends


def test_zip64_archive_in_a_sparse_file(tmp_path):
    """A 5 GiB entry whose data is a hole, then a real entry past 4 GiB: the
    local header's and the central directory's Zip64 fields and the Zip64
    end records, as zipfile and unzip read them."""
    path = tmp_path / "sparse.zip"
    big = 5 * GIB
    with open(path, "wb", buffering=0) as dst:
        streamer = ZipStreamer(dst)
        streamer.add_stored_entry("big.bin", big, 0, modified=WHEN)
        os.lseek(dst.fileno(), big, os.SEEK_CUR)  # the data: a hole
        streamer.simulate_write(big)
        streamer.add_stored_entry("small.txt", 5, zlib.crc32(b"hello"))
        os.write(dst.fileno(), b"hello")
        streamer.simulate_write(5)
        total = streamer.close()
    assert os.path.getsize(path) == total
    with zipfile.ZipFile(path) as archive:
        big_info, small_info = archive.infolist()
        assert (big_info.filename, big_info.file_size) == ("big.bin", big)
        assert big_info.date_time == (2024, 2, 29, 13, 37, 42)
        assert small_info.header_offset > MAX_32
        assert archive.read("small.txt") == b"hello"
    with open(path, "rb") as f:
        _, name, extra = parse_local(f.read(LOCAL.size + len("big.bin") + 20 + 9))
    assert (name, zip64_values(extra)) == (b"big.bin", [big, big])
    listing = unzip("-l", str(path))
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert f"{big}" in listing.stdout
    # Not big.bin: reading its 5 GiB hole takes unzip half a minute.
    tested = unzip("-t", str(path), "small.txt")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("OK\n") == 1
    assert "small.txt" in tested.stdout


def test_65535_entries(tmp_path):
    path = tmp_path / "many.zip"
    count = 65535
    with open(path, "wb") as dst, ZipStreamer(dst) as streamer:
        for i in range(count):
            streamer.add_stored_entry(f"{i}", 0, 0, modified=WHEN)
    with open(path, "rb") as f:
        tail = f.read()[-(ZIP64_EOCD.size + ZIP64_LOCATOR.size + EOCD.size) :]
    assert ZIP64_EOCD.unpack_from(tail)[6:8] == (count, count)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert archive.testzip() is None
    assert len(names) == count
    assert names[-1] == f"{count - 1}"
    tested = unzip("-t", str(path))
    assert tested.returncode == 0, tested.stderr
    assert tested.stdout.count("OK\n") == count


# --- layout: a planned archive, sans-IO ---

safe_names = st.text(
    st.characters(whitelist_categories=("L", "N"), whitelist_characters="._- "),
    min_size=1,
    max_size=12,
).filter(lambda name: name not in (".", ".."))
members = st.lists(
    st.tuples(
        safe_names,
        st.sampled_from(["inline", "hole", "dir"]),
        st.binary(max_size=200),
        st.sampled_from([None, 0o600, 0o755]),
    ),
    max_size=8,
    unique_by=lambda member: member[0],
)


def plan_of(drawn) -> tuple[list[_zip.Member], dict[str, bytes]]:
    planned, contents = [], {}
    for name, kind, data, mode in drawn:
        if kind == "dir":
            name += "/"
            data = b""
        inline = data if kind == "inline" else None
        planned.append(
            _zip.Member(name, len(data), zlib.crc32(data), WHEN, mode, inline)
        )
        contents[name] = data
    return planned, contents


def fill(plan: _zip.Layout, contents: list[bytes]) -> bytes:
    """The whole archive: the plan's bytes, its holes filled with the data."""
    return b"".join(
        piece.data if piece.data is not None else contents[piece.member]
        for piece in plan.pieces
    )


@settings(max_examples=150, deadline=None)
@given(members, st.data())
def test_layout_is_the_archive(drawn, data):
    planned, contents = plan_of(drawn)
    plan = _zip.layout(planned)
    whole = fill(plan, list(contents.values()))
    assert len(whole) == plan.size
    assert [p.start for p in plan.pieces] == plan.starts
    assert all(
        a.start + a.length == b.start for a, b in zip(plan.pieces, plan.pieces[1:])
    )
    with zipfile.ZipFile(io.BytesIO(whole)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == list(contents)
        for info, member in zip(archive.infolist(), planned):
            assert archive.read(info) == contents[member.filename]
            assert info.external_attr >> 16 == _zip.full_mode(
                member.filename, member.mode
            )
    start = data.draw(st.integers(0, plan.size))
    end = data.draw(st.integers(start, plan.size))
    parts = []
    for piece, first, stop in _zip.window(plan, start, end):
        if piece.data is None:
            parts.append(contents[planned[piece.member].filename][first:stop])
        else:
            parts.append(piece.data[first:stop])
    assert b"".join(parts) == whole[start:end]


def test_layout_refuses_bad_names_and_is_deterministic():
    one = [_zip.Member("a", 1, zlib.crc32(b"x"), WHEN, None, b"x")]
    assert _zip.layout(one) == _zip.layout(list(one))
    with pytest.raises(ValueError, match="duplicate"):
        _zip.layout(one + one)
    with pytest.raises(ValueError, match=r"'\.\./a'"):
        _zip.layout([one[0]._replace(filename="../a")])
