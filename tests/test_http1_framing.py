"""How an upstream response body is delimited (RFC 9112 6.3): exactly `chunked` is chunked;
any other transfer coding (`gzip, chunked`, a doubled `chunked`, `identity`) is a framing
error, since the gateway asks for identity and decodes nothing but chunked."""

import pytest
from hypothesis import given, settings, strategies as st

from freeapi.http1 import Dechunker, Headers, body_framing, content_length, parse_head
from freeapi.errors import UpstreamError


def headers(**values):
    h = Headers()
    for name, value in values.items():
        h[name.replace("_", "-").lower()] = value
    return h


@pytest.mark.parametrize("te", ["chunked", "Chunked", " chunked ", "CHUNKED"])
def test_exactly_chunked_is_chunked(te):
    assert body_framing(200, headers(transfer_encoding=te)) == ("chunked", 0)


@pytest.mark.parametrize("te", ["gzip, chunked", "chunked, chunked", "deflate,chunked",
                                "chunked, gzip", "identity", "gzip", "", "x-custom",
                                "chunked\x0b", "\x0cchunked", "Xchunked"])
def test_any_other_transfer_coding_is_refused(te):
    # Only spaces and tabs around a coding are optional whitespace (RFC 9110 5.6.3).
    with pytest.raises(UpstreamError, match="^unsupported Transfer-Encoding "):
        body_framing(200, headers(transfer_encoding=te))


def test_a_refused_transfer_coding_is_quoted_at_most_40_characters_long():
    te = "gzip, " + "x" * 100
    with pytest.raises(UpstreamError) as info:
        body_framing(200, headers(transfer_encoding=te))
    assert str(info.value) == f"unsupported Transfer-Encoding {te[:40]!r}"


def test_chunked_wins_over_content_length():
    assert body_framing(200, headers(transfer_encoding="chunked",
                                     content_length="10")) == ("chunked", 0)


@pytest.mark.parametrize("status", [100, 101, 199, 204, 304])
def test_bodiless_statuses_have_no_body_whatever_the_headers(status):
    assert body_framing(status, headers(transfer_encoding="gzip, chunked")) == ("none", 0)


def test_length_and_close():
    assert body_framing(200, headers(content_length="42")) == ("length", 42)
    assert body_framing(502, headers()) == ("close", 0)


coding = st.sampled_from(["chunked", "gzip", "deflate", "br", "identity", "compress"])


@settings(max_examples=300, deadline=None)
@given(codings=st.lists(coding, min_size=1, max_size=4),
       sep=st.sampled_from([",", ", ", " ,\t"]))
def test_transfer_encoding_lists_match_the_rule(codings, sep):
    te = sep.join(codings)
    try:
        got = body_framing(200, headers(transfer_encoding=te))
    except UpstreamError:
        assert codings != ["chunked"]
        return
    assert codings == ["chunked"] and got == ("chunked", 0)


# -- the status line ------------------------------------------------------------------------

@pytest.mark.parametrize("line", [b"HTTP/1.1 2000 OK", b"HTTP/1.1 2x0 OK", b"HTTP/1.1 200OK",
                                  b"HTTP/2 200 OK", b"ICY 200 OK", b" HTTP/1.1 200 OK",
                                  b"XHTTP/1.1 200 OK"])
def test_a_malformed_status_line_is_refused_by_name(line):
    # The message reaches the client as `<provider>: malformed response head`.
    with pytest.raises(UpstreamError, match="^malformed response head$") as info:
        parse_head(line + b"\r\nContent-Length: 0\r\n\r\n")
    assert info.value.kind == "protocol"


def test_empty_lines_before_the_status_line_are_skipped():
    # A stray CRLF after the previous body on a reused connection is no reason to fail.
    version, status, h = parse_head(b"\r\n\r\nHTTP/1.0 404 Not Found\r\nX-A: 1\r\n\r\n")
    assert (version, status, dict(h)) == ("HTTP/1.0", 404, {"x-a": "1"})


# -- header lines ---------------------------------------------------------------------------

@pytest.mark.parametrize("line", [b"X-A: a\x00b", b"X-A: a\rb", b"X A: 1", b"X-A : 1",
                                  b" obs-fold continuation", b"NoColonHere"])
def test_a_malformed_header_line_is_refused_by_name(line):
    with pytest.raises(UpstreamError, match="^malformed response header$") as info:
        parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + line + b"\r\n\r\n")
    assert info.value.kind == "protocol"


def test_a_header_value_keeps_its_colons_and_inner_whitespace():
    _, _, h = parse_head(b"HTTP/1.1 302 Found\r\nLocation: \t http://a:1/b?c=d:e \t\r\n"
                         b"X-Odd:\x0bv\x0c\r\n\r\n")
    # Only spaces and tabs are optional whitespace (RFC 9110 5.6.3).
    assert h["location"] == "http://a:1/b?c=d:e" and h["x-odd"] == "\x0bv\x0c"



