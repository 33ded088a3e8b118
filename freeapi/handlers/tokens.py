"""POST /token/check: is this vendor key usable right now?"""

from freeapi.errors import APIError, invalid_request
from freeapi.handlers.base import APIHandler, ClientGone
from freeapi.handlers.chat import upstream_failure
from freeapi.keys import split_keys
from freeapi.upstream import UpstreamError

_MAX_BODY = 1024 * 1024


class TokenCheckHandler(APIHandler):
    _call = None

    def on_connection_close(self):
        if self._call is not None:
            self._call.abort()

    async def post(self):
        gw = self.gateway
        self.client_token()
        body = self.json_body()
        token = body.get("token")
        if not isinstance(token, str) or not token.strip():
            raise invalid_request("`token` is required: the vendor API key to check.",
                                  param="token")
        try:
            keys = split_keys(token)
        except APIError:  # its message speaks of the Authorization header; this is the body
            raise invalid_request("`token` is not a well-formed API key.", param="token") \
                from None
        if len(keys) != 1:
            raise invalid_request("`token` must be a single key.", param="token")
        name = body.get("provider", "deepseek")
        provider = gw.providers.get(name) if isinstance(name, str) else None
        if provider is None:
            raise invalid_request(f"Unknown provider {name!r}; enabled: "
                                  f"{', '.join(gw.providers) or 'none'}.", param="provider")
        req = provider.key_check_request(keys[0])
        t = provider.timeouts
        self._call = call = gw.http.start(req.url)
        try:
            resp = await gw.http.send(call, req.method, req.url, req.headers, req.body,
                                      t.connect, t.first_byte)
            raw = await resp.read(t.idle, _MAX_BODY)
        except UpstreamError as e:
            if call.aborted:
                raise ClientGone() from None
            raise upstream_failure(provider.name, e) from None
        live = provider.key_check_result(resp.status, resp.headers, raw, keys)
        self.write_json({"live": live})
