"""Gearman connections that send each packet at once.

gear writes one packet per ``send``; with Nagle's algorithm on (the socket
default) a packet written while the previous one is not yet acknowledged
waits for that acknowledgement, which the peer delays by up to 40 ms. A
worker answers every build with WORK_DATA then WORK_COMPLETE, a client
submits back to back: measured on 127.0.0.1, every round trip took 44 ms and
a client got 59 SUBMIT_JOBs/s answered. With TCP_NODELAY on both ends the
round trip is under a millisecond (``bench/gearman_tls.py``). Gearman
packets are small and each is a complete message, so there is nothing for
Nagle to coalesce.

Every gear client, worker and server socket gatekeeper makes goes through
here: :class:`Client` and :class:`TextWorker` in place of gear's, and
:func:`no_delay` on each connection the embedded server accepts.
"""

from __future__ import annotations

import socket

import gear

__all__ = ["Client", "TextWorker", "no_delay"]


def no_delay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off on a TCP socket (TLS or not); others are left alone."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Client(gear.Client):
    """gear's Client whose connections send each packet at once."""

    def _onConnect(self, conn: gear.Connection) -> None:  # noqa: N802 - gear's name
        # gear calls this on each (re)connection, before anything is sent.
        if conn.conn is not None:
            no_delay(conn.conn)
        super()._onConnect(conn)


class TextWorker(gear.TextWorker):
    """gear's TextWorker whose connections send each packet at once."""

    def _onConnect(self, conn: gear.Connection) -> None:  # noqa: N802 - gear's name
        # Before the worker's SET_CLIENT_ID and CAN_DO go out.
        if conn.conn is not None:
            no_delay(conn.conn)
        super()._onConnect(conn)