def test_header_lookups_ignore_case_and_honour_a_default():
    h = headers(content_encoding="gzip")
    assert h.get("Content-Encoding") == h["CONTENT-ENCODING"] == "gzip" and "content-ENCODING" in h
    assert h.get("Connection", "keep-alive") == "keep-alive" and h.get("Connection") is None


# -- chunked bodies -------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"1\r\nxX", b"1\r\nx\rX", b"1\r\nx\nX", b"1\r\nxyz\r\n"])
def test_bytes_other_than_crlf_after_chunk_data_are_refused_as_they_arrive(body):
    with pytest.raises(UpstreamError, match="^bad chunk framing$"):
        Dechunker().feed(body)


@pytest.mark.parametrize("before", [b"", b"1\r\nx\r\n"])
def test_a_chunk_size_line_without_end_is_refused_by_name(before):
    with pytest.raises(UpstreamError, match="^chunk header too long$"):
        Dechunker().feed(before + b"1;" + b"e" * 5000)


def test_a_chunk_size_line_may_be_4096_bytes_long_and_no_longer():
    d = Dechunker()
    line = b"1;" + b"e" * 4094
    assert d.feed(line) == b""  # pending, exactly at the limit
    assert d.feed(b"\r\nx\r\n0\r\n\r\n") == b"x" and d.done
    with pytest.raises(UpstreamError, match="^bad chunk size$"):
        Dechunker().feed(line + b"e\r\nx\r\n0\r\n\r\n")


def test_many_chunks_in_one_read_ending_mid_size_line_are_fine():
    d = Dechunker()
    assert d.feed(b"1\r\nx\r\n" * 3000 + b"1") == b"x" * 3000
    assert d.feed(b"\r\ny\r\n0\r\n\r\n") == b"y" and d.done


@pytest.mark.parametrize("body,data", [
    (b"1\r\nx\r\n4\r\na\r\nb\r\n0\r\n\r\n", b"xa\r\nb"),
    (b"1\r\nx\r\n4\r\na\r\nb\r\n1\r\ny\r\n0\r\n\r\n", b"xa\r\nby"),
    (b"1\r\nx\r\n2\r\n\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"x\r\nabc"),
    (b"1\r\nx\r\n2\r\n\r\n\r\n", b"x\r\n"),
])
def test_chunks_holding_a_crlf_decode_exactly_when_a_read_holds_many(body, data):
    d = Dechunker()
    assert d.feed(body) == data


def test_an_empty_size_line_after_whole_chunks_is_a_bad_chunk_size():
    with pytest.raises(UpstreamError, match="^bad chunk size$"):
        Dechunker().feed(b"1\r\nx\r\n1\r\ny\r\n\r\nabc\r\n0\r\n\r\n")


def test_an_unfinished_trailer_line_is_bounded_by_what_the_trailer_has_left():
    d = Dechunker()
    d.feed(b"0\r\n")
    assert d.feed(b"X-Long: " + b"a" * 10000) == b""  # longer than a size line may be
    assert d.feed(b"\r\n\r\n") == b"" and d.done
    d = Dechunker()
    d.feed(b"0\r\n" + (b"X-Pad: " + b"p" * 5993 + b"\r\n") * 10)  # 60000 bytes seen
    with pytest.raises(UpstreamError, match="^chunked trailer too long$"):
        d.feed(b"X-Last: " + b"a" * 6000)


def test_a_trailer_section_of_exactly_64_kib_is_accepted():
    d = Dechunker()
    field = b"X-Pad: " + b"p" * (64 * 1024 - 4 - 7) + b"\r\n"  # + the final CRLF: 64 KiB
    assert d.feed(b"1\r\nx\r\n0\r\n" + field + b"\r\n") == b"x"
    assert d.done and not d.extra
    with pytest.raises(UpstreamError, match="^chunked trailer too long$"):  # 1 byte more
        Dechunker().feed(b"0\r\nX-Pad: p" + field[7:] + b"\r\n")



@pytest.mark.parametrize("value,n", [("5", 5), (" 7\t", 7), ("5, 5", 5), ("5,5,\t5", 5),
                                     ("9" * 18, 10 ** 18 - 1)])
def test_a_content_length_is_plain_digits_or_a_list_of_one_value(value, n):
    assert content_length(value) == n


@pytest.mark.parametrize("value,message", [
    ("5, 6", "conflicting Content-Length values"), ("5,", "conflicting Content-Length values"),
    ("\x0b5", "bad Content-Length"), ("X5", "bad Content-Length"), ("-5", "bad Content-Length"),
    ("1" * 19, "bad Content-Length"), ("\u0665", "bad Content-Length")])
def test_any_other_content_length_is_refused_by_name(value, message):
    with pytest.raises(UpstreamError, match=f"^{message}$"):
        content_length(value)
