"""What the BodyGate (freeapi/handlers/gate.py) owes a request before and while its body is
read: JSON doors read the body as JSON whatever Content-Type the client claims."""

import json

import pytest

from tests.helpers import chat_body, request


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "multipart/form-data"])
async def test_a_json_door_reads_its_body_as_json_whatever_the_content_type(make_gateway,
                                                                            content_type):
    # `curl -d` sends JSON as application/x-www-form-urlencoded; a prompt with code in it
    # may hold a thousand `&`. Tornado parsing the body as a form refused it with a 400.
    base, _ = make_gateway()
    resp = await request(base + "/v1/chat/completions", "POST",
                         json.dumps(chat_body("a && b " * 1500)),
                         headers={"Content-Type": content_type})
    assert resp.code == 200, resp.body


async def test_a_keyless_request_with_a_form_content_type_gets_its_401(make_gateway):
    base, _ = make_gateway({"auth": {"keys": ["gw-body-gate-key-0001"]}})
    resp = await request(base + "/v1/models", key=None,
                         headers={"Content-Type": "multipart/form-data"})
    assert resp.code == 401 and json.loads(resp.body)["error"]["code"] == "invalid_api_key"
