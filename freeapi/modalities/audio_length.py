"""How long an uploaded audio file plays, where that is cheap to know: a WAV file's
header says it (RIFF: the `fmt ` chunk's byte rate, the `data` chunk's size). Used to
price a transcription per second when the vendor's answer does not say (GLM-ASR and
StepFun's step-asr answer with the text only). Other formats (mp3, ogg, ...) would need
their frames decoded: they stay unpriced per second."""

from __future__ import annotations

import struct

_MAX_CHUNKS = 64  # a real WAV has a handful; a hostile one cannot make us walk far


def wav_seconds(data: bytes) -> float | None:
    """Seconds of PCM audio in a WAV file, or None when `data` is not one we can read."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, None
    for _ in range(_MAX_CHUNKS):
        if pos + 8 > len(data):
            return None
        kind, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if kind == b"fmt " and size >= 16 and body + 16 <= len(data):
            byte_rate = struct.unpack_from("<I", data, body + 8)[0]
        elif kind == b"data":
            if not byte_rate:
                return None  # no `fmt ` before the samples: not a WAV we can time
            # A streamed WAV may leave the size unset (0 or 0xFFFFFFFF): what is there.
            size = min(size, len(data) - body) if size not in (0, 0xFFFFFFFF) \
                else len(data) - body
            return size / byte_rate if size > 0 else None
        pos = body + size + (size & 1)  # chunks are padded to an even length
    return None
