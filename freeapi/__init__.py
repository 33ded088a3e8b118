"""freeapi: one OpenAI-compatible endpoint in front of DeepSeek and its sibling vendors."""

__version__ = "0.1.0"

import pluggy

# Plugins decorate their hook functions with this: `@freeapi.hookimpl`.
hookimpl = pluggy.HookimplMarker("freeapi")
