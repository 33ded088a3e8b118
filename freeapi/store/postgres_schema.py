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
                "endpoint": "text", "request_id": "text", "estimated": "bool",
                # Added by migration 3 (who and what it cost: freeapi/pricing.py).
                "key_id": "text", "team": "text", "cost": "float8", "currency": "text",
                "unpriced": "bool"}
assert tuple(LEDGER_TYPES) == LEDGER_FIELDS  # a new ledger field needs a migration here
# The ledger's columns as migration 1 created them (a shipped migration never changes).
_LEDGER_V1 = tuple(LEDGER_TYPES)[:19]

# Store.hits in one round trip (the rule of freeapi/store check_window, as the Redis
# backend's Lua script runs it): the keys' transaction-scoped advisory locks taken in hash
# order (two gateways never deadlock), the server's clock, then check all, add all or
# nothing. Returns (ok, wait in ms, index of the first hit over its limit or -1).
# Counters are hot state, not records: their commit does not wait for the WAL flush (a
# crash of the database loses at most its last moment of counts, as a Redis without
# persistence would).
_HITS = """
CREATE OR REPLACE FUNCTION freeapi_hits(p_keys text[], p_amounts int8[], p_windows int8[],
                                        p_limits int8[], p_nb int4)
RETURNS TABLE (ok bool, wait_ms int8, failed int4) LANGUAGE plpgsql AS $fn$
DECLARE
  v_now int8; v_w int8; v_first int8; v_total int8; v_need int8; v_freed int8;
  v_until int8; v_wait int8 := 0; v_bad int4 := -1; r record;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  PERFORM pg_advisory_xact_lock(hashtext(current_schema()), hashtext(d.k))
    FROM (SELECT DISTINCT k FROM unnest(p_keys) AS k) AS d ORDER BY hashtext(d.k);
  v_now := (extract(epoch FROM clock_timestamp()) * 1000)::int8;
  FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
    CONTINUE WHEN p_limits[i] < 0;
    v_w := greatest(1, p_windows[i] / p_nb);
    v_first := v_now / v_w - p_nb + 1;
    SELECT coalesce(sum(c.amount), 0) INTO v_total FROM counters AS c
      WHERE c.key = p_keys[i] AND c.bucket >= v_first;
    IF p_amounts[i] > 0 THEN
      v_need := v_total + p_amounts[i] - p_limits[i];
    ELSE
      v_need := v_total - p_limits[i] + 1;
    END IF;
    CONTINUE WHEN v_need <= 0;
    IF v_bad < 0 THEN v_bad := i - 1; END IF;
    v_freed := 0;
    v_until := p_windows[i];
    FOR r IN SELECT c.bucket, c.amount FROM counters AS c
             WHERE c.key = p_keys[i] AND c.bucket >= v_first ORDER BY c.bucket LOOP
      v_freed := v_freed + r.amount;
      IF v_freed >= v_need THEN
        v_until := (r.bucket + p_nb) * v_w - v_now;
        EXIT;
      END IF;
    END LOOP;
    v_wait := greatest(v_wait, greatest(v_until, 1));
  END LOOP;
  IF v_bad >= 0 THEN
    RETURN QUERY SELECT false, v_wait, v_bad;
    RETURN;
  END IF;
  INSERT INTO counters (key, bucket, amount, expires)
    SELECT x.k, x.b, sum(x.a), max(x.e) FROM (
      SELECT p_keys[i] AS k, v_now / greatest(1, p_windows[i] / p_nb) AS b,
             p_amounts[i] AS a,
             (v_now / greatest(1, p_windows[i] / p_nb) + p_nb)
               * greatest(1, p_windows[i] / p_nb) AS e
      FROM generate_subscripts(p_keys, 1) AS i WHERE p_amounts[i] > 0) AS x
    GROUP BY x.k, x.b
    ON CONFLICT (key, bucket) DO UPDATE SET amount = counters.amount + excluded.amount;
  RETURN QUERY SELECT true, 0::int8, -1;
END
$fn$"""

