"""The speed machinery of :mod:`lablib.websocket.frames`: the same work, in fewer Python steps.

:mod:`~lablib.websocket.frames` says what a frame is and what the parser checks, in the order
of RFC 6455 §5.2; read it first.  This module decides nothing of its own: it does that work
faster where a server spends its time, the way ``websockets`` keeps ``Frame.parse`` readable
and its speed in a separate module.

- :func:`xor_mask` — §5.3 masking as one big-integer XOR (small payloads) or as numpy uint64
  words (large ones); never a Python loop over bytes.
- :class:`Unmasker` — a parser's reusable numpy scratch for large payloads, and the choice of
  how to unmask a batch of payloads (one by one, or many small ones together with
  :func:`unmask_many`).
- :func:`parse_frames` — :meth:`FrameParser.receive_frames` in three passes (headers, payloads,
  tuples), with a shortcut for the header bytes that need no further check.

Everything here is tested against the plain path: ``receive_frames`` must return exactly what
``next_frame`` does (tests/websocket/test_frames.py).
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import RemoteProtocolError

# Below this size, Python's own big integers are the fastest whole-word XOR (one C loop over
# 30-bit digits, no array set-up); above it numpy's 64-bit XOR wins.  Measured in benchmarks/.
NUMPY_THRESHOLD = 4096


# --- masking (§5.3) ----------------------------------------------------------------------------

def xor_mask(data: bytes | bytearray | memoryview, masking_key: bytes) -> bytes:
    """``data`` XOR ``masking_key`` repeated: small payloads as one big integer, large ones as
    numpy uint64 words."""
    n = len(data)
    if n == 0:
        return b""
    if n < NUMPY_THRESHOLD:
        key = (masking_key * ((n >> 2) + 1))[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    return mask_words(data, masking_key, np.empty(n, dtype=np.uint8)).tobytes()


def mask_words(data, masking_key: bytes, out: np.ndarray) -> np.ndarray:
    """Mask ``data`` (≥ 8 bytes) into the uint8 array ``out`` (at least as long); return the
    filled part.  8 is a multiple of 4, so every uint64 word sees the key twice, in phase."""
    n = len(data)
    words = n >> 3
    np.bitwise_xor(np.frombuffer(data, dtype=np.uint64, count=words),
                   np.frombuffer(masking_key * 2, dtype=np.uint64),
                   out=out[:words << 3].view(np.uint64))
    if n & 7:  # 1-7 bytes left, starting at a multiple of 8: the key phase restarts at 0
        tail = xor_mask(memoryview(data)[words << 3:], masking_key)
        out[words << 3:n] = np.frombuffer(tail, dtype=np.uint8)
    return out[:n]


def unmask_many(buf, starts: list[int], ends: list[int], keys: list[bytes]) -> list[bytes]:
    """Unmask many small masked payloads of ``buf`` at once, with a handful of numpy calls.

    ``buf[starts[i]:ends[i]]`` is a payload masked with ``keys[i]``, in increasing order.  The
    whole stretch ``buf[starts[0]:ends[-1]]`` is XORed with a keystream in one numpy call, then
    each payload is sliced out.  The keystream is built a 4-byte word at a time: each word gets
    the key of the payload it overlaps, rotated so that payload byte i meets key byte i mod 4
    (§5.3) whatever the payload's alignment.  No word overlaps two of these payloads, since at
    least a masked header (6 bytes) lies between them; words over headers (or frames not in the
    list) get some key too and come out garbled, but those bytes are never used.
    """
    base = starts[0]
    offsets = np.array(starts) - base  # each payload's offset in the stretch
    size = ends[-1] - base
    word_keys = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 4)
    # A word at offset 4w: its byte j meets payload byte 4w + j - offset, so key byte
    # (j - offset) mod 4.
    word_keys = np.take_along_axis(word_keys, (np.arange(4) - offsets[:, None]) % 4, axis=1)
    # Payload k's key fills the words from its first one up to the next payload's first one.
    words = np.diff(offsets >> 2, append=(size + 3) >> 2)
    keystream = np.repeat(word_keys.view(np.uint32).ravel(), words).view(np.uint8)[:size]
    unmasked = np.bitwise_xor(keystream, np.frombuffer(buf, dtype=np.uint8, count=size,
                                                       offset=base), out=keystream)
    # Taking each payload out: for tiny payloads, copying the stretch into bytes once and
    # slicing that is fastest; for larger ones, slicing a memoryview saves that extra copy.
    if size < 256 * len(starts):
        clear = unmasked.tobytes()
        return [clear[start - base:end - base] for start, end in zip(starts, ends)]
    view = memoryview(unmasked)
    return [bytes(view[start - base:end - base]) for start, end in zip(starts, ends)]


def worth_unmasking_together(starts: list[int], ends: list[int]) -> bool:
    """Is :func:`unmask_many` faster than unmasking these payloads one by one?

    Its numpy calls cost a fixed ~15 µs, about what unmasking one by one costs for ~100 tiny
    payloads, or for ~8 of 1 KiB (measured): each frame counts for 64 bytes plus its length.
    """
    return bool(starts) and 64 * len(starts) + ends[-1] - starts[0] >= 8192


class Unmasker:
    """A parser's payload extraction: unmasked copies of payloads in its buffer.

    Keeps the scratch space numpy unmasks large payloads into before the one copy into
    ``bytes`` (numpy cannot write into an immutable bytes object); reused, so the memory is warm.
    """

    __slots__ = ("_scratch",)

    def __init__(self) -> None:
        self._scratch: np.ndarray | None = None  # made by the first large payload

    def payload(self, buf, start: int, end: int, key: bytes | None) -> bytes:
        """One frame's payload ``buf[start:end]``, unmasked on its own (``key`` None: as is)."""
        if key is None:
            return bytes(buf[start:end])
        if end - start < NUMPY_THRESHOLD:
            return xor_mask(buf[start:end], key)
        data = memoryview(buf)[start:end]
        if self._scratch is None or len(self._scratch) < len(data):
            self._scratch = np.empty(len(data), dtype=np.uint8)
        return mask_words(data, key, self._scratch).tobytes()

    def payloads(self, buf, starts: list[int], ends: list[int], keys: list[bytes | None],
                 small: int) -> list[bytes]:
        """The payloads of several frames; ``small`` of them are masked and under
        :data:`NUMPY_THRESHOLD` bytes."""
        if not (small and worth_unmasking_together(starts, ends)):
            # A few frames (one, mostly: a message per read), or large ones: one by one.
            return [self.payload(buf, start, end, key)
                    for start, end, key in zip(starts, ends, keys)]
        if small == len(starts):
            return unmask_many(buf, starts, ends, keys)  # a burst of small frames
        # A mix: the small masked payloads together if that is worth it, the others (unmasked,
        # large, or too few small ones) one by one.
        payloads: list[bytes | None] = [None] * len(starts)
        chosen = [i for i, (start, end, key) in enumerate(zip(starts, ends, keys))
                  if key is not None and end - start < NUMPY_THRESHOLD]
        chosen_starts = [starts[i] for i in chosen]
        chosen_ends = [ends[i] for i in chosen]
        if worth_unmasking_together(chosen_starts, chosen_ends):
            unmasked = unmask_many(buf, chosen_starts, chosen_ends, [keys[i] for i in chosen])
            for i, payload in zip(chosen, unmasked):
                payloads[i] = payload
        return [self.payload(buf, start, end, key) if payload is None else payload
                for payload, start, end, key in zip(payloads, starts, ends, keys)]


