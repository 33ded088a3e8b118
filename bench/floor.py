#!/usr/bin/env python3
"""Context for the table: the cheapest possible Tornado answer on this machine.

A Tornado app that answers POST /v1/chat/completions with a fixed JSON body, without any
upstream call. freeapi does this plus a client-side HTTP exchange with the upstream, so
its c=32 rate is bounded by roughly half of this one's on the same core.

  python bench/floor.py --port 18199
"""
import argparse
import asyncio

from tornado import web

BODY = (b'{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"x",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},'
        b'"finish_reason":"stop"}]}')


class Chat(web.RequestHandler):
    def post(self):
        self.set_header("Content-Type", "application/json")
        self.finish(BODY)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=18199)
    args = p.parse_args()
    app = web.Application([(r"/v1/chat/completions", Chat), (r"/ping", Chat)],
                          log_function=lambda h: None)
    app.listen(args.port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
