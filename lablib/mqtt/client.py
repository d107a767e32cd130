"""A minimal asyncio MQTT 3.1.1 client over lablib's WebSocket client (subprotocol ``mqtt``).

    async with Client("ws://127.0.0.1:1884/mqtt", "sensor-1") as client:
        await client.subscribe("rooms/+/temp", qos=1)
        await client.publish("rooms/kitchen/temp", b"21.5", qos=2)   # returns after PUBCOMP
        message = await client.recv()                                # a MessageReceived

A thin driver: the protocol is :class:`~lablib.mqtt.session.ClientSession`.  The driver opens the
WebSocket (§6: binary frames, the ``mqtt`` subprotocol [MQTT-6.0.0-3], [MQTT-6.0.0-4]), writes what
the session queues, feeds it what arrives, and runs its keep-alive timer with the injected
``clock``.  Several MQTT packets may share one WebSocket message and one packet may span several
(§6 [MQTT-6.0.0-2]); the session's parser does not care.

A login (§3.1.3.4-5) is ``username``/``password``, or the URL's userinfo
(``ws://user:pass@host:port/mqtt``, percent-encoded): it goes in CONNECT, not in the WebSocket
handshake, so it is taken out of the URL.  MQTT sends it in clear; only TLS (``wss:``) hides it.

Reconnecting is the caller's choice: after the connection drops, ``await client.connect()`` again.
With ``clean_session=False`` the session survives: QoS 1/2 messages still in flight are re-sent
with DUP=1 (PUBREL for those already PUBREC'd) as soon as CONNACK says the server kept the
session (see :class:`~lablib.mqtt.events.Connected`'s ``resent``).  A ``publish()`` that was
waiting for its acknowledgment when the connection dropped raises ``ConnectionClosed``; its
message is still in the session and goes out again on reconnect.

Bounds: at most ``max_inflight`` QoS 1/2 messages unacknowledged (``publish()`` waits for room),
at most ``max_queue`` received messages waiting for ``recv()`` (then the driver stops reading and
the WebSocket's own backpressure pushes back on the broker), packets up to ``max_packet_size``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from typing import AsyncIterator, Callable, Iterable
from urllib.parse import unquote, urlsplit

from ..errors import ConnectionClosed
from ..websocket.client import connect as ws_connect
from . import packets as p
from .errors import ConnectionRefused, MQTTError, MQTTProtocolError
from .events import (Connected, Event, MessageReceived, PongReceived, PublishAcknowledged,
                     SubscribeAcknowledged, UnsubscribeAcknowledged)
from .session import ClientSession, MQTTState

__all__ = ["Client", "SUBPROTOCOL", "split_userinfo"]

#: §6 [MQTT-6.0.0-3]: the WebSocket Sub Protocol name for MQTT 3.1.1.
SUBPROTOCOL = "mqtt"


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``ws://user:pass@host:port/path`` -> (``ws://host:port/path``, user, pass), decoded;
    (url, None, None) when there is no userinfo."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    password = None if parts.password is None else unquote(parts.password)
    return parts._replace(netloc=netloc).geturl(), unquote(parts.username), password


class Client:
    """An MQTT client; see the module docstring.  ``client_id`` defaults to a random one
    (``lablib-`` + 16 hex digits, from ``rng`` when given, else :mod:`secrets`)."""

    def __init__(self, url: str, client_id: str | None = None, *, clean_session: bool = True,
                 keep_alive: int = 60, ping_timeout: float | None = None, max_inflight: int = 20,
                 max_queue: int = 100, max_packet_size: int = p.DEFAULT_MAX_PACKET_SIZE,
                 username: str | None = None, password: bytes | None = None,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 open_timeout: float = 10) -> None:
        if client_id is None:
            token = f"{rng.getrandbits(64):016x}" if rng is not None else secrets.token_hex(8)
            client_id = f"lablib-{token}"
        url, url_username, url_password = split_userinfo(url)
        if username is None and url_username is not None:
            username = url_username
            password = None if url_password is None else url_password.encode()
        self.url = url
        self.clock = clock
        self.rng = rng
        self.open_timeout = open_timeout
        self.max_packet_size = max_packet_size
        self.session = ClientSession(client_id, clean_session=clean_session, keep_alive=keep_alive,
                                     ping_timeout=ping_timeout, max_inflight=max_inflight,
                                     max_packet_size=max_packet_size, username=username,
                                     password=password)
        self.ws = None
        self.connected: Connected | None = None   #: the last CONNACK's event
        self.error: BaseException | None = None   #: why the last connection ended, if not cleanly
        self.pongs = 0                            #: PINGRESPs received (keep alive at work)
        self._messages: asyncio.Queue[MessageReceived] = asyncio.Queue(max_queue)
        self._waiters: dict[int, asyncio.Future] = {}
        self._connack: asyncio.Future | None = None
        self._send_lock = asyncio.Lock()
        self._window = asyncio.Condition()
        self._reader: asyncio.Task | None = None
        self._timer: asyncio.Task | None = None
        self._wake_timer = asyncio.Event()

    @property
    def client_id(self) -> str:
        return self.session.client_id

    # --- connection -----------------------------------------------------------------------------

    async def connect(self) -> Connected:
        """Open the WebSocket, send CONNECT, wait for CONNACK (raises ConnectionRefused if refused).

        ``open_timeout`` bounds the WebSocket handshake and, again, the wait for CONNACK.
        """
        if self._reader is not None:
            await self._wait_tasks()      # the previous connection's tasks have ended
        ws = await ws_connect(self.url, subprotocols=[SUBPROTOCOL], max_size=self.max_packet_size + 5,
                              ping_interval=None, open_timeout=self.open_timeout, rng=self.rng)
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close(1002, "MQTT needs the mqtt subprotocol")
            raise MQTTProtocolError(f"the server chose subprotocol {ws.subprotocol!r}, not 'mqtt' "
                                    "(§6 [MQTT-6.0.0-4])")
        self.ws, self.error = ws, None
        self._connack = asyncio.get_running_loop().create_future()
        self.session.connect(self.clock())
        self._reader = asyncio.create_task(self._read_loop(ws))
        self._timer = asyncio.create_task(self._keepalive_loop())
        await self._flush()
        try:
            async with asyncio.timeout(self.open_timeout):    # a silent server must not hang us
                self.connected = await asyncio.shield(self._connack)
        except TimeoutError:
            self.drop()
            await self._wait_tasks()
            raise TimeoutError(f"no CONNACK within open_timeout={self.open_timeout}s") from None
        return self.connected

    async def disconnect(self) -> None:
        """Send DISCONNECT (§3.14) and close the WebSocket."""
        if self.ws is None:
            return
        if self.session.state is MQTTState.CONNECTED:
            async with self._send_lock:
                self.session.disconnect(self.clock())
                data = self.session.data_to_send()
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.send(data)
        await self.ws.close()
        await self._wait_tasks()

    def drop(self) -> None:
        """Abort the TCP connection without DISCONNECT, as a network failure would (for labs)."""
        if self.ws is not None and self.ws.transport is not None:
            self.ws.transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the current connection has ended (its reader has stopped)."""
        await self._wait_tasks()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.disconnect()

    # --- the application's calls ----------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False,
                      *, wait: bool = True) -> int | None:
        """Publish; at QoS 1/2 wait (unless ``wait`` is False) for PUBACK / PUBCOMP.

        Waits first while ``max_inflight`` messages are unacknowledged.  Returns the Packet
        Identifier (None at QoS 0).
        """
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if qos:
            async with self._window:
                await self._window.wait_for(lambda: self.session.window_open
                                            or self.session.state is not MQTTState.CONNECTED)
        packet_id = self.session.publish(topic, payload, self.clock(), qos=qos, retain=retain)
        waiter = self._expect(packet_id) if qos else None
        await self._flush()
        if waiter is not None and wait:
            await waiter
        return packet_id

    async def subscribe(self, topics: str | Iterable[tuple[str, int]], qos: int = 0) -> tuple[int, ...]:
        """SUBSCRIBE to one filter (with ``qos``) or (filter, qos) pairs; returns SUBACK's codes."""
        pairs = [(topics, qos)] if isinstance(topics, str) else list(topics)
        packet_id = self.session.subscribe(pairs, self.clock())
        waiter = self._expect(packet_id)
        await self._flush()
        event = await waiter
        return event.return_codes

    async def unsubscribe(self, topics: str | Iterable[str]) -> None:
        packet_id = self.session.unsubscribe([topics] if isinstance(topics, str) else topics,
                                             self.clock())
        waiter = self._expect(packet_id)
        await self._flush()
        await waiter

    async def recv(self) -> MessageReceived:
        """The next application message (waits for one)."""
        return await self._messages.get()

    async def __aiter__(self) -> AsyncIterator[MessageReceived]:
        while True:
            yield await self.recv()

    # --- the driver ------------------------------------------------------------------------------

    def _expect(self, packet_id: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiters[packet_id] = future
        return future

    async def _flush(self) -> None:
        """Write what the session queued, in order (one WebSocket message per flush)."""
        self._wake_timer.set()    # the keep-alive deadline moved
        async with self._send_lock:
            data = self.session.data_to_send()
            if data and self.ws is not None:
                await self.ws.send(data)

    async def _read_loop(self, ws) -> None:
        try:
            while True:
                message = await ws.recv()
                if isinstance(message, str):
                    raise MQTTProtocolError("MQTT travels in binary frames; a text frame arrived "
                                            "(§6 [MQTT-6.0.0-1])")
                events = self.session.receive_data(message, self.clock())
                await self._flush()               # PUBACK/PUBREC/PUBREL/PUBCOMP, re-sends
                for event in events:
                    await self._dispatch(event)
        except ConnectionClosed as exc:
            self.error = exc
        except MQTTError as exc:                  # §4.8: a violation closes the connection
            self.error = exc
            refused = isinstance(exc, ConnectionRefused)   # not a violation: the server said no
            with contextlib.suppress(ConnectionClosed):
                await ws.close(1000 if refused else 1002, "" if refused else exc.reason[:100])
        finally:
            self._connection_ended(ws)

    async def _dispatch(self, event: Event) -> None:
        if isinstance(event, Connected):
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(event)
        elif isinstance(event, PongReceived):
            self.pongs += 1
        elif isinstance(event, MessageReceived):
            await self._messages.put(event)       # full: stop reading (backpressure)
        elif isinstance(event, (PublishAcknowledged, SubscribeAcknowledged,
                                UnsubscribeAcknowledged)):
            waiter = self._waiters.pop(event.packet_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
            if isinstance(event, PublishAcknowledged):
                async with self._window:
                    self._window.notify_all()

    def _connection_ended(self, ws) -> None:
        self.session.connection_lost()
        error = self.error if isinstance(self.error, MQTTError) else ConnectionClosed(
            getattr(self.error, "code", 1006), getattr(self.error, "reason", ""))
        for future in [self._connack, *self._waiters.values()]:
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()               # retrieved: no "never retrieved" warning
        self._waiters.clear()
        self._wake_timer.set()
        asyncio.get_running_loop().create_task(self._notify_window())
        if not ws.transport.is_closing():
            ws.transport.abort()

    async def _notify_window(self) -> None:
        async with self._window:
            self._window.notify_all()

    async def _keepalive_loop(self) -> None:
        """Sleep until the session's deadline, then tick; a late PINGRESP ends the connection."""
        while self.session.state is not MQTTState.DISCONNECTED:
            self._wake_timer.clear()
            deadline = self.session.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake_timer.wait()
                    continue
            try:
                self.session.tick(self.clock())
            except MQTTError as exc:
                self.error = exc
                self.drop()
                return
            await self._flush()

    async def _wait_tasks(self) -> None:
        """Wait for the reader to end (it ends with the connection), then stop the timer."""
        reader, timer, self._reader, self._timer = self._reader, self._timer, None, None
        if reader is not None and reader is not asyncio.current_task():
            await asyncio.wait([reader])
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
            await asyncio.wait([timer])
