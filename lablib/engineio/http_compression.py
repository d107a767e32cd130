"""HTTP compression of Engine.IO polling bodies, as the reference server does it.

The Node server (engine.io ``transports/polling.ts`` ``doWrite``, option ``httpCompression``,
default ``{threshold: 1024}``) compresses a GET's answer when the body has at least
``threshold`` bytes and the request's ``Accept-Encoding`` (RFC 9110 §12.5.3) accepts ``gzip``
or ``deflate``; it picks between them as the ``negotiator`` package does: the highest ``q``,
then an exact name before ``*``, then the client's order, then gzip before deflate.  The answer
says ``Content-Encoding: gzip`` (RFC 1952 member) or ``deflate`` (RFC 1950 zlib stream), with
zlib's default settings.  python-engineio does the same (``http_compression=True``,
``compression_threshold=1024``), taking the first of the client's names it knows.

Sans-I/O helpers: :func:`choose_encoding` (the decision), :func:`encode` (the server's side)
and :func:`decode` (the client's side; h11 does not decompress), bounded so that a small body
cannot inflate past a limit.
"""

from __future__ import annotations

import zlib

from ..errors import PayloadTooBig

__all__ = ["ENCODINGS", "THRESHOLD", "ACCEPT_ENCODING", "choose_encoding", "encode", "decode"]

#: What the server offers, in its order of preference (polling.ts ``compressionMethods``).
ENCODINGS = ("gzip", "deflate")
#: The reference's default ``httpCompression.threshold`` (and python-engineio's): bytes.
THRESHOLD = 1024
#: What lablib's client sends when asked to accept compressed polling bodies.
ACCEPT_ENCODING = "gzip, deflate"

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}  # zlib's header selectors


def choose_encoding(accept_encoding: str | None) -> str | None:
    """The content coding to answer with, or ``None`` (send the body as it is).

    >>> choose_encoding("gzip, deflate, br"), choose_encoding("deflate;q=1, gzip;q=0.5")
    ('gzip', 'deflate')
    >>> choose_encoding("br"), choose_encoding(None), choose_encoding("*;q=0")
    (None, None, None)
    """
    if not accept_encoding:
        return None
    accepted = []  # (name, q, position in the header)
    for position, item in enumerate(accept_encoding.split(",")):
        name, *params = [part.strip() for part in item.split(";")]
        if not name:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                break
        accepted.append((name.lower(), q, position))
    ranked = []
    for index, coding in enumerate(ENCODINGS):
        # the entry that names it (negotiator's getEncodingPriority: an exact name beats
        # "*", then the higher q, then the later entry)
        matches = [(name == coding, q, position) for name, q, position in accepted
                   if name in (coding, "*")]
        if not matches:
            continue
        exact, q, position = max(matches)
        if q > 0:  # ranked as negotiator's compareSpecs: q, exact, client's order, ours
            ranked.append((-q, not exact, position, index, coding))
    return min(ranked)[-1] if ranked else None


def encode(body: bytes, encoding: str) -> bytes:
    """``body`` as ``encoding`` (gzip or deflate), with zlib's default level and window."""
    z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, _WBITS[encoding])
    return z.compress(body) + z.flush()


def decode(body: bytes, encoding: str | None, max_size: int | None = None) -> bytes:
    """The body a ``Content-Encoding`` (none, gzip or deflate) wraps, at most ``max_size``
    bytes (more raises :class:`~lablib.errors.PayloadTooBig`); ``ValueError`` when the coding
    is unknown or the data is not what it says."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding not in _WBITS:
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
    z = zlib.decompressobj(_WBITS[coding])
    try:
        out = z.decompress(body, 0 if max_size is None else max_size + 1)
    except zlib.error as exc:
        raise ValueError(f"the body is not {coding} data ({exc})") from None
    if max_size is not None and len(out) > max_size:
        raise PayloadTooBig(f"the {coding} body inflates beyond {max_size} bytes")
    if not z.eof:
        raise ValueError(f"the {coding} body is truncated")
    return out
