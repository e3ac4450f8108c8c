"""The read-only command allowlist: the only RouterOS requests mikrovoice can build.

A ``ReadCommand`` can only be made by the constructors in this file, each a ``print`` or a
``monitor ... once`` (research/routeros.md section 3). There is no way to build ``add``, ``set``,
``remove`` or any other write, so RouterOS access is read-only by construction; the client
checks the allowlist again before anything reaches a socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from mikrovoice.routeros.protocol import Request

#: Exact command words the client will ever send (besides /login).
ALLOWED_COMMANDS = frozenset(
    {
        "/system/identity/print",
        "/interface/print",
        "/interface/monitor-traffic",
        "/ip/dhcp-server/lease/print",
    }
)
#: Attributes each command may carry; monitor-traffic must carry ``once`` so it ends by itself.
_ALLOWED_ATTRIBUTES = {
    "/system/identity/print": {".proplist"},
    "/interface/print": {".proplist"},
    "/interface/monitor-traffic": {"interface", "once", ".proplist"},
    "/ip/dhcp-server/lease/print": {".proplist"},
}


class CommandNotAllowed(Exception):
    """A request outside the read-only allowlist was about to be sent."""


@dataclass(frozen=True)
class ReadCommand:
    request: Request

    def __post_init__(self) -> None:
        check_allowed(self.request)


def check_allowed(request: Request) -> None:
    if request.command not in ALLOWED_COMMANDS:
        raise CommandNotAllowed(f"{request.command} is not in mikrovoice's read-only allowlist")
    extra = set(request.attributes) - _ALLOWED_ATTRIBUTES[request.command]
    if extra:
        raise CommandNotAllowed(f"{request.command} may not carry {sorted(extra)}")
    if request.command == "/interface/monitor-traffic" and "once" not in request.attributes:
        raise CommandNotAllowed("/interface/monitor-traffic must carry =once= so that it ends")


def identity() -> ReadCommand:
    return ReadCommand(Request("/system/identity/print", {".proplist": "name"}))


def interfaces() -> ReadCommand:
    return ReadCommand(
        Request("/interface/print", {".proplist": "name,type,running,disabled"}, ("?type=ether",))
    )


def monitor_traffic(interface_names: list[str]) -> ReadCommand:
    if not interface_names:
        raise ValueError("monitor-traffic needs at least one interface")
    return ReadCommand(
        Request(
            "/interface/monitor-traffic",
            {
                "interface": ",".join(interface_names),
                "once": "",
                ".proplist": "name,rx-bits-per-second,tx-bits-per-second",
            },
        )
    )


def bound_leases() -> ReadCommand:
    return ReadCommand(
        Request(
            "/ip/dhcp-server/lease/print",
            {".proplist": "address,mac-address,host-name,last-seen,status"},
            ("?status=bound",),
        )
    )
