"""Embedded MQTT broker (amqtt) for the demo and for tests where no broker is configured.

Production runs against a real MQTT 3.1.1/5 broker (Mosquitto, EMQX, ...); this module only
fills in when ``TRACKER_MQTT_URL`` is unset. What amqtt 0.12 really does (found by experiment;
all but the quirks are asserted in ``tests/mqtt/test_broker.py``):

- MQTT 3.1.1 only. A v5 CONNECT is refused with CONNACK return code 1 (paho 2 reports
  "Unsupported protocol version"); a v3.1 one has its socket closed without a CONNACK.
- Persistent sessions (clean session off: QoS 1 messages queued while the client is offline,
  delivered on reconnect) work only for sessions amqtt does not mark anonymous, hence
  :class:`LoopbackAuthPlugin`. They never expire while the broker runs; all is lost at stop.
- No redelivery of unacknowledged QoS 1 messages: a message is forgotten when its receiver
  drops, or 5 s after sending if no PUBACK came. A killed ingester loses what it had in flight.
- No shared subscriptions: ``$share/<group>/<filter>`` is granted by SUBACK but matches nothing.
- Quirks: messages queued for an offline client arrive with the retain flag set, and a
  connecting client is sent the retained messages matching *any* client's subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import threading
from types import TracebackType
from typing import Self

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

#: MQTT protocol versions the embedded broker accepts; clients must connect with these.
EMBEDDED_BROKER_MQTT_VERSIONS = ("3.1.1",)

LOOPBACK_HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT_S = 10.0
DEFAULT_STOP_TIMEOUT_S = 10.0


def free_tcp_port(host: str = LOOPBACK_HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class LoopbackAuthPlugin(BaseAuthPlugin):
    """amqtt auth plugin: accept any client, with or without credentials, from a loopback address.

    amqtt's own ``AnonymousAuthPlugin`` marks every session it lets in as anonymous, and amqtt
    neither queues offline messages for anonymous sessions nor keeps them after a disconnect,
    which would silently turn every clean-session-off client into a clean one. Accepting
    loopback peers without flagging them keeps persistent sessions working.
    """

    async def authenticate(self, *, session: Session) -> bool:
        """Return True when the client connects from a loopback address."""
        if session.remote_address is None:
            return False
        try:
            return ipaddress.ip_address(session.remote_address).is_loopback
        except ValueError:
            return False


class _LeakFreeBroker(Broker):
    """amqtt's Broker, closing each client socket once amqtt is done with the connection."""

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        try:
            await super().stream_connected(reader, writer, listener_name)
        finally:
            # amqtt 0.12 never closes a connection that hangs up before sending CONNECT (a port
            # probe, a health check): the socket would leak and warn when garbage collected.
            # No wait_closed(): amqtt may have cancelled that future already, and close() is
            # enough, the loop closes the socket on its next iteration.
            writer.close()


class EmbeddedBroker:
    """An amqtt broker on ``127.0.0.1`` running in a daemon thread with its own event loop.

    Sessions, subscriptions and queued messages live in memory only: they are gone after
    :meth:`stop`. Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0 (pick a free one) or 1-65535, got {port}")
        if start_timeout_s <= 0 or stop_timeout_s <= 0:
            raise ValueError("start_timeout_s and stop_timeout_s must be positive")
        # Resolved once, so that a stop() and start() again reuses the same port and URL.
        self._port = port or free_tcp_port()
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    @property
    def host(self) -> str:
        """Return the address the broker listens on (always loopback)."""
        return LOOPBACK_HOST

    @property
    def port(self) -> int:
        """Return the TCP port the broker listens on."""
        return self._port

    @property
    def url(self) -> str:
        """Return the broker URL, ``mqtt://127.0.0.1:<port>``."""
        return f"mqtt://{LOOPBACK_HOST}:{self._port}"

    @property
    def is_running(self) -> bool:
        """Return True between a successful :meth:`start` and :meth:`stop`."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Start the broker; return once its port accepts connections.

        Raises RuntimeError if it is already running or does not come up within the timeout
        (for example because the port is taken).
        """
        if self._thread is not None:
            raise RuntimeError(f"embedded MQTT broker at {self.url} is already running")
        _quiet_amqtt_logging()
        self._ready.clear()
        self._start_error = None
        self._thread = threading.Thread(
            target=self._run, name=f"embedded-mqtt-broker-{self._port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(self._start_timeout_s):
            self.stop()
            raise RuntimeError(
                f"embedded MQTT broker at {self.url} did not start within {self._start_timeout_s} s"
            )
        if self._start_error is not None:
            self._thread.join(self._stop_timeout_s)
            self._thread = None
            raise RuntimeError(
                f"embedded MQTT broker could not listen on {self.url}: {self._start_error}; "
                "choose another port, or port 0 to pick a free one"
            ) from self._start_error
        return self

    def stop(self) -> None:
        """Disconnect all clients, close the port and join the broker thread (no-op if stopped)."""
        thread = self._thread
        if thread is None:
            return
        loop, stop_requested = self._loop, self._stop_requested
        if loop is not None and stop_requested is not None:
            # The loop may already be closing if start failed; then there is nothing to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_requested.set)
        thread.join(self._stop_timeout_s)
        if thread.is_alive():
            raise RuntimeError(
                f"embedded MQTT broker at {self.url} did not stop within {self._stop_timeout_s} s"
            )
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<EmbeddedBroker {self.url} {state}>"

    def _run(self) -> None:
        # asyncio.run cancels and awaits whatever amqtt leaves behind and closes the loop, so
        # no task is destroyed while pending.
        try:
            asyncio.run(self._serve())
        finally:
            self._loop = None
            self._stop_requested = None
            # Never leave start() waiting for the full timeout if the thread dies early.
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            broker = _LeakFreeBroker(self._config())
            await broker.start()
        except Exception as exc:
            # Raised here it would die with the thread; start() re-raises it in the caller.
            self._start_error = exc
            return
        # amqtt's start() returns after asyncio.start_server(), i.e. the socket is listening.
        self._ready.set()
        await self._stop_requested.wait()
        await broker.shutdown()

    def _config(self) -> dict[str, object]:
        return {
            "listeners": {
                "default": {"type": "tcp", "bind": f"{LOOPBACK_HOST}:{self._port}"},
            },
            # An explicit plugin list replaces amqtt's defaults: the packet/event loggers (noise),
            # the $SYS plugin (a DeprecationWarning at start-up) and the anonymous auth plugin
            # (which disables persistent sessions, see LoopbackAuthPlugin).
            "plugins": {f"{__name__}.{LoopbackAuthPlugin.__qualname__}": {}},
        }


def _quiet_amqtt_logging() -> None:
    """Raise amqtt's loggers to WARNING unless the operator configured them."""
    for name in ("amqtt", "transitions"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
