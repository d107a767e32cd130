"""RFC 7692 permessage-deflate — for now only the receiving side's inflate (§7.2.2).

The extension itself (the offer and answer of §7.1, compressing what we send, §7.2.1) comes
when lablib.websocket supports it, here.  Until then the dissector uses what this module has to
read captures of connections that negotiated it: which parameters the server's answer agreed
(:meth:`DeflateParameters.from_headers`) and one direction's :class:`Inflater`.

§6: a compressed message has RSV1 set on its first frame; its payload, all fragments joined, is
DEFLATE data from which the sender removed the final 4 octets ``00 00 ff ff`` (§7.2.1).  The
receiver appends them again and inflates (§7.2.2).  With context takeover (the default) a
sender's LZ77 window carries over from message to message, so one decompressor serves the
whole direction; ``*_no_context_takeover`` resets it for every message (§7.1.1).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from ..errors import PayloadTooBig, RemoteProtocolError

__all__ = ["TAIL", "DeflateParameters", "Inflater"]

#: The empty stored block a sender removes from the end of each compressed message (§7.2.1).
TAIL = b"\x00\x00\xff\xff"


@dataclass(frozen=True, slots=True)
class DeflateParameters:
    """What the server's ``Sec-WebSocket-Extensions`` answer agreed (§7.1)."""

    client_no_context_takeover: bool = False  #: §7.1.1.2: the client resets its window per message
    server_no_context_takeover: bool = False  #: §7.1.1.1: the server does

    @classmethod
    def from_headers(cls, values: list[str]) -> DeflateParameters | None:
        """The parameters of ``permessage-deflate`` in the response's extension header values,
        or ``None`` if the server did not accept it."""
        for value in values:
            for extension in value.split(","):
                name, *params = [p.strip().lower() for p in extension.split(";")]
                if name == "permessage-deflate":
                    names = {p.split("=", 1)[0].strip() for p in params}
                    return cls("client_no_context_takeover" in names,
                               "server_no_context_takeover" in names)
        return None

    def inflater(self, sender_is_client: bool, max_size: int | None = None) -> Inflater:
        """The inflater for the messages one side sends."""
        return Inflater(no_context_takeover=self.client_no_context_takeover if sender_is_client
                        else self.server_no_context_takeover, max_size=max_size)


class Inflater:
    """§7.2.2: inflate one direction's compressed messages, a frame's payload at a time.

    ``max_size`` bounds one inflated message (memory stays bounded whatever the ratio).
    Errors raise :class:`~lablib.errors.RemoteProtocolError` (the data is not DEFLATE) or
    :class:`~lablib.errors.PayloadTooBig`.
    """

    def __init__(self, *, no_context_takeover: bool = False, max_size: int | None = None) -> None:
        self.no_context_takeover = no_context_takeover
        self.max_size = max_size
        self._z = zlib.decompressobj(-15)  # raw DEFLATE: no zlib header, a 32 KiB window
        self._size = 0                     # bytes inflated so far of the current message
        self._starting = True              # the next payload begins a message

    def inflate(self, data: bytes, *, fin: bool) -> bytes:
        """The inflated bytes of one frame's payload; ``fin``: the message's last frame.

        After an error the message is lost: the next call begins a new one.
        """
        if self._starting and self.no_context_takeover:
            self._z = zlib.decompressobj(-15)
        self._starting = False
        if fin:
            data += TAIL
        room = 0 if self.max_size is None else max(self.max_size - self._size, 1)
        try:
            out = self._z.decompress(data, room)
            self._size += len(out)
            if self._z.unconsumed_tail or (self.max_size is not None
                                           and self._size > self.max_size):
                raise PayloadTooBig(f"permessage-deflate: cannot inflate (message inflates "
                                    f"beyond {self.max_size} bytes)")
        except zlib.error as exc:
            self._end_message()
            raise RemoteProtocolError(f"permessage-deflate: cannot inflate ({exc})") from None
        except PayloadTooBig:
            self._end_message()
            raise
        if fin:
            self._end_message()
        return out

    def _end_message(self) -> None:
        self._size = 0
        self._starting = True
