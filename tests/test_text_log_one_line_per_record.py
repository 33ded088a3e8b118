"""The text log format writes one line per record whatever vendors and clients send: their
control characters are escaped, so nobody can forge a line that looks like another record;
a traceback's lines are indented under their record."""

import json
import logging
import re
import sys

from freeapi.logs import TextFormatter
from tests.fakes.raw_vendor import RawVendor, json_answer
from tests.helpers import chat_body, request

FORGED = "2026-12-06 09:00:00,000 WARNING freeapi: key sk-admin accepted"
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def test_control_characters_in_a_message_are_escaped():
    record = logging.LogRecord("freeapi", logging.WARNING, __file__, 1,
                               "vendor said: %s", (f"no\n{FORGED}\r\x1b[2K\x00\u2028",), None)
    line = TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "\x00" not in line and "\u2028" not in line
    assert f"no\\n{FORGED}\\r\\x1b[2K\\x00\\u2028" in line


def test_a_traceback_stays_under_its_record():
    try:
        raise ValueError(f"vendor text\n{FORGED}")
    except ValueError:
        record = logging.LogRecord("freeapi", logging.ERROR, __file__, 1, "failed", (),
                                   sys.exc_info())
    lines = TextFormatter().format(record).split("\n")
    assert len(lines) > 2 and RECORD_START.match(lines[0])
    assert not [l for l in lines[1:] if not l.startswith("    ")]


async def test_a_vendors_error_text_is_one_log_line(make_gateway, caplog):
    body = json.dumps({"error": {"message": f"bad request\n{FORGED}\r\n",
                                 "type": "invalid_request_error"}}).encode()
    vendor = await RawVendor(lambda req: [json_answer(body, 400)]).start()
    try:
        base, _ = make_gateway({"providers": {"deepseek": {"base_url": vendor.url}}})
        resp = await request(base + "/v1/chat/completions", "POST", chat_body())
        assert resp.code == 400
    finally:
        await vendor.stop()
    formatter = TextFormatter()
    logged = [formatter.format(r) for r in caplog.records if FORGED in r.getMessage()]
    assert logged, "the vendor's text was not logged"
    for line in logged:
        assert "\n" not in line and "\r" not in line, line
