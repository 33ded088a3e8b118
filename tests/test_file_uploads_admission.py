"""POST /v1/files is admitted like every request before its body is read: credentials (a
401 in OpenAI's shape without them), the gateway key's limits (rpm), the caller's file
count and byte quotas and the gateway-wide byte cap (files.*, sliding windows of the
files' 24 hours), a size over files.max_file_bytes; `purpose` and the file name are
bounded (a 400 naming the field). On SQLite and Redis: the quotas are store counters."""

import json

import pytest

from freeapi.modalities import files as files_mod
from tests.helpers import error_of, request

ALICE, BOB = "gw-upload-alice-000001", "gw-upload-bob-0000002"
BOUNDARY = "freeapi-upload-boundary"


def form(data: bytes = b"notes", purpose: str | bytes | None = "user_data",
         filename: bytes = b"notes.txt") -> bytes:
    out = b""
    if purpose is not None:
        purpose = purpose.encode() if isinstance(purpose, str) else purpose
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
                .encode() + purpose + b"\r\n")
    out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; ".encode()
            + b'filename="' + filename + b'"\r\nContent-Type: text/plain\r\n\r\n' + data
            + b"\r\n")
    return out + f"--{BOUNDARY}--\r\n".encode()


async def upload(base, key, data=b"notes", **kw):
    return await request(base + "/v1/files", "POST", form(data, **kw), key=key, headers={
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})


def gw_config(state, files=None, keys=(ALICE, BOB)):
    return {"auth": {"keys": list(keys)}, "state": state, "files": files or {}}


async def test_an_upload_without_credentials_is_a_401_and_stores_nothing(make_gateway,
                                                                         tmp_path):
    # Pass-through mode (no gateway keys): any bearer token names a caller, none is nobody.
    base, gw = make_gateway({"state": {"path": str(tmp_path / "state.db")}})
    err = error_of(await upload(base, None, b"x" * 100_000), 401)
    assert err["code"] == "missing_api_key" and "Authorization: Bearer" in err["message"]
    # Nothing was kept: no record, no listing, no content for anyone.
    assert await gw.store.kv_group(files_mod.LIST_NS, "anonymous") == {}
    ok = await upload(base, "sk-some-vendor-key")
    assert ok.code == 200, ok.body


async def test_a_keys_rpm_counts_uploads(make_gateway, state_backend):
    base, gw = make_gateway({"auth": {"keys": [{"key": ALICE, "name": "alice", "rpm": 1}]},
                             "state": state_backend})
    assert (await upload(base, ALICE)).code == 200
    err = error_of(await upload(base, ALICE), 429)
    assert err["code"] == "rpm_exceeded" and "rpm: 1" in err["message"]


async def test_a_callers_file_count_is_capped(make_gateway, state_backend):
    base, gw = make_gateway(gw_config(state_backend, {"max_per_caller": 2}))
    for _ in range(2):
        assert (await upload(base, ALICE)).code == 200
    resp = await upload(base, ALICE)
    err = error_of(resp, 429)
    assert err["code"] == "file_quota_exceeded" and "files.max_per_caller" in err["message"]
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await upload(base, BOB)).code == 200  # another caller's quota is their own


async def test_a_callers_bytes_are_capped(make_gateway, state_backend):
    base, gw = make_gateway(gw_config(state_backend, {"max_bytes_per_caller": 1000}))
    assert (await upload(base, ALICE, b"a" * 600)).code == 200
    err = error_of(await upload(base, ALICE, b"a" * 600), 429)
    assert "files.max_bytes_per_caller" in err["message"]
    assert (await upload(base, ALICE, b"a" * 400)).code == 200  # what still fits
    assert (await upload(base, BOB, b"b" * 600)).code == 200


async def test_every_callers_uploads_together_are_capped(make_gateway, state_backend):
    base, gw = make_gateway(gw_config(state_backend, {"max_total_bytes": 1000}))
    assert (await upload(base, ALICE, b"a" * 600)).code == 200
    err = error_of(await upload(base, BOB, b"b" * 600), 429)
    assert err["code"] == "file_quota_exceeded" and "files.max_total_bytes" in err["message"]


