"""LiveKit's signalling protocol, which MatrixRTC apps (Element Call, Element X) speak, and its
RoomService, through which a call's teacher moderates."""

from sfu.livekit.roomservice import RoomService
from sfu.livekit.server import LiveKitSignalling

__all__ = ["LiveKitSignalling", "RoomService"]
