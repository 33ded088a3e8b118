"""The usage ledger's background writing, the same for every backend: the mixin of Store
(freeapi/store/__init__.py), which writes each batch with the backend's `_append`.

A request's entry is queued (`record`, never blocking) and written with whatever else is
queued within LEDGER_DELAY seconds; while the store is down entries are kept, up to
`max_pending`, and retried; `flush` writes everything queued (graceful shutdown).
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("freeapi.store")

# Ledger entries waiting for a store that is down are kept up to this many (the default of
# state.ledger_buffer), then dropped oldest first: a gateway whose store is gone must not
# grow without bound.
MAX_PENDING = 10000
# Ledger entries are written together: at most this many seconds after the first one of a
# batch was recorded, or at once when this many are waiting. One write per request cost a
# task, a thread hand-off and a transaction each (bench/README.md, issue 18); one per
# 50 ms costs nothing measurable at any rate. A graceful shutdown writes everything
# queued (aclose); a kill -9 loses what is queued: the last 50 ms of answers.
LEDGER_DELAY = 0.05
LEDGER_BATCH = 256


class LedgerQueue:
    """For Store (writes with its _append)."""

    max_pending = MAX_PENDING  # see MAX_PENDING; set per store from state.ledger_buffer

    def __init__(self):
        self._pending: list[dict] = []
        self._flusher: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None  # the next batch's write
        self._dropped = 0
        # Called with the number of ledger entries just dropped (the metrics counter).
        self.on_ledger_dropped = None

    def record(self, entry: dict) -> None:
        """Queue one ledger entry; it is written in the background within LEDGER_DELAY
        seconds, batched with whatever else is queued by then. Never blocks, never
        raises."""
        self._pending.append(entry)
        self._trim()
        if self._flusher is not None and not self._flusher.done():
            return  # the write in progress schedules the next one
        if len(self._pending) >= LEDGER_BATCH:
            self._write_now()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(LEDGER_DELAY,
                                                                    self._write_now)
            except RuntimeError:  # no loop (a CLI): written on flush()
                pass

    def _trim(self):
        over = len(self._pending) - self.max_pending
        if over <= 0:
            return
        del self._pending[:over]
        if not self._dropped:
            log.error("ledger: the buffer of %d entries (state.ledger_buffer) is full; the "
                      "oldest are being dropped until the store is back", self.max_pending)
        self._dropped += over
        if self.on_ledger_dropped is not None:
            self.on_ledger_dropped(over)

    def _write_now(self, drain: bool = False):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(drain))

    async def _flush_loop(self, drain: bool = False):
        """Write what is queued: one batch, or (`drain`) until nothing is left."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._append(batch)
            except Exception as e:  # StoreError, or a driver's own (asyncpg mid-restart)
                # Keep them (bounded) and try again shortly: a restart of Redis should not
                # cost the ledger the requests served meanwhile, and no unexpected error
                # may end this loop with the batch in it.
                self._pending[:0] = batch
                self._trim()
                n = len(self._pending)
                log.warning("ledger: %d entr%s not written yet (%s); retrying in 1s",
                            n, "y" if n == 1 else "ies", str(e))
                await asyncio.sleep(1.0)
                continue
            if not drain:
                break
        if self._pending and self._timer is None:  # recorded during the write: the next batch
            self._timer = asyncio.get_running_loop().call_later(LEDGER_DELAY, self._write_now)
        if self._dropped:
            log.warning("ledger: %d entries were dropped (the store was down or could not "
                        "keep up)", self._dropped)
            self._dropped = 0

    async def flush(self, timeout: float = 5.0) -> None:
        """Write every recorded entry now and wait for it (or until `timeout` passes)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            if self._flusher is None or self._flusher.done():
                if not self._pending:
                    return
                self._write_now(drain=True)
            try:
                await asyncio.wait_for(asyncio.shield(self._flusher),
                                       max(0.0, end - loop.time()))
            except asyncio.TimeoutError:
                log.warning("ledger: %d entries not written at shutdown", len(self._pending))
                return

    def _stop_flusher(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
