"""Server-assisted invalidation: one invalidation connection per process, always read.

``Tracker`` owns the connection Valkey sends invalidations to and keeps it alive:

* **default mode** (tracked keys): the server remembers which keys each *data connection* read.
  Every connection of :attr:`Tracker.data` runs ``CLIENT TRACKING ON REDIRECT <id>`` (``id`` of the
  invalidation connection) when it connects, and is reconnected before use if that id changed, so
  reads made for the near cache are always tracked by the current invalidation connection.
* **BCAST mode** (``prefixes=[...]``): the invalidation connection itself registers
  ``CLIENT TRACKING ON [REDIRECT <self>] BCAST PREFIX p ...``; every write under a prefix is
  announced, whichever connection read the key, so data reads use the base client's pool.

Protocol 2 (default): the invalidation connection runs ``SUBSCRIBE __redis__:invalidate`` and
receives Pub/Sub messages. Protocol 3: it receives ``invalidate`` push messages (the data
connections then use RESP3 too, because the server encodes the null of a flush in the *tracking*
client's protocol). A background task reads the connection continuously, not only when a command
runs. A null invalidation (FLUSHALL/FLUSHDB) means "drop everything".

The connection is PINGed every ``ping_interval_s``; no answer within ``ping_timeout_s`` counts as a
drop. On a drop the listeners are told to flush everything (``keys=None``), :attr:`ready` turns
False (nobody may fill a near cache) and :attr:`epoch` changes; the tracker reconnects with
back-off by itself and becomes ready again with a new epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import valkey.asyncio as avalkey
from valkey._parsers import _AsyncRESP2Parser, _AsyncRESP3Parser
from valkey.exceptions import ConnectionError as ValkeyConnectionError
from valkey.utils import str_if_bytes

from onair.clients.base import Lifecycle
from onair.clients.valkey import ValkeyClient
from onair.config import timeouts
from onair.logging import get_logger

log = get_logger("onair.cache.tracking")

InvalidationListener = Callable[[list[str] | None], None]
"""Called with the invalidated keys, or ``None`` for "flush everything" (null invalidation or drop)."""

INVALIDATE_CHANNEL = b"__redis__:invalidate"


class TrackingLost(ConnectionError):
    """The invalidation connection stopped answering PINGs."""


class _Push:
    """An RESP3 push message, told apart from command replies."""

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data


class _TrackedPool(avalkey.BlockingConnectionPool):
    """Pool of data connections that each run ``CLIENT TRACKING ON REDIRECT <id>`` on connect and
    are reconnected before use when the invalidation connection's id changed."""

    tracker: Tracker

    def make_connection(self) -> Any:
        conn = super().make_connection()
        conn.onair_redirect_id = None
        conn.register_connect_callback(self._enable_tracking)
        return conn

    async def _enable_tracking(self, conn: Any) -> None:
        conn.onair_redirect_id = None
        cid = self.tracker.client_id
        if cid is None:
            raise ValkeyConnectionError("invalidation connection is not up; tracking unavailable")
        await conn.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", cid)
        reply = await conn.read_response()
        if str_if_bytes(reply) != "OK":
            raise ValkeyConnectionError(f"CLIENT TRACKING failed: {reply!r}")
        conn.onair_redirect_id = cid

    async def get_connection(self, command_name: Any, *keys: Any, **options: Any) -> Any:
        conn = await super().get_connection(command_name, *keys, **options)
        if conn.onair_redirect_id is None or conn.onair_redirect_id != self.tracker.client_id:
            try:
                await conn.disconnect()
                await conn.connect()
                if conn.onair_redirect_id != self.tracker.client_id:
                    raise ValkeyConnectionError("tracking redirect changed while connecting")
            except BaseException:
                await self.release(conn)
                raise
        return conn