async def test_a_full_quota_refuses_before_the_body_is_read(make_gateway, state_backend):
    base, gw = make_gateway(gw_config(state_backend, {"max_per_caller": 1}))
    assert (await upload(base, ALICE)).code == 200
    # The answer comes on a connection the gateway closes without reading the body.
    resp = await upload(base, ALICE, b"z" * (4 << 20))
    assert error_of(resp, 429)["code"] == "file_quota_exceeded"
    assert resp.headers["Connection"] == "close"


async def test_a_file_over_max_file_bytes_is_a_413(make_gateway, state_backend):
    base, gw = make_gateway(gw_config(state_backend, {"max_file_bytes": 1000}))
    err = error_of(await upload(base, ALICE, b"a" * 1001), 413)
    assert err["code"] == "file_too_large" and "files.max_file_bytes" in err["message"]
    resp = await upload(base, ALICE, b"a" * (1 << 20))  # refused from its Content-Length
    assert error_of(resp, 413)["code"] == "file_too_large"
    assert (await upload(base, ALICE, b"a" * 1000)).code == 200


@pytest.mark.parametrize("kw,param", [
    ({"purpose": "p" * 65}, "purpose"),
    ({"purpose": "user\x01data"}, "purpose"),
    ({"purpose": None}, "purpose"),
    ({"filename": b"n" * 256}, "file"),
    ({"filename": "invoice\u202etxt.exe".encode()}, "file"),  # a right-to-left override
])
async def test_text_fields_are_bounded(make_gateway, tmp_path, kw, param):
    base, gw = make_gateway(gw_config({"path": str(tmp_path / "s.db")}))
    err = error_of(await upload(base, ALICE, **kw), 400)
    assert err["param"] == param
    listed = json.loads((await request(base + "/v1/files", key=ALICE)).body)
    assert listed["data"] == []


async def test_uploads_received_at_once_are_capped(make_gateway, tmp_path):
    import asyncio
    import socket
    from urllib.parse import urlsplit
    base, gw = make_gateway(gw_config({"path": str(tmp_path / "s.db")},
                                      {"max_concurrent_uploads": 1}))
    body = form(b"s" * 100_000)
    u = urlsplit(base)
    slow = socket.create_connection((u.hostname, u.port))
    slow.sendall((f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\n"
                  f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:1000])
    for _ in range(100):  # until the gateway is receiving it
        await asyncio.sleep(0.02)
        if gw.uploads:
            break
    err = error_of(await upload(base, BOB), 429)
    assert err["code"] == "too_many_uploads"
    slow.settimeout(10)  # a bound for a broken gateway, not a measurement
    run = asyncio.get_running_loop().run_in_executor  # the gateway runs on this loop
    await run(None, slow.sendall, body[1000:])
    assert (await run(None, slow.recv, 100)).startswith(b"HTTP/1.1 200")
    slow.close()
    assert (await upload(base, BOB)).code == 200  # the slot is free again


async def test_an_upload_refused_before_its_body_gives_back_its_buffer_share(make_gateway,
                                                                             tmp_path):
    # Room for two bodies of this size at once (server.max_buffered_bytes): uploads refused
    # by a full quota must not keep theirs, or the gateway soon refuses everyone.
    size = 600_000
    base, gw = make_gateway(dict(gw_config({"path": str(tmp_path / "s.db")},
                                           {"max_per_caller": 1}),
                                 server={"max_body_size": 1 << 20,
                                         "max_buffered_bytes": 2 * size + 100_000}))
    assert (await upload(base, ALICE)).code == 200
    for _ in range(4):
        assert error_of(await upload(base, ALICE, b"a" * size), 429)["code"] \
            == "file_quota_exceeded"
    assert (await upload(base, BOB, b"b" * size)).code == 200
