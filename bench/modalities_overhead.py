"""What the beyond-chat checks cost every chat request (issue 13): the vision / wrong-door
check, the scan for `file` parts, the scan for a forged document placeholder (a request
without a conversation) and the `-search` flag, per request, for a 10-message
body on a provider that declares vision models (glm) and one that does not (deepseek).

    .venv/bin/python bench/modalities_overhead.py
"""

import timeit

from freeapi.app import Gateway
from freeapi.config import parse_config
from freeapi.modalities.documents import has_files, has_refs
from freeapi.modalities.vision import check_chat, has_parts
from freeapi.plugins import make_plugin_manager, provider_types


def main():
    pm = make_plugin_manager()
    types = provider_types(pm)
    gw = Gateway(parse_config({"auth": {"allow_anonymous": True},
                               "providers": {"glm": {"api_keys": ["k"]}}}, types), pm, types)
    body = {"messages": [{"role": "user" if i % 2 == 0 else "assistant",
                          "content": "hello " * 20} for i in range(10)]}
    for name in ("glm-4-flash", "deepseek-flash"):
        route = gw.resolve(name)

        def checks():  # as Pipeline.run does them
            parts = has_parts(body["messages"])
            check_chat(route, body, name, parts)
            if parts and route.provider.file_parts != "pass":
                has_files(body["messages"])
            has_refs(body["messages"])
            getattr(route, "search", False)

        def baseline():  # a plain 10-message loop, for scale on a loaded machine
            for m in body["messages"]:
                m.get("content")
        n = 200_000
        t = timeit.timeit(checks, number=n)
        b = timeit.timeit(baseline, number=n)
        print(f"{name}: {t / n * 1e6:.2f} µs per chat request (10-message body; a bare "
              f"loop over the messages: {b / n * 1e6:.2f} µs)")
    gw.close()


if __name__ == "__main__":
    main()