class Tracker(Lifecycle):
    """The invalidation connection of one process and the tracked data connections that go with it."""

    def __init__(
        self,
        client: ValkeyClient,
        *,
        prefixes: Sequence[str] | None = None,
        protocol: int = 2,
        ping_interval_s: float = 1.0,
        ping_timeout_s: float | None = None,
        reconnect_max_s: float = 1.0,
        max_data_connections: int = 16,
    ) -> None:
        if protocol not in (2, 3):
            raise ValueError("protocol must be 2 or 3")
        self.client = client
        self.prefixes = tuple(prefixes or ())
        self.mode = "bcast" if self.prefixes else "default"
        self.protocol = protocol
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s if ping_timeout_s is not None else client.timeout_s
        self.reconnect_max_s = reconnect_max_s
        self.max_data_connections = max_data_connections
        self.client_id: int | None = None
        self.ready = False
        self.epoch = 0
        self.invalidations = 0
        self.flushes = 0
        self.connects = 0
        self._listeners: list[InvalidationListener] = []
        self._task: asyncio.Task[None] | None = None
        self._ready_event = asyncio.Event()
        self._pongs = 0
        self._pong_event = asyncio.Event()
        self._data: avalkey.Valkey | None = None
        self._closing = False

    # -- public ------------------------------------------------------------------------------------
    def add_listener(self, listener: InvalidationListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: InvalidationListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    @property
    def data(self) -> avalkey.Valkey:
        """The client whose reads are tracked (its own pool in default mode, the base pool in BCAST)."""
        if self._data is None:
            raise RuntimeError("Tracker not started: call await tracker.start() or use 'async with'")
        return self._data

    async def start(self) -> None:
        """Start the background task and wait (up to the default timeout) for tracking to be up.

        Valkey being down is not an error: the tracker keeps trying and becomes ready by itself.
        """
        if self._task is not None:
            return
        await self.client.start()
        self._closing = False
        if self.mode == "default":
            kwargs = self.client.connection_kwargs() | {"protocol": self.protocol}
            pool = _TrackedPool.from_url(
                self.client.url,
                max_connections=self.max_data_connections,
                timeout=self.client.timeout_s,
                **kwargs,
            )
            pool.tracker = self
            self._data = avalkey.Valkey(connection_pool=pool)
        else:
            self._data = self.client.raw
        self._task = asyncio.create_task(self._run(), name="onair-cache-tracker")
        if not await self.wait_ready(self.client.timeout_s):
            log.warning("cache.tracking.not_ready", url=self.client.url, mode=self.mode)

    async def wait_ready(self, timeout_s: float | None = None) -> bool:
        if self.ready:
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not self.ready:
                    self._ready_event.clear()
                    await self._ready_event.wait()
        return self.ready

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._data is not None and self.mode == "default":
            data, self._data = self._data, None
            await data.aclose()
            await data.connection_pool.disconnect()  # a pool passed in is not closed by aclose()
        self._data = None

    # -- background task ---------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = 0.05
        while not self._closing:
            conn: Any = None
            try:
                conn = await self._open()
                delay = 0.05
                await self._serve(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cache.tracking.dropped", error=repr(exc), was_ready=self.ready)
            finally:
                self._dropped()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.disconnect(nowait=True)
            if self._closing:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    async def _open(self) -> Any:
        kwargs = self.client.connection_kwargs() | {
            "protocol": self.protocol,
            "socket_timeout": None,  # reads wait forever; liveness comes from the PINGs
            "parser_class": _AsyncRESP3Parser if self.protocol == 3 else _AsyncRESP2Parser,
        }
        conn = avalkey.ConnectionPool.from_url(self.client.url, **kwargs).make_connection()
        if self.protocol == 3:
            conn._parser.set_invalidation_push_handler(_Push)
        async with asyncio.timeout(timeouts().connect_timeout_s):
            await conn.connect()
            if self.protocol == 3:
                conn._parser.set_invalidation_push_handler(_Push)
            cid = int(await self._command(conn, "CLIENT", "ID"))
            if self.mode == "bcast":
                redirect = () if self.protocol == 3 else ("REDIRECT", cid)
                prefix_args = [a for p in self.prefixes for a in ("PREFIX", p)]
                args = ("CLIENT", "TRACKING", "ON", *redirect, "BCAST", *prefix_args)
                reply = await self._command(conn, *args)
                if str_if_bytes(reply) != "OK":
                    raise ValkeyConnectionError(f"CLIENT TRACKING BCAST failed: {reply!r}")
            if self.protocol == 2:
                reply = await self._command(conn, "SUBSCRIBE", INVALIDATE_CHANNEL)
                if not isinstance(reply, list) or reply[0] != b"subscribe":
                    raise ValkeyConnectionError(f"SUBSCRIBE failed: {reply!r}")
        self.client_id = cid
        self.connects += 1
        self.epoch += 1
        self.ready = True
        self._ready_event.set()
        log.info("cache.tracking.ready", client_id=cid, mode=self.mode, protocol=self.protocol)
        return conn

    @staticmethod
    async def _command(conn: Any, *args: Any) -> Any:
        await conn.send_command(*args, check_health=False)
        return await conn.read_response(push_request=True)

    async def _serve(self, conn: Any) -> None:
        reader = asyncio.create_task(self._read_loop(conn))
        pinger = asyncio.create_task(self._ping_loop(conn))
        try:
            done, _ = await asyncio.wait({reader, pinger}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raise what ended it
            raise ValkeyConnectionError("invalidation connection closed")
        finally:
            for task in (reader, pinger):
                task.cancel()
            await asyncio.gather(reader, pinger, return_exceptions=True)

    async def _read_loop(self, conn: Any) -> None:
        while True:
            msg = await conn.read_response(push_request=True)
            if isinstance(msg, _Push):
                data = msg.data
                if data and data[0] in (b"invalidate", "invalidate"):
                    self._invalidate(data[1])
                continue
            if isinstance(msg, list) and msg:
                kind = msg[0]
                if kind == b"message" and len(msg) == 3 and msg[1] == INVALIDATE_CHANNEL:
                    self._invalidate(msg[2])
                elif kind == b"pong":
                    self._pong()
                continue
            if msg in (b"PONG", "PONG"):
                self._pong()

    async def _ping_loop(self, conn: Any) -> None:
        while True:
            await asyncio.sleep(self.ping_interval_s)
            seen = self._pongs
            self._pong_event.clear()
            if not conn.is_connected:
                raise ValkeyConnectionError("invalidation connection closed")
            await conn.send_command("PING", check_health=False)
            deadline = time.monotonic() + self.ping_timeout_s
            while self._pongs == seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TrackingLost(f"no PONG within {self.ping_timeout_s}s")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._pong_event.wait()
                self._pong_event.clear()

    def _pong(self) -> None:
        self._pongs += 1
        self._pong_event.set()

    # -- notifications -------------------------------------------------------------------------------
    def _invalidate(self, raw_keys: Any) -> None:
        if raw_keys is None:
            self.epoch += 1
            self.flushes += 1
            self._notify(None)
            return
        keys = [k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else str(k) for k in raw_keys]
        self.invalidations += len(keys)
        self._notify(keys)

    def _dropped(self) -> None:
        was_ready, self.ready = self.ready, False
        self.client_id = None
        if was_ready:
            self.epoch += 1
            self.flushes += 1
            self._notify(None)

    def _notify(self, keys: list[str] | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(keys)
            except Exception as exc:  # a broken listener must not stop the reading
                log.error("cache.tracking.listener_failed", error=repr(exc))
