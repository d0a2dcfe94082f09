"""What the Synapse module, the diary bridge and the SFU share: no Synapse, nio or aiortc here."""

from sferum_shared.clock import SYSTEM_CLOCK, Clock, ManualClock

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock"]
