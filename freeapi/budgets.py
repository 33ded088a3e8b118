"""Money budgets: a gateway key's and its team's spend per UTC day, UTC calendar month and
in total, in billing.currency, enforced on every door and modality, atomically across every
gateway sharing the state store (docs/money.md).

Peers check a budget and count the cost once the answer has come, so every request in
flight when it runs out overshoots it. Here admission *reserves* each request's estimated
cost first (Store.tally_reserve: all of the caller's tallies, all or nothing) and a request
whose reservation does not fit is refused before anything is sent; once the request ends,
Accounting settles the reservation to the real cost of its ledger entry (or releases it,
when no entry was written). What a budget can be overshot by is then the estimates' error,
not the number of requests in flight.

The estimate of one attempt (freeapi/pricing.py's price row for its target, at that time):

    chat: prompt tokens (the messages', tools' and schemas' JSON text: an ASCII character 0.3 token,
          any other character 1, freeapi/ledger.py reserve_tokens; a non-text part counts
          PART_TOKENS) x input + (the larger of max_tokens and
          max_completion_tokens, else billing.reserve_output_tokens) x n x output
    operations: what Operation.estimate says (embeddings' input tokens, images x n,
          speech characters, transcription seconds from the audio's size)

A model without a price, or priced in a currency billing.rates cannot convert, reserves
nothing and is served (the ledger says `unpriced`, or keeps its cost apart); the `free`
models cost 0, so a spent budget never stops them. Failover to a target whose estimate is
higher tops the reservation up before sending, and skips the target when that does not fit.

Tallies (freeapi/store/tallies.py) count nano-units (1e-9) of billing.currency, as integers,
so "a budget worth exactly N requests" compares exactly: `b:<counter id>:d<YYYYMMDD>`,
`:m<YYYYMM>` and `:total`, for the key (Limits.counter_id) and its team (`t:<id>`), all
three periods of each holder whatever periods it limits (GET /admin/keys shows them as
`budget_used`). A caller without a budget (nor its team) costs one attribute check.
"""

from __future__ import annotations

import calendar
import json
import logging
import math
import time
from dataclasses import dataclass
from types import SimpleNamespace

from freeapi.admin.directory import identity
from freeapi.errors import APIError, ClientGone
from freeapi.ledger import reserve_tokens, token_counts
from freeapi.limits import Limits
from freeapi.pricing import cost_of, rates_at
from freeapi.store import StoreError, Tally

log = logging.getLogger("freeapi.budgets")

NANO = 1_000_000_000
PERIODS = ("daily", "monthly", "total")
MAX_NANOS = 1 << 62  # an estimate beyond any budget (and within every store's integers)
PART_TOKENS = 1000  # an image, audio or file part of a chat message, before it is read
_KEEP_MS = 86400 * 1000  # a period's tally outlives it a day: late settlements land in it


def period_keys(cid: str, now: float) -> list[tuple[str, str, int | None, float | None]]:
    """(period, tally key, expires at in unix ms, the period's end in unix s) of a holder."""
    t = time.gmtime(now)
    day_end = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86400
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    month_end = calendar.timegm((year, month, 1, 0, 0, 0))
    day = time.strftime("%Y%m%d", t)
    return [("daily", f"b:{cid}:d{day}", day_end * 1000 + _KEEP_MS, day_end),
            ("monthly", f"b:{cid}:m{day[:6]}", month_end * 1000 + _KEEP_MS, month_end),
            ("total", f"b:{cid}:total", None, None)]


@dataclass(frozen=True)
class Line:
    """One tally a request's reservation is added to."""
    key: str
    limit: int | None  # nano-units; None: this holder does not limit this period
    expires_at_ms: int | None
    ends: float | None  # the period's end (unix s), for Retry-After
    kind: str  # "key" or "team": the metric's label
    name: str
    period: str
    label: str  # who, for the refusal's message


