"""Calls through a real Asterisk into the real service, driven step by step from Python.

A call is a Local channel pair: the *bot* side (``;2``) runs the dialplan under test (the
AudioSocket app, ``Dial(AudioSocket/...)``, ``Dial(WebSocket/...)``) and the *caller* side
(``;1``) starts MixMonitor (``r()``: what the caller heard; ``t()``: what it said) and then waits
in ``Wait()``, sending nothing, like a phone with silence suppression. ``Caller`` moves it with
``channel redirect`` to small extensions that play a question, send DTMF or hang up, and decodes
the growing ``r()`` recording with the tone voice to know what it has heard so far.

``run_calls`` runs the scenarios of a module at once, in one Asterisk, against services started
in the same Trio run; each scenario's result (or its error) is kept, so one broken scenario never
hides the others.
"""

from __future__ import annotations

import logging
import os
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trio

from mikrovoice.logs import CallIdFilter
from mikrovoice.sim import voice
from tests.interop.asterisk import RealAsterisk

CONTEXT = "test"
MARK = "mv-mark"  # Verbose(0,mv-mark <call> <what> ...) lines of our dialplan in the Asterisk log
BYTES_PER_S = 16000  # 8 kHz slin


class ServiceLog(logging.Handler):
    """Every record of the ``mikrovoice`` loggers, with its call id (as ``logs.configure`` sets it)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(CallIdFilter())
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(relativeCreated)9.0f %(levelname)s call=%(call_id)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def of_call(self, call_id: str | None) -> list[logging.LogRecord]:
        return [r for r in self.records if call_id is not None and getattr(r, "call_id", None) == call_id]

    def events(self, call_id: str | None) -> list[str]:
        return [getattr(r, "event", "") or r.getMessage() for r in self.of_call(call_id)]

    def lines(self, records: list[logging.LogRecord] | None = None) -> str:
        out = []
        for r in self.records if records is None else records:
            out.append(self.format(r))
        return "\n".join(out)


def sound_file(directory: Path, name: str, text: str) -> Path:
    """A question as a raw .sln file (8 kHz s16le) in the tone voice; Playback takes it whole."""
    path = directory / f"{name}.sln"
    path.write_bytes(voice.speak(text))
    return path.with_suffix("")


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples * samples))) if samples.size else 0.0


#: Block RMS of tone-voice speech (its tones are ~4200; comfort audio and line noise stay far below).
SPEECH_RMS = 2000.0


def speech_spans(pcm: bytes, threshold: float = SPEECH_RMS, gap_s: float = 0.1) -> list[tuple[float, float]]:
    """Where ``pcm`` (8 kHz slin) is as loud as the tone voice, on its own 20 ms grid: (start, end)
    in seconds, runs less than ``gap_s`` apart joined. Decoding says what was said; this says
    where sound was, also of an utterance cut short."""
    samples = np.frombuffer(pcm[: len(pcm) // 320 * 320], "<i2").astype(np.float64).reshape(-1, 160)
    loud = np.flatnonzero(np.sqrt((samples * samples).mean(axis=1)) >= threshold)
    spans: list[tuple[float, float]] = []
    for index in loud.tolist():
        start, end = index * 0.02, (index + 1) * 0.02
        if spans and start - spans[-1][1] < gap_s:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def caller_dialplan(asterisk: RealAsterisk, sounds: dict[str, Path], keys: Iterable[str] = ()) -> str:
    """The caller side's shared extensions: idling (``idle``: no frames at all, like a phone with
    silence suppression; ``idle_quiet``: digital silence, 20 ms frames), one per sound, DTMF
    digits, hang-up, and one per string of ``keys`` (``keys_<label>``: one ``SendDTMF(<keys>)``,
    with its defaults: 100 ms per digit, 250 ms between digits). After each step the caller goes
    back to its ``${IDLE}``."""
    quiet = asterisk.sounds / "quiet.sln"
    quiet.write_bytes(bytes(16000 * 5))
    lines = [
        "exten => idle,1,Wait(600)",
        " same => n,Hangup()",
        f"exten => idle_quiet,1,Playback({quiet.with_suffix('')})",
        " same => n,Goto(idle_quiet,1)",
        f"exten => hangup,1,Verbose(0,{MARK} ${{CALLNAME}} caller-hangup)",
        " same => n,Hangup()",
    ]
    for name, path in sounds.items():
        lines += [
            f"exten => play_{name},1,Verbose(0,{MARK} ${{CALLNAME}} play-start {name})",
            f" same => n,Playback({path})",
            f" same => n,Verbose(0,{MARK} ${{CALLNAME}} play-end {name})",
            " same => n,Goto(${IDLE},1)",
        ]
    for digit, label in (("0", "0"), ("#", "hash"), ("1", "1"), ("*", "star")):
        lines += [
            f"exten => dtmf_{label},1,Verbose(0,{MARK} ${{CALLNAME}} dtmf {digit})",
            f" same => n,SendDTMF({digit})",
            " same => n,Goto(${IDLE},1)",
        ]
    for sequence in sorted(set(keys)):
        label = keys_label(sequence)
        lines += [
            f"exten => keys_{label},1,Verbose(0,{MARK} ${{CALLNAME}} keys-start {label})",
            f" same => n,SendDTMF({sequence})",
            f" same => n,Verbose(0,{MARK} ${{CALLNAME}} keys-sent {label})",
            " same => n,Goto(${IDLE},1)",
        ]
    return "\n".join(lines) + "\n"


def keys_label(keys: str) -> str:
    """A DTMF string as an extension name's tail (``#``: h, ``*``: s)."""
    return keys.replace("#", "h").replace("*", "s")


