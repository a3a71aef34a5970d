"""Hypothesis: multipart build/parse round-trip any parts; a content type holding CR/LF is
refused, never injected; any body parses or raises a ``datasources.errors`` type (issue 11).

Examples are derandomized (tests/conftest.py's ``ci`` profile), 10,000 in CI; each is read from one byte
string (tests/support/fuzzbytes.py) so that 10,000 of them cost seconds.
"""

from __future__ import annotations

import pytest
from datasources import multipart
from datasources.errors import DatasetError, DataSourcesError, MalformedResponseError
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzzbytes import EXAMPLES, Choices

TYPES = [
    "application/dicom",
    "application/octet-stream",
    'application/octet-stream; transfer-syntax="1.2.840.10008.1.2.1"',
    "image/jls; transfer-syntax=1.2.840.10008.1.2.4.80",
    "",
]
INJECTIONS = ["\r\n", "\n", "\r", "\x00", "\x7f", "\r\nX-Evil: 1", "\u20ac"]
BOUNDARIES = [None, "b", "datasources-0123", "a'()+_,-./:=? z", "x" * 70]
STUFF = [b"", b"--", b"\r\n", b"\n", b"\r\n\r\n", b"--b", b"\r\n--b", b"\n--b--", b"Content-Type: x\r\n"]


def _content(c: Choices) -> bytes:
    return b"".join(c.pick(STUFF) if c.below(4) == 0 else c.chunk(6) for _ in range(c.below(4)))


@settings(max_examples=EXAMPLES)
@given(st.binary(max_size=96))
def test_build_then_parse_gives_the_parts_back_or_refuses_them(data: bytes) -> None:
    c = Choices(data)
    parts = []
    injected = False
    for _ in range(c.below(5)):
        content_type = c.pick(TYPES)
        if c.below(6) == 0:
            at = c.below(len(content_type) + 1)
            content_type = content_type[:at] + c.pick(INJECTIONS) + content_type[at:]
            injected = True
        parts.append((_content(c), content_type))
    boundary = c.pick(BOUNDARIES)
    try:
        body, used = multipart.build(parts, boundary)
    except DatasetError as exc:
        holds_boundary = boundary is not None and any(b"\n--" + boundary.encode() in p for p, _ in parts)
        assert injected or holds_boundary, exc
        return
    assert not injected
    assert used == (boundary or used)
    assert b"X-Evil" not in body
    back = multipart.parse(body, f'multipart/related; type="application/dicom"; boundary="{used}"')
    assert [(p.content, p.content_type) for p in back] == [(content, t.strip()) for content, t in parts]


@settings(max_examples=EXAMPLES // 10)
@given(st.binary(max_size=96))
def test_any_body_parses_or_raises_a_typed_error(data: bytes) -> None:
    c = Choices(data)
    boundary = c.pick(["b", "--", "\u20ac", "", "x y"])
    header = c.pick(["multipart/related; boundary=", 'multipart/related; boundary="', "text/plain; boundary=", ""])
    body = b"".join(c.pick([b"--" + boundary.encode(), b"--", b"\r\n", b"\n", *STUFF]) if c.flag() else c.chunk(4)
                    for _ in range(c.below(10)))  # fmt: skip
    try:
        parts = multipart.parse(body, header + boundary, error=MalformedResponseError)
    except MalformedResponseError:
        return
    assert all(isinstance(p.content, bytes) for p in parts)


@pytest.mark.parametrize("content_type", ["application/dicom\r\nX-Evil: 1", "a\nb", "a\rb", "\u20ac"])
def test_a_content_type_with_a_line_break_is_refused_typed(content_type: str) -> None:
    with pytest.raises(DatasetError, match="part 0: content type"):
        multipart.build([(b"x", content_type)])
    with pytest.raises(MalformedResponseError):
        multipart.build([(b"x", content_type)], error=MalformedResponseError)


def test_bad_boundaries_and_contents_are_refused_typed() -> None:
    for boundary in ["", "a\r\nb", "x" * 71, "ends with space "]:
        with pytest.raises(DatasetError, match="boundary"):
            multipart.build([(b"x", "application/dicom")], boundary)
    with pytest.raises(DatasetError, match="holds its own boundary"):
        multipart.build([(b"a\r\n--b\r\n", "application/dicom")], "b")
    with pytest.raises(DataSourcesError):
        multipart.build([("text", "application/dicom")])  # type: ignore[list-item]


def _reference_params(text: str) -> dict[str, str]:
    """The character-by-character reading media_params had before its regular expression: the spec."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t;":
            i += 1
        start = i
        while i < n and text[i] not in "=;":
            i += 1
        name = text[start:i].strip().lower()
        if i >= n or text[i] == ";":
            if name:
                params[name] = ""
            continue
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            i += 1
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] != ";":
                i += 1
            value = text[start:i].strip()
        if name:
            params[name] = value
    return params


@settings(max_examples=EXAMPLES)
@given(st.text(alphabet=' \t;="\\aB-/.*\n', max_size=40))
def test_media_params_reads_every_text_as_the_reference_does(text: str) -> None:
    assert multipart.media_params(text) == _reference_params(text)
    full = f'multipart/related; type="application/octet-stream; transfer-syntax=1.2"; boundary={text}'
    assert multipart.split_media_type(full)[1] == _reference_params(full.partition(";")[2])
