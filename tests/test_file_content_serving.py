"""A file's metadata and content are kept apart in the state store, on SQLite and Redis:
metadata (GET /v1/files/{id}, the listing) is read without the bytes, content is read
in bounded pieces, and a record the previous version wrote (bytes in the record, base64)
is still served. GET /v1/files/{id}/content is an attachment a browser neither sniffs
nor runs, sent piece by piece as the client takes it: a client that stops reading is cut
off at files.write_timeout, and one caller downloads at most
files.max_downloads_per_caller files at once."""

import asyncio
import base64
import json
import os
import socket
import time
from urllib.parse import urlsplit

from freeapi.conversations import owner_of
from freeapi.modalities import files as files_mod
from freeapi.store import BLOB_PIECE
from tests.helpers import error_of, request
from tests.test_file_uploads_admission import ALICE, BOB, gw_config, upload

HTML = b"<html><script>alert(document.domain)</script></html>"


def counting_reads(store) -> list:
    """Record the size of every content piece the store is asked for."""
    calls, read = [], store.blob_read

    async def blob_read(ns, name, offset, size):
        calls.append(size)
        return await read(ns, name, offset, size)
    store.blob_read = blob_read
    return calls


async def test_metadata_is_read_without_the_content(make_gateway, state_backend):
    base, gw = make_gateway(gw_config(state_backend))
    data = os.urandom(BLOB_PIECE * 2 + 1234)
    resp = await upload(base, ALICE, data)
    file_id = json.loads(resp.body)["id"]
    rec = (await gw.store.kv_get(files_mod.NS, [file_id]))[file_id]
    assert "data" not in rec and rec["bytes"] == len(data)
    calls = counting_reads(gw.store)
    assert (await request(f"{base}/v1/files/{file_id}", key=ALICE)).code == 200
    assert (await request(f"{base}/v1/files", key=ALICE)).code == 200
    assert calls == []  # neither read a byte of the content
    got = await request(f"{base}/v1/files/{file_id}/content", key=ALICE)
    assert got.code == 200 and got.body == data
    assert len(calls) == 3 and max(calls) <= BLOB_PIECE  # in pieces, never the whole file
    # Deleted: the content goes too.
    assert (await request(f"{base}/v1/files/{file_id}", "DELETE", key=ALICE)).code == 200
    assert await gw.store.blob_read(files_mod.CONTENT, file_id, 0, 10) == b""


async def test_the_redis_record_is_small_whatever_the_file(make_gateway, state_backend):
    if "redis_url" not in state_backend:
        return  # SQLite's side is the test above
    base, gw = make_gateway(gw_config(state_backend))
    resp = await upload(base, ALICE, os.urandom(1 << 20))
    file_id = json.loads(resp.body)["id"]
    size = await gw.store.client.execute("STRLEN",
                                         f"{state_backend['prefix']}kv:fil:{file_id}")
    assert 0 < size < 1024


async def test_a_record_of_the_previous_version_is_still_served(make_gateway, state_backend):
    base, gw = make_gateway(gw_config(state_backend))
    file_id, data = "file-" + "L" * 24, b"written before content was kept apart"
    rec = {"owner": owner_of(gw.auth.identify(ALICE), ALICE), "filename": "old.txt", "media_type": "text/plain",
        "purpose": "user_data", "bytes": len(data), "created_at": int(time.time()),
        "data": base64.b64encode(data).decode()}
    await gw.store.kv_put(files_mod.NS, file_id, rec, 60)
    await gw.store.kv_put(files_mod.LIST_NS, file_id, files_mod.info(file_id, rec), 60,
                          group=rec["owner"])
    meta = await request(f"{base}/v1/files/{file_id}", key=ALICE)
    assert meta.code == 200 and b'"filename":"old.txt"' in meta.body
    got = await request(f"{base}/v1/files/{file_id}/content", key=ALICE)
    assert got.code == 200 and got.body == data
    assert (await request(f"{base}/v1/files/{file_id}/content", key=BOB)).code == 404
    assert (await request(f"{base}/v1/files/{file_id}", "DELETE", key=ALICE)).code == 200
    assert (await request(f"{base}/v1/files/{file_id}", key=ALICE)).code == 404


async def test_content_is_an_attachment_a_browser_neither_sniffs_nor_runs(make_gateway,
                                                                         tmp_path):
    base, gw = make_gateway(gw_config({"path": str(tmp_path / "s.db")}))
    resp = await request(base + "/v1/files", "POST", (
        b"--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n"
        b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\xc3\xa9\\\".html\""
        b"\r\nContent-Type: text/html\r\n\r\n" + HTML + b"\r\n--b--\r\n"), key=ALICE,
        headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert resp.code == 200, resp.body
    file_id = json.loads(resp.body)["id"]
    got = await request(f"{base}/v1/files/{file_id}/content", key=ALICE)
    assert got.code == 200 and got.body == HTML
    disposition = got.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert disposition == "attachment; filename=\"x__.html\"; filename*=UTF-8''x%C3%A9%22.html"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in got.headers["Content-Security-Policy"]


def stalled_download(base: str, path: str, key: str) -> socket.socket:
    """A client that asks for a file and reads nothing: a tiny receive buffer, so the
    gateway's writes back up at once."""
    u = urlsplit(base)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((u.hostname, u.port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
              .encode())
    return s


def read_all(s: socket.socket) -> bytes:
    s.settimeout(30)  # a bound for a broken gateway, not a measurement
    out = b""
    while True:
        try:
            got = s.recv(1 << 20)
        except ConnectionResetError:
            break
        if not got:
            break
        out += got
    s.close()
    return out


BIG = 16 << 20  # far more than loopback's socket buffers hold


async def test_a_client_that_stops_reading_is_cut_off_at_the_write_timeout(make_gateway,
                                                                          state_backend):
    base, gw = make_gateway(gw_config(state_backend, {
        "max_file_bytes": BIG, "write_timeout": 0.5}))
    file_id = json.loads((await upload(base, ALICE, b"x" * BIG)).body)["id"]
    s = stalled_download(base, f"/v1/files/{file_id}/content", ALICE)
    await asyncio.sleep(2)  # past the deadline, reading nothing
    got = await asyncio.get_running_loop().run_in_executor(None, read_all, s)  # off the
    # gateway's loop, which is this one
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and f"Content-Length: {BIG}".encode() in head
    assert len(body) < BIG  # the gateway gave up on it


async def test_one_caller_downloads_a_bounded_number_of_files_at_once(make_gateway,
                                                                      state_backend):
    base, gw = make_gateway(gw_config(state_backend, {
        "max_file_bytes": BIG, "max_downloads_per_caller": 1}))
    file_id = json.loads((await upload(base, ALICE, b"x" * BIG)).body)["id"]
    small = json.loads((await upload(base, BOB, b"bob")).body)["id"]
    s = stalled_download(base, f"/v1/files/{file_id}/content", ALICE)
    for _ in range(100):  # until the gateway has begun sending it
        await asyncio.sleep(0.05)
        if gw.downloads:
            break
    err = error_of(await request(f"{base}/v1/files/{file_id}/content", key=ALICE), 429)
    assert err["code"] == "too_many_downloads"
    assert (await request(f"{base}/v1/files/{small}/content", key=BOB)).code == 200
    s.close()  # the stalled download ends: its slot is free again
    for _ in range(100):
        await asyncio.sleep(0.05)
        if not gw.downloads:
            break
    got = await request(f"{base}/v1/files/{file_id}/content", key=ALICE, timeout=60)
    assert got.code == 200 and len(got.body) == BIG