def call_extensions(name: str, bot_body: str, asterisk: RealAsterisk, idle: str = "idle") -> str:
    """``bot_<name>`` (the dialplan under test, ``bot_body``: one priority per line, the first
    sets ``ID`` to a fresh UUID and logs it; ``(label)App()`` is a labelled priority) and
    ``caller_<name>`` (recordings, then ``idle``)."""
    rec = asterisk.recordings
    bot = [f"exten => bot_{name},1,Set(ID=${{UUID()}})",
           f" same => n,Verbose(0,{MARK} {name} uuid ${{ID}})"]
    for line in bot_body.strip().splitlines():
        label = re.match(r"\((\w+)\)(.*)", line.strip())
        bot.append(f" same => n({label.group(1)}),{label.group(2)}" if label else f" same => n,{line.strip()}")
    bot += [f" same => n,Verbose(0,{MARK} {name} bot-end)", " same => n,Hangup()"]
    caller = [
        f"exten => caller_{name},1,Set(CALLNAME={name})",
        f" same => n,Set(IDLE={idle})",
        " same => n,Answer()",
        f" same => n,MixMonitor({rec}/{name}-mix.sln,r({rec}/{name}-heard.sln)t({rec}/{name}-said.sln))",
        f" same => n,Verbose(0,{MARK} {name} caller-up)",
        " same => n,Goto(${IDLE},1)",
    ]
    return "\n".join(bot + caller) + "\n"


class CallFailed(Exception):
    pass


@dataclass(repr=False)
class CallResult:
    name: str
    channel: str = ""
    uuid: str | None = None
    call_id: str | None = None  # the service's call id (the UUID, or what the WebSocket side uses)
    heard: bytes = b""
    said: bytes = b""
    utterances: list[tuple[float, float, str | None]] = field(default_factory=list)
    #: what the driver did: (seconds since the originate, seconds into the heard recording, what)
    steps: list[tuple[float, float, str]] = field(default_factory=list)
    error: str | None = None
    asterisk_log: list[str] = field(default_factory=list)
    service_records: list[logging.LogRecord] = field(default_factory=list)
    started_at: float = 0.0
    ended_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # pytest shows it in assertion messages: explain() says the rest
        return f"CallResult({self.name!r})"

    @property
    def texts(self) -> list[str]:
        return [text for _, _, text in self.utterances if text]

    def heard_matching(self, pattern: str) -> list[tuple[float, float, str | None]]:
        return [u for u in self.utterances if u[2] and re.search(pattern, u[2])]

    def step(self, what: str) -> tuple[float, float]:
        """(seconds since the originate, seconds into the heard recording) of the first step ``what``."""
        return next((t, h) for t, h, w in self.steps if w == what)

    @property
    def events(self) -> list[str]:
        return [getattr(r, "event", "") or r.getMessage() for r in self.service_records]

    def marks(self, what: str = "") -> list[str]:
        """The lines our ``Verbose(0,mv-mark <call> <what>...)`` printed (not the "Executing" ones)."""
        return [line for line in self.asterisk_log if f"{MARK} {self.name} {what}" in line and "app_verbose.c" in line]

    def explain(self) -> str:
        """What to show when an assertion fails: heard, steps, both logs of this call."""
        heard = "\n".join(f"  {a:6.2f}-{b:6.2f} {t!r}" for a, b, t in self.utterances)
        service = "\n".join(f"  {r.levelname} {r.name}: {r.getMessage()}" for r in self.service_records[-60:])
        noise = ("pbx_builtins.c: Goto", "passthrough", "DTMF end accepted", "app_mixmonitor.c")
        asterisk = "\n".join("  " + line for line in [x for x in self.asterisk_log if not any(n in x for n in noise)][-40:])
        return (f"\n=== call {self.name} (uuid {self.uuid}, service call id {self.call_id}, channel {self.channel})"
                f"\n--- driver error ---\n{self.error or '-'}"
                "\n--- steps (s since the originate, s into the recording) ---\n" +
                "\n".join(f"  {t:6.2f} {h:6.2f} {w}" for t, h, w in self.steps) +
                f"\n--- heard ({len(self.heard) / BYTES_PER_S:.1f} s) ---\n{heard}"
                f"\n--- service log of the call ---\n{service}"
                f"\n--- Asterisk log of the call (tail) ---\n{asterisk}\n")


