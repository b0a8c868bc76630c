"""uvicorn's HTTP protocols with a deadline on the request head.

uvicorn closes a keep-alive connection that stays idle after a response, but a connection that
never sends a byte, or sends its request line and headers one byte at a time, is kept open for
ever: enough of them use up the server's file descriptors and ``/healthz`` stops answering.
These subclasses close a connection that has not completed its request head
``header_timeout_seconds`` after it opened (or after its previous response). With
``max_connections`` (uvicorn's ``limit_concurrency``) and the body deadline of
:mod:`hardneg.service.api.timeouts`, every stage of a request has a limit.
"""

from __future__ import annotations

import asyncio
import functools

from uvicorn.protocols.http.h11_impl import H11Protocol

from hardneg.service.settings import Settings


@functools.cache
def header_timeout() -> float:
    return Settings().header_timeout_seconds


class _HeadDeadline:
    """Arms a timer whenever the connection waits for a request head; the head disarms it.
    Mixed in before a uvicorn protocol class, whose methods ``super()`` reaches."""

    transport: asyncio.Transport
    _head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = asyncio.get_running_loop().call_later(header_timeout(), self._expire)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _waiting(self) -> bool:
        """No request in flight: the connection waits for (the rest of) a request head."""
        cycle = getattr(self, "cycle", None)
        return not self.transport.is_closing() and (cycle is None or cycle.response_complete)

    def _expire(self) -> None:
        self._head_timer = None
        if self._waiting():
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if self._waiting():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]


class GuardedH11Protocol(_HeadDeadline, H11Protocol):
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if self._head_timer is not None and cycle is not None and not cycle.response_complete:
            self._disarm()  # a request head has been read


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: h11 only
    HTTP_PROTOCOL: type[asyncio.Protocol] = GuardedH11Protocol
else:

    class GuardedHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

    HTTP_PROTOCOL = GuardedHttpToolsProtocol
