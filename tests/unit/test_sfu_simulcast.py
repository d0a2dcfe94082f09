"""Simulcast offers answered with their largest layer (sfu.simulcast), on SDP as LiveKit's JS
SDK in Chromium offers it and as aiortc answers it."""

from __future__ import annotations

from sfu.simulcast import RID_EXTENSION, TopLayer, accept_top_layer, top_layers

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=mid:0",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        f"a=extmap:10 {RID_EXTENSION}",
        "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        "a=mid:1",
        "a=rid:q send",
        "a=rid:h send",
        "a=rid:f send",
        "a=simulcast:send q;h;f",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        f"a=extmap:10 {RID_EXTENSION}",
        "a=mid:2",
        "a=msid:- screen",
        "",
    ]
)
ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 3 4 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "m=audio 5000 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "m=video 5000 UDP/TLS/RTP/SAVPF 96 97",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=mid:1",
        "a=recvonly",
        "m=video 5000 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:2",
        "a=recvonly",
        "",
    ]
)


def test_the_largest_layer_of_each_simulcast_m_line() -> None:
    assert top_layers(OFFER) == {"1": TopLayer("f", 10)}


def test_paused_and_alternative_rids() -> None:
    paused = OFFER.replace("a=simulcast:send q;h;f", "a=simulcast:send q;h,x;~f")
    assert top_layers(paused) == {"1": TopLayer("h", 10)}
    assert top_layers(OFFER.replace("a=simulcast:send q;h;f", "a=simulcast:send ~q")) == {}


def test_no_rid_extension_no_layer() -> None:
    # Simulcast without the RID extension cannot be answered (the browser refuses that too).
    assert top_layers(OFFER.replace(f"a=extmap:10 {RID_EXTENSION}\r\n", "")) == {}


def test_the_answer_asks_for_that_layer_alone() -> None:
    answered = accept_top_layer(ANSWER, top_layers(OFFER))
    video = answered.split("m=video")[1]
    assert video.splitlines()[1:6] == [
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=mid:1",
        f"a=extmap:10 {RID_EXTENSION}",
        "a=rid:f recv",
        "a=simulcast:recv f",
    ]
    # Everything else as it was, line endings included; other m-lines untouched.
    assert answered.count("\r\n") == ANSWER.count("\r\n") + 3 and "\n\n" not in answered
    assert answered.split("m=video")[2] == ANSWER.split("m=video")[2]
    assert accept_top_layer(ANSWER, {}) == ANSWER
