"""The PostgreSQL schema, as versioned migrations freeapi applies itself at startup.

Each migration is a list of statements run in one transaction with its row in
`freeapi_migrations`; they run under a session advisory lock (pg_advisory_lock on a key
derived from the schema's name), so several gateways starting at once apply each
migration exactly once: the first takes the lock and migrates, the others wait for it and
then find nothing left to do. A database migrated by a newer freeapi (a version this one
does not know) is refused rather than written to.

Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

from freeapi.store import LEDGER_FIELDS

# Column types of the ledger (LEDGER_FIELDS order); values are coerced to them on write.
LEDGER_TYPES = {"ts": "float8", "key": "text", "vendor_key": "text", "provider": "text",
                "model": "text", "upstream_model": "text", "status": "int4",
                "error": "text", "stream": "bool", "latency_ms": "int8",
                "ttfb_ms": "int8", "prompt_tokens": "int8", "completion_tokens": "int8",
                "cached_tokens": "int8", "reasoning_tokens": "int8", "total_tokens": "int8",
                "endpoint": "text", "request_id": "text", "estimated": "bool"}
assert tuple(LEDGER_TYPES) == LEDGER_FIELDS  # a new ledger field needs a migration here

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "the store's tables", [
        # Counters: one row per (key, bucket); `expires` in ms of the server's clock.
        "CREATE TABLE counters (key text NOT NULL, bucket int8 NOT NULL, "
        "amount int8 NOT NULL, expires int8 NOT NULL, PRIMARY KEY (key, bucket))",
        "CREATE INDEX counters_expires ON counters (expires)",
        "CREATE TABLE ledger (id bigserial PRIMARY KEY, "
        + ", ".join(f"{f} {t}" for f, t in LEDGER_TYPES.items()) + ")",
        # Queries and pruning go by time.
        "CREATE INDEX ledger_ts ON ledger (ts)",
        "CREATE TABLE conversations (id text PRIMARY KEY, owner text NOT NULL, "
        "expires float8 NOT NULL)",
        "CREATE INDEX conversations_expires ON conversations (expires)",
        "CREATE TABLE conversation_turns (conv text NOT NULL, seq int4 NOT NULL, "
        "data text NOT NULL, PRIMARY KEY (conv, seq))",
        # Small expiring JSON records; `grp` the optional group of Store.kv_group.
        "CREATE TABLE kv (ns text NOT NULL, name text NOT NULL, data text NOT NULL, "
        "expires float8 NOT NULL, grp text, PRIMARY KEY (ns, name))",
        "CREATE INDEX kv_expires ON kv (expires)",
        "CREATE INDEX kv_group ON kv (ns, grp) WHERE grp IS NOT NULL",
        "CREATE TABLE blobs (ns text NOT NULL, name text NOT NULL, data bytea NOT NULL, "
        "expires float8 NOT NULL, PRIMARY KEY (ns, name))",
        # Uncompressed out-of-line storage: substring() then reads only the TOAST chunks
        # of the piece asked for, not the whole file.
        "ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL",
        "CREATE INDEX blobs_expires ON blobs (expires)",
        # Keys, teams and the audit log (freeapi/store/postgres_admin.py).
        "CREATE TABLE admin_records (kind text NOT NULL, id text NOT NULL, data text, "
        "version int8 NOT NULL, PRIMARY KEY (kind, id))",
        "CREATE INDEX admin_records_version ON admin_records (version)",
        "CREATE TABLE admin_audit (seq bigserial PRIMARY KEY, ts float8 NOT NULL, "
        "data text NOT NULL)",
        "CREATE TABLE admin_meta (name text PRIMARY KEY, value int8 NOT NULL)",
    ]),
]
LATEST = MIGRATIONS[-1][0]

_LOCK = "SELECT pg_advisory_lock(hashtext('freeapi-migrate:' || current_schema()))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtext('freeapi-migrate:' || current_schema()))"


class NewerSchema(Exception):
    pass


async def migrate(con) -> list[int]:
    """Bring the schema of `con`'s search_path up to date; returns the versions this call
    applied (empty when another gateway had already done it)."""
    await con.execute(_LOCK)
    try:
        await con.execute("CREATE TABLE IF NOT EXISTS freeapi_migrations (version int4 "
                          "PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT "
                          "NULL DEFAULT now())")
        have = {r[0] for r in await con.fetch("SELECT version FROM freeapi_migrations")}
        if have and max(have) > LATEST:
            raise NewerSchema(f"the database was migrated by a newer freeapi (schema "
                              f"{max(have)}, this one knows up to {LATEST})")
        applied = []
        for version, name, statements in MIGRATIONS:
            if version in have:
                continue
            async with con.transaction():
                for sql in statements:
                    await con.execute(sql)
                await con.execute("INSERT INTO freeapi_migrations (version, name) VALUES "
                                  "($1, $2)", version, name)
            applied.append(version)
        return applied
    finally:
        await con.execute(_UNLOCK)
