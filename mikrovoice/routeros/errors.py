"""Why a router could not be asked: one ``Reason`` for the caller (spoken, in Spanish, from
``Phrases``) and a technical ``detail`` for the log.

Every failure of the RouterOS layer is a ``RouterFailure``: connection refused, a router that
accepts TCP and never answers, a refused login, a connection cut mid-reply, garbage on the wire,
a missing menu, a permission the API user lacks. Nothing else escapes a router's task.
"""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    #: the router did not answer the command within its deadline
    TIMEOUT = "timeout"
    #: TCP connect plus login did not finish within the connect timeout (a black hole)
    CONNECT_TIMEOUT = "connect_timeout"
    #: no route, connection refused, host down
    UNREACHABLE = "unreachable"
    #: the router refused the API user's name or password
    LOGIN = "login"
    #: the connection was closed or reset in the middle of a reply
    DROPPED = "dropped"
    #: the bytes were not a valid RouterOS API stream
    PROTOCOL = "protocol"
    #: the menu or command does not exist on this router (package absent, other board)
    MISSING = "missing"
    #: the API user lacks a policy (``/ping`` needs ``test``)
    PERMISSION = "permission"
    #: the router refused another API session (``max-sessions``)
    BUSY = "busy"
    #: the TLS handshake or the certificate check failed (API-SSL)
    TLS = "tls"
    #: the router answered ``!trap`` for another reason
    TRAP = "trap"


class RouterFailure(Exception):
    """A router could not answer. ``str()`` is the technical detail (English, for the log)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
