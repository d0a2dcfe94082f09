"""Active-speaker selection for lessons (pure: no I/O, time is passed in).

All-to-all audio in a 30-pupil lesson is ~43k packets/s, beyond one Python process, so
pupils' microphones are forwarded only for the N loudest speakers. Loudness comes from the
RFC 6464 ``ssrc-audio-level`` header extension every WebRTC sender attaches (0 = loudest,
127 = silence, in -dBov), so the SFU never decodes audio to measure it.

Selection is by slots, and a slot changes hands only when a newcomer is clearly louder
(``margin_db``) than the quietest current speaker: each change is a source switch that the
listener hears as a tiny glitch, so flapping between two similar voices must not happen.
"""

from __future__ import annotations

import attrs

SILENCE_DBOV = 127


@attrs.define
class _Level:
    loudness: float
    seen: float


@attrs.define
class ActiveSpeakers:
    """Keeps a smoothed loudness per speaker and assigns the loudest to ``slots``.

    ``smoothing`` is the weight of the newest observation (packets come every 20 ms, so
    0.1 averages over roughly the last 200 ms). A speaker not heard for ``stale_after``
    seconds (muted, left) is treated as silent. Speakers quieter than ``floor_dbov`` never
    take a slot, so background hiss does not occupy one.
    """

    slots: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    margin_db: float = 6.0
    smoothing: float = 0.1
    stale_after: float = 1.0
    floor_dbov: int = 70
    _levels: dict[str, _Level] = attrs.field(factory=dict)
    _assigned: list[str | None] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._assigned = [None] * self.slots

    def observe(self, speaker: str, level_dbov: int, now: float) -> None:
        """Record one packet's audio level (0 loudest .. 127 silence)."""
        loudness = float(SILENCE_DBOV - min(max(level_dbov, 0), SILENCE_DBOV))
        current = self._levels.get(speaker)
        if current is None or now - current.seen > self.stale_after:
            self._levels[speaker] = _Level(loudness, now)
        else:
            current.loudness += self.smoothing * (loudness - current.loudness)
            current.seen = now

    def forget(self, speaker: str) -> None:
        """Drop a speaker who left, freeing their slot at the next :meth:`select`."""
        self._levels.pop(speaker, None)

    def loudness(self, speaker: str, now: float) -> float:
        """Smoothed loudness in dB above silence (0 = silent or stale)."""
        level = self._levels.get(speaker)
        if level is None or now - level.seen > self.stale_after:
            return 0.0
        return level.loudness

    def select(self, now: float) -> tuple[str | None, ...]:
        """The speaker in each slot; a speaker keeps their slot index while selected."""
        threshold = SILENCE_DBOV - self.floor_dbov
        audible = {s for s in self._levels if self.loudness(s, now) > threshold}
        slots = [s if s in audible else None for s in self._assigned]
        waiting = sorted(
            (s for s in audible if s not in slots),
            key=lambda s: (-self.loudness(s, now), s),
        )
        for candidate in waiting:
            if None in slots:
                slots[slots.index(None)] = candidate
                continue
            quietest = min(range(len(slots)), key=lambda i: self.loudness(slots[i] or "", now))
            held = slots[quietest] or ""
            if self.loudness(candidate, now) - self.loudness(held, now) < self.margin_db:
                break
            slots[quietest] = candidate
        self._assigned = slots
        return tuple(slots)
