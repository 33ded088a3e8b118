#!/usr/bin/env python3
"""Run freeapi with a candidate speed-up switched on from outside, to measure it before
anyone changes the core (bench.py --variants uses this):

  python bench/variant.py [--uvloop] [--orjson] -- <freeapi arguments>

--uvloop  installs uvloop's event loop policy before freeapi starts (Tornado runs on it).
--nodelay sets TCP_NODELAY on every accepted client connection (Tornado leaves Nagle on
          while a streamed response is being written).
--orjson  swaps json.loads/json.dumps process-wide for orjson-backed ones (compact output,
          UTF-8 instead of \\u escapes; anything orjson cannot do falls back to json).
Both come from bench/.venvs/extras (bench/setup.sh), put on sys.path here only; neither is
a freeapi dependency.
"""
import json
import os
import sys

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".venvs", "extras"))


def use_orjson():
    import orjson
    loads, dumps = json.loads, json.dumps

    def fast_loads(s, **kw):
        if kw:
            return loads(s, **kw)
        return orjson.loads(s)

    def fast_dumps(obj, **kw):
        if kw.get("indent") or kw.get("sort_keys") or kw.get("default") or kw.get("cls"):
            return dumps(obj, **kw)
        try:
            return orjson.dumps(obj).decode()
        except TypeError:
            return dumps(obj, **kw)

    json.loads, json.dumps = fast_loads, fast_dumps


def main():
    argv = sys.argv[1:]
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    flags = argv[:argv.index("--")] if "--" in argv else argv
    if "--uvloop" in flags:
        import uvloop
        uvloop.install()
    if "--orjson" in flags:
        use_orjson()
    if "--nodelay" in flags:
        from tornado.httpserver import HTTPServer
        handle_stream = HTTPServer.handle_stream

        from tornado.iostream import IOStream
        set_nodelay = IOStream.set_nodelay

        def nodelay_handle_stream(self, stream, address):
            set_nodelay(stream, True)
            # Tornado turns Nagle back on after each keep-alive request; keep it off.
            stream.set_nodelay = lambda value: None
            return handle_stream(self, stream, address)

        HTTPServer.handle_stream = nodelay_handle_stream
    from freeapi.cli import main as freeapi_main
    return freeapi_main(rest)


if __name__ == "__main__":
    sys.exit(main())
