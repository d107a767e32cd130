"""RFC 6455 WebSocket: handshake (§4), frames (§5), a sans-I/O connection, asyncio drivers."""

from .frames import CloseCode, Frame, FrameParser, Opcode, apply_mask, encode_frame
from .handshake import ClientHandshake, ServerHandshake, accept_key, generate_key
from .client import connect
from .server import serve
