"""Property-based fuzzing (hypothesis) of the wire parsers the gateway runs on vendors'
bytes: the de-chunker, the response-head parser and the SSE parser. Valid input split at
random points gives the same output as a reference (the structure it was generated from);
any input ends in a result or an UpstreamError within a bound, never another exception,
a loop or a hang."""

import contextlib
import signal

from hypothesis import HealthCheck, example, given, settings, strategies as st

from freeapi.errors import UpstreamError
from freeapi.http1 import Dechunker, body_framing, content_length, parse_head
from freeapi.sse import SSEParser

# Bounded and reproducible, so .ci/run stays fast: about a second per test.
FUZZ = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def within(seconds: float):
    """Fail instead of hanging: a parser loop that never ends is interrupted by SIGALRM."""
    def expired(*_):
        raise AssertionError(f"no result within {seconds}s: the parser loops")
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points + [len(data)]:
        out.append(data[last:p])
        last = p
    return out


cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


# -- the de-chunker -------------------------------------------------------------------------

ext = st.sampled_from([b"", b";a=1", b" ;x", b";name=\"v\"", b"\t;e"])
trailer = st.lists(st.sampled_from([b"X-A: 1", b"Trailer-B: two words", b"X-Empty:"]),
                   max_size=3)


def encode_chunked(pieces, exts, trailers, upper: bool) -> bytes:
    out = b""
    for i, p in enumerate(pieces):
        size = b"%X" % len(p) if upper else b"%x" % len(p)
        out += size + exts[i % len(exts)] + b"\r\n" + p + b"\r\n"
    return out + b"0" + exts[0] + b"\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"


@FUZZ
@given(pieces=st.lists(st.binary(min_size=1, max_size=300), max_size=8),
       exts=st.lists(ext, min_size=1, max_size=3), trailers=trailer, upper=st.booleans(),
       cuts=cuts, extra=st.binary(max_size=20))
def test_dechunker_matches_the_reference_at_any_split(pieces, exts, trailers, upper, cuts,
                                                      extra):
    wire = encode_chunked(pieces, exts, trailers, upper)
    d, out = Dechunker(), b""
    with within(2):
        for part in split(wire + extra, cuts):
            out += d.feed(part)
    assert out == b"".join(pieces) and d.done
    assert d.extra == bool(extra)


def mutate(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for pos, value in edits:
        if b:
            b[pos % len(b)] = value
    return bytes(b)


@FUZZ
@given(pieces=st.lists(st.binary(min_size=1, max_size=100), max_size=5),
       edits=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(
           b"-+0x;\r\n \t_fFgG9\x00\xff")), min_size=1, max_size=4),
       noise=st.binary(max_size=200), cuts=cuts)
def test_dechunker_on_damaged_input_ends_in_data_or_an_error(pieces, edits, noise, cuts):
    wire = mutate(encode_chunked(pieces, [b""], [], False), edits) + noise
    d, out = Dechunker(), b""
    with within(2):
        try:
            for part in split(wire, cuts):
                out += d.feed(part)
        except UpstreamError:
            return
    assert len(out) <= len(wire)  # never more than it was given (no walking backwards)


@FUZZ
@given(pieces=st.lists(st.binary(min_size=1, max_size=50), min_size=2, max_size=5),
       which=st.integers(0, 10),
       size=st.one_of(st.integers(-40, 40).map(str),
                      st.text(alphabet="0123456789abcdefABCDEF-+x_ ;\t", max_size=6)),
       cuts=cuts)
@example(pieces=[b"abcd", b"efghij"], which=1, size="-6", cuts=[])  # walked back forever
def test_dechunker_with_any_size_line_ends_in_data_or_an_error(pieces, which, size, cuts):
    lines = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces]
    i = which % len(lines)
    lines[i] = size.encode() + b"\r\n" + pieces[i] + b"\r\n"
    wire = b"".join(lines) + b"0\r\n\r\n"
    d, out = Dechunker(), b""
    with within(2):
        try:
            for part in split(wire, cuts):
                out += d.feed(part)
        except UpstreamError:
            return
    assert len(out) <= len(wire)


