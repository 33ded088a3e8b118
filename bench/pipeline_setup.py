"""What making one request's pipeline costs (its Exchange and step objects, issue 18),
per request, beside a plain loop over a 10-message body for scale on a loaded machine.
Runs against any checkout (Pipeline(handler) before the steps, Pipeline(door, gateway)
after):

    PYTHONPATH=$PWD .venv/bin/python bench/pipeline_setup.py
"""

import inspect
import timeit

from freeapi import sse
from freeapi.app import Gateway
from freeapi.config import parse_config
from freeapi.pipeline import Pipeline
from freeapi.plugins import make_plugin_manager, provider_types


class Door:
    endpoint, keepalive, remembers_reasoning, caller = "chat", sse.KEEPALIVE, False, None

    def __init__(self, gateway):
        self.gateway = gateway


def main():
    pm = make_plugin_manager()
    types = provider_types(pm)
    gw = Gateway(parse_config({"auth": {"allow_anonymous": True}}, types), pm, types)
    door = Door(gw)
    two = len(inspect.signature(Pipeline).parameters) == 2
    make = (lambda: Pipeline(door, gw)) if two else (lambda: Pipeline(door))
    body = [{"role": "user", "content": "hello " * 20} for _ in range(10)]

    def baseline():
        for m in body:
            m.get("content")
    n = 200_000
    for name, fn in (("Pipeline(...)", make), ("10-message loop", baseline)):
        t = min(timeit.repeat(fn, number=n, repeat=3))
        print(f"{name:>16}: {t / n * 1e6:.2f} µs per request")
    gw.close()


if __name__ == "__main__":
    main()
