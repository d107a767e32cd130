"""RFC 6455 WebSocket: handshake (§4), frames (§5), a sans-I/O connection, asyncio drivers;
RFC 7692 permessage-deflate (:mod:`.deflate`)."""

from .deflate import DeflateOptions, DeflateParameters
from .frames import CloseCode, Frame, FrameParser, Opcode, apply_mask, encode_frame
from .handshake import ClientHandshake, ServerHandshake, accept_key, generate_key
from .client import connect
from .server import serve
