"""N simulated Asterisk callers in one epoll loop: audio both ways at real-time rate, for ``bench/calls.py``.

Each caller does what the AudioSocket app does: connects, sends its UUID (``encode(CallId)``),
then one 320-byte slin frame (kind 0x10) every 20 ms for the whole call, line noise while the
caller is silent (as Asterisk with ``transmit_silence``, or a phone's hiss) and the pre-rendered
ToneVoice audio of a question while it speaks. Its conversation: hear the greeting, pause, ask a
quick question (a fast router's devices or health), hear "Un momento, ..." and then the answer
(over when ``ANSWER_QUIET_S`` pass without speech), pause, ask again, until told to hang up.

Lean by design (a Trio task tree per caller cost a core for 200 silent callers): one epoll loop, the
callers spread over ``SLOTS`` send phases of 2 ms so that each wake-up sends one slot's frames
against a monotonic deadline (a late loop catches up, as Asterisk's queued frames would, and its
lateness is measured); between wake-ups it reads whatever arrived, every read timestamped with
``time.monotonic()`` (CLOCK_MONOTONIC, the service's clock too). Speech is told from silence by
the frame's energy, for a whole wake-up's frames in one numpy product; nothing is decoded while
the calls run. Each caller keeps what it heard after its first question, and up to
``VERIFY_AT_MOST`` of those are decoded (``sim.voice``) after the hang-up, to verify that the model
really answered what was asked.

Timestamp resolution: ``time.monotonic()`` is nanoseconds, but a frame that arrives while the
loop is busy (sending a slot, handling other sockets) is read when that work ends; the loop's
busy stretches (``loop_busy_ms``) bound that error and are reported with the gaps. The loop waits
in ``epoll_wait``, whose timeout is whole milliseconds (rounded up), so a send slot may be up to
1 ms late by construction (``tick_late_ms``).

Protocol with ``bench/calls.py`` (JSON lines on stdout, commands on stdin): with ``--prime`` one
call first hears the greeting and hangs up (``{"event": "primed"}``), then the loop waits for
``go``; it prints ``window_start`` and ``window_end`` as the steady window opens and closes,
keeps calling until ``hangup``, closes every socket, decodes the first answers and prints
``{"event": "result", ...}``.

    python bench/loadgen/callers.py --port P --calls N --questions FILE [--prime] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import errno
import json
import os
import random
import re
import select
import socket
import sys
import time
import uuid
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from mikrovoice.sim import voice
from mikrovoice.telephony.audiosocket import SLIN8_FRAME_BYTES, Audio, CallId, encode

FRAME_S = 0.020
SLOTS = 10  # send phases per 20 ms: a wake-up every 2 ms sends a tenth of the calls' frames
SLOT_S = FRAME_S / SLOTS
HEADER = 3
NOISE_FRAMES = 16
#: A frame is speech when its RMS reaches this: ToneVoice tones are about 4200 RMS after G.711,
#: the comfort texture at its default -36 dBFS 350 to 710 per frame, line noise ~30.
SPEECH_ENERGY = SLIN8_FRAME_BYTES // 2 * 2000.0**2
HANGOVER_FRAMES = 10  # 200 ms without speech ends an utterance (as sim.asterisk)
GREETING_QUIET_S = 1.0  # the greeting is over after this long without speech
#: The answer is over after this long without speech. The scripted model says "Un momento, ..."
#: before every tool call and the answer after the tool's output: with the demo fleet's two fastest
#: routers asked here (under 0.5 s, the model's 0.35 s on top), the answer is queued behind the
#: announcement or follows it within about a second.
ANSWER_QUIET_S = 2.5
#: The first answers decoded (after the hang-up) to verify them, at most: each costs ~10 ms of CPU.
VERIFY_AT_MOST = 50
ANSWER_TIMEOUT_S = 30.0  # no answer within this: unanswered, ask the next question
GREETING_TIMEOUT_S = 20.0
PRIME_TIMEOUT_S = 30.0

# Call states
DIALING, CONNECTING, GREETING, PAUSE, ASKING, WAITING, ENDED = range(7)


class Call:
    """One caller: its socket, where it is in its conversation, and what it measured."""

    __slots__ = (
        "index", "call_id", "sock", "fd", "slot", "dial_at", "state", "connected_at", "rx", "out", "last_rx",
        "window_frames", "frames", "noise", "greeting_at", "in_utterance", "quiet", "utterances", "last_loud",
        "question", "frame_index", "finished_asking_at", "next_at", "asked", "answered", "unanswered",
        "first_speech_s", "previous", "capture", "first_answer", "first_expect", "ended", "dropped", "rng",
    )

    def __init__(self, index: int, dial_at: float, slot: int, rng: random.Random) -> None:
        self.index = index
        self.call_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        self.sock: socket.socket | None = None
        self.fd = -1
        self.slot = slot
        self.dial_at = dial_at
        self.state = DIALING
        self.connected_at: float | None = None
        self.rx = bytearray()  # bytes of a message not yet complete
        self.out = bytearray()  # bytes the socket did not take yet
        self.last_rx = 0.0
        self.window_frames = 0
        self.frames = 0
        self.noise = rng.randrange(NOISE_FRAMES)
        self.greeting_at: float | None = None
        self.in_utterance = False
        self.quiet = 0
        self.utterances = 0  # utterances heard since the last question (or since connecting)
        self.last_loud = 0.0
        self.question = 0
        self.frame_index = 0
        self.finished_asking_at = 0.0
        self.next_at = 0.0
        self.asked = 0
        self.answered = 0
        self.unanswered = 0
        self.first_speech_s: list[float] = []  # from the end of each question to the first speech heard
        self.previous = b""  # the last frame heard
        self.capture: bytearray | None = None  # what is heard after the first question, until answered
        self.first_answer: bytes | None = None
        self.first_expect = ""
        self.ended: float | None = None
        self.dropped: str | None = None
        self.rng = rng


class Callers:
    """The loop and every caller; ``run`` drives the whole protocol with ``bench/calls.py``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        spec = json.loads(Path(args.questions).read_text(encoding="utf-8"))
        # Each question pre-rendered once: its AudioSocket messages, 20 ms each, the last one padded.
        self.questions: list[tuple[list[bytes], str]] = []
        for q in spec:
            pcm = voice.speak(q["text"])
            pcm += bytes(-len(pcm) % SLIN8_FRAME_BYTES)
            frames = [encode(Audio(pcm[i:i + SLIN8_FRAME_BYTES])) for i in range(0, len(pcm), SLIN8_FRAME_BYTES)]
            self.questions.append((frames, q["expect"]))
        noise_rng = random.Random(args.seed + 1)
        self.noise = [encode(Audio(array("h", (noise_rng.randint(-40, 40) for _ in range(SLIN8_FRAME_BYTES // 2)))
                                   .tobytes())) for _ in range(NOISE_FRAMES)]
        self.epoll = select.epoll()
        self.calls: list[Call] = []
        self.by_fd: dict[int, Call] = {}
        self.slots: list[list[Call]] = [[] for _ in range(SLOTS)]
        self.window = (float("inf"), float("inf"))
        self.gaps = array("d")  # inter-arrival gaps inside the window, seconds
        self.tick_late = array("d")  # how late each slot's sends started, inside the window
        self.busy = array("d")  # how long each loop pass worked before waiting again, inside the window
        self.pending_calls: list[Call] = []
        self.pending_payloads: list[bytes] = []
        self.pending_ts: list[float] = []
        self.commands: list[str] = []
        self.t0 = time.monotonic()  # send slot k is due at t0 + k * SLOT_S
        self.step = 0

    # ------------------------------------------------------------------ output

    @staticmethod
    def emit(record: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    # ------------------------------------------------------------------ sockets

    def dial(self, call: Call) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(("127.0.0.1", self.args.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            call.state, call.dropped = ENDED, f"connect: {os.strerror(code)}"
            return
        call.sock, call.fd, call.state = sock, sock.fileno(), CONNECTING
        self.by_fd[call.fd] = call
        self.epoll.register(call.fd, select.EPOLLOUT)

    def connected(self, call: Call, now: float) -> None:
        assert call.sock is not None
        code = call.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.end(call, f"connect: {os.strerror(code)}", now)
            return
        self.epoll.modify(call.fd, select.EPOLLIN)
        call.state, call.connected_at, call.last_loud = GREETING, now, now
        self.send(call, encode(CallId(call.call_id)), now)
        self.slots[call.slot].append(call)

    def end(self, call: Call, dropped: str | None, now: float) -> None:
        """Close the call's socket; ``dropped``: why, if we did not hang up ourselves."""
        if call.state == ENDED:
            return
        call.capture = None  # an answer cut by the hang-up is not verified
        if call.sock is not None:
            self.epoll.unregister(call.fd)
            self.by_fd.pop(call.fd, None)
            call.sock.close()
        if call in self.slots[call.slot]:
            self.slots[call.slot].remove(call)
        call.state, call.ended, call.dropped = ENDED, now, dropped

    def send(self, call: Call, message: bytes, now: float) -> None:
        sock = call.sock
        assert sock is not None
        try:
            if call.out:
                call.out += message
                sent = sock.send(call.out)
                del call.out[:sent]
            else:
                sent = sock.send(message)
                if sent < len(message):
                    call.out += message[sent:]
        except BlockingIOError:
            if not call.out:
                call.out += message
        except OSError as exc:
            self.end(call, f"send: {exc.strerror or exc}", now)

    def receive(self, call: Call, now: float) -> None:
        sock = call.sock
        assert sock is not None
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self.end(call, f"receive: {exc.strerror or exc}", now)
            return
        if not data:
            self.end(call, "the service closed the connection", now)
            return
        if call.rx:
            call.rx += data
            data = bytes(call.rx)
            call.rx.clear()
        start, size = 0, len(data)
        window_start, window_end = self.window
        while size - start >= HEADER:
            kind = data[start]
            length = (data[start + 1] << 8) | data[start + 2]
            end = start + HEADER + length
            if end > size:
                break
            if kind == 0x00:
                self.end(call, "the service hung up (0x00)", now)
                return
            if kind != 0x10 or length != SLIN8_FRAME_BYTES:
                self.end(call, f"unexpected message kind 0x{kind:02x} length {length}", now)
                return
            call.frames += 1
            if window_start <= now < window_end:
                call.window_frames += 1
                if call.last_rx >= window_start:
                    self.gaps.append(now - call.last_rx)
            call.last_rx = now
            self.pending_calls.append(call)
            self.pending_payloads.append(data[start + HEADER:end])
            self.pending_ts.append(now)
            start = end
        if start < size:
            call.rx += data[start:]

    # ------------------------------------------------------------------ listening

    def hear_pending(self) -> None:
        """Energy of every frame read in this pass, in one product; then each caller hears its frames."""
        if not self.pending_calls:
            return
        blocks = np.frombuffer(b"".join(self.pending_payloads), dtype="<i2").reshape(-1, SLIN8_FRAME_BYTES // 2)
        wide = blocks.astype(np.float64)
        energy = np.einsum("ij,ij->i", wide, wide)
        heard = zip(self.pending_calls, self.pending_payloads, self.pending_ts, energy.tolist(), strict=True)
        for call, payload, now, e in heard:
            if call.state != ENDED:
                self.hear(call, payload, now, e >= SPEECH_ENERGY)
        self.pending_calls.clear()
        self.pending_payloads.clear()
        self.pending_ts.clear()

    def hear(self, call: Call, payload: bytes, now: float, loud: bool) -> None:
        previous, call.previous = call.previous, payload
        if loud:
            call.last_loud = now
            if call.greeting_at is None:
                call.greeting_at = now
        if call.capture is not None:
            call.capture += payload if loud else bytes(len(payload))
        if not call.in_utterance:
            if not loud:
                return
            call.in_utterance, call.quiet = True, 0
            if call.state == WAITING and call.utterances == 0:  # the model's turn begins
                call.first_speech_s.append(now - FRAME_S - call.finished_asking_at)
                if call.asked == 1:
                    # Kept from the frame before the first loud one: off the 20 ms grid, the start
                    # tone begins there.
                    call.capture = bytearray(previous) + payload
                    call.first_expect = self.questions[call.question][1]
            return
        call.quiet = 0 if loud else call.quiet + 1
        if call.quiet >= HANGOVER_FRAMES:
            call.in_utterance = False
            call.utterances += 1

    # ------------------------------------------------------------------ speaking

    def tick(self, call: Call, now: float) -> None:
        """One 20 ms frame of this call, and its conversation's next step."""
        state = call.state
        if state == ASKING:
            frames = self.questions[call.question][0]
            message = frames[call.frame_index]
            call.frame_index += 1
            if call.frame_index == len(frames):
                call.state, call.finished_asking_at, call.utterances = WAITING, now + FRAME_S, 0
            self.send(call, message, now)
            return
        call.noise = (call.noise + 1) % NOISE_FRAMES
        self.send(call, self.noise[call.noise], now)
        quiet_s = now - call.last_loud
        if state == GREETING:
            if call.utterances and quiet_s >= GREETING_QUIET_S:
                call.state, call.next_at = PAUSE, now + call.rng.uniform(0.3, 1.0)
            elif call.connected_at is not None and now - call.connected_at > GREETING_TIMEOUT_S:
                call.state, call.next_at = PAUSE, now  # ask anyway; the missing greeting is reported
        elif state == WAITING:
            if call.in_utterance:
                return
            if call.utterances and quiet_s >= ANSWER_QUIET_S:
                call.answered += 1
            elif now - call.finished_asking_at > ANSWER_TIMEOUT_S:
                call.unanswered += 1
            else:
                return
            if call.capture is not None:
                call.first_answer, call.capture = bytes(call.capture), None
            call.state, call.next_at = PAUSE, now + call.rng.uniform(1.0, 3.0)
        elif state == PAUSE and now >= call.next_at:
            call.question = (call.index + call.asked) % len(self.questions)
            call.frame_index = 0
            call.asked += 1
            call.state = ASKING

    # ------------------------------------------------------------------ the loop

    def read_commands(self) -> None:
        data = os.read(0, 4096)
        if not data:  # bench/calls.py is gone: hang up
            self.commands.append("hangup")
            return
        self.commands += data.decode().split()

    def loop(self, until: Any, dials: list[Call]) -> None:
        """Run until ``until(now)`` is true: dial ``dials`` at their times, send every slot on time,
        read and hear everything that arrives."""
        poll, monotonic = self.epoll.poll, time.monotonic
        dials = sorted(dials, key=lambda c: c.dial_at)
        next_dial = 0
        step = self.step
        due = self.t0 + step * SLOT_S
        returned = monotonic()  # when the last wait ended: the work since then delays the next read
        while True:
            now = monotonic()
            if until(now):
                return
            while now >= due:  # every slot whose time has come (all of them, late or not)
                window_start, window_end = self.window
                if window_start <= now < window_end:
                    self.tick_late.append(now - due)
                for call in list(self.slots[step % SLOTS]):
                    self.tick(call, now)
                step += 1
                due = self.t0 + step * SLOT_S
            self.step = step
            while next_dial < len(dials) and dials[next_dial].dial_at <= now:
                self.dial(dials[next_dial])
                next_dial += 1
            wake = due if next_dial >= len(dials) else min(due, dials[next_dial].dial_at)
            worked = monotonic()
            if self.window[0] <= worked < self.window[1]:
                self.busy.append(worked - returned)
            ready_fds = poll(max(0.0, wake - worked))
            returned = monotonic()
            for fd, _events in ready_fds:
                if fd == 0:
                    self.read_commands()
                    continue
                ready = self.by_fd.get(fd)
                if ready is None:
                    continue
                got = monotonic()
                if ready.state == CONNECTING:
                    self.connected(ready, got)
                else:
                    self.receive(ready, got)
            self.hear_pending()

    def run(self) -> None:
        args = self.args
        self.epoll.register(0, select.EPOLLIN)
        self.t0, self.step = time.monotonic(), 0
        if args.prime:
            self.prime()
        while "go" not in self.commands and "hangup" not in self.commands:
            self.loop(lambda now: bool(self.commands), [])
        if "hangup" in self.commands:
            self.emit({"event": "result", "aborted": True})
            return
        self.commands.clear()
        start = time.monotonic()
        self.calls = [Call(i, start + (self.rng.uniform(0.0, args.stagger_s) if args.calls > 1 else 0.0),
                           i % SLOTS, random.Random(self.rng.getrandbits(32))) for i in range(args.calls)]
        window_start = start + args.stagger_s + args.warmup_s
        self.window = (window_start, window_start + args.window_s)
        self.loop(lambda now: now >= window_start, self.calls)
        self.emit({"event": "window_start", "at": time.monotonic()})
        self.loop(lambda now: now >= self.window[1], [])
        self.emit({"event": "window_end", "at": time.monotonic()})
        self.loop(lambda now: "hangup" in self.commands, [])
        hung_up = time.monotonic()
        for call in self.calls:
            self.end(call, call.dropped, hung_up)
        self.emit({"event": "result"} | self.result(hung_up - start))

    def prime(self) -> None:
        """One call that hears the greeting and hangs up: the service's first call loads what it loads
        lazily, so the idle memory measured after it is the baseline of the calls that follow."""
        call = Call(-1, time.monotonic(), 0, random.Random(0))
        deadline = call.dial_at + PRIME_TIMEOUT_S
        self.loop(lambda now: call.state == PAUSE or call.state == ENDED or now > deadline, [call])
        greeting = (None if call.greeting_at is None or call.connected_at is None
                    else call.greeting_at - call.connected_at)
        problem = call.dropped if call.state == ENDED else (None if call.state == PAUSE else "no greeting")
        self.end(call, None, time.monotonic())
        self.emit({"event": "primed", "greeting_s": greeting, "problem": problem})

    # ------------------------------------------------------------------ figures

    def result(self, ran_s: float) -> dict[str, Any]:
        calls = self.calls
        window_s = self.window[1] - self.window[0]
        # Calls that lived through the whole window: frames per second over it.
        through = [c for c in calls if c.connected_at is not None and c.connected_at < self.window[0]
                   and (c.ended is None or c.ended >= self.window[1]) and c.dropped is None]
        fps = [c.window_frames / window_s for c in through]
        verified, decoded = 0, 0
        heard = [c for c in calls if c.first_answer]
        for call in random.Random(0).sample(heard, min(VERIFY_AT_MOST, len(heard))):
            if call.first_answer:
                decoded += 1
                try:
                    texts = [text or "" for _, _, text in voice.hear_lenient(call.first_answer)]
                except ValueError:  # voice.UnintelligibleSpeech: not verified
                    texts = []
                if any(re.search(call.first_expect, text, re.IGNORECASE) for text in texts):
                    verified += 1
        connected = [c for c in calls if c.connected_at is not None]
        dropped = [c for c in connected if c.dropped is not None]
        return {
            "calls": len(calls), "ran_s": round(ran_s, 2), "window_s": round(window_s, 3),
            "clock_resolution_s": time.get_clock_info("monotonic").resolution,
            "connected": len(connected),
            "failed_to_connect": sum(1 for c in calls if c.connected_at is None),
            "greeted": sum(1 for c in connected if c.greeting_at is not None),
            "no_greeting": sum(1 for c in connected if c.greeting_at is None),
            "dropped": len(dropped),
            "drop_reasons": sorted({c.dropped for c in dropped if c.dropped})[:10],
            "through_window": len(through),
            "frames_per_s": summary(fps, 1.0, 2),
            "frames_received": sum(c.frames for c in calls),
            "gap_ms": summary(list(self.gaps), 1000.0, 3) | {
                "over_30ms": sum(1 for g in self.gaps if g > 0.030)},
            "tick_late_ms": summary(list(self.tick_late), 1000.0, 3),
            "loop_busy_ms": summary(list(self.busy), 1000.0, 3),
            "greeting_s": summary([c.greeting_at - c.connected_at for c in connected
                                   if c.greeting_at is not None and c.connected_at is not None], 1.0, 3),
            "questions_asked": sum(c.asked for c in calls),
            "answered": sum(c.answered for c in calls),
            "unanswered": sum(c.unanswered for c in calls),
            "first_speech_after_question_s": summary([v for c in calls for v in c.first_speech_s], 1.0, 3),
            "first_answers_decoded": decoded, "first_answers_verified": verified,
        }


def summary(values: list[float], scale: float, digits: int) -> dict[str, Any]:
    """n, min, p50, p99 and max (nearest rank), scaled."""
    if not values:
        return {"n": 0, "min": None, "p50": None, "p99": None, "max": None}
    ordered = np.sort(np.asarray(values, dtype=np.float64)) * scale

    def rank(q: float) -> float:
        return round(float(ordered[min(len(ordered) - 1, max(0, int(np.ceil(q * len(ordered))) - 1))]), digits)

    return {"n": len(values), "min": round(float(ordered[0]), digits), "p50": rank(0.5), "p99": rank(0.99),
            "max": round(float(ordered[-1]), digits)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="the service's AudioSocket port on 127.0.0.1")
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--questions", required=True, help='JSON file: [{"text": ..., "expect": regex}, ...]')
    parser.add_argument("--stagger-s", type=float, default=5.0, help="the dials are spread over this long")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="after the last dial, before the window")
    parser.add_argument("--window-s", type=float, default=15.0, help="the steady window measured")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--prime", action="store_true", help="one call to the greeting first, then wait for go")
    parser.add_argument("--profile", metavar="FILE", help="cProfile this process into FILE")
    args = parser.parse_args(argv)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        Callers(args).run()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