class Caller:
    """Drives one call's caller side and watches what it hears."""

    def __init__(self, asterisk: RealAsterisk, name: str, service_log: ServiceLog, caller_id: str | None = None) -> None:
        self.asterisk = asterisk
        self.name = name
        self.log = service_log
        self.caller_id = caller_id  # the number the call presents (CALLERID(num) of both halves)
        self.result = CallResult(name)
        self.heard_path = asterisk.recordings / f"{name}-heard.sln"

    async def start(self) -> None:
        self.result.started_at = trio.current_time()
        if self.caller_id is None:
            self.result.channel = await self.asterisk.originate(f"bot_{self.name}", f"caller_{self.name}")
        else:
            self.result.channel = await originate_from(self.asterisk, f"bot_{self.name}", f"caller_{self.name}",
                                                       self.caller_id)
        await self.wait_mark("caller-up", 10)

    # ---------------------------------------------------------------- what Asterisk says

    def mark_lines(self, what: str) -> list[str]:
        needle = f"{MARK} {self.name} {what}"
        return [line for line in self.asterisk.log_lines() if needle in line and "app_verbose.c" in line]

    async def wait_mark(self, what: str, timeout_s: float) -> str:
        with trio.move_on_after(timeout_s):
            while True:  # polling the log file
                if lines := self.mark_lines(what):
                    return lines[-1]
                await trio.sleep(0.2)
        raise CallFailed(f"no '{MARK} {self.name} {what}' in the Asterisk log within {timeout_s:g} s")

    @property
    def uuid(self) -> str | None:
        lines = self.mark_lines("uuid")
        return lines[0].rsplit(" ", 1)[-1] if lines else None

    # ---------------------------------------------------------------- what the caller hears

    def heard_now(self) -> bytes:
        try:
            data = self.heard_path.read_bytes()
        except FileNotFoundError:
            return b""
        return data[: len(data) // 320 * 320]  # whole 20 ms blocks: the tone voice needs the grid

    @property
    def position_s(self) -> float:
        """How much the caller has heard so far, in seconds (the time base of ``steps``)."""
        return len(self.heard_now()) / BYTES_PER_S

    def note(self, what: str) -> None:
        self.result.steps.append((round(trio.current_time() - self.result.started_at, 2), round(self.position_s, 2), what))

    async def hear(self, pattern: str, timeout_s: float, count: int = 1, after_s: float = 0.0) -> float:
        """Until the caller has heard ``count`` utterances matching ``pattern`` that start after
        ``after_s``; the end of the last one (seconds into the recording)."""
        regex = re.compile(pattern)
        with trio.move_on_after(timeout_s):
            while True:
                found = [u for u in voice.hear_lenient(self.heard_now())
                         if u[0] >= after_s and u[2] is not None and regex.search(u[2])]
                if len(found) >= count:
                    self.note(f"heard {pattern!r}")
                    return found[count - 1][1]
                await trio.sleep(0.2)
        raise CallFailed(f"the caller did not hear {pattern!r} (x{count}, after {after_s:.1f} s) within {timeout_s:g} s")

    async def hear_anything(self, after_s: float, timeout_s: float) -> float:
        """Until the caller has heard a whole utterance (decoded or not) that starts after ``after_s``."""
        with trio.move_on_after(timeout_s):
            while True:
                found = [u for u in voice.hear_lenient(self.heard_now()) if u[0] >= after_s]
                # an utterance is over once 0.5 s of what follows it has been heard
                done = [u for u in found if u[1] + 0.5 <= self.position_s]
                if done:
                    self.note(f"heard something: {done[0][2]!r}")
                    return done[0][1]
                await trio.sleep(0.2)
        raise CallFailed(f"the caller heard nothing after {after_s:.1f} s within {timeout_s:g} s")

    async def hear_speech(self, after_s: float, timeout_s: float, min_s: float = 0.2) -> float:
        """Until the caller has heard ``min_s`` of an utterance (decoded or not yet: it may still
        be under way, or right after another) that starts after ``after_s``, as loud as the tone
        voice; where it starts (seconds into the recording)."""
        with trio.move_on_after(timeout_s):
            while True:
                heard = self.heard_now()
                spans = speech_spans(heard)
                found = [start for start, _, _ in voice.hear_lenient(heard) if start >= after_s
                         and any(a <= start + 0.04 and b >= start + min_s for a, b in spans)]
                if found:
                    self.note(f"hearing speech from {found[0]:.2f}")
                    return found[0]
                await trio.sleep(0.1)
        raise CallFailed(f"the caller heard no speech after {after_s:.1f} s within {timeout_s:g} s")

    async def hear_prompt(self, after_s: float, timeout_s: float, quiet_s: float = 0.6) -> tuple[float, float]:
        """Until the caller has heard a recorded prompt (human-like speech, not the tone voice: it
        is heard as sound, not decoded) that starts after ``after_s``, whole: a run of sound
        (``PROMPT_RMS``; the prompts' own pauses, at most 0.3 s, are joined) and then ``quiet_s``
        without any. Its (start, end), seconds into the recording."""
        with trio.move_on_after(timeout_s):
            while True:
                heard = self.heard_now()
                runs = [(a, b) for a, b in speech_spans(heard, PROMPT_RMS, PROMPT_GAP_S) if a >= after_s]
                if runs and runs[-1][1] + quiet_s <= len(heard) / BYTES_PER_S:
                    # everything loud since after_s, up to the quiet: one prompt (or a prompt cut short)
                    start, end = runs[0][0], runs[-1][1]
                    self.note(f"heard a prompt {start:.2f}-{end:.2f}")
                    return start, end
                await trio.sleep(0.1)
        raise CallFailed(f"the caller heard no prompt after {after_s:.1f} s within {timeout_s:g} s")

    # ---------------------------------------------------------------- what the caller does

    async def play(self, sound: str, timeout_s: float = 20.0) -> None:
        before = len(self.mark_lines(f"play-end {sound}"))
        self.note(f"ask {sound}")
        await self.asterisk.redirect(self.result.channel, f"play_{sound}")
        with trio.move_on_after(timeout_s):
            while True:  # polling the log file
                if len(self.mark_lines(f"play-end {sound}")) > before:
                    self.note(f"asked {sound}")
                    return
                await trio.sleep(0.1)
        raise CallFailed(f"playing {sound} did not end within {timeout_s:g} s")

    async def dtmf(self, digit: str) -> None:
        label = {"#": "hash", "*": "star"}.get(digit, digit)
        self.note(f"dtmf {digit}")
        await self.asterisk.redirect(self.result.channel, f"dtmf_{label}")

    async def keys(self, keys: str, timeout_s: float = 10.0) -> tuple[str, str]:
        """Send ``keys`` with one SendDTMF (an extension of ``caller_dialplan(keys=...)``); the
        Asterisk log lines of its start and its end (SendDTMF returns once every digit is sent)."""
        label = keys_label(keys)
        before = len(self.mark_lines(f"keys-sent {label}"))
        self.note(f"keys {label}")
        await self.asterisk.redirect(self.result.channel, f"keys_{label}")
        with trio.move_on_after(timeout_s):
            while True:  # polling the log file
                sent = self.mark_lines(f"keys-sent {label}")
                if len(sent) > before:
                    self.note(f"keys sent {label}")
                    return self.mark_lines(f"keys-start {label}")[-1], sent[-1]
                await trio.sleep(0.1)
        raise CallFailed(f"SendDTMF({keys}) did not end within {timeout_s:g} s")

    async def hangup(self) -> None:
        self.note("caller hangs up")
        await self.asterisk.redirect(self.result.channel, "hangup")

    async def wait_ended(self, timeout_s: float = 20.0) -> None:
        """Until both Local halves (and what the bot side dialled) are gone."""
        prefix = self.result.channel.rsplit(";", 1)[0]
        await self.asterisk.wait_gone(prefix, timeout_s)
        self.result.ended_at = trio.current_time()

    # ---------------------------------------------------------------- results

    def finish(self, call_id: str | None = None) -> CallResult:
        result = self.result
        result.uuid = self.uuid
        result.call_id = call_id or result.uuid
        heard = self.heard_now()
        result.heard = heard
        said_path = self.asterisk.recordings / f"{self.name}-said.sln"
        result.said = said_path.read_bytes() if said_path.exists() else b""
        try:
            result.utterances = voice.hear_lenient(heard)
        except Exception as exc:  # noqa: BLE001 - keep the result; the tests say what went wrong
            result.error = (result.error or "") + f"\nheard audio does not decode: {exc!r}"
        result.asterisk_log = call_log(self.asterisk.log_lines(), result.channel, result.uuid)
        result.service_records = self.log.of_call(result.call_id)
        return result


#: A recorded prompt (espeak-ng, PROMPT_RMS and more in its 20 ms blocks), and its pauses.
PROMPT_RMS = 300.0
PROMPT_GAP_S = 0.45


async def originate_from(asterisk: RealAsterisk, bot_exten: str, caller_exten: str, number: str,
                         context: str = CONTEXT) -> str:
    """``RealAsterisk.originate`` with a caller number: a call file (pbx_spool) with ``CallerID:``.
    The CLI's ``channel originate`` sets none, and a ``Set(CALLERID(num)=...)`` on the caller half
    once it runs comes too late: the bot half took its caller from the caller half's connected
    line when it was created (measured on 23.4.1: ``CALLERID(num)`` stays empty on ``;2``). With
    the call file both halves have ``CALLERID(num)=number`` from their first priority. pbx_spool
    picks the file up within about a second."""
    outgoing = asterisk.spool / "outgoing"
    outgoing.mkdir(exist_ok=True)
    staged = asterisk.spool / f"{bot_exten}.call"
    staged.write_text(f"Channel: Local/{bot_exten}@{context}\nCallerID: <{number}>\n"
                      f"Context: {context}\nExtension: {caller_exten}\nPriority: 1\n")
    past = time.time() - 5  # a file dated in the future waits until then
    os.utime(staged, (past, past))
    os.rename(staged, outgoing / staged.name)  # whole, at once: pbx_spool never reads half a file
    return await asterisk.caller_channel(bot_exten, context)


def call_log(lines: list[str], channel: str, uuid: str | None) -> list[str]:
    """The Asterisk log lines of one call: those of the call ids (``[C-...]``) its channels used."""
    base = channel.rsplit(";", 1)[0]
    keys = [k for k in (base, uuid) if k]
    ids = {m.group(1) for line in lines if any(k in line for k in keys) for m in [re.search(r"\]\[(C-[0-9a-f]+)\]", line)] if m}
    return [line for line in lines if any(f"[{i}]" in line for i in ids) or any(k in line for k in keys)]


Scenario = Callable[[Caller], Awaitable[None]]


async def run_scenario(caller: Caller, scenario: Scenario, timeout_s: float) -> None:
    """Run one scenario; its failure is recorded on its result, never raised. The call is
    always hung up and waited for."""
    try:
        with trio.fail_after(timeout_s):
            await caller.start()
            await scenario(caller)
    except Exception:  # noqa: BLE001 - recorded for the test to report
        caller.result.error = traceback.format_exc()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(15):
            try:
                if caller.result.channel and caller.result.channel.rsplit(";", 1)[0] in " ".join(
                        await caller.asterisk.channels()):
                    await caller.asterisk.rx(f"channel request hangup {caller.result.channel}")
                if caller.result.channel:
                    await caller.wait_ended(10)
            except Exception:  # noqa: BLE001
                caller.result.error = (caller.result.error or "") + "\ncleanup: " + traceback.format_exc()