# -- the response head ------------------------------------------------------------------------

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%&'*+^`|~",
                min_size=1, max_size=20)
value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF),
                max_size=40).map(str.strip)


@FUZZ
@given(code=st.integers(200, 599), reason=st.sampled_from(["", " OK", " Not Found", " x y"]),
       headers=st.lists(st.tuples(token, value), max_size=8), crlf=st.booleans(),
       version=st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
def test_response_head_matches_the_reference(code, reason, headers, crlf, version):
    eol = "\r\n" if crlf else "\n"
    raw = (f"{version} {code}{reason}" + eol + "".join(f"{n}: {v}" + eol for n, v in headers)
           + eol).encode("latin-1")
    expect = {}
    for n, v in headers:
        n = n.lower()
        expect[n] = f"{expect[n]}, {v}" if n in expect else v
    got_version, got_code, got = parse_head(raw)
    assert (got_version, got_code, dict(got)) == (version, code, expect)


@FUZZ
@given(raw=st.binary(max_size=400))
def test_response_head_on_any_bytes_is_a_head_or_an_upstream_error(raw):
    with within(2):
        try:
            version, code, headers = parse_head(raw + b"\r\n\r\n")
            body_framing(code, headers)
        except UpstreamError:
            return
    assert version in ("HTTP/1.1", "HTTP/1.0") and 0 <= code <= 999


@FUZZ
@given(n=st.integers(0, 10**15), copies=st.integers(1, 3), spaces=st.booleans())
def test_content_length_matches_int_for_digits(n, copies, spaces):
    sep = ", " if spaces else ","
    assert content_length(sep.join([str(n)] * copies)) == n


@FUZZ
@given(text=st.text(max_size=12))
def test_content_length_takes_only_digits(text):
    try:
        got = content_length(text)
    except UpstreamError:
        return
    assert all(v.strip(" \t").isdigit() for v in text.split(","))
    assert got == int(text.split(",")[0])


# -- the SSE parser -------------------------------------------------------------------------

line_text = st.text(alphabet=st.characters(blacklist_characters="\r\n",
                                           blacklist_categories=["Cs"]), max_size=30)
event_st = st.lists(line_text, min_size=1, max_size=4)
eol_st = st.sampled_from([b"\n", b"\r\n", b"\r"])


@FUZZ
@given(events=st.lists(st.tuples(event_st, st.booleans()), max_size=8),
       eols=st.lists(eol_st, min_size=1, max_size=5), cuts=cuts)
def test_sse_parser_matches_the_reference_at_any_split(events, eols, cuts):
    wire, expect, i = b"", [], 0

    def eol():
        # Line endings vary, but a CR followed by a LF is one CRLF, never two line ends.
        nonlocal i
        i += 1
        e = eols[i % len(eols)]
        return b"\r\n" if e == b"\n" and wire.endswith(b"\r") else e

    for lines, with_comment in events:
        if with_comment:
            wire += b": keep-alive" + eol()
        for line in lines:
            wire += b"data: " + line.encode() + eol()
        wire += eol()
        expect.append("\n".join(lines))
    # Cuts fall anywhere, between a CR and its LF too: still one line end.
    p, got = SSEParser(), []
    with within(2):
        for part in split(wire, cuts):
            got += p.feed(part)
        got += p.close()
    assert got == expect


@FUZZ
@given(raw=st.binary(max_size=2000), cuts=cuts, limit=st.integers(1024, 4096))
def test_sse_parser_on_any_bytes_ends_in_events_or_an_error(raw, cuts, limit):
    p, got = SSEParser(max_event=limit), []
    with within(2):
        try:
            for part in split(raw, cuts):
                got += p.feed(part)
            got += p.close()
        except UpstreamError:
            return
    assert sum(len(e) for e in got) <= len(raw)
    assert all(len(e.encode("utf-8", "surrogatepass")) <= 3 * limit for e in got)
