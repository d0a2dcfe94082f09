"""LiveKit's signalling protocol, which MatrixRTC apps (Element Call, Element X) speak."""

from sfu.livekit.server import LiveKitSignalling

__all__ = ["LiveKitSignalling"]
