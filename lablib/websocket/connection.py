"""A sans-I/O WebSocket connection (RFC 6455 §5-§8): bytes in -> events out, calls in -> bytes out.

::

    conn = Connection(Role.SERVER)           # after the opening handshake
    events = conn.receive_data(data)         # TextReceived, PingReceived, ... (:mod:`.events`)
    sock.send(conn.data_to_send())           # automatic answers: pongs, the close echo, ...
    sock.send(conn.send_text("hello"))       # what *we* decide to send

The connection never touches a socket, a clock or a thread, so a notebook can feed it one byte
at a time and watch every state change.  States (§4, §7)::

    CONNECTING --handshake done--> OPEN --close sent--> CLOSING --close received--> CLOSED
                                     \\--close received (we echo it)----------------> CLOSED
    any state --protocol violation (we send a close frame with the code)-----------> CLOSED
    any state --TCP closed by the peer (code 1006)---------------------------------> CLOSED

With permessage-deflate agreed in the handshake (RFC 7692, :mod:`.deflate`), every data
message we send is compressed (RSV1 on its first frame) and compressed messages we receive are
inflated before they become events; control frames are never compressed.

A peer's mistakes never raise out of :meth:`Connection.receive_data`: they become a
:class:`WebSocketClosed` event carrying the error, and the close frame with the right code
(1002, 1007, 1009) is queued in :meth:`Connection.data_to_send`.  Our own mistakes (sending after
closing, a 200-byte ping) raise :class:`~lablib.errors.LocalProtocolError` at once.
"""

from __future__ import annotations

import enum
import random
from typing import Iterable

from ..errors import HandshakeError, LocalProtocolError, PayloadTooBig, WebSocketProtocolError
from ..http import Request
from .frames import (NEED_DATA, CloseCode, Frame, FrameParser, Opcode, encode_close_payload,
                     encode_frame, is_valid_close_code, parse_close_payload)
from .deflate import Deflater, DeflateParameters
from .handshake import ClientHandshake, ServerHandshake
from .messages import MessageAssembler
from .events import (Accepted, BinaryReceived, CloseReceived, Event, FrameReceived, PingReceived,
                     PongReceived, Rejected, RequestReceived, TextReceived, WebSocketClosed)

__all__ = ["Role", "WebSocketState", "Connection", "SYSTEM_RANDOM"]


class Role(enum.Enum):
    CLIENT = "client"  #: masks every frame it sends (§5.3)
    SERVER = "server"  #: never masks; closes the TCP connection first (§7.1.1)


class WebSocketState(enum.Enum):
    CONNECTING = "CONNECTING"  #: opening handshake in progress (§4)
    OPEN = "OPEN"              #: messages flow both ways
    CLOSING = "CLOSING"        #: we sent a close frame and wait for the peer's (§7.1.2)
    CLOSED = "CLOSED"          #: both close frames exchanged, or the connection failed


#: The default random source: the operating system's CSPRNG.  One object serves every
#: connection: it holds no state of its own (each call reads os.urandom), whereas each
#: ``random.SystemRandom()`` would carry 2.5 KiB of unused Mersenne Twister state.
SYSTEM_RANDOM = random.SystemRandom()


# --- the connection -----------------------------------------------------------------------------