# --- the batch parser --------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def quick_header_bytes(mask_required: bool | None, allowed_rsv: int,
                       limit: int | None) -> tuple[int, frozenset[int], frozenset[int]]:
    """For the header loop: the largest 16-bit length allowed, and the first two header bytes
    that need no further check, as (max 16-bit length, first bytes, second bytes).

    First bytes: a whole message in one frame (FIN=1, TEXT or BINARY) with no RSV bit outside
    ``allowed_rsv``; fragments go the long way, which keeps count of a fragmented message's
    size.  Second bytes: the MASK bit ``mask_required`` asks for, and a 7-bit length of at most
    ``limit``, or 126 ("a 16-bit length follows") if ``limit`` is more than 125.  A frame whose
    first two bytes are in these sets is valid as far as they go (§5.2); the parser then only
    has to check a 16-bit length.  Everything else (control frames, 64-bit lengths, errors)
    goes through ``FrameParser._complete_header``, which checks every rule and names what is
    wrong.
    """
    max_length = 0xFFFF if limit is None else min(limit, 0xFFFF)
    small = min(max_length, 126)
    first = frozenset(b0 for b0 in range(256)
                      if b0 & 0x80 and b0 & 0x0F in (0x1, 0x2) and not b0 & 0x70 & ~allowed_rsv)
    second = frozenset(b1 for b1 in range(256)
                       if mask_required in (None, b1 >= 0x80)
                       and (b1 & 0x7F <= min(small, 125) or (b1 & 0x7F == 126 and small > 125)))
    return max_length, first, second


