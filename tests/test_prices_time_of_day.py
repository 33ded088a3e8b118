"""The built-in price table: DeepSeek's off-peak half price outside Beijing's weekday peak
hours (a request priced at the time it was served, with an injected clock), models
without a price recorded as `unpriced`, and the `prices:` / `billing:` config checked."""

import calendar
import json

import pytest

from freeapi.config import ConfigError
from freeapi.prices_builtin import BUILTIN, DEEPSEEK
from freeapi.pricing import is_peak
from tests.fakes import openai_compat as fake_local
from tests.fakes.deepseek import GOOD
from tests.helpers import chat_body, request
from tests.test_usage import ledger


def utc(y, mo, d, h, mi=0) -> float:
    return float(calendar.timegm((y, mo, d, h, mi, 0)))


# 2026-12-07 is a Monday. Beijing = UTC+8: 09-12 and 14-18 Beijing are 01-04 and 06-10 UTC.
PEAK = [utc(2026, 12, 7, 1, 0), utc(2026, 12, 7, 3, 59), utc(2026, 12, 11, 6, 30)]
OFF = [utc(2026, 12, 7, 0, 59), utc(2026, 12, 7, 4, 0), utc(2026, 12, 7, 5, 30),
       utc(2026, 12, 7, 10, 0), utc(2026, 12, 12, 2, 0), utc(2026, 12, 13, 7, 0)]


def test_deepseek_peak_hours_are_beijing_weekday_mornings_and_afternoons():
    peak = BUILTIN["deepseek/deepseek-flash"]["peak"]
    assert [is_peak(peak, t) for t in PEAK] == [True] * len(PEAK)
    assert [is_peak(peak, t) for t in OFF] == [False] * len(OFF)


def test_peak_hours_agree_with_calendar_dates_in_any_zone():
    """is_peak works on plain seconds (no datetime per request): every hour of two weeks,
    either side of each boundary, in whole and half-hour zones either side of UTC, agrees
    with the weekday and hour that datetime gives."""
    from datetime import datetime, timedelta, timezone
    start = utc(2026, 12, 6, 0)
    for offset in (8, 0, -5, 5.5, -9.5, 14):
        peak = {"tz_offset_h": offset, "weekdays": (0, 1, 2, 3, 4), "hours": ((1, 4), (9, 17))}
        for i in range(14 * 24 * 2):
            for at in (start + i * 1800 - 0.5, start + i * 1800):
                local = datetime.fromtimestamp(at, timezone.utc) + timedelta(hours=offset)
                expected = local.weekday() < 5 and (1 <= local.hour < 4 or 9 <= local.hour < 17)
                assert is_peak(peak, at) == expected, (offset, at)


async def test_a_deepseek_request_costs_half_off_peak(make_gateway):
    base, gw = make_gateway({"auth": {"keys": ["gw-key-offpeak-0001"]},
                             "providers": {"deepseek": {"api_keys": [GOOD]}}})
    costs = []
    for at in (PEAK[0], OFF[1]):
        gw.pricing.clock = lambda at=at: at
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(),
                             key="gw-key-offpeak-0001")
        assert resp.code == 200, resp.body
        costs.append((await ledger(gw, len(costs) + 1))[-1])
    peak, off = costs
    row = BUILTIN["deepseek/deepseek-flash"]
    assert row["source"] == DEEPSEEK and row["verified"]
    assert peak["upstream_model"] == "deepseek-flash" and peak["currency"] == "USD"
    # 11 prompt tokens of which 8 cache hits, 7 output tokens (the fake's usage).
    assert peak["cost"] == pytest.approx((3 * 0.30 + 8 * 0.006 + 7 * 1.20) / 1e6)
    assert off["cost"] == pytest.approx(peak["cost"] / 2)


@pytest.mark.parametrize("prices", [{}, {"local/llama3.2:1b": {"input": 0, "output": 0}}])
async def test_a_model_without_a_price_is_served_and_recorded_unpriced(make_gateway,
                                                                       start_vendor, prices):
    url, _ = start_vendor(fake_local)
    base, gw = make_gateway({"auth": {"keys": [{"key": "gw-key-unpriced-001", "name": "u",
                                                "role": "admin"}]},
                             "providers": {"local": {"type": "openai", "base_url": url + "/v1"}},
                             "prices": prices})
    resp = await request(base + "/v1/chat/completions", "POST",
                         chat_body(model="local/llama3.2:1b"), key="gw-key-unpriced-001")
    assert resp.code == 200, resp.body
    [e] = await ledger(gw, 1)
    assert e["prompt_tokens"] == 5  # counted either way
    status = await request(base + "/v1/status", key="gw-key-unpriced-001")
    [m] = json.loads(status.body)["models"]["hour"]
    if not prices:  # served, recorded as unpriced, shown as such: never a guessed price
        assert e["unpriced"] is True and e["cost"] is None and e["currency"] is None
        assert m["spend"]["unpriced"] == 1 and m["spend"]["costs"] == {}
    else:  # a local model the operator prices at 0 costs 0, in billing.currency
        assert e["unpriced"] is False and e["cost"] == 0 and e["currency"] == "USD"
        assert m["spend"]["unpriced"] == 0


@pytest.mark.parametrize("cfg,field", [
    ({"billing": {"currency": "dollars"}}, "billing.currency"),
    ({"billing": {"rates": {"CNY": -1}}}, "billing.rates.CNY"),
    ({"billing": {"rates": {"yuan": 0.14}}}, "billing.rates.yuan"),
    ({"billing": {"spend": 1}}, "billing"),
    ({"prices": {"m": {"input": 1}}}, "prices.m.output"),
    ({"prices": {"m": {"input": 1, "output": 2, "currency": "usd"}}}, "prices.m.currency"),
])
def test_bad_billing_and_prices_name_the_field(cfg, field):
    from freeapi.config import parse_config
    from freeapi.plugins import make_plugin_manager, provider_types
    with pytest.raises(ConfigError) as e:
        parse_config(cfg, provider_types(make_plugin_manager()))
    assert field in str(e.value)


def test_a_local_model_priced_zero_and_a_per_image_row_parse():
    from freeapi.config import parse_config
    from freeapi.plugins import make_plugin_manager, provider_types
    cfg = parse_config({"prices": {"local/llama": {"input": 0, "output": 0},
                                   "cogview-4": {"image": 0.06, "currency": "CNY"}},
                        "billing": {"currency": "EUR", "rates": {"CNY": 0.13, "USD": 0.92}}},
                       provider_types(make_plugin_manager()))
    assert cfg.prices["local/llama"].input == 0 and cfg.prices["cogview-4"].image == 0.06
    assert cfg.billing.currency == "EUR" and cfg.billing.rates == {"CNY": 0.13, "USD": 0.92}


def test_every_builtin_row_names_its_page_and_date_and_unverified_rows_say_so():
    for name, row in BUILTIN.items():
        assert row["source"].startswith("https://") and row["read"] == "2026-12-06", name
        assert row["currency"] in ("USD", "CNY"), name
        if not row["verified"]:
            assert "unverified" in (row["note"] or ""), name
