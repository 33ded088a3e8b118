"""An image's width and height read from its header, for vendors that document a largest
input resolution (StepFun's image edits: 4096x4096): refusing an image that is too large
before it is uploaded gives the caller a clear 400 instead of the vendor's. Only the
header is read (no decoder, no dependency); an image whose header cannot be read gives
None and is left to the vendor to judge."""

from __future__ import annotations

# JPEG's start-of-frame markers (ITU T.81 B.1.1.3): C0-CF except DHT (C4), JPG (C8), DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _u16be(b: bytes, i: int) -> int:
    return b[i] << 8 | b[i + 1]


def _u16le(b: bytes, i: int) -> int:
    return b[i] | b[i + 1] << 8


def _u24le(b: bytes, i: int) -> int:
    return b[i] | b[i + 1] << 8 | b[i + 2] << 16


def _jpeg(data: bytes) -> tuple[int, int] | None:
    i = 2  # after SOI
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        if marker in _SOF:  # length, precision, height, width
            return _u16be(data, i + 7), _u16be(data, i + 5)
        i += 2 + _u16be(data, i + 2)
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:  # canvas size minus one, 24 bits each
        return _u24le(data, 24) + 1, _u24le(data, 27) + 1
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:  # 14 bits each, minus one
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return _u16le(data, 26) & 0x3FFF, _u16le(data, 28) & 0x3FFF
    return None


def dimensions(data: bytes, media_type: str) -> tuple[int, int] | None:
    """(width, height) of a PNG, JPEG, WEBP, GIF or BMP (`media_type` as
    freeapi.modalities.image_edits.sniff gives it); None when it is not readable."""
    try:
        if media_type == "image/png" and data[12:16] == b"IHDR" and len(data) >= 24:
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if media_type == "image/jpeg":
            return _jpeg(data)
        if media_type == "image/webp":
            return _webp(data)
        if media_type == "image/gif" and len(data) >= 10:
            return _u16le(data, 6), _u16le(data, 8)
        if media_type == "image/bmp" and len(data) >= 26:
            height = int.from_bytes(data[22:26], "little", signed=True)  # < 0: top-down
            return int.from_bytes(data[18:22], "little", signed=True), abs(height)
    except IndexError:  # a header cut short
        return None
    return None
