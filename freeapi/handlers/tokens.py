"""POST /token/check: is this vendor key usable right now?"""

from freeapi.errors import APIError, ClientGone, invalid_request
from freeapi.handlers.base import APIHandler
from freeapi.keys import split_keys
from freeapi.probes import check_key
from freeapi.errors import UpstreamError


class TokenCheckHandler(APIHandler):
    _call = None

    def on_connection_close(self):
        super().on_connection_close()
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

        def started(call):
            self._call = call

        try:
            live = await check_key(gw.http, provider, keys[0], on_call=started)
        except UpstreamError:  # only an aborted check escapes as this: the client left
            raise ClientGone() from None
        self.write_json({"live": live})