# Store.tally_reserve / tally_add in one round trip (freeapi/store/tallies.py): the keys'
# transaction-scoped advisory locks in hash order (as freeapi_hits takes them), then check
# all (p_check) and add all or nothing. An expired row reads as 0 and is replaced. Returns
# (ok, index of the first item that did not fit or -1, the values after the call).
_TALLY = """
CREATE OR REPLACE FUNCTION freeapi_tally(p_keys text[], p_amounts int8[], p_limits int8[],
                                         p_expires int8[], p_check bool)
RETURNS TABLE (ok bool, failed int4, vals int8[]) LANGUAGE plpgsql AS $fn$
DECLARE
  v_now int8; v_vals int8[] := '{}'; v_v int8;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  PERFORM pg_advisory_xact_lock(hashtext(current_schema()), hashtext(d.k))
    FROM (SELECT DISTINCT k FROM unnest(p_keys) AS k) AS d ORDER BY hashtext(d.k);
  v_now := (extract(epoch FROM clock_timestamp()) * 1000)::int8;
  FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
    SELECT t.amount INTO v_v FROM tallies AS t WHERE t.key = p_keys[i]
      AND (t.expires IS NULL OR t.expires > v_now);
    v_vals := v_vals || coalesce(v_v, 0);
  END LOOP;
  IF p_check THEN
    FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
      IF p_limits[i] >= 0 AND v_vals[i] + p_amounts[i] > p_limits[i] THEN
        RETURN QUERY SELECT false, i - 1, v_vals;
        RETURN;
      END IF;
    END LOOP;
  END IF;
  FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
    INSERT INTO tallies AS t (key, amount, expires) VALUES (p_keys[i], p_amounts[i],
      nullif(p_expires[i], 0))
    ON CONFLICT (key) DO UPDATE SET
      amount = CASE WHEN t.expires IS NOT NULL AND t.expires <= v_now THEN excluded.amount
                    ELSE t.amount + excluded.amount END,
      expires = excluded.expires;
    v_vals[i] := v_vals[i] + p_amounts[i];
  END LOOP;
  RETURN QUERY SELECT true, -1, v_vals;
END
$fn$"""

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "the store's tables", [
        # Counters: one row per (key, bucket); `expires` in ms of the server's clock.
        "CREATE TABLE counters (key text NOT NULL, bucket int8 NOT NULL, "
        "amount int8 NOT NULL, expires int8 NOT NULL, PRIMARY KEY (key, bucket))",
        "CREATE INDEX counters_expires ON counters (expires)",
        "CREATE TABLE ledger (id bigserial PRIMARY KEY, "
        + ", ".join(f"{f} {LEDGER_TYPES[f]}" for f in _LEDGER_V1) + ")",
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
    (2, "counters checked and added in one call", [_HITS]),
    (3, "the ledger says whose request it was and what it cost", [
        *(f"ALTER TABLE ledger ADD COLUMN {f} {LEDGER_TYPES[f]}"
          for f in LEDGER_TYPES if f not in _LEDGER_V1),
        # GET /admin/requests filters the raw log by these, newest first.
        *(f"CREATE INDEX ledger_{f}_ts ON ledger ({f}, ts)"
          for f in ("key", "team", "model", "status", "request_id")),
    ]),
    (4, "rollups beside the ledger; the raw log filtered by key id", [
        # Store.rollup_*: one row per bucket field (freeapi/store/postgres_rollups.py);
        # reads go by the primary key's (period, dim, start) prefix, the sweep by expires
        # (seconds of the server's clock).
        "CREATE TABLE rollups (period text NOT NULL, dim text NOT NULL, start int8 NOT NULL, "
        "field text NOT NULL, amount float8 NOT NULL, expires int8 NOT NULL, "
        "PRIMARY KEY (period, dim, start, field))",
        "CREATE INDEX rollups_expires ON rollups (expires)",
        # GET /admin/requests?key= means the key id (as on SQLite and Redis); migration 3
        # indexed the key's name column, which no query filters by.
        "DROP INDEX IF EXISTS ledger_key_ts",
        "CREATE INDEX ledger_key_id_ts ON ledger (key_id, ts)",
    ]),
    (5, "money tallies for budgets, checked and added in one call", [
        # freeapi/store/tallies.py: `expires` in ms of the server's clock, NULL: never.
        "CREATE TABLE tallies (key text PRIMARY KEY, amount int8 NOT NULL, expires int8)",
        "CREATE INDEX tallies_expires ON tallies (expires)",
        _TALLY,
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
        # Looked up first: a role without CREATE on the schema may still use a database
        # that is up to date.
        if await con.fetchval("SELECT to_regclass('freeapi_migrations')") is None:
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
