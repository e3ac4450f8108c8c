"""Caller authorisation: who may use the assistant, and with which tools (``[auth]``, ``[[operator]]``).

Sans-IO, like the rest of the call's decisions: ``Gatekeeper`` is the process's policy and its
memory of failures (one per service, shared by its calls); ``PinPad`` turns the digits of one call
into a PIN. The call statechart (``call.machine``) asks them and decides what the caller hears;
the session only moves the digits and plays the prompts. Nothing here logs, and no PIN leaves
this module: a ``Verdict`` names the operator, never the digits.

Rules.
- ``require`` (config.AUTH_MODES): "pin", "caller_id", "caller_id_and_pin", "caller_id_or_pin", "open".
- A caller number matches an operator's when their digits are equal, or when both have at least
  ten digits and the last ten are equal (Colombian trunks present a mobile as 3001234567,
  573001234567 or +573001234567). A call without a number (AudioSocket carries none) matches nobody.
- Lockout: a number whose calls used up their PIN attempts ``lockout_after`` times, each within
  ``lockout_s`` of the last, is turned away without a PIN request until ``lockout_s`` has passed
  since its last failure. Calls without a number share one bucket: it fails closed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from mikrovoice.config import AuthSettings, Operator

#: Every tool; an operator's ``tools = ["*"]``.
ALL_TOOLS = "*"
_ANONYMOUS = ""


def digits(number: str | None) -> str:
    return "".join(c for c in number or "" if c.isdigit())


def same_number(a: str | None, b: str | None) -> bool:
    x, y = digits(a), digits(b)
    if not x or not y:
        return False
    return x == y or (len(x) >= 10 and len(y) >= 10 and x[-10:] == y[-10:])


@dataclass(frozen=True)
class Admission:
    """What the policy says of a call before any digit: pass, ask for a PIN, or turn away."""

    operator: Operator | None = None  # known by number and that is enough
    ask_pin: bool = False
    refused: str | None = None  # why the call is turned away at once ("not_allowed", "locked_out")


class Gatekeeper:
    """The ``[auth]`` policy of one service, and the failures it remembers (per caller number)."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._failures: dict[str, tuple[int, float]] = {}  # number digits -> (failed calls, last at)

    @property
    def open(self) -> bool:
        return self.settings.require == "open"

    def by_number(self, caller_id: str | None) -> Operator | None:
        return next((op for op in self.settings.operators if any(same_number(caller_id, n) for n in op.numbers)), None)

    def locked_out(self, caller_id: str | None, now: float) -> bool:
        count, last = self._failures.get(digits(caller_id) or _ANONYMOUS, (0, 0.0))
        return count >= self.settings.lockout_after and now - last < self.settings.lockout_s

    def admit(self, caller_id: str | None, now: float) -> Admission:
        require = self.settings.require
        if require == "open":
            return Admission()
        if self.locked_out(caller_id, now):
            return Admission(refused="locked_out")
        known = self.by_number(caller_id)
        if require == "caller_id":
            return Admission(operator=known) if known else Admission(refused="not_allowed")
        if require == "caller_id_or_pin" and known is not None:
            return Admission(operator=known)
        if require == "caller_id_and_pin" and known is None:
            return Admission(refused="not_allowed")
        return Admission(ask_pin=True)

    def check_pin(self, caller_id: str | None, pin: str) -> Operator | None:
        """The operator whose PIN this is (and, with caller_id_and_pin, whose number called), or None.
        Every operator's PIN is compared, in constant time each: the answer's timing tells nothing."""
        found = None
        for op in self.settings.operators:
            if op.pin and hmac.compare_digest(op.pin.encode(), pin.encode()):
                found = op
        if found is not None and self.settings.require == "caller_id_and_pin":
            return found if any(same_number(caller_id, n) for n in found.numbers) else None
        return found

    def failed(self, caller_id: str | None, now: float) -> None:
        """A call used up its attempts: one more strike for its number."""
        key = digits(caller_id) or _ANONYMOUS
        count, last = self._failures.get(key, (0, 0.0))
        if now - last >= self.settings.lockout_s:
            count = 0  # the earlier strikes are forgiven
        self._failures[key] = (count + 1, now)
        if len(self._failures) > 10_000:  # a flood of numbers: keep the newest
            for stale in sorted(self._failures, key=lambda k: self._failures[k][1])[:5_000]:
                del self._failures[stale]

    def succeeded(self, caller_id: str | None) -> None:
        self._failures.pop(digits(caller_id) or _ANONYMOUS, None)


def allows(operator: Operator | None, tool: str) -> bool:
    """May this caller use ``tool``? No operator (open mode): every tool."""
    return operator is None or ALL_TOOLS in operator.tools or tool in operator.tools


class PinPad:
    """The digits of one PIN entry: ``press`` returns the PIN when it is complete (``#`` after
    some digits, or ``length`` digits), else None. ``*`` starts over; other keys (A-D, flash) are
    ignored."""

    def __init__(self, length: int) -> None:
        self.length = length
        self._digits: list[str] = []

    @property
    def entered(self) -> int:
        return len(self._digits)

    def clear(self) -> None:
        self._digits.clear()

    def press(self, key: str) -> str | None:
        if key == "*":
            self._digits.clear()
        elif key == "#":  # a lone "#" (the one typed after a complete PIN) submits nothing
            return self.flush() if self._digits else None
        elif key.isdigit() and len(key) == 1:
            self._digits.append(key)
            if len(self._digits) >= self.length:
                return self.flush()
        return None

    def flush(self) -> str:
        pin, self._digits = "".join(self._digits), []
        return pin
