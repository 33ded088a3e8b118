"""What one access line costs (freeapi/access_log.py): microseconds to build and emit the
line of a served request, in the text and the JSON format, through the same handler
filters `freeapi serve` installs (the key redactor, the request context) to a stream that
is thrown away; with the line switched off, and with a dict update as the machine's
yardstick. No network, no event loop. Run: .venv/bin/python bench/access_log_cost.py"""

import io
import logging
import timeit

from freeapi import access_log, logs
from freeapi.ledger import entry
from freeapi.log_redaction import RedactKeys

N = 20_000


class _Null(io.TextIOBase):
    def write(self, s):
        return len(s)


def main():
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    e = entry(caller="team-a", vendor_key="sk-...0001", provider="deepseek",
              model="deepseek-chat", upstream_model="deepseek-v4-flash", status=200,
              error=None, stream=True, latency_ms=12, ttfb_ms=4, usage=usage,
              request_id="0123456789abcdef01234567")
    rlog = logs.RequestLog("0123456789abcdef01234567")
    rlog.update_from_entry(e)
    root = logging.getLogger()
    root.handlers = [logging.StreamHandler(_Null())]
    root.setLevel(logging.INFO)
    redactor = RedactKeys()
    redactor.keys = ["sk-" + "x" * 32, "team-pass-0123456789"]  # as serve() sets them

    def line():
        access_log.write(rlog, "POST", "/v1/chat/completions", 200, 12, "team-a")

    d = {}

    def yardstick():
        d["x"] = d.get("x", 0) + 1

    def us(fn):
        return min(timeit.repeat(fn, number=N, repeat=5)) / N * 1e6

    print(f"{'':32} us per request")
    print(f"{'yardstick (dict update)':32} {us(yardstick):8.2f}")
    plain_log = logging.getLogger("freeapi.bench")

    def plain():
        plain_log.info("%s", "POST /v1/chat/completions 200")

    def build():
        access_log.text_of(access_log.fields(rlog, "POST", "/v1/chat/completions", 200, 12,
                                             "team-a"))

    print(f"{'fields + text, not emitted':32} {us(build):8.2f}")
    for fmt in ("text", "json"):
        logs.install(fmt, redactor)
        print(f"{'a plain log line, ' + fmt:32} {us(plain):8.2f}")
        print(f"{'access line, ' + fmt:32} {us(line):8.2f}")
    root.setLevel(logging.WARNING)  # what `server.access_log: false` costs is less still:
    print(f"{'access line, level above info':32} {us(line):8.2f}")  # the handler's checks


if __name__ == "__main__":
    main()
