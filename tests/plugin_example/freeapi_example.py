"""An example freeapi provider plugin: an OpenAI-compatible vendor with one quirk.

Config:  providers: {ex: {type: example, base_url: "https://api.example.com/v1"}}
"""

from freeapi import hookimpl
from freeapi.provider import Provider


class Example(Provider):
    type_name = "example"
    enabled_by_default = False  # it has no default address
    models = ("example-chat",)
    aliases = {"example": "example-chat"}
    owned_by = "example"
    key_required = False

    def prepare_body(self, body):
        # The quirk: this vendor wants to be told who is calling.
        return dict(body, user=body.get("user") or "freeapi")


@hookimpl
def register_providers(register):
    register(Example)