def parse_frames(parser, frame_class, first_byte: dict) -> list:
    """The body of ``parser.receive_frames()``: every complete frame in its buffer.

    The frames are exactly those that calling ``next_frame()`` until ``NEED_DATA`` would
    return, found in passes: first every complete frame's header is parsed and checked, then
    the payloads are unmasked (many small masked ones together, by a few numpy calls), then
    the frames are built.  ``frame_class`` is :class:`~lablib.websocket.frames.Frame` and
    ``first_byte`` maps a first header byte to (opcode, fin, rsv1, rsv2, rsv3).

    This reads and advances the parser's buffer position; an invalid frame is stored in
    ``parser._error`` and raised only if no frame came before it.
    """
    buf, pos, limit = parser._buffer, parser._pos, parser.max_size
    size = len(buf)
    max_length, quick_first, quick_second = quick_header_bytes(parser.mask_required,
                                                               parser.allowed_rsv, limit)
    complete_header = parser._complete_header
    # Pass 1: headers.  For each complete frame: its first byte, where its payload starts
    # and ends, and its masking key (None if unmasked).
    firsts, starts, ends, keys = [], [], [], []
    small = 0  # how many of them are masked and small
    try:
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 in quick_first and b1 in quick_second:
                # Most frames: a data frame with a 7-bit or a 16-bit length, whose first two
                # bytes need no further check (see quick_header_bytes).
                masked = b1 >= 0x80
                length = b1 & 0x7F
                start = pos + 2
                if length == 126:
                    if size - pos < 4:
                        break
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    start = pos + 4
                    if not 126 <= length <= max_length:  # not minimal, or over the limit:
                        complete_header(buf, pos)       # raises, naming the error
                if masked:
                    start += 4
                end = start + length
                if end > size:
                    break  # the payload has not fully arrived
            else:
                header = complete_header(buf, pos)
                if header is None:
                    break  # the header or the payload has not fully arrived
                b0, start, end, masked = header
            firsts.append(b0)
            starts.append(start)
            ends.append(end)
            if masked:
                keys.append(buf[start - 4:start])
                if end - start < NUMPY_THRESHOLD:
                    small += 1
            else:
                keys.append(None)
            pos = end
    except RemoteProtocolError as exc:  # at the frame starting at ``pos``
        parser._error = exc
        if not firsts:
            parser._pos = pos
            raise
    parser._pos = pos
    if type(buf) is not bytes:  # a bytearray's slices are bytearrays: keys must be bytes
        keys = [None if key is None else bytes(key) for key in keys]
    # Pass 2: the payloads.
    unmasker = parser._unmasker
    new = tuple.__new__
    if len(starts) <= 1:  # the usual case on a connection: one message per read
        if not starts:
            return []
        opcode, fin, rsv1, rsv2, rsv3 = first_byte[firsts[0]]
        payload = unmasker.payload(buf, starts[0], ends[0], keys[0])
        return [new(frame_class, (opcode, payload, fin, rsv1, rsv2, rsv3, keys[0]))]
    payloads = unmasker.payloads(buf, starts, ends, keys, small)
    # Pass 3: the frames.  tuple.__new__ builds each Frame from its seven fields directly;
    # Frame(...) would do the same through a generated Python __new__ (keyword and default
    # handling), which costs 30 % more.  (A comprehension, rather than map() over a helper,
    # saves a Python function call per frame.)
    return [new(frame_class, (opcode, payload, fin, rsv1, rsv2, rsv3, key))
            for (opcode, fin, rsv1, rsv2, rsv3), payload, key
            in zip(map(first_byte.__getitem__, firsts), payloads, keys)]
