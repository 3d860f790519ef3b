"""The recording writer and reader, and streaming masking, in process (issue 14)."""

from __future__ import annotations

import hashlib
import re
import random
from pathlib import Path

import pytest

from xguard.audit.playback import Recording, RecordingError, check
from xguard.audit.recording import Masker, Recorder

KEY_BODY = "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMiBAHvD4UzDb\n" * 30
TEXTS = [
    ("plain text, no secret\n", "plain text, no secret\n", 0),
    ("key=AKIAIOSFODNN7EXAMPLE\n", "key=[masked:aws]\n", 1),
    ("AKIAIOSFODNN7EXAMPLEX is too long\n", "AKIAIOSFODNN7EXAMPLEX is too long\n", 0),
    ("t ghp_" + "x" * 36 + " t\n", "t [masked:github] t\n", 1),
    ("t gho_" + "Y" * 36 + "\n", "t [masked:github]\n", 1),
    ("github_pat_" + "A1_" * 25 + "\n", "[masked:github]\n", 1),
    ("slack xoxp-123-456-789abcdef\n", "slack [masked:slack]\n", 1),
    ("Authorization: Bearer abc.def-ghi_jkl\n", "Authorization: [masked:bearer]\n", 1),
    ("authorization: bearer abcdefghijkl\n", "authorization: [masked:bearer]\n", 1),
    ("a Bearer of bad news\n", "a Bearer of bad news\n", 0),
    (
        "x\n-----BEGIN RSA PRIVATE KEY-----\n" + KEY_BODY + "-----END RSA PRIVATE KEY-----\ny\n",
        "x\n[masked:private-key]\ny\n",
        1,
    ),
    ("-----BEGIN PRIVATE KEY-----\nabc", "[masked:private-key]", 1),  # never ended: all goes
    ("-----BEGIN PUBLIC KEY-----\nabc\n", "-----BEGIN PUBLIC KEY-----\nabc\n", 0),
    ("AKIAIOSFODNN7EXAMPLE AKIAIOSFODNN7EXAMPL2\n", "[masked:aws] [masked:aws]\n", 2),
]


def _mask(text: str, sizes: list[int]) -> tuple[str, int]:
    m = Masker()
    data = text.encode()
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(m.feed(data[i : i + n]))
        i, k = i + n, k + 1
    out.append(m.feed(b"", final=True))
    return b"".join(out).decode(), m.masked


@pytest.mark.parametrize(("text", "stored", "count"), TEXTS)
@pytest.mark.parametrize("sizes", [[1 << 16], [1], [2, 3, 5], [7, 64, 1]], ids=str)
def test_masking_is_the_same_however_the_output_is_cut(
    text: str, stored: str, count: int, sizes: list[int]
) -> None:
    assert _mask(text, sizes) == (stored, count)


def test_masking_random_cuts_of_a_long_stream() -> None:
    rng = random.Random(14)  # noqa: S311 - reproducible cuts, not secrets
    parts, want = [], []
    for i in range(300):
        text, stored, _ = TEXTS[i % len(TEXTS)]
        if text.endswith("\n"):
            parts.append(text)
            want.append(stored)
    text = "".join(parts)
    sizes = [rng.randint(1, 700) for _ in range(50)]
    got, _n = _mask(text, sizes)
    assert got == "".join(want)


def test_line_output_is_not_held_back() -> None:
    m = Masker()
    assert m.feed(b"hello world\n") == b"hello world\n"
    assert m.feed(b"partial wor") == b"partial "
    assert m.feed(b"d\n") == b"word\n"


def test_recorder_round_trip_cap_and_check(tmp_path: Path) -> None:
    r = Recorder(str(tmp_path), "abc234", max_bytes=10)
    r.begin(False, 80, 24)
    r.write(1, b"hello\n")
    r.write(2, b"\x00\xff err\n")
    out = r.finish()
    assert (out["bytes"], out["kept"], out["truncated"]) == (13, 10, True)
    rec = Recording(str(tmp_path / out["file"]))
    got = list(rec.output())
    assert [(s, d) for s, _t, d in got] == [(1, b"hello\n"), (2, b"\x00\xff e")]
    assert hashlib.sha256(b"hello\n\x00\xff e").hexdigest() == out["sha256"]
    assert rec.trailer is not None and rec.trailer["kept"] == 10
    assert check(str(tmp_path), out) is None
    (tmp_path / out["file"]).write_bytes(b"junk")
    assert "altered" in str(check(str(tmp_path), out))
    with pytest.raises(RecordingError, match=r"damaged|not an xguard"):
        list(Recording(str(tmp_path / out["file"])).frames())


def test_a_second_run_of_the_same_id_gets_its_own_file(tmp_path: Path) -> None:
    names = []
    for _ in range(3):
        r = Recorder(str(tmp_path), "same22")
        r.write(1, b"x\n")
        names.append(r.finish()["file"])
    assert names == [
        "output/same22.xgrec.gz",
        "output/same22.2.xgrec.gz",
        "output/same22.3.xgrec.gz",
    ]


# A reference: the same shapes as regular expressions over the whole text at once.
_REFERENCE = re.compile(
    rb"(?P<aws>\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)"
    rb"|(?P<github>\b(?:gh[pousr]_[A-Za-z0-9]{20,255}|github_pat_[A-Za-z0-9_]{20,255}))"
    rb"|(?P<slack>\bxox[bp]-[A-Za-z0-9-]{10,255})"
    rb"|(?P<bearer>\b[Bb](?:earer|EARER) +[A-Za-z0-9._~+/=-]{8,255})"
    rb"|(?P<key>-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----)"
)
_REFERENCE_END = re.compile(rb"-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----")


def _reference(text: bytes) -> tuple[bytes, int]:
    out, pos, n = [], 0, 0
    while (m := _REFERENCE.search(text, pos)) is not None:
        out.append(text[pos : m.start()])
        n += 1
        if m.lastgroup == "key":
            out.append(b"[masked:private-key]")
            e = _REFERENCE_END.search(text, m.end())
            if e is None:
                return b"".join(out), n
            pos = e.end()
        else:
            out.append(b"[masked:" + str(m.lastgroup).encode() + b"]")
            pos = m.end()
    out.append(text[pos:])
    return b"".join(out), n


PIECES = [
    "AKIA",
    "ASIA",
    "IOSFODNN7EXAMPLE",
    "IOSFODNN7EXAMPL",
    "ghp_",
    "gho_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "Bearer ",
    "bearer",
    "BEARER  ",
    " ",
    " ",
    "\n",
    "\n",
    "-",
    "_",
    ".",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----",
    "-----BEGIN rsa PRIVATE KEY-----",
    "abc",
    "XYZ0123456789",
    "a1B2c3D4e5f6g7h8i9j0",
    "Q" * 30,
]


@pytest.mark.parametrize("seed", range(200))
def test_streaming_masking_agrees_with_regular_expressions(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible inputs, not secrets
    text = "".join(rng.choice(PIECES) for _ in range(rng.randint(5, 120)))
    want = _reference(text.encode())
    sizes = [rng.randint(1, 40) for _ in range(30)]
    got, n = _mask(text, sizes)
    assert (got.encode(), n) == want, text
