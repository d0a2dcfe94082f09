"""Packet-level forwarding: the per-room media router.

Every forwarded packet's header is rewritten (:mod:`sfu.rewriting`) so that each subscriber
sender stays one continuous RTP stream whichever publisher feeds it.

Packets are forwarded one by one as they arrive: no jitter buffer, no decoding, no
re-encoding (see :mod:`sfu.aiortc_compat` for how aiortc is bent to allow that).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
from aiortc import MediaStreamTrack, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from sfu import aiortc_compat
from sfu.aiortc_compat import RtpPacket
from sfu.outlets import Background, Inbound, Outlet, Sent, add_outlet, answer, peer_connection
from sfu.room import ActiveSpeakers


@attrs.define(eq=False)
class _Source(Inbound):
    """One published track as it arrives at the SFU.

    ``participant`` is whose connection carries it (a publisher, or an edge's upstream);
    ``speaker`` is whose voice it is for active-speaker selection: the publisher, or for an
    upstream one of the origin's speaker slots.
    """

    speaker: str = ""


_Outlet = Outlet[_Source]


@attrs.define(eq=False)
class _Subscriber:
    """One subscriber connection; ``negotiating`` while an offer of ours awaits its answer."""

    pc: RTCPeerConnection
    video: list[_Outlet]
    speaker_slots: list[_Outlet]
    negotiating: bool = True
    #: Sources changed while negotiating: :meth:`MediaRouter.refresh` again after the answer.
    stale: bool = False


class MediaRouter:
    """Forwards one room's published tracks to its subscribers, packet by packet.

    Video from every publisher goes to each subscriber on an outlet of its own (in a lesson
    only the teacher publishes video); audio goes through ``speaker_slots`` senders per
    subscriber, fed by the loudest speakers (:class:`sfu.room.ActiveSpeakers`).

    A video source that appears after a subscriber connected takes an idle outlet if the
    subscriber has one (a publisher who left frees theirs), or a new one, which needs a new
    offer: :meth:`refresh` makes it, :meth:`accept_answer` completes it (renegotiation).

    An edge SFU feeds its router from the origin through :meth:`relay`: the origin's offer for
    the edge's subscription is answered here and its tracks become this room's sources.
    """

    def __init__(
        self,
        speaker_slots: int = 3,
        now: Callable[[], float] = time.monotonic,
        on_speakers: Callable[[tuple[str | None, ...]], None] = lambda slots: None,
        ice_servers: Callable[[str], list[RTCIceServer]] = lambda participant: [],
    ) -> None:
        self._now = now
        self._ice_servers = ice_servers  # TURN for the connection with a participant (sfu.turn)
        self._on_speakers = on_speakers  # told every change of who holds the speaker slots
        self._blocked: set[tuple[str, str]] = set()  # (participant, kind) a teacher stopped
        self._speakers = ActiveSpeakers(slots=speaker_slots)
        self._slots: tuple[str | None, ...] = (None,) * speaker_slots
        self._sources: list[_Source] = []
        self._audio_by_speaker: dict[str, _Source] = {}
        self._subscribers: dict[str, _Subscriber] = {}
        self._publishers: dict[str, RTCPeerConnection] = {}
        self._background = Background()  # keyframe requests from aiortc's RTCP handler
        # Which outlets each source feeds (by id), rebuilt after any change of who feeds what:
        # a packet then visits only its own outlets, not every subscriber's.
        self._routes: dict[int, list[_Outlet]] | None = None
        self.forward_seconds = 0.0
        self.forwarded_packets = 0
        self.received_packets = 0  # sfu.metrics: packets in
        self.received_bytes = 0
        self.forwarded_bytes = 0

    async def publish(
        self, participant: str, offer: RTCSessionDescription
    ) -> RTCSessionDescription:
        """Accept a publisher's offer; its tracks are tapped, never decoded.

        A publisher's second offer renegotiates the same connection (a track added, e.g.
        the camera the teacher allowed); its new tracks become sources like the first ones.
        """
        pc = self._publishers.get(participant)
        if pc is None:
            pc = self._publishers[participant] = peer_connection(self._ice_servers(participant))
            self._take_tracks(pc, participant, lambda mid: participant)
        return await answer(pc, offer)

    async def relay(self, upstream: str, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Answer an origin's (re)offer to this edge; every track it carries becomes a source.

        Each of the origin's speaker slots arrives as an audio track of its own and competes
        here as a speaker named after its m-line, with the audio level the origin forwards.
        """
        pc = self._publishers.get(upstream)
        if pc is None:
            pc = self._publishers[upstream] = peer_connection(self._ice_servers(upstream))
            self._take_tracks(pc, upstream, lambda mid: f"{upstream}/{mid}")
        return await answer(pc, offer)

    async def subscribe(self, participant: str) -> RTCSessionDescription:
        """Create the subscriber's connection and return the SFU's offer for it."""
        pc = peer_connection(self._ice_servers(participant))
        video = [
            self._add_outlet(pc, "video", source)
            for source in self._video_sources_for(participant)
        ]
        slots = [self._add_outlet(pc, "audio", None) for _ in self._slots]
        subscriber = self._subscribers[participant] = _Subscriber(pc, video, slots)
        self._routes = None
        self._assign_slots(subscriber)
        return await self._offer(subscriber)

    async def refresh(self, participant: str) -> RTCSessionDescription | None:
        """Feed a subscriber the video sources it lacks; a new offer if that needs one.

        None when nothing needs negotiating, or when an offer is already out (then the
        subscriber is refreshed again once it answers).
        """
        subscriber = self._subscribers.get(participant)
        if subscriber is None:
            return None
        if subscriber.negotiating:
            subscriber.stale = True
            return None
        fed = {id(outlet.source) for outlet in subscriber.video}
        added = False
        for source in self._video_sources_for(participant):
            if id(source) in fed:
                continue
            idle = next((o for o in subscriber.video if o.source is None), None)
            self._routes = None
            if idle is not None:
                idle.feed(source)
                await source.request_keyframe(self._now())
            else:
                subscriber.video.append(self._add_outlet(subscriber.pc, "video", source))
                added = True
        return await self._offer(subscriber) if added else None

    async def accept_answer(self, participant: str, answer: RTCSessionDescription) -> bool:
        """Complete a (re)negotiation; True if sources changed meanwhile (:meth:`refresh`)."""
        subscriber = self._subscribers[participant]
        if not subscriber.negotiating:
            raise KeyError(participant)  # an answer nobody asked for
        await subscriber.pc.setRemoteDescription(answer)
        subscriber.negotiating = False
        for outlet in subscriber.video:
            if outlet.source is not None:
                await outlet.source.request_keyframe(self._now())
        stale, subscriber.stale = subscriber.stale, False
        return stale

    def subscribers(self) -> list[str]:
        return list(self._subscribers)

    @property
    def speakers(self) -> tuple[str | None, ...]:
        """Who holds each speaker slot now (None: a free slot)."""
        return self._slots

    def block(self, participant: str, kind: str, blocked: bool) -> None:
        """Stop (or resume) forwarding one participant's audio or video to anyone.

        A blocked microphone also gives up its speaker slot at once, so the slot goes to
        the next loudest voice instead of carrying silence.
        """
        key = (participant, kind)
        if not blocked:
            self._blocked.discard(key)
            return
        self._blocked.add(key)
        for source in self._sources:
            if source.participant == participant and source.kind == kind:
                self._speakers.forget(source.speaker)

    async def unsubscribe(self, participant: str) -> None:
        """Close a participant's subscriber connection (before re-subscribing, or on leave)."""
        subscriber = self._subscribers.pop(participant, None)
        self._routes = None
        if subscriber is not None:
            await subscriber.pc.close()

    async def leave(self, participant: str) -> None:
        """Drop everything of one participant (or upstream); the outlets it fed go idle.

        The outlets stay negotiated (renegotiating every subscriber when one pupil leaves
        would glitch everyone): a speaker slot is refilled at the next active-speaker change,
        a video outlet by the next video source (:meth:`refresh`).
        """
        await self.unsubscribe(participant)
        publisher = self._publishers.pop(participant, None)
        gone = [s for s in self._sources if s.participant == participant]
        self._sources = [s for s in self._sources if s.participant != participant]
        for source in gone:
            if self._audio_by_speaker.get(source.speaker) is source:
                del self._audio_by_speaker[source.speaker]
            self._speakers.forget(source.speaker)
        for subscriber in self._subscribers.values():
            for outlet in (*subscriber.video, *subscriber.speaker_slots):
                if outlet.source is not None and outlet.source.participant == participant:
                    outlet.feed(None)
        self._routes = None
        if publisher is not None:
            await publisher.close()

    @property
    def stream_count(self) -> int:
        """Published tracks being received now (sfu.metrics)."""
        return len(self._sources)

    def is_publishing(self, participant: str) -> bool:
        return participant in self._publishers

    async def close(self) -> None:
        for pc in [*self._publishers.values(), *(s.pc for s in self._subscribers.values())]:
            await pc.close()

    def _take_tracks(
        self, pc: RTCPeerConnection, participant: str, speaker: Callable[[str | None], str]
    ) -> None:
        """Make every track ``pc`` receives a source, tapped before any decoder exists."""

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
            receiver = transceiver.receiver
            source = _Source(participant, track.kind, receiver, speaker=speaker(transceiver.mid))
            self._sources.append(source)
            if track.kind == "audio":
                self._audio_by_speaker[source.speaker] = source

            async def on_packet(packet: RtpPacket) -> None:
                await self._forward(source, packet)

            aiortc_compat.tap_receiver(receiver, on_packet)

    @staticmethod
    async def _offer(subscriber: _Subscriber) -> RTCSessionDescription:
        subscriber.negotiating = True
        await subscriber.pc.setLocalDescription(await subscriber.pc.createOffer())
        return subscriber.pc.localDescription

    def _video_sources_for(self, participant: str) -> list[_Source]:
        return [s for s in self._sources if s.kind == "video" and s.participant != participant]

    def _add_outlet(self, pc: RTCPeerConnection, kind: str, source: _Source | None) -> _Outlet:
        def on_keyframe_request(outlet: _Outlet) -> None:
            if outlet.source is not None:
                self._background.spawn(outlet.source.request_keyframe(self._now()))

        return add_outlet(pc, kind, source, on_keyframe_request)

    def _assign_slots(self, subscriber: _Subscriber) -> None:
        for outlet, speaker in zip(subscriber.speaker_slots, self._slots, strict=True):
            outlet.feed(self._audio_by_speaker.get(speaker) if speaker else None)
        self._routes = None

    def _outlets_fed_by(self, source: _Source) -> list[_Outlet]:
        if self._routes is None:
            routes: dict[int, list[_Outlet]] = {}
            for name, subscriber in self._subscribers.items():
                for outlet in (*subscriber.video, *subscriber.speaker_slots):
                    # Nobody gets their own media back (a loud pupil's slot is their own).
                    if outlet.source is not None and outlet.source.participant != name:
                        routes.setdefault(id(outlet.source), []).append(outlet)
            self._routes = routes
        return self._routes.get(id(source), [])

    async def _forward(self, source: _Source, packet: RtpPacket) -> None:
        started = time.perf_counter()
        self.received_packets += 1
        self.received_bytes += len(packet.payload)
        now = self._now()
        source.media_ssrc = packet.ssrc
        if (source.participant, source.kind) in self._blocked:
            return
        if source.kind == "audio":
            level = aiortc_compat.audio_level(packet)
            if level is not None:
                self._speakers.observe(source.speaker, level, now)
            slots = self._speakers.select(now)
            if slots != self._slots:
                self._slots = slots
                for subscriber in self._subscribers.values():
                    self._assign_slots(subscriber)
                self._on_speakers(slots)
        ntp_time = aiortc_compat.current_ntp_time()
        wire: aiortc_compat.WireCache = {}
        for outlet in self._outlets_fed_by(source):
            sent = outlet.send(packet, now, ntp_time, wire)
            if sent is Sent.SENT:
                self.forwarded_packets += 1
                self.forwarded_bytes += len(packet.payload)
            elif sent is Sent.WAITING_FOR_KEYFRAME:
                await source.request_keyframe(now)  # at most one per interval
        self.forward_seconds += time.perf_counter() - started