class Reservation:
    """What one request holds (Exchange.budget): its tallies and the nano-units added to
    each so far; `spent`, the real cost of a `-search` model's rounds already served
    (held under the next round's estimate); `settled` once Budgets.settle has taken it
    (the request ended)."""

    __slots__ = ("lines", "nanos", "spent", "settled")

    def __init__(self, lines: list[Line]):
        self.lines, self.nanos, self.spent, self.settled = lines, 0, 0, False


def budgeted(caller) -> bool:
    """Whether a request's caller (None: anonymous) has a money budget, its own or its
    team's."""
    return caller is not None and caller.budgeted


def holders(caller) -> list[tuple[str, str, str, dict | None, str]]:
    """(counter id, kind, name, budget, label) of the key and, when it has a budget, its
    team (shared by all its keys)."""
    label = f"Gateway key {caller.name!r}"
    out = [(Limits.counter_id(caller), "key", caller.name, caller.budget, label)]
    team = getattr(caller, "team", None)
    if team is not None and team.budget:
        out.append((team.counter_id, "team", team.name, team.budget,
                    f"{label}'s team {team.name!r}"))
    return out


def key_counter_id(rid: str, config_keys) -> str | None:
    """The counter id of a key as GET /admin/keys names it (`config:NAME` or a stored id)."""
    if rid.startswith("config:"):
        for gk in config_keys:
            if f"config:{gk.name}" == rid:
                return Limits.counter_id(gk)
        return None
    return Limits.counter_id(SimpleNamespace(key=identity(rid)))


def chat_estimate(body: dict, default_output: int) -> tuple[dict, dict]:
    """A chat body's token counts before it is sent (see the module's docstring)."""
    tokens = 0.0
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # parts: text by its size, the rest by PART_TOKENS
            rest = {k: v for k, v in m.items() if k != "content"}
            tokens += _tokens(rest)
            for part in content:
                if isinstance(part, dict) and part.get("type") not in (None, "text"):
                    tokens += PART_TOKENS
                else:
                    tokens += _tokens(part)
        else:
            tokens += _tokens(m)
    for field in ("tools", "functions", "response_format"):  # schemas the vendor reads
        if body.get(field):
            tokens += _tokens(body[field])
    # The chat door passes these on as the client wrote them: the largest a vendor could
    # honour is reserved (either field; 9000.0 or "9000" where a lenient server reads 9000).
    named = [c for c in (_count(body.get("max_tokens")),
                         _count(body.get("max_completion_tokens"))) if c is not None]
    out = max(named) if named else default_output
    n = _count(body.get("n"))
    if n is not None and n > 1:
        out *= n
    return {"prompt_tokens": math.ceil(tokens),
            "completion_tokens": out}, {}


