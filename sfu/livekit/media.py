"""Media for LiveKit clients: one forwarded stream per published track.

LiveKit clients bind each m-line of their subscriber connection to one participant's track for
good (its msid, `PA_x|TR_y`), and Element Call's E2EE keys to that participant: so unlike our
own call page's speaker slots (:mod:`sfu.forwarding`), every published track has its own outlet
in every subscriber's connection. That stays cheap where it matters: a track is forwarded only
when its publisher sends (Opus DTX makes a silent microphone a packet every 400 ms), and
packets are forwarded as they come, never decoded (:mod:`sfu.aiortc_compat`).

Each participant has two peer connections (LiveKit's protocol version 0):

* the **publisher** connection, offered by the client: an m-line is published when the client
  announced its track first (AddTrack, answered with a `TR_` ID) and the grant allowed it; the
  m-line names the announced track in its msid. Media on any other m-line is tapped and dropped.
  A simulcast camera is asked for its largest layer only (`sfu.simulcast`);
* the **subscriber** connection, offered by the SFU whenever tracks to receive were added; one
  offer at a time, and changes made while one is out go into the next.

On an edge (`sfu.livekit.edge`) the room's tracks come in on one more connection, offered by
the origin: each of its m-lines is a track of a participant there, published here under the
same IDs.

Audio levels (RFC 6464, read from the header, never from the audio) feed the active-speaker
detection, whose changes are reported as participant ID to level.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping

import attrs
from aiortc import MediaStreamTrack, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcicetransport import RTCIceCandidate
from aiortc.sdp import SessionDescription
from livekit.protocol import models

from sfu import aiortc_compat
from sfu.aiortc_compat import RtpPacket
from sfu.livekit import wire
from sfu.outlets import Background, Inbound, Outlet, Sent, add_outlet, answer, peer_connection
from sfu.room import SILENCE_DBOV, ActiveSpeakers
from sfu.simulcast import accept_top_layer, top_layers

#: An edge's connection to its origin, kept among the publishers (never a participant ID:
#: those start with `PA_`).
ORIGIN = "origin"
#: How many voices SpeakersChanged reports at once: the clients highlight those tiles.
ACTIVE_SPEAKERS = 3
#: What a publisher's video may use (REMB), LiveKit's own preset for 720p: what a teacher's
#: camera or screen needs at full resolution, in a school network.
VIDEO_BITRATE = 2_500_000


@attrs.define(eq=False)
class _Track(Inbound):
    """A published track: what it is (its TrackInfo) and the outlets it feeds."""

    info: models.TrackInfo = attrs.Factory(models.TrackInfo)
    outlets: dict[str, Outlet[_Track]] = attrs.Factory(dict)  # by subscriber
    blocked: bool = False  # the teacher muted it, or took the camera back


@attrs.define(eq=False)
class _Subscriber:
    """A participant's subscriber connection, offered by the SFU."""

    pc: RTCPeerConnection
    outlets: dict[str, Outlet[_Track]] = attrs.Factory(dict)  # by track ID
    offered: int = 0  # the ID of our last offer; the client's answer echoes it
    negotiating: bool = False
    stale: bool = False  # outlets were added since the last offer
    pending_candidates: list[RTCIceCandidate] = attrs.Factory(list)


@attrs.define(eq=False)
class _Publisher:
    """A participant's publisher connection, offered by the client (or an edge's connection
    to its origin, offered by the origin)."""

    pc: RTCPeerConnection
    #: What each offered m-line carries, by mid: whose track (the participant's own, or on an
    #: edge's connection to its origin, a participant's there) and which.
    tracks: dict[str, tuple[str, models.TrackInfo]] = attrs.Factory(dict)
    pending_candidates: list[RTCIceCandidate] = attrs.Factory(list)


