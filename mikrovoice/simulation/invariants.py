"""The invariants: what must hold on every simulated call, each a function of a ``CallObservation``.

Each check returns a list of violations (plain sentences with the virtual time), empty when the
call kept the promise. They judge only what the parties observed: the Asterisk stand-in's audio
(what the caller heard, decoded, and when), the service's call record and log, the model
simulator's ledger, the routers' journals and the network's connections. ``INVARIANTS`` names and
explains them for ``mikrovoice simulate``'s summary and docs/simulations.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mikrovoice.routeros.commands import CommandNotAllowed, check_allowed
from mikrovoice.routeros.protocol import Request, RouterOSProtocolError
from mikrovoice.sim import brain
from mikrovoice.sim.asterisk import Heard
from mikrovoice.sim.realtime import ModelFaults
from mikrovoice.simulation.report import apology_regex, longest_silence, progress_regex
from mikrovoice.simulation.world import CallObservation

#: The allowance on top of ``progress_silence_s`` for the model to start speaking.
PROGRESS_SLACK_S = 1.5
#: How long after finishing a question the caller may have to wait, beyond the query deadline,
#: for the answer (preamble, the report's own latency and speech) before silence is a violation.
ANSWER_SLACK_S = 30.0
#: Words a router may receive besides the read-only allowlist: the API's own session commands.
SESSION_COMMANDS = frozenset({"/login", "/cancel", "/quit"})
#: The most dead air (no sound at all: no speech, no comfort audio) a caller may hear while a query runs.
DEAD_AIR_S = 2.0
#: One 20 ms frame either side: the caller measures in frames.
FRAME_SLACK_S = 0.04
#: Timing margin when judging whether a router should have answered before a deadline.
DEADLINE_MARGIN_S = 1.0


@dataclass(frozen=True)
class Invariant:
    name: str
    promise: str
    check: Callable[[CallObservation], list[str]]


def _at(obs: CallObservation, t: float) -> str:
    return f"at {obs.t(t):.2f} s"


def call_ends(obs: CallObservation) -> list[str]:
    problems = []
    record = obs.record
    if record is None:
        if obs.scenario.uuid_bytes is None:
            problems.append("the service never took the call")
    elif not obs.call_ended_in_time:
        problems.append(f"the call had not ended {obs.t(obs.caller_done_at):.2f} s + grace after the caller was gone")
    elif record.states and record.states[-1] != "ended":
        problems.append(f"the call machine stopped in {record.states[-1]!r}, not 'ended'")
    for connection in obs.connections:
        if connection.handler_done_at is None:
            problems.append(f"{connection.service}'s task for a connection was still running after the call")
        if connection.open_ends:
            problems.append(f"a connection to {connection.service} was left open by {', '.join(connection.open_ends)}")
    if record is not None and record.call_id == "-" and obs.ledger.sessions:
        problems.append(f"a connection that never became a call opened {len(obs.ledger.sessions)} model session(s)")
    return problems


def no_crash(obs: CallObservation) -> list[str]:
    problems = [f"crash in {crash}" for crash in obs.crashes]
    problems += [f"simulated model crashed: {crash}" for crash in obs.ledger.all_crashes()]
    for line in obs.logs:
        if line.event in ("call.crashed", "sim.model.crashed"):
            problems.append(f"{_at(obs, line.at)}: {line.event}: {line.message}")
    if obs.caller.error:
        problems.append(f"Asterisk would have ended the call: {obs.caller.error}")
    return problems


def one_output_per_call(obs: CallObservation) -> list[str]:
    """Every function call gets one output: in the session that issued it, or - when that session
    died first - in the session the conversation was replayed into (``client_calls``). No session
    gets two outputs for one call."""
    problems = []
    sent_by_service = {c.call_id: c for c in obs.record.tool_calls} if obs.record else {}
    for session in obs.ledger.sessions:
        for call_id, replayed in session.client_calls.items():
            if len(replayed.outputs) > 1:
                problems.append(f"replayed function call {replayed.name} ({call_id}) got {len(replayed.outputs)} "
                                f"outputs in session {session.number}")
        for call_id, call in session.calls.items():
            if len(call.outputs) > 1:
                problems.append(f"function call {call.name} ({call_id}) got {len(call.outputs)} outputs")
            # Every session that knew the call: the one that issued it, then those it was replayed into.
            knew = [session] + [s for s in obs.ledger.sessions if s is not session and call_id in s.client_calls]
            if call.outputs or any(s.client_calls[call_id].outputs for s in knew[1:]):
                continue
            # A server that went silent received nothing more: for outputs, its session ended then.
            ends = [min((t for t in (s.ended_at, s.silenced_at) if t is not None), default=None) for s in knew]
            ended = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
            record = sent_by_service.get(call_id)
            query = next((q for q in obs.record.queries if q.call_id == call_id), None) if obs.record else None
            # No output is right only if the last session that knew the call ended before the
            # service had one to give.
            ready_at = query.ended_at if query is not None and not query.cancelled else None
            if record is not None and record.problem:
                ready_at = record.received_at
            # The late-result rule holds a result until the line is free; a caller who hangs up
            # meanwhile leaves it unsaid (not for long: ANSWER_SLACK_S at most).
            waited = record is not None and record.result_ready_at is not None and record.output_sent_at is None
            if waited and ready_at is not None and obs.record is not None and obs.record.ended_at - ready_at <= ANSWER_SLACK_S:
                continue
            if ended is None or (ready_at is not None and ready_at < ended):
                problems.append(f"function call {call.name} ({call_id}, {_at(obs, call.issued_at)}) never got an output")
    return problems


def query_bounded(obs: CallObservation) -> list[str]:
    if obs.record is None:
        return []
    problems = []
    limit = obs.settings.query_timeout_s
    for query in obs.record.queries:
        if query.ended_at is None:
            problems.append(f"the {query.tool} query started {_at(obs, query.started_at)} never ended")
            continue
        if query.ended_at - query.started_at > limit + 1e-6:
            problems.append(f"the {query.tool} query ran {query.ended_at - query.started_at:.2f} s, past its {limit:g} s deadline")
        if obs.record.ended and query.ended_at > obs.record.ended_at + 1e-6:
            problems.append(f"the {query.tool} query outlived the call ({_at(obs, query.ended_at)})")
    return problems


def speech_spans(obs: CallObservation) -> list[tuple[float, float]]:
    """Every stretch of speech on the line: what the caller heard and what the caller said."""
    spans = [(h.start, h.end) for h in obs.caller.heard] + [(s.start, s.end) for s in obs.caller.spoken]
    return sorted(spans)


def query_windows(obs: CallObservation) -> list[tuple[str, float, float]]:
    """(tool, start, end) of each query, cut at the moment the caller left the line."""
    if obs.record is None:
        return []
    left = min(t for t in (obs.caller.hung_up_at, obs.caller.server_hung_up_at, obs.caller_done_at) if t is not None)
    windows = []
    for query in obs.record.queries:
        end = min(query.ended_at if query.ended_at is not None else left, left)
        if end > query.started_at:
            windows.append((query.tool, query.started_at, end))
    return windows


def progress_cadence(obs: CallObservation) -> list[str]:
    spans = speech_spans(obs)
    problems = []
    for tool, start, end in query_windows(obs):
        silence = obs.settings.progress_silence_by_tool.get(tool, obs.settings.progress_silence_s)
        bound = silence + PROGRESS_SLACK_S
        longest, where = longest_silence(spans, start, end)
        if longest > bound + 1e-6:
            problems.append(f"during the {tool} query the caller heard {longest:.2f} s without speech "
                            f"from {obs.t(where):.2f} s (allowed: {bound:g} s)")
    return problems


def comfort_fills(obs: CallObservation) -> list[str]:
    """While a query runs the caller never hears more than ``DEAD_AIR_S`` without sound (comfort
    audio, speech or a prompt; silence below the comfort level is dead air). The caller's own
    speech is not dead air."""
    if obs.settings.comfort_audio == "off":
        return []
    spans = sorted([*obs.caller.sound, *((s.start, s.end) for s in obs.caller.spoken)])
    problems = []
    for tool, start, end in query_windows(obs):
        longest, where = longest_silence(spans, start, end)
        if longest > DEAD_AIR_S + FRAME_SLACK_S:
            problems.append(f"during the {tool} query the caller heard {longest:.2f} s of dead air "
                            f"from {obs.t(where):.2f} s (allowed: {DEAD_AIR_S:g} s)")
    return problems


def result_once(obs: CallObservation) -> list[str]:
    """A query's result is spoken once: never more answers heard whole (not cut by the caller's
    speech, nor by the service cutting a dying model session's unfinished speech) than queries
    that finished, plus the answers the caller asked to hear again (the repeat digit)."""
    if obs.record is None:
        return []
    finished = sum(1 for q in obs.record.queries if not q.cancelled and q.ended_at is not None)
    cuts = obs.record.cut_by_drop  # a dying model session's speech, cut by the service mid-answer
    answers = [h for h in obs.caller.heard
               if (brain.ANSWER_SFP.search(h.text) or brain.ANSWER_DEVICES.search(h.text))
               and not any(s.start < h.end and s.end > h.start for s in obs.caller.spoken)
               and not any(h.start <= c <= h.end + FRAME_SLACK_S for c in cuts)]
    repeats = obs.record.repeats  # the repeat digit plays an answer again, on purpose
    if len(answers) > finished + repeats:
        return [f"the caller heard {len(answers)} answers for {finished} finished quer{'y' if finished == 1 else 'ies'}"
                + (f" and {repeats} repeat(s)" if repeats else "") + ": "
                + "; ".join(f"{obs.t(h.start):.2f} s «{h.text[:50]}»" for h in answers)]
    return []


def _answers_for(kind: str) -> re.Pattern[str]:
    if kind == "devices":
        return re.compile(f"{brain.ANSWER_DEVICES.pattern}|No pude hacer esa consulta", re.IGNORECASE)
    if kind in ("sfp_all", "sfp_some"):
        return re.compile(f"{brain.ANSWER_SFP.pattern}|No pude hacer esa consulta", re.IGNORECASE)
    if kind == "unknown_router":
        return re.compile("no conozco el router", re.IGNORECASE)
    return re.compile("No entendí", re.IGNORECASE)


def answered_or_told(obs: CallObservation) -> list[str]:
    """Every question is answered, or the caller hears why not, while they are willing to listen.

    The duty for a question starts when the caller finished asking it and ends when the caller
    asks something else (another question, or speaking over the assistant), hangs up, or runs
    out of patience. If the caller stayed for the whole answer bound (the query deadline plus
    ``ANSWER_SLACK_S``), an answer or an explanation must have started by then; if the service
    hung up first, the explanation must have come before it did. The apology for a lost model
    explains every question still open: one the caller asked while it was playing, too.
    """
    problems = []
    report = obs.caller
    asks = obs.scenario.asks
    bound = obs.settings.query_timeout_s + obs.settings.connect_timeout_s + ANSWER_SLACK_S
    turns = sorted([s.start for s in report.spoken if s.kind in ("question", "barge_in")])
    farewell = apology_regex(obs.settings.phrases)
    for index, question in enumerate(report.questions):
        if index >= len(asks) or not question.finished_asking_at:
            continue
        asked = question.finished_asking_at
        later_turns = [t for t in turns if t > asked]
        caller_left = min(t for t in (report.hung_up_at, obs.caller_done_at) if t is not None)
        duty_end = min([caller_left, asked + bound] + later_turns[:1])
        server_end = report.server_hung_up_at
        accepted = [_answers_for(asks[index].kind), brain.ANSWER_WAITING]
        heard = [h for h in report.heard if (asked <= h.start <= duty_end and any(p.search(h.text) for p in accepted))
                 or (h.end >= question.asked_at and h.start <= duty_end and farewell.search(h.text))]
        if heard:
            continue
        if server_end is not None and server_end <= duty_end:
            problems.append(f"question {index + 1} ({asks[index].describe()}) was left unanswered: the service hung up "
                            f"{_at(obs, server_end)} without a word about it")
        elif duty_end >= asked + bound - 1e-6:
            problems.append(f"question {index + 1} ({asks[index].describe()}) got no answer and no explanation within "
                            f"{bound:g} s (asked {_at(obs, asked)})")
    return problems


def progress_consistent(obs: CallObservation) -> list[str]:
    """Progress counts never contradict each other or the final answer the caller hears.

    Each SFP query's updates are those heard from its start until its answer: the first
    "Respondieron A de T" heard after it ended (and before the next query began). A query whose
    answer the caller never heard (they hung up, or spoke over it) is not judged here."""
    if obs.record is None:
        return []
    progress = progress_regex(obs.settings.phrases)
    queries = [q for q in obs.record.queries if q.tool == "trafico_sfp" and q.ended_at is not None]
    problems = []
    for index, query in enumerate(queries):
        assert query.ended_at is not None
        before = queries[index + 1].started_at if index + 1 < len(queries) else float("inf")
        finals = [(h, m) for h in obs.caller.heard if query.ended_at <= h.start < before
                  and (m := brain.ANSWER_SFP.search(h.text)) and m.group("answered").isdigit()
                  and m.group("total").isdigit()]
        if not finals:
            continue
        final, match = finals[0]
        answered, total = int(match.group("answered")), int(match.group("total"))
        counts = []
        for update in obs.caller.heard:
            said_match = progress.search(update.text)
            if not said_match or not query.started_at <= update.start < final.start:
                continue
            said, of = int(said_match.group("answered")), int(said_match.group("total"))
            if of != total:
                problems.append(f"progress {_at(obs, update.start)} said {said} of {of} routers, the answer says of {total}")
            if said > answered:
                problems.append(f"progress {_at(obs, update.start)} said {said} of {of} routers had answered, "
                                f"the final answer says {answered}")
            counts.append(said)
        if counts != sorted(counts):
            problems.append(f"progress counts went backwards: {counts}")
    return problems


def machine_total(obs: CallObservation) -> list[str]:
    return [f"{_at(obs, line.at)}: {line.fields.get('error', line.message)}" for line in obs.logs if line.event == "call.bug"]


def read_only(obs: CallObservation) -> list[str]:
    problems = []
    for name, router in obs.routers.items():
        for at, words in router.journal:
            try:
                request = Request.parse(words)
                if request.command not in SESSION_COMMANDS:
                    check_allowed(request)
            except (RouterOSProtocolError, CommandNotAllowed) as exc:
                problems.append(f"router {name} received {words[:3]} {_at(obs, at)}: {exc}")
    return problems


def _faulty(obs: CallObservation) -> set[str]:
    return {r.name for r in obs.scenario.routers if r.fault is not None}


def answer_true(obs: CallObservation) -> list[str]:
    """What the caller hears matches the routers: device counts, and who answered an SFP query."""
    problems = []
    settings, faulty = obs.settings, _faulty(obs)
    latency = {r.name: r.latency_s for r in obs.scenario.routers}
    deadline = min(settings.router_timeout_s, settings.query_timeout_s)
    for heard in obs.caller.heard:
        devices = brain.ANSWER_DEVICES.search(heard.text)
        if devices and not devices.group("count").isdigit():
            problems.append(f"{_at(obs, heard.start)} the caller heard a device count that is no number: {heard.text!r}")
        elif devices:
            name, count = devices.group("router"), int(devices.group("count"))
            router = obs.routers.get(name)
            if router is None:
                problems.append(f"{_at(obs, heard.start)} the caller heard about a router {name!r} that does not exist")
            elif name in faulty:
                problems.append(f"{_at(obs, heard.start)} the caller heard {count} devices on {name}, which is down")
            else:
                bound = sum(1 for lease in router.leases if lease["status"] == "bound")
                if count != bound:
                    problems.append(f"{_at(obs, heard.start)} the caller heard {count} devices on {name}; it has {bound}")
        sfp = brain.ANSWER_SFP.search(heard.text)
        if sfp and not (sfp.group("answered").isdigit() and sfp.group("total").isdigit()):
            problems.append(f"{_at(obs, heard.start)} the caller heard router counts that are no numbers: {heard.text!r}")
        elif sfp:
            answered, total = int(sfp.group("answered")), int(sfp.group("total"))
            missing = set((sfp.group("missing") or "").replace(" y ", ", ").split(", ")) - {""}
            asked = _asked_routers(obs, heard)
            if asked is None:
                continue
            if total != len(asked):
                problems.append(f"{_at(obs, heard.start)} the answer counts {total} routers; {len(asked)} were asked")
            down = {r for r in asked if r in faulty}
            if not down <= missing:
                problems.append(f"{_at(obs, heard.start)} routers {sorted(down - missing)} were down, "
                                f"yet not named among those that did not answer")
            sure = {r for r in asked if r not in faulty and latency.get(r, 0.3) < deadline - DEADLINE_MARGIN_S}
            if answered < len(sure) - len(missing & sure) or answered > len(asked) - len(down):
                problems.append(f"{_at(obs, heard.start)} 'respondieron {answered} de {total}' does not match the fleet: "
                                f"{len(asked) - len(down)} could answer, {len(sure)} surely did")
    return problems


def _asked_routers(obs: CallObservation, answer: Heard) -> list[str] | None:
    """The routers of the SFP query whose answer this is (the last one started before it)."""
    if obs.record is None:
        return None
    queries = [q for q in obs.record.queries if q.tool == "trafico_sfp" and q.started_at <= answer.start]
    if not queries:
        return None
    return [r.name for r in queries[-1].per_router]


#: How soon the cut speech stops after a barge-in: the frame in flight (AudioSocket), or FLUSH_MEDIA's
#: way to Asterisk and its next tick (chan_websocket); plus the caller's frame of measure.
BARGE_IN_STOP_S = {"audiosocket": 0.06, "websocket": 0.1}
#: How far the heard position may fall short of what the caller heard: a frame (AudioSocket, every
#: frame written is heard), a batch between two marks plus a tick (chan_websocket).
BARGE_IN_UNDER_MS = {"audiosocket": 60, "websocket": 160}


def barge_in_heard(obs: CallObservation) -> list[str]:
    """A barge-in stops the assistant where the caller is: the speech being heard stops at once,
    and the item is truncated at what the caller heard of it (never more; less only by the
    transport's grain), never at wall-clock time."""
    if obs.record is None:
        return []
    transport = obs.scenario.line.transport
    problems = []
    for t, item, heard_ms in obs.record.barge_ins:
        ongoing = [h for h in obs.caller.heard if h.start < t - FRAME_SLACK_S < h.end]
        for h in ongoing:
            if h.end > t + BARGE_IN_STOP_S[transport] + FRAME_SLACK_S:
                problems.append(f"{_at(obs, t)} barge-in, yet the caller heard «{h.text[:40]}» for "
                                f"{h.end - t:.2f} s more")
        if heard_ms == 0 or item.startswith("prompt:"):
            continue
        started = [h for h in obs.caller.heard if h.start <= t + FRAME_SLACK_S]
        if not started:
            problems.append(f"{_at(obs, t)} {item} truncated at {heard_ms} ms, but the caller had heard nothing")
            continue
        # The cut item is the utterance that began last before the cut (an item that follows
        # another back to back begins where the other ends), if it was still being heard.
        current = max(started, key=lambda h: h.start)
        if current.end < t - FRAME_SLACK_S:
            continue  # the item ended before the cut (queued speech behind it was dropped)
        heard_for = (t - current.start) * 1000
        if heard_ms > heard_for + FRAME_SLACK_S * 1000 * 1.5:
            problems.append(f"{_at(obs, t)} {item} truncated at {heard_ms} ms; the caller had heard {heard_for:.0f} ms")
        elif heard_for - heard_ms > BARGE_IN_UNDER_MS[transport] + FRAME_SLACK_S * 1000:
            problems.append(f"{_at(obs, t)} {item} truncated at {heard_ms} ms; the caller had heard {heard_for:.0f} ms "
                            f"(more than {BARGE_IN_UNDER_MS[transport]} ms short)")
    return problems


def short_speech_cuts_nothing(obs: CallObservation) -> list[str]:
    """An "ajá" (shorter than min_speech_ms) neither cuts the assistant nor cancels a query."""
    if obs.record is None:
        return []
    min_s = obs.settings.min_speech_ms / 1000
    problems = []
    for spoken in obs.caller.spoken:
        if spoken.end - spoken.start >= min_s:
            continue
        others = [o for o in obs.caller.spoken if o is not spoken and o.end - o.start >= min_s]
        for t, item, _ in obs.record.barge_ins:
            if spoken.start <= t <= spoken.end + 1.0 and not any(o.start <= t <= o.end + 1.0 for o in others):
                problems.append(f"{_at(obs, t)} the caller's «{spoken.text}» ({spoken.end - spoken.start:.2f} s) cut {item}")
        for query in obs.record.queries:
            ended = query.ended_at
            if (query.cancelled and ended is not None and ended < obs.record.ended_at - 0.5  # not the call's end
                    and spoken.start <= ended <= spoken.end + 3.0
                    and not any(o.start <= ended <= o.end + 3.0 for o in others)):
                problems.append(f"{_at(obs, ended)} the caller's «{spoken.text}» cancelled the {query.tool} query")
    return problems


#: A digit's effect is owed when the call lasted this long after the press (the repeat plays
#: after what is playing; the human phrase waits for a free line and the model's latency).
DIGIT_EFFECT_S = 12.0


def digits_answered(obs: CallObservation) -> list[str]:
    """The human digit makes the assistant say how to reach a person; the repeat digit plays the
    last answer again (when there was one), if the caller stays DIGIT_EFFECT_S after pressing and
    the model is up. Other digits change nothing."""
    if obs.record is None or obs.scenario.model != ModelFaults():
        return []
    settings = obs.settings
    end = obs.record.ended_at
    human = settings.phrases.human_contact[:40]
    problems = []
    for pressed_at, raw in obs.caller.dtmf:
        digit = raw.upper() if raw in "abcd" else raw
        if pressed_at + DIGIT_EFFECT_S > end:
            continue
        later = [h for h in obs.caller.heard if pressed_at <= h.start]
        if digit == settings.dtmf_human and not any(human in h.text for h in later):
            problems.append(f"{_at(obs, pressed_at)} the caller pressed {raw}, and never heard how to reach a person")
        if digit == settings.dtmf_repeat:
            before = [h for h in obs.caller.heard if h.end <= pressed_at and _is_answer(h.text)]
            if before and not any(h.text == before[-1].text for h in later):
                problems.append(f"{_at(obs, pressed_at)} the caller pressed {raw} and did not hear the last answer again")
    return problems


def _is_answer(text: str) -> bool:
    return bool(brain.ANSWER_SFP.search(text) or brain.ANSWER_DEVICES.search(text) or brain.ANSWER_PROBLEM.search(text))


def flow_control(obs: CallObservation) -> list[str]:
    """chan_websocket: the service never fills Asterisk's queue to MEDIA_XOFF (900 frames), and
    never sends a command Asterisk ignores."""
    if obs.scenario.line.transport != "websocket":
        return []
    problems = []
    if obs.caller.max_queue_frames >= 900:
        problems.append(f"Asterisk's queue reached {obs.caller.max_queue_frames} frames (MEDIA_XOFF at 900)")
    problems += [f"Asterisk ignored a command: {reason}" for reason in obs.caller.ignored_commands]
    return problems


INVARIANTS: tuple[Invariant, ...] = (
    Invariant("call_ends", "the call reaches 'ended' and leaves no task, socket or router connection behind", call_ends),
    Invariant("no_crash", "no simulator, service or call crashes, whatever a peer does", no_crash),
    Invariant("one_output_per_call", "every function_call gets exactly one output (none only if the model left first)",
              one_output_per_call),
    Invariant("query_bounded", "no query outlives its deadline or the call", query_bounded),
    Invariant("progress_cadence", "while a query runs the caller never hears more than progress_silence_s + 1.5 s "
              "without speech", progress_cadence),
    Invariant("comfort_fills", "while a query runs the caller never hears more than 2 s of dead air (silence "
              "below the comfort level)", comfort_fills),
    Invariant("result_once", "a query's result is spoken once, never twice (also across reconnects)", result_once),
    Invariant("answered_or_told", "every question is answered, or the caller hears why not — never silence",
              answered_or_told),
    Invariant("progress_consistent", "progress counts never contradict each other or the final answer",
              progress_consistent),
    Invariant("machine_total", "the call machine never receives an event it does not handle", machine_total),
    Invariant("read_only", "no RouterOS word outside the read-only allowlist reaches a router", read_only),
    Invariant("answer_true", "device counts and who answered match the routers' real state", answer_true),
    Invariant("barge_in_heard", "a barge-in stops the speech at once and truncates it at what the caller heard",
              barge_in_heard),
    Invariant("short_speech_cuts_nothing", "an 'ajá' shorter than min_speech_ms cuts nothing and cancels nothing",
              short_speech_cuts_nothing),
    Invariant("digits_answered", "the human digit says how to reach a person; the repeat digit repeats the last answer",
              digits_answered),
    Invariant("flow_control", "chan_websocket: Asterisk's queue never reaches MEDIA_XOFF; no command is ignored",
              flow_control),
)


def check(obs: CallObservation) -> dict[str, list[str]]:
    """Every invariant's violations (only those with any)."""
    found = {}
    for invariant in INVARIANTS:
        problems = invariant.check(obs)
        if problems:
            found[invariant.name] = problems
    return found
