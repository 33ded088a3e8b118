"""How many request-body bytes the gateway holds at once, across all requests
(server.max_buffered_bytes).

server.max_body_size bounds one body; without a bound on their sum, a dozen concurrent
19 MiB uploads made the process grow by 1.4 GB (each body is held as received, joined,
parsed, and re-encoded for the vendor). A request takes its share when its size is known
(its Content-Length, before any of the body is read; a chunked body as it arrives) and
gives it back when it ends; one that does not fit is answered 503 with Retry-After.
"""

from __future__ import annotations


class BodyBudget:
    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.refused = 0  # requests answered 503 for want of room (tests, stats)

    def take(self, size: int) -> bool:
        """Reserve `size` bytes; False (nothing reserved) when they do not fit."""
        if self.used + size > self.limit:
            self.refused += 1
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        self.used = max(0, self.used - size)