def announced_tracks(
    sdp: str, expected: Mapping[str, models.TrackInfo]
) -> dict[str, models.TrackInfo]:
    """The offered m-lines (by mid) that carry a track announced with AddTrack.

    The client names the track in the m-line's msid (`a=msid:<stream> <cid>`, the cid of its
    AddTrack); an m-line of another kind than the announced track is no match.
    """
    found: dict[str, models.TrackInfo] = {}
    for media in SessionDescription.parse(sdp).media:
        mid = media.rtp.muxId
        if not mid or not media.msid:
            continue
        cid = media.msid.split()[-1]
        info = expected.get(cid)
        if info is not None and wire.kind_of(info) == media.kind:
            found[mid] = info
    return found


def speaker_level(loudness_db: float) -> float:
    """A loudness in dB above silence (`ActiveSpeakers.loudness`) as LiveKit's 0..1 level."""
    if loudness_db <= 0:
        return 0.0
    return min(1.0, math.pow(10, -(SILENCE_DBOV - loudness_db) / 20))


class TrackRouter:
    """The media of one LiveKit room: publishers' tracks, subscribers' outlets, speakers."""

    def __init__(
        self,
        ice_servers: Callable[[str], list[RTCIceServer]],
        on_speakers: Callable[[dict[str, float]], None],
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ice_servers = ice_servers  # TURN for the connections with one participant
        self._on_speakers = on_speakers  # told participant ID -> level at every change
        self._now = now
        self._publishers: dict[str, _Publisher] = {}
        self._subscribers: dict[str, _Subscriber] = {}
        self._tracks: dict[str, _Track] = {}  # by track ID
        self._speakers = ActiveSpeakers(slots=ACTIVE_SPEAKERS)
        self._speaking: tuple[str | None, ...] = (None,) * ACTIVE_SPEAKERS
        self._background = Background()
        # sfu.metrics: what this room's media did (the server adds them up at each scrape)
        self.forwarded_packets = 0
        self.received_packets = 0
        self.forwarded_bytes = 0
        self.received_bytes = 0
        self.forward_seconds = 0.0

    # -- publishing ---------------------------------------------------------------------------

    async def answer_publisher(
        self, participant: str, sdp: str, expected: Mapping[str, models.TrackInfo]
    ) -> tuple[str, list[models.TrackInfo]]:
        """Answer the client's offer on its publisher connection.

        ``expected`` are its announced, allowed tracks not yet offered, by cid. Returns the
        answer and the tracks this offer published (each with its mid).
        """
        publisher = self._publisher(participant, self._ice_servers(participant))
        offered = {
            mid: info
            for mid, info in announced_tracks(sdp, expected).items()
            if mid not in publisher.tracks
        }
        for mid, info in offered.items():
            info.mid = mid
            publisher.tracks[mid] = (participant, info)
        answered = await self._answer(publisher, sdp)
        return accept_top_layer(answered, top_layers(sdp)), list(offered.values())

    async def answer_origin(self, sdp: str) -> str:
        """An edge: answer its origin's offer of the room's tracks (`sfu.livekit.edge`).

        Each offered m-line is one participant's track at the origin (its msid,
        `PA_x|TR_y`): it becomes a published track here under the same IDs, so that the
        edge's viewers see the participants and tracks the origin told of, and E2EE keys
        (bound to the participant) still fit.
        """
        origin = self._publisher(ORIGIN, [])  # the origin is reached directly
        for media in SessionDescription.parse(sdp).media:
            stream = wire.stream_of(media.msid or "")
            if media.rtp.muxId and stream is not None:
                participant, track_sid = stream
                origin.tracks[media.rtp.muxId] = (participant, models.TrackInfo(sid=track_sid))
        return await self._answer(origin, sdp)

    def _publisher(self, key: str, ice_servers: list[RTCIceServer]) -> _Publisher:
        """The connection that brings tracks in (a client's publisher connection, or an
        edge's from its origin), made at its first offer."""
        publisher = self._publishers.get(key)
        if publisher is None:
            publisher = self._publishers[key] = _Publisher(peer_connection(ice_servers))
            self._take_tracks(publisher)
        return publisher

    async def _answer(self, publisher: _Publisher, sdp: str) -> str:
        description = await answer(publisher.pc, RTCSessionDescription(sdp=sdp, type="offer"))
        for transceiver in publisher.pc.getTransceivers():
            aiortc_compat.route_rtp_by_mid(transceiver.receiver.transport)
        await _add_candidates(publisher.pc, publisher.pending_candidates)
        return description.sdp

    def _take_tracks(self, publisher: _Publisher) -> None:
        """Tap every track the connection receives: no decoder is ever made, and packets of
        an m-line that carries no published track (no allowed AddTrack announced it) are
        dropped."""
        pc = publisher.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
            carried = publisher.tracks.get(transceiver.mid or "")
            if carried is None:
                aiortc_compat.tap_receiver(transceiver.receiver, _drop)
                return
            participant, info = carried
            published = _Track(participant, track.kind, transceiver.receiver, info=info)
            self._tracks[info.sid] = published

            async def on_packet(packet: RtpPacket) -> None:
                await self._forward(published, packet)

            aiortc_compat.tap_receiver(transceiver.receiver, on_packet)
            aiortc_compat.fix_bitrate_estimate(transceiver.receiver, VIDEO_BITRATE)

    def track_sids(self) -> list[str]:
        """Every track here: what a viewer joining an edge subscribes to."""
        return list(self._tracks)

    # -- subscribing --------------------------------------------------------------------------

    def subscribe(self, participant: str, tracks: Iterable[str]) -> None:
        """Give ``participant`` an outlet for each of these tracks it lacks (never its own);
        :meth:`next_offer` then offers them."""
        subscriber = self._subscribers.get(participant)
        for track_sid in tracks:
            track = self._tracks.get(track_sid)
            if track is None or track.participant == participant:
                continue
            if subscriber is None:
                pc = peer_connection(self._ice_servers(participant))
                subscriber = self._subscribers[participant] = _Subscriber(pc)
            if track_sid in subscriber.outlets:
                continue
            outlet = add_outlet(subscriber.pc, track.kind, track, self._keyframe_wanted)
            aiortc_compat.set_msid(
                outlet.forwarder.sender, *wire.stream_ids(track.participant, track_sid)
            )
            subscriber.outlets[track_sid] = track.outlets[participant] = outlet
            subscriber.stale = True

    async def next_offer(self, participant: str) -> tuple[str, int] | None:
        """Our offer for the outlets added since the last one, with its ID; None when there
        is nothing new or an offer is still out (then it comes after that answer)."""
        subscriber = self._subscribers.get(participant)
        if subscriber is None or subscriber.negotiating or not subscriber.stale:
            return None
        subscriber.stale = False
        subscriber.negotiating = True
        subscriber.offered += 1
        await subscriber.pc.setLocalDescription(await subscriber.pc.createOffer())
        return subscriber.pc.localDescription.sdp, subscriber.offered

    async def accept_answer(self, participant: str, sdp: str, offer_id: int) -> None:
        """The client's answer to our last offer; one to an older offer is ignored.

        The JS SDK echoes the offer's ID; the Rust one (Element X, the Python SDK) sends 0,
        which can only mean the offer that is out, since we make one at a time.
        """
        subscriber = self._subscribers.get(participant)
        if subscriber is None or not subscriber.negotiating:
            return
        if offer_id not in (0, subscriber.offered):
            return
        await subscriber.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        subscriber.negotiating = False
        await _add_candidates(subscriber.pc, subscriber.pending_candidates)
        # Every new outlet waits for a keyframe: ask now rather than at the next interval.
        for outlet in subscriber.outlets.values():
            if outlet.awaiting_keyframe and outlet.source is not None:
                await outlet.source.request_keyframe(self._now())

    async def trickle(
        self, participant: str, subscriber: bool, candidate: RTCIceCandidate
    ) -> None:
        """A candidate of the client for one of its two connections; kept until that
        connection has the client's description."""
        connection = (self._subscribers if subscriber else self._publishers).get(participant)
        if connection is None:
            return
        if connection.pc.remoteDescription is None:
            connection.pending_candidates.append(candidate)
        else:
            await connection.pc.addIceCandidate(candidate)

    def _keyframe_wanted(self, outlet: Outlet[_Track]) -> None:
        if outlet.source is not None:
            self._background.spawn(outlet.source.request_keyframe(self._now()))

    def block(self, track_sid: str, blocked: bool) -> None:
        """Stop (or resume) forwarding one track to anyone, whatever its publisher sends: a
        teacher's mute holds even against a client that ignores it."""
        track = self._tracks.get(track_sid)
        if track is None:
            return
        track.blocked = blocked
        if blocked and track.kind == "audio":
            self._speakers.forget(track.participant)
        for outlet in track.outlets.values():
            outlet.feed(track)  # a video outlet resumes at the next keyframe

    # -- leaving ------------------------------------------------------------------------------

    async def leave(self, participant: str) -> None:
        """Drop a participant's connections and tracks; outlets they fed stop for good (the
        clients drop the tracks on the participant's DISCONNECTED update)."""
        for track_sid, track in list(self._tracks.items()):
            if track.participant == participant:
                del self._tracks[track_sid]
                for subscriber_sid in track.outlets:
                    self._subscribers[subscriber_sid].outlets.pop(track_sid, None)
        for track in self._tracks.values():
            track.outlets.pop(participant, None)
        self._speakers.forget(participant)
        publisher = self._publishers.pop(participant, None)
        subscriber = self._subscribers.pop(participant, None)
        for connection in (publisher, subscriber):
            if connection is not None:
                await connection.pc.close()

    async def close(self) -> None:
        for participant in {*self._publishers, *self._subscribers}:
            await self.leave(participant)

    # -- forwarding ---------------------------------------------------------------------------

    async def _forward(self, track: _Track, packet: RtpPacket) -> None:
        started = time.perf_counter()
        self.received_packets += 1
        self.received_bytes += len(packet.payload)
        now = self._now()
        track.media_ssrc = packet.ssrc
        if track.blocked:
            return
        if track.kind == "audio":
            self._hear(track.participant, packet, now)
        ntp_time = aiortc_compat.current_ntp_time()
        shared: aiortc_compat.WireCache = {}
        for outlet in track.outlets.values():
            sent = outlet.send(packet, now, ntp_time, shared)
            if sent is Sent.SENT:
                self.forwarded_packets += 1
                self.forwarded_bytes += len(packet.payload)
            elif sent is Sent.WAITING_FOR_KEYFRAME:
                await track.request_keyframe(now)  # at most one per interval
        self.forward_seconds += time.perf_counter() - started

    @property
    def stream_count(self) -> int:
        """Published tracks being received now (sfu.metrics)."""
        return len(self._tracks)

    def _hear(self, participant: str, packet: RtpPacket, now: float) -> None:
        level = aiortc_compat.audio_level(packet)
        if level is not None:
            self._speakers.observe(participant, level, now)
        speaking = self._speakers.select(now)
        if speaking == self._speaking:
            return
        before = {sid for sid in self._speaking if sid is not None}
        now_speaking = {sid for sid in speaking if sid is not None}
        self._speaking = speaking
        changes = {sid: speaker_level(self._speakers.loudness(sid, now)) for sid in now_speaking}
        changes.update(dict.fromkeys(before - now_speaking, 0.0))
        self._on_speakers(changes)


async def _add_candidates(pc: RTCPeerConnection, pending: list[RTCIceCandidate]) -> None:
    for candidate in pending:
        await pc.addIceCandidate(candidate)
    pending.clear()


async def _drop(packet: RtpPacket) -> None:
    """Media of an m-line nobody announced (or the grant refused) goes nowhere."""
