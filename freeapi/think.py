"""Reasoning that arrives inline as `<think>...</think>` in `content` (MiniMax's M-series,
many local servers), moved to `reasoning_content` where `-fold`/`-silent` and clients expect
it. Pure; providers use it from their chunk normalizers."""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def _partial_tail(text: str, tag: str) -> int:
    """Length of the longest end of `text` that could be the start of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkSplitter:
    """One choice's content stream -> (reasoning, content) pieces.

    A tag may be split across chunks, so a possible tag start at the end of a piece is held
    back until the next one. The newlines the model puts just inside and just after the
    block are dropped, as DeepSeek's separate field has none.
    """

    def __init__(self):
        self.inside = False
        self.pending = ""
        self._trim_reasoning = False  # just after <think>
        self._trim_content = False    # just after </think>

    def feed(self, text: str) -> tuple[str, str]:
        buf, self.pending = self.pending + text, ""
        reasoning, content = [], []
        while buf:
            if self.inside:
                i = buf.find(CLOSE)
                if i < 0:
                    keep = _partial_tail(buf, CLOSE)
                    body = buf[:len(buf) - keep]
                    kept = body.rstrip("\n")  # may be the newline before </think>
                    self.pending = body[len(kept):] + buf[len(buf) - keep:]
                    reasoning.append(kept)
                    break
                reasoning.append(buf[:i].rstrip("\n"))
                buf = buf[i + len(CLOSE):]
                self.inside, self._trim_content = False, True
            else:
                i = buf.find(OPEN)
                if i < 0:
                    keep = _partial_tail(buf, OPEN)
                    content.append(buf[:len(buf) - keep])
                    self.pending = buf[len(buf) - keep:]
                    break
                content.append(buf[:i])
                buf = buf[i + len(OPEN):]
                self.inside, self._trim_reasoning = True, True
        return self._trim("_trim_reasoning", reasoning), self._trim("_trim_content", content)

    def _trim(self, flag: str, parts: list[str]) -> str:
        text = "".join(parts)
        if getattr(self, flag) and text:
            text = text.lstrip("\n")
            setattr(self, flag, not text)
        return text

    def flush(self) -> tuple[str, str]:
        """What is held back when the stream ends: an unfinished tag start is content."""
        pending, self.pending = self.pending, ""
        if self.inside:
            return "", ""
        return "", pending


def split_message(message: dict) -> dict:
    """A non-stream message with inline reasoning -> `reasoning_content` + `content`."""
    content = message.get("content")
    if isinstance(content, str) and OPEN in content:
        splitter = ThinkSplitter()
        reasoning, text = splitter.feed(content)
        _, tail = splitter.flush()
        if reasoning:
            message["reasoning_content"] = (message.get("reasoning_content") or "") + reasoning
        message["content"] = text + tail
    return message


class ChunkThinkSplitter:
    """The per-stream state for splitting inline reasoning out of chunk deltas."""

    def __init__(self):
        self._choices: dict[int, ThinkSplitter] = {}

    def __call__(self, chunk: dict) -> dict:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            splitter = self._choices.setdefault(choice.get("index", 0), ThinkSplitter())
            had_text = isinstance(delta.get("content"), str)
            reasoning, text = splitter.feed(delta["content"]) if had_text else ("", "")
            if choice.get("finish_reason"):
                r, t = splitter.flush()
                reasoning, text = reasoning + r, text + t
            if reasoning:
                delta["reasoning_content"] = (delta.get("reasoning_content") or "") + reasoning
            if had_text or text:
                delta["content"] = text
        return chunk