class Connection:
    """One endpoint of a WebSocket connection, without any I/O.

    ``handshake`` (a :class:`ClientHandshake` or :class:`ServerHandshake`) starts the connection
    in CONNECTING; without it the connection starts OPEN, as after a handshake done elsewhere.
    ``max_message_size`` bounds a whole message, all fragments included, as it arrives and,
    when compressed, once inflated (``None``: no limit); ``rng`` supplies the client's masking
    keys (seed it for reproducible bytes).  ``deflate`` (a connection that starts OPEN only)
    gives the permessage-deflate parameters agreed elsewhere; after a handshake, they are the
    handshake's.
    """

    def __init__(self, role: Role, *, handshake: ClientHandshake | ServerHandshake | None = None,
                 max_message_size: int | None = 1 << 20, rng: random.Random | None = None,
                 trace_frames: bool = False, deflate: DeflateParameters | None = None) -> None:
        self.role = role
        self.handshake = handshake
        self.state = WebSocketState.CONNECTING if handshake is not None else WebSocketState.OPEN
        self.max_message_size = max_message_size
        self.trace_frames = trace_frames
        self._rng = rng if rng is not None else SYSTEM_RANDOM
        self._parser = FrameParser(mask_required=(role is Role.SERVER))
        self._masks = role is Role.CLIENT  # a client masks every frame it sends (§5.3)
        self._outgoing = bytearray()
        # The message being received (§5.4 fragmentation, §8.1 UTF-8).
        self._messages = MessageAssembler()
        # §8.1 fail fast: the text frame that is still arriving, checked as its bytes come.
        self._partial_checked = 0  # payload bytes of that frame checked so far
        # The message being sent: None, or the opcode of its first frame.
        self._sending: Opcode | None = None
        self.close_sent: tuple[int, str] | None = None
        self.close_received: tuple[int, str] | None = None
        self.subprotocol: str | None = None
        self._handshake_done = handshake is None
        self._early_frames = bytearray()  # server: frames that arrived before accept()
        # RFC 7692: what was agreed, and the compressor of what we send (None: not agreed).
        self.deflate: DeflateParameters | None = None
        self._deflater: Deflater | None = None
        if deflate is not None:
            if handshake is not None:
                raise ValueError("deflate= is for a connection without handshake: the "
                                 "handshake negotiates it")
            self._use_deflate(deflate)

    def _use_deflate(self, deflate: DeflateParameters | None) -> None:
        """RFC 7692 §6: permessage-deflate owns RSV1; one compressor for what we send, one
        decompressor for what the peer sends (each for the whole connection, §7.1.1)."""
        if deflate is None:
            return
        client = self.role is Role.CLIENT
        self.deflate = deflate
        self._deflater = deflate.deflater(sender_is_client=client)
        self._messages.inflater = deflate.inflater(sender_is_client=not client,
                                                   max_size=self.max_message_size)
        self._parser.allowed_rsv = 0x40

    # ---- bytes in ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the network; return the events they complete."""
        if self.state is WebSocketState.CLOSED:
            return []  # §7.1.1: after the closing handshake, the rest of the stream is ignored
        if self.state is WebSocketState.CONNECTING:
            # b"" brings nothing new (EOF is receive_eof()); the HTTP parsers would read it as EOF.
            return self._receive_handshake(data) if data else []
        events: list[Event] = []
        try:
            self._parser.feed(data)
            self._receive_frames(events)
        except (WebSocketProtocolError, PayloadTooBig) as exc:
            events.append(self._fail(exc))
        return events

    def receive_eof(self) -> list[Event]:
        """The peer closed its side of TCP.  Without a closing handshake that is code 1006."""
        if self.state is WebSocketState.CLOSED:
            return []
        self.state = WebSocketState.CLOSED
        if not self._handshake_done:
            error = HandshakeError(0, "connection closed during the opening handshake")
            if isinstance(self.handshake, ClientHandshake):
                try:  # a refusal whose body ends at EOF is complete only now
                    self.handshake.receive_data(b"")
                except HandshakeError as exc:
                    error = exc
            return [Rejected(error)]
        return [WebSocketClosed(CloseCode.ABNORMAL_CLOSURE, "", None)]

    def data_to_send(self) -> bytes:
        """Bytes the connection decided to send on its own (pongs, close echo, error answers)."""
        if not self._outgoing:
            return b""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def _receive_frames(self, events: list[Event]) -> None:
        parser = self._parser
        while parser.buffered and self.state is not WebSocketState.CLOSED:
            # The parser checks each frame's header against the limit, fragments included,
            # so an oversized message fails (1009) before its payload arrives.
            parser.max_size = self.max_message_size
            if self.deflate is not None:  # and inflating stops at the same limit
                self._messages.inflater.max_size = self.max_message_size
            frames = parser.receive_frames()
            if not frames:
                # The rest is a frame still arriving: check what we have of it.
                self._check_partial_text()
                return
            self._partial_checked = 0  # the frame that was arriving (if any) is complete
            for frame in frames:
                if self.state is WebSocketState.CLOSED:
                    return  # §7.1.1: what follows a close frame is ignored
                if self.trace_frames:
                    events.append(FrameReceived(frame))
                if frame.opcode >= Opcode.CLOSE:
                    self._receive_control(frame, events)
                else:
                    self._receive_data_frame(frame, events)

    def _receive_data_frame(self, frame: Frame, events: list[Event]) -> None:
        """§5.4: a message is one frame, or a TEXT/BINARY frame with fin=0 then CONT frames;
        the MessageAssembler joins them and checks text (§8.1), raising on a violation."""
        message = self._messages.receive(frame)
        if message is not None:
            events.append(TextReceived(message.text) if message.opcode is Opcode.TEXT
                          else BinaryReceived(message.data))

    def _check_partial_text(self) -> None:
        """§8.1: fail as soon as the bytes that make a text message invalid UTF-8 arrive,
        without waiting for the end of their frame.  Each byte is checked once, however the
        frame is cut into reads (see :meth:`MessageAssembler.check_partial_text`)."""
        partial = self._parser.partial_payload(self._partial_checked)
        if partial is None:
            return
        b0, data = partial
        self._messages.check_partial_text(b0, data, first=self._partial_checked == 0)
        self._partial_checked += len(data)

    def _receive_control(self, frame: Frame, events: list[Event]) -> None:
        if frame.rsv1:  # (allowed by the parser only when permessage-deflate is agreed)
            raise WebSocketProtocolError("RSV1 set on a control frame: control frames are never "
                                      "compressed (RFC 7692 §6.1)")
        if frame.opcode is Opcode.PING:
            events.append(PingReceived(frame.payload))
            if self.state is WebSocketState.OPEN:  # §5.5.2: answer as soon as practical
                self._outgoing += self._frame(Opcode.PONG, frame.payload)
        elif frame.opcode is Opcode.PONG:
            events.append(PongReceived(frame.payload))
        else:
            code, reason = parse_close_payload(frame.payload)
            self.close_received = (code, reason)
            events.append(CloseReceived(code, reason))
            if self.state is WebSocketState.OPEN:
                # §5.5.1: echo the status code we received (none if there was none).
                echo = None if code == CloseCode.NO_STATUS_RCVD else code
                self._outgoing += self._frame(Opcode.CLOSE, encode_close_payload(echo))
                self.close_sent = (code, "")
            self.state = WebSocketState.CLOSED
            events.append(WebSocketClosed(code, reason))

    def _fail(self, exc: WebSocketProtocolError | PayloadTooBig) -> WebSocketClosed:
        """§7.1.7 "Fail the WebSocket Connection": send a close frame with the code, stop."""
        reason = exc.reason.encode("utf-8")[:123].decode("utf-8", "ignore")
        if self.state is WebSocketState.OPEN:
            self._outgoing += self._frame(Opcode.CLOSE, encode_close_payload(exc.close_code, reason))
            self.close_sent = (exc.close_code, reason)
        self.state = WebSocketState.CLOSED
        return WebSocketClosed(exc.close_code, reason, exc)

    # ---- the opening handshake -------------------------------------------------------------

    def receive_request(self, request: Request) -> list[Event]:
        """Server: the handshake request, parsed elsewhere (by a server that also answers plain
        HTTP on the same port); returns what :meth:`receive_data` would for its bytes."""
        handshake = self.handshake
        if self.state is not WebSocketState.CONNECTING or not isinstance(handshake, ServerHandshake) \
                or handshake.request is not None:
            raise LocalProtocolError("receive_request needs a server connection waiting for its request")
        try:
            handshake.receive_request(request)
        except HandshakeError as exc:
            return [self._handshake_failed(exc)]
        return [RequestReceived(request, handshake.subprotocol)]

    def _receive_handshake(self, data: bytes) -> list[Event]:
        handshake = self.handshake
        if isinstance(handshake, ServerHandshake) and handshake.request is not None:
            self._early_frames += data  # the client did not wait for our 101; keep it
            return []
        try:
            result = handshake.receive_data(data)
        except HandshakeError as exc:
            return [self._handshake_failed(exc)]
        if result is NEED_DATA:
            return []
        if isinstance(handshake, ServerHandshake):
            return [RequestReceived(result, handshake.subprotocol)]
        self._handshake_done = True
        self.subprotocol = handshake.subprotocol
        self._use_deflate(handshake.deflate)
        self.state = WebSocketState.OPEN
        # Frames the server sent right behind its 101 wait in the parser: the next
        # receive_data() call (b"" will do) returns them.
        self._parser.feed(handshake.trailing_data)
        return [Accepted(result, handshake.subprotocol)]

    def _handshake_failed(self, exc: HandshakeError) -> Rejected:
        """The connection is CLOSED; a server queues the HTTP error answer."""
        self.state = WebSocketState.CLOSED
        if isinstance(self.handshake, ServerHandshake):
            self._outgoing += ServerHandshake.reject(exc)
        return Rejected(exc)

    def accept(self, subprotocol: str | None = None,
               extra_headers: Iterable[tuple[str, str]] = ()) -> bytes:
        """Server: answer 101 (with ``extra_headers`` too) and move to OPEN; return its bytes.

        Frames the client sent right behind its request are processed by the next
        receive_data() call (feed ``b""`` to get them now).
        """
        handshake = self._server_handshake()
        if subprotocol is not None:
            # §4.2.2 step 5.5: the server picks one of the subprotocols the client offered.
            if subprotocol not in handshake.offered_subprotocols:
                raise LocalProtocolError(f"subprotocol {subprotocol!r} was not offered by the "
                                         f"client (it offered {handshake.offered_subprotocols})")
            handshake.subprotocol = subprotocol
        self.subprotocol = handshake.subprotocol
        self._use_deflate(handshake.deflate)
        self._handshake_done = True
        self.state = WebSocketState.OPEN
        self._parser.feed(handshake.trailing_data + bytes(self._early_frames))
        self._early_frames.clear()
        return handshake.accept(extra_headers)

    def reject(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None) -> bytes:
        """Server: refuse the handshake with an HTTP error answer; the connection is CLOSED."""
        self._server_handshake()
        self.state = WebSocketState.CLOSED
        return ServerHandshake.reject(HandshakeError(status, reason, headers))

    def _server_handshake(self) -> ServerHandshake:
        if self.state is not WebSocketState.CONNECTING or not isinstance(self.handshake, ServerHandshake) \
                or self.handshake.request is None:
            raise LocalProtocolError("accept/reject need a server connection with a request received")
        return self.handshake

    # ---- calls in, bytes out -----------------------------------------------------------------

    def send_text(self, data: str | bytes, fin: bool = True) -> bytes:
        """A text message (or, with ``fin=False``, its first fragment)."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        return self._send_data(Opcode.TEXT, payload, fin)

    def send_binary(self, data: bytes, fin: bool = True) -> bytes:
        """A binary message (or, with ``fin=False``, its first fragment)."""
        return self._send_data(Opcode.BINARY, bytes(data), fin)

    def send_continuation(self, data: str | bytes, fin: bool) -> bytes:
        """The next fragment of the message being sent; ``fin=True`` ends it (§5.4)."""
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        return self._send_data(Opcode.CONT, payload, fin)

    def send_ping(self, payload: bytes = b"") -> bytes:
        return self._send_control(Opcode.PING, payload)

    def send_pong(self, payload: bytes = b"") -> bytes:
        return self._send_control(Opcode.PONG, payload)

    def send_close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bytes:
        """Start the closing handshake (§7.1.2); ``code=None`` sends a close frame without code."""
        if self.state is not WebSocketState.OPEN:
            raise LocalProtocolError(f"cannot start closing in state {self.state.name}")
        if code is not None and not is_valid_close_code(code):
            raise LocalProtocolError(f"close code {code} may not be sent (§7.4)")
        try:
            payload = encode_close_payload(code, reason)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self.state = WebSocketState.CLOSING
        self.close_sent = (code if code is not None else CloseCode.NO_STATUS_RCVD, reason)
        return self._frame(Opcode.CLOSE, payload)

    def _send_data(self, opcode: Opcode, payload: bytes, fin: bool) -> bytes:
        if self.state is not WebSocketState.OPEN:
            raise LocalProtocolError(f"cannot send data in state {self.state.name}")
        if opcode is Opcode.CONT:
            if self._sending is None:
                raise LocalProtocolError("no fragmented message to continue")
        elif self._sending is not None:
            raise LocalProtocolError("finish the fragmented message before starting another")
        else:
            self._sending = opcode
        if fin:
            self._sending = None
        if self._deflater is None:
            return self._frame(opcode, payload, fin)
        # RFC 7692 §6.1: RSV1 marks the first frame of a compressed message; we compress every
        # message (like websockets), fragment by fragment (§7.2.1).
        return self._frame(opcode, self._deflater.deflate(payload, fin=fin), fin,
                           rsv1=opcode is not Opcode.CONT)

    def _send_control(self, opcode: Opcode, payload: bytes) -> bytes:
        if self.state is not WebSocketState.OPEN:
            raise LocalProtocolError(f"cannot send {opcode.name} in state {self.state.name}")
        if len(payload) > 125:
            raise LocalProtocolError("control frame payloads are at most 125 bytes (§5.5)")
        return self._frame(opcode, bytes(payload))

    def _frame(self, opcode: Opcode, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
        key = self._rng.randbytes(4) if self._masks else None
        return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, masking_key=key)
