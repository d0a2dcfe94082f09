"""Simulcast offers answered with their top layer only (pure: SDP text in, SDP text out).

LiveKit's clients (Element Call among them) publish a camera as simulcast: three encodings of
rising size, `a=simulcast:send q;h;f` with a RID each (`a=rid:q send`). aiortc knows neither
RIDs nor simulcast, so its answer says nothing of them, and a browser then keeps only its first
encoding: the quarter-size one (a 1280x720 camera arrives 320 wide). This SFU forwards without
choosing layers per subscriber, so it asks for the one layer everyone should get, the largest:
the answer says `a=simulcast:recv f` with `a=rid:f recv` and the RID header extension the
offer named, and the browser sends that encoding alone. (Its packets carry no SSRC announced
in the offer; `aiortc_compat.route_rtp_by_mid` routes them by their MID.)
"""

from __future__ import annotations

import re

import attrs

RID_EXTENSION = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
_MID = re.compile(r"^a=mid:(\S+)", re.MULTILINE)
_SIMULCAST_SEND = re.compile(r"^a=simulcast:send (\S+)", re.MULTILINE)
_RID_EXTMAP = re.compile(rf"^a=extmap:(\d+)(?:/\w+)? {re.escape(RID_EXTENSION)}\s*$", re.MULTILINE)


@attrs.frozen
class TopLayer:
    """The layer asked for on one m-line: its RID, and the RID extension's ID in the offer."""

    rid: str
    extension_id: int


def _sections(sdp: str) -> list[str]:
    """The session part and then each m-section, as written (joined back, the same text)."""
    return re.split(r"(?=^m=)", sdp, flags=re.MULTILINE)


def top_layers(offer: str) -> dict[str, TopLayer]:
    """By mid, the largest layer of each simulcast m-line of an offer.

    The simulcast line lists RIDs in the order of the sender's encodings; LiveKit's clients
    order them by rising resolution (`q;h;f`), so the last is the largest. Alternatives
    (`h,f`) count by their first RID; a paused RID (`~f`) is skipped.
    """
    layers: dict[str, TopLayer] = {}
    for section in _sections(offer)[1:]:
        mid, simulcast, extension = (
            _MID.search(section),
            _SIMULCAST_SEND.search(section),
            _RID_EXTMAP.search(section),
        )
        if mid is None or simulcast is None or extension is None:
            continue
        rids = [group.split(",")[0] for group in simulcast.group(1).split(";")]
        active = [rid for rid in rids if rid and not rid.startswith("~")]
        if active:
            layers[mid.group(1)] = TopLayer(active[-1], int(extension.group(1)))
    return layers


def accept_top_layer(answer: str, layers: dict[str, TopLayer]) -> str:
    """The answer with each simulcast m-line receiving its top layer only."""
    if not layers:
        return answer
    newline = "\r\n" if "\r\n" in answer else "\n"  # SDP's own; tolerant of bare ones
    sections = _sections(answer)
    for index, section in enumerate(sections[1:], start=1):
        mid = _MID.search(section)
        layer = layers.get(mid.group(1)) if mid else None
        if mid is None or layer is None:
            continue
        lines = [
            f"a=extmap:{layer.extension_id} {RID_EXTENSION}",
            f"a=rid:{layer.rid} recv",
            f"a=simulcast:recv {layer.rid}",
        ]
        # After the mid line, whole lines: the answer keeps its own line endings.
        after = section.find("\n", mid.end()) + 1 or len(section)
        added = "".join(line + newline for line in lines)
        sections[index] = section[:after] + added + section[after:]
    return "".join(sections)
