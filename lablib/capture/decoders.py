"""The decoders :func:`lablib.capture.dissect.dissect` uses by default, in order.

Each layer above HTTP and WebSocket keeps its decoder in its own package and describes it with
a :class:`~lablib.capture.decoding.Decoder` named ``DECODER``; this module only lists them.  A
new layer: write its decoder on :mod:`lablib.capture.decoding`, then add one import and one
entry here.
"""

from __future__ import annotations

from ..engineio.dissect import DECODER as ENGINEIO
from ..mqtt.dissect import DECODER as MQTT
from ..socketio.dissect import DECODER as SOCKETIO
from ..socketio.redis_dissect import DECODER as SOCKETIO_REDIS
from ..sse.dissect import DECODER as SSE
from .decoding import Decoder

__all__ = ["DECODERS"]

#: Engine.IO (over WebSocket and HTTP polling), Socket.IO (inside Engine.IO), MQTT (over
#: WebSocket), Server-Sent Events (HTTP bodies) and the Socket.IO Redis adapter (inside RESP).
DECODERS: list[Decoder] = [ENGINEIO, SOCKETIO, MQTT, SSE, SOCKETIO_REDIS]