def _count(value) -> int | None:
    """A positive count as the most lenient vendor reads it (8, 8.0, "8"); None for
    anything else (absent, a bool, zero or less, not a number)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return math.ceil(value) if value > 0 else None


def _tokens(value) -> float:
    try:
        return reserve_tokens(json.dumps(value, ensure_ascii=False))
    except (TypeError, ValueError, RecursionError):
        return 0.0


class Budgets:
    """The budget step (made once per gateway; Admission, Failover and Accounting call
    it). Writes and reads the exchange's `budget`."""

    def __init__(self, store, pricing, metrics):
        self.store = store
        self.pricing = pricing  # () -> freeapi.pricing.Pricing, as the config last loaded
        self.metrics = metrics
        # currencies (and paid fallbacks: counts) already logged as uncountable
        self._no_rate: set[str] = set()

    # -- estimates --------------------------------------------------------------------------

    def estimate(self, ex, route, body: dict) -> int:
        """Nano-units of billing.currency `route` may cost for `body`; 0 when unpriced."""
        pricing = self.pricing()
        model = ex.routed[1] if ex.routed is not None else None
        row = pricing.row_for(route.provider.name, route.upstream_model, model)
        if row is None:
            return 0
        op = ex.operation
        if op is None:
            counts, units = chat_estimate(body, pricing.billing.reserve_output_tokens)
        else:
            counts, units = op.estimate(body)
        try:
            amount = round(cost_of(rates_at(row, pricing.clock()), counts, units), 10)
            return min(self.nanos(amount, row["currency"]), MAX_NANOS)
        except OverflowError:  # counts beyond any float (max_tokens of 400 digits)
            return MAX_NANOS

    def counts(self, route, model: str) -> bool:
        """Whether `route` has a price a budget can count (a row, in a currency
        billing.rates converts): a `free` request's paid fallback serves only then, or
        it would be served beyond every budget (pipeline/failover.py)."""
        pricing = self.pricing()
        row = pricing.row_for(route.provider.name, route.upstream_model, model)
        currency = row["currency"] if row is not None else None
        if currency is not None and pricing.convert(1.0, currency) is not None:
            return True
        what = f"{route.provider.name}/{route.upstream_model}"
        if what not in self._no_rate:
            self._no_rate.add(what)
            log.warning("budgets: free.paid_fallback %s serves nobody: it has %s (add a "
                        "prices: row%s)", what, "no price" if row is None else
                        f"a price in {currency}, which billing.rates cannot convert",
                        "" if row is None else " or the rate")
        return False

    def nanos(self, amount: float | None, currency: str | None) -> int:
        """`amount` of `currency` in nano-units of billing.currency (as Pricing.charge
        rounds a ledger entry's cost); 0 when no rate converts it."""
        if not amount or currency is None:
            return 0
        got = self.pricing().convert(amount, currency)
        if got is None:
            if currency not in self._no_rate:
                self._no_rate.add(currency)
                log.warning("budgets: prices in %s cannot count against money budgets: "
                            "billing.rates has no rate for it (such requests reserve and "
                            "spend nothing of a budget)", currency)
            return 0
        return round(got * NANO)

    # -- reserving ------------------------------------------------------------------------

    async def admit(self, ex, route, body: dict) -> None:
        """Admission, for a caller with a budget: reserve the first target's estimate, or
        raise the 429 (budget_exceeded) / 503 (state_unavailable) the caller gets."""
        if ex.client_gone:  # it left during an earlier step, and was accounted then: a
            raise ClientGone()  # reservation made now would never be settled
        now = time.time()
        lines = []
        for cid, kind, name, budget, label in holders(ex.door.caller):
            for period, key, expires, ends in period_keys(cid, now):
                amount = (budget or {}).get(period)
                limit = None if amount is None else round(amount * NANO)
                lines.append(Line(key, limit, expires, ends, kind, name, period, label))
        ex.budget = Reservation(lines)
        await self._reserve(ex.budget, self.estimate(ex, route, body))

    async def top_up(self, ex, target, body: dict) -> APIError | None:
        """Before an attempt on `target` (failover): raise the reservation to its estimate
        when that is higher; the 429 to skip the target with when it does not fit."""
        res = ex.budget
        try:
            await self._reserve(res, res.spent + self.estimate(ex, target, body))
        except APIError as e:
            if e.code == "budget_exceeded":
                return e
            raise
        return None

    def round_served(self, ex, route, usage) -> None:
        """A `-search` model's round was served and another follows (pipeline/search.py):
        the vendor bills each, so what this one cost stays held while the next round's
        estimate is added to it (Budgets.top_up)."""
        res = ex.budget
        if res is None or not isinstance(usage, dict):
            return
        pricing = self.pricing()
        row = pricing.row_for(route.provider.name, route.upstream_model, ex.routed[1])
        if row is not None:
            cost = cost_of(rates_at(row, pricing.clock()), token_counts(usage))
            res.spent += self.nanos(round(cost, 10), row["currency"])

    async def _reserve(self, res: Reservation, amount: int) -> None:
        extra = amount - res.nanos
        if extra <= 0:
            return  # nothing more to hold (a free or unpriced target: never refused)
        items = [Tally(ln.key, extra, ln.limit, ln.expires_at_ms) for ln in res.lines]
        try:
            ok, failed, values = await self.store.tally_reserve(items)
        except StoreError as e:
            # Fail closed: a budgeted caller must not spend unmetered while the store is
            # down. Callers without budgets never get here.
            log.error("budgets: cannot check %s: %s", res.lines[0].label, str(e))
            raise APIError(503, "The gateway cannot check this key's money budget right now "
                                "(its state store is unavailable); retry shortly.",
                           code="state_unavailable", retry_after="1") from None
        self._observe(res.lines, values)
        if not ok:
            # Of the tallies it does not fit, the one that renews last (a total never):
            # retrying when an earlier one renews would be refused again.
            over = [i for i, ln in enumerate(res.lines)
                    if ln.limit is not None and values[i] + extra > ln.limit] or [failed]
            last = max(over, key=lambda i: math.inf if res.lines[i].ends is None
                       else res.lines[i].ends)
            raise self._refusal(res.lines[last], values[last], extra)
        if res.settled:
            # The client left while the store answered, and its request was settled then:
            # nobody will settle what was just added, so it goes back now.
            self._give_back(res.lines, extra)
            raise ClientGone()
        res.nanos = amount

    def _refusal(self, line: Line, used: int, extra: int) -> APIError:
        cur = self.pricing().billing.currency
        text = (f"{line.label} is over its {line.period} money budget ({_fmt(line.limit)} "
                f"{cur}: {_fmt(used)} used or reserved, and this request needs "
                f"{_fmt(extra)} more).")
        if line.ends is None:
            return APIError(429, text + " A total budget does not renew: retrying will not "
                                        "help until the operator raises it.",
                            code="budget_exceeded")
        seconds = max(1, math.ceil(line.ends - time.time()))
        return APIError(429, text + f" It renews in {seconds}s.", code="budget_exceeded",
                        retry_after=str(seconds))

    # -- settling -------------------------------------------------------------------------

    def settle(self, ex, entry: dict | None) -> None:
        """Once the request has ended (Accounting): the tallies get the entry's real cost
        instead of the reservation, or give the reservation back when there is no entry.
        In the background, as the ledger is written."""
        res = ex.budget
        if res is None:
            return
        ex.budget, res.settled = None, True
        real = self.nanos(entry.get("cost"), entry.get("currency")) if entry else 0
        self._give_back(res.lines, res.nanos - real)

    def _give_back(self, lines: list[Line], nanos: int) -> None:
        """Take `nanos` off every tally of `lines` (negative: add), in the background."""
        if nanos:
            items = [Tally(ln.key, -nanos, None, ln.expires_at_ms) for ln in lines]
            self.store.spawn(self._add(lines, items),
                             f"budgets: {-nanos / NANO:g} of {lines[0].label}'s spend "
                             f"was not counted")

    async def _add(self, lines: list[Line], items: list[Tally]) -> None:
        self._observe(lines, await self.store.tally_add(items))

    def _observe(self, lines: list[Line], values: list[int]) -> None:
        for ln, v in zip(lines, values):
            if ln.limit is not None:
                ratio = v / ln.limit if ln.limit else (1.0 if v > 0 else 0.0)
                self.metrics.budget_used(ln.kind, ln.name, ln.period, max(0.0, ratio))

    # -- reading (the admin API) ----------------------------------------------------------

    async def used(self, cids: list[str]) -> list[dict]:
        """{daily, monthly, total} spent (amounts of billing.currency) per counter id."""
        now = time.time()
        keys = [key for cid in cids for _, key, _, _ in period_keys(cid, now)]
        values = await self.store.tally_read(keys) if keys else []
        return [{p: round(values[3 * i + j] / NANO, 9) for j, p in enumerate(PERIODS)}
                for i in range(len(cids))]


def _fmt(nanos: int | None) -> str:
    return f"{(nanos or 0) / NANO:.9f}".rstrip("0").rstrip(".")
