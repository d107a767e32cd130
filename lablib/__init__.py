"""lablib — WebSocket, Engine.IO and Socket.IO built from the bytes up, for teaching.

Every protocol layer is a sans-I/O state machine (bytes in -> events out, calls in -> bytes out)
with a thin asyncio driver on top.  See the notebooks for the guided tour.
"""

__version__ = "0.1.0"
