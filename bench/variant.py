#!/usr/bin/env python3
"""Run freeapi with a candidate speed-up switched on from outside, to measure it before
anyone changes the core (bench.py --variants uses this):

  python bench/variant.py [--uvloop] [--orjson] -- <freeapi arguments>

--uvloop  installs uvloop's event loop policy before freeapi starts (Tornado runs on it).
--nodelay sets TCP_NODELAY on every accepted client connection (Tornado leaves Nagle on
          while a streamed response is being written).
--orjson  swaps json.loads/json.dumps process-wide for orjson-backed ones (compact output,
          UTF-8 instead of \\u escapes; anything orjson cannot do falls back to json).
--relay-only  POST /v1/chat/completions is relayed by bench/bare_proxy.py's code after
          freeapi's own HTTP side (its server core, Tornado's Application and routing, the
          body gate, the gateway key, the JSON body read and checked): what that side costs
          without the pipeline (key pool, failover, the vendor call, the stream relay, the
          ledger, metrics), against the bare proxy's RequestHandler on Tornado's server.
          The upstream is the first enabled provider's base_url.
uvloop and orjson come from bench/.venvs/extras (bench/setup.sh), put on sys.path here
only; orjson is not a freeapi dependency.
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


def relay_only():
    from urllib.parse import urlsplit

    import bare_proxy  # bench/, beside this file
    from freeapi.handlers.chat import ChatCompletionsHandler, validate

    upstreams: dict = {}

    async def post(self):
        self.client_token()
        body = self.json_body()
        validate(body)
        base = next(p for p in self.gateway.config.providers.values() if p.enabled).base_url
        if base not in upstreams:
            u = urlsplit(base)
            upstreams[base] = bare_proxy.Upstream(f"http://{u.hostname}:{u.port}")
        self.up = upstreams[base]
        await bare_proxy.Relay.relay(self, self.raw_body())

    ChatCompletionsHandler.post = post


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
    if "--relay-only" in flags:
        relay_only()
    from freeapi.cli import main as freeapi_main
    return freeapi_main(rest)


if __name__ == "__main__":
    sys.exit(main())
