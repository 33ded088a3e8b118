"""GET /metrics stays cheap whatever clients send: statuses are counted by class, model
label sets are capped per process (metrics.max_models), and a rendering is served again
for metrics.cache_seconds, so scrapers in parallel cost one rendering."""

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import chat_body, request


def series(text: str) -> set:
    return {(s.name, frozenset(s.labels.items()))
            for family in text_string_to_metric_families(text) for s in family.samples}


def labels_of(text: str, name: str, label: str) -> set:
    return {dict(labels)[label] for n, labels in series(text) if n == name}


async def test_statuses_are_counted_by_class(make_gateway):
    base, _ = make_gateway()
    chat = base + "/v1/chat/completions"
    for body in (chat_body(), chat_body("!status 400"), chat_body("!status 422"),
                 chat_body("!status 500")):
        await request(chat, "POST", body)
    text = (await request(base + "/metrics")).body.decode()
    assert labels_of(text, "freeapi_requests_total", "status") == {"2xx", "4xx", "5xx"}


async def test_model_label_sets_are_capped_per_process(make_gateway):
    base, _ = make_gateway({"metrics": {"max_models": 3}})
    for i in range(8):  # any name routes under a provider's prefix
        body = chat_body(model=f"deepseek/made-up-{i}")
        await request(base + "/v1/chat/completions", "POST", body)
        await request(base + "/v1/messages", "POST", dict(body, max_tokens=8))
    text = (await request(base + "/metrics")).body.decode()
    kept = {(dict(labels)["endpoint"], dict(labels)["model"])
            for name, labels in series(text) if name == "freeapi_requests_total"}
    assert len({k for k in kept if k[1] != "other"}) == 3
    assert {e for e, m in kept if m == "other"} == {"chat", "messages"}
    assert len(labels_of(text, "freeapi_tokens_total", "model")) <= 4


async def test_scrapes_within_the_cache_window_render_once(make_gateway):
    base, gw = make_gateway({"metrics": {"cache_seconds": 3600}})
    await request(base + "/v1/chat/completions", "POST", chat_body())
    bodies = await asyncio.gather(*(request(base + "/metrics") for _ in range(4)))
    await request(base + "/v1/chat/completions", "POST", chat_body())
    later = await request(base + "/metrics")
    assert {r.code for r in bodies} == {200} and later.code == 200
    assert len({r.body for r in bodies} | {later.body}) == 1  # the same rendering
    assert gw.metrics.renders == 1


async def test_without_a_cache_every_scrape_renders(make_gateway):
    base, gw = make_gateway({"metrics": {"cache_seconds": 0}})
    first = await request(base + "/metrics")
    await request(base + "/v1/chat/completions", "POST", chat_body())
    second = await request(base + "/metrics")
    assert first.body != second.body and gw.metrics.renders == 2
