"""ActiveSpeakers: N loudest from RFC 6464 levels, with hysteresis and staleness."""

from __future__ import annotations

import pytest

from sfu.room import ActiveSpeakers


def feed(speakers: ActiveSpeakers, levels: dict[str, int], start: float, seconds: float) -> float:
    """Feed 20 ms packets at constant levels; return the time after the last one."""
    now = start
    for _ in range(round(seconds / 0.02)):
        for name, level in levels.items():
            speakers.observe(name, level, now)
        now += 0.02
    return now


def test_picks_loudest_lower_dbov_is_louder() -> None:
    s = ActiveSpeakers(slots=2)
    now = feed(s, {"quiet": 50, "loud": 10, "mid": 30, "hiss": 100}, 0.0, 0.5)
    assert set(s.select(now)) == {"loud", "mid"}


def test_silence_and_hiss_take_no_slot() -> None:
    s = ActiveSpeakers(slots=3)
    now = feed(s, {"talker": 20, "hiss": 90, "muted": 127}, 0.0, 0.5)
    assert s.select(now) == ("talker", None, None)


def test_hysteresis_keeps_slot_for_similar_voices() -> None:
    s = ActiveSpeakers(slots=1, margin_db=6.0)
    now = feed(s, {"a": 30}, 0.0, 0.5)
    assert s.select(now) == ("a",)
    now = feed(s, {"a": 30, "b": 27}, now, 1.0)  # b is 3 dB louder: not enough
    assert s.select(now) == ("a",)
    now = feed(s, {"a": 30, "b": 20}, now, 1.0)  # 10 dB louder: takes over
    assert s.select(now) == ("b",)


def test_slot_index_is_stable_while_selected() -> None:
    s = ActiveSpeakers(slots=3)
    now = feed(s, {"a": 40, "b": 30, "c": 20}, 0.0, 0.5)
    first = s.select(now)
    now = feed(s, {"a": 40, "b": 30, "c": 20, "d": 5}, now, 1.0)
    second = s.select(now)
    assert "d" in second and "a" not in second  # d replaced the quietest, a
    assert [x for x in first if x != "a"] == [x for x in second if x in first]
    assert second.index("d") == first.index("a")


def test_stale_and_forgotten_speakers_free_their_slot() -> None:
    s = ActiveSpeakers(slots=2, stale_after=1.0)
    now = feed(s, {"a": 20, "b": 25}, 0.0, 0.5)
    assert set(s.select(now)) == {"a", "b"}
    now = feed(s, {"b": 25}, now, 1.5)  # a stopped sending (muted)
    assert s.select(now) == (None, "b") or s.select(now) == ("b", None)
    s.forget("b")
    assert s.select(now) == (None, None)


def test_needs_at_least_one_slot() -> None:
    with pytest.raises(ValueError):
        ActiveSpeakers(slots=0)
