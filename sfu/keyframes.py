"""Whether an RTP packet starts a keyframe (pure), from the codec's payload header alone.

A subscriber whose video outlet gets a new source (it just subscribed, or a publisher it was
not yet fed appeared) cannot decode anything before that source's next keyframe: forwarding
the frames in between only makes its decoder fail and, in a browser, freezes or smears the
picture. So such an outlet waits for the first packet of a keyframe (and asks the publisher
for one), and forwards from there. Only the payload descriptor is read, never the media.
"""

from __future__ import annotations

_H264_IDR, _H264_SPS = 5, 7
_H264_STAP_A, _H264_FU_A = 24, 28


def starts_keyframe(mime_type: str, payload: bytes) -> bool:
    """True if `payload` is the first packet of a keyframe; True for codecs not known here
    (nothing is held back that we cannot judge)."""
    codec = mime_type.lower()
    if codec == "video/vp8":
        return _vp8_starts_keyframe(payload)
    if codec == "video/h264":
        return _h264_starts_keyframe(payload)
    return True


def _vp8_starts_keyframe(payload: bytes) -> bool:
    """RFC 7741 §4.2-4.3: the first packet of a partition 0 whose P bit is 0."""
    if not payload:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # S: start of a partition; PID: partition 0
        return False
    offset = 1
    if first & 0x80:  # X: extended control bits follow
        if len(payload) <= offset:
            return False
        extended = payload[offset]
        offset += 1
        if extended & 0x80:  # I: a picture ID of 7 or 15 bits
            if len(payload) <= offset:
                return False
            offset += 2 if payload[offset] & 0x80 else 1
        if extended & 0x40:  # L: TL0PICIDX
            offset += 1
        if extended & 0x30:  # T or K: TID/Y/KEYIDX
            offset += 1
    return len(payload) > offset and not payload[offset] & 0x01


def _h264_starts_keyframe(payload: bytes) -> bool:
    """RFC 6184 §5.6-5.8: an IDR slice or the SPS before it, alone, aggregated or fragmented."""
    if not payload:
        return False
    kind = payload[0] & 0x1F
    if kind == _H264_STAP_A:
        offset = 1
        while offset + 2 < len(payload):
            size = int.from_bytes(payload[offset : offset + 2], "big")
            if payload[offset + 2] & 0x1F in (_H264_IDR, _H264_SPS):
                return True
            offset += 2 + size
        return False
    if kind == _H264_FU_A:
        return len(payload) > 1 and bool(payload[1] & 0x80) and payload[1] & 0x1F == _H264_IDR
    return kind in (_H264_IDR, _H264_SPS)
