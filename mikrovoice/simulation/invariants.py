"""The invariants: what must hold on every simulated call, each a function of a ``CallObservation``.

Each check returns a list of violations (plain sentences with the virtual time), empty when the
call kept the promise. They judge only what the parties observed: the Asterisk stand-in's audio
(what the caller heard, decoded, and when), the service's call record and log, the model
simulator's ledger, the routers' journals and the network's connections. ``INVARIANTS`` names and
explains them for ``mikrovoice simulate``'s summary and docs/simulations.md.
"""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mikrovoice.call.auth import same_number
from mikrovoice.call.session import QueryRecord
from mikrovoice.routeros.commands import MAX_PING_COUNT, RULES, CommandNotAllowed, check_allowed
from mikrovoice.routeros.errors import Reason
from mikrovoice.routeros.protocol import Request, RouterOSProtocolError
from mikrovoice.sim import brain
from mikrovoice.sim.asterisk import Heard
from mikrovoice.sim.realtime import ModelFaults
from mikrovoice.simulation.report import apology_regex, progress_regex
from mikrovoice.simulation.report import longest_silence as longest_silence  # runner's
from mikrovoice.simulation.scenario import NO_ANSWER_FAULTS, Ask
from mikrovoice.simulation.world import CallObservation
from mikrovoice.tools.logs import TOPICS as LOG_TOPICS
from mikrovoice.tools.optics import OpticsLimits
from mikrovoice.tools.ping import DEFAULT_COUNT as PING_DEFAULT_COUNT

#: The allowance on top of ``progress_silence_s`` for the model to start speaking.
PROGRESS_SLACK_S = 1.5
#: How long after finishing a question the caller may have to wait, beyond the query deadline,
#: for the answer (preamble, the report's own latency and speech) before silence is a violation.
ANSWER_SLACK_S = 30.0
#: Words a router may receive besides the read-only allowlist: the API's own session commands.
SESSION_COMMANDS = frozenset({"/login", "/cancel"})
#: Every command word a router may receive: the allowlist's, and the session's.
ALLOWED_COMMANDS = frozenset(RULES) | SESSION_COMMANDS
#: The read-only check's own opinion, independent of the allowlist: the last segment of a command
#: word that changes a router, commands that act, and menus that hold secrets.
WRITE_VERBS = frozenset({"add", "set", "remove", "enable", "disable", "unset", "edit", "reset-counters",
                         "reset-counters-all", "move", "reboot", "shutdown", "run", "import", "export", "comment",
                         "reset", "reset-configuration", "upgrade", "install", "uninstall", "downgrade", "save",
                         "load", "clear", "flush", "make-static", "release", "renew", "send", "fetch", "execute",
                         "backup", "restore", "apply", "check-installation", "print-to-file", "monitor-to-file"})
SECRET_MENUS = ("/user", "/ppp/secret", "/file", "/system/script", "/system/backup", "/certificate",
                "/radius", "/snmp/community", "/ip/ipsec")
#: Commands that run until stopped unless told ``once`` (or a bounded ``count``).
MONITOR_COMMANDS = frozenset({"/interface/monitor-traffic", "/interface/ethernet/monitor"})
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
    """The call reaches 'ended' in time and leaves nothing behind: no task, no open connection
    (the world closes the routers' pool, as the process's end does), no query still asking a router."""
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
    # The router connections are the process's and outlive the call; its queries do not: after
    # the call ended a router may only be told to cancel.
    if record is not None and record.ended:
        for name, router in obs.routers.items():
            late = [words[0] for at, words in router.journal
                    if at > record.ended_at + FRAME_SLACK_S and words and words[0] != "/cancel"]
            if late:
                problems.append(f"router {name} was sent {', '.join(late[:3])} after the call ended")
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
               if brain.is_answer(h.text)
               and not any(s.start < h.end and s.end > h.start for s in obs.caller.spoken)
               and not any(h.start <= c <= h.end + FRAME_SLACK_S for c in cuts)]
    repeats = obs.record.repeats  # the repeat digit plays an answer again, on purpose
    if len(answers) > finished + repeats:
        return [f"the caller heard {len(answers)} answers for {finished} finished quer{'y' if finished == 1 else 'ies'}"
                + (f" and {repeats} repeat(s)" if repeats else "") + ": "
                + "; ".join(f"{obs.t(h.start):.2f} s «{h.text[:50]}»" for h in answers)]
    return []


def _answers_for(ask: Ask) -> re.Pattern[str]:
    """What answers ``ask``, or explains why not: its tool's answer, a failed query, the inventory's
    question back (an unknown or ambiguous router), or "No entendí"."""
    if ask.kind == "nonsense":
        return re.compile("No entendí", re.IGNORECASE)
    if ask.kind == "unknown_router":
        return re.compile("no conozco el router", re.IGNORECASE)
    return re.compile(f"{ask.expect().pattern}|No pude hacer esa consulta|{brain.ANSWER_CLARIFY.pattern}",
                      re.IGNORECASE)


def answered_or_told(obs: CallObservation) -> list[str]:
    """Every question is answered, or the caller hears why not, while they are willing to listen.

    The duty for a question starts when the caller finished asking it and ends when the caller
    asks something else (another question, or speaking over the assistant), hangs up, or runs
    out of patience. If the caller stayed for the whole answer bound (the query deadline plus
    ``ANSWER_SLACK_S``), an answer or an explanation must have started by then; if the service
    hung up first, the explanation must have come before it did. The apology for a lost model
    explains every question still open: one the caller asked while it was playing, too.
    """
    if _admitted_at(obs) is None:
        return []  # a caller never admitted is told so (``authorisation``), and asks nothing of the tools
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
        accepted = [_answers_for(asks[index]), brain.ANSWER_WAITING]
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
    answer the caller never heard (they hung up, or spoke over it) is not judged here.

    Every query, whatever its tool: each "N de T ya respondieron" heard from its start until the
    next query's counts no more than the routers that could answer (a router whose fault keeps it
    from answering is never counted as answered), at most the final output's
    ``routers_que_respondieron`` (when the model received one), and T is the number of routers asked."""
    if obs.record is None:
        return []
    progress = progress_regex(obs.settings.phrases)
    queries = [q for q in obs.record.queries if q.tool == "trafico_interfaces" and q.ended_at is not None]
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
    dead = _dead(obs)
    outputs = {told.call_id: told for told in tool_outputs(obs)}
    every = sorted(obs.record.queries, key=lambda q: q.started_at)
    for index, query in enumerate(every):
        asked = [r.name for r in query.per_router]
        if not asked:
            continue
        until = every[index + 1].started_at if index + 1 < len(every) else float("inf")
        alive = len([r for r in asked if r not in dead])
        told = outputs.get(query.call_id)
        said_final = told.data.get("routers_que_respondieron") if told is not None and told.data is not None else None
        counts = []
        for update in obs.caller.heard:
            said_match = progress.search(update.text)
            if not said_match or not query.started_at <= update.start < until:
                continue
            said, of = int(said_match.group("answered")), int(said_match.group("total"))
            counts.append(said)
            if of != len(asked):
                problems.append(f"progress {_at(obs, update.start)} said {said} of {of} routers; the {query.tool} "
                                f"query asked {len(asked)}")
            if said > alive:
                problems.append(f"progress {_at(obs, update.start)} said {said} of {of} routers had answered; only "
                                f"{alive} could (the others' faults keep them from answering): failed routers "
                                f"counted as answered")
            if isinstance(said_final, int) and said > said_final:
                problems.append(f"progress {_at(obs, update.start)} said {said} of {of} routers had answered, the "
                                f"{query.tool} output says {said_final}")
        if counts != sorted(counts):
            problems.append(f"progress counts of the {query.tool} query went backwards: {counts}")
    return problems


def machine_total(obs: CallObservation) -> list[str]:
    return [f"{_at(obs, line.at)}: {line.fields.get('error', line.message)}" for line in obs.logs if line.event == "call.bug"]


def read_only(obs: CallObservation) -> list[str]:
    """Every sentence a router received is a read: a command of the allowlist (``routeros.commands.RULES``)
    or ``/login`` / ``/cancel``, accepted by ``check_allowed`` with its values; and, judged on its own,
    no command word ends in a write verb, acts, or reads a menu that holds secrets, and no monitor
    or ping is left to run forever."""
    problems = []
    for name, router in obs.routers.items():
        for at, words in router.journal:
            where = f"router {name} received {words[:3]} {_at(obs, at)}"
            try:
                request = Request.parse(words)
            except RouterOSProtocolError as exc:
                problems.append(f"{where}: {exc}")
                continue
            command = request.command
            try:
                if command not in ALLOWED_COMMANDS:
                    raise CommandNotAllowed(f"{command} is not in mikrovoice's read-only allowlist")
                check_allowed(request)
            except CommandNotAllowed as exc:
                problems.append(f"{where}: {exc}")
            verb = command.rsplit("/", 1)[-1]
            if verb in WRITE_VERBS:
                problems.append(f"{where}: {verb!r} changes the router")
            if any(command == menu or command.startswith(menu + "/") for menu in SECRET_MENUS):
                problems.append(f"{where}: {command} reads a menu that holds secrets")
            if command in MONITOR_COMMANDS and "once" not in request.attributes:
                problems.append(f"{where}: a monitor without =once= runs until cancelled")
            count = request.attributes.get("count", "")
            if command == "/ping" and not (count.isdigit() and 1 <= int(count) <= MAX_PING_COUNT):
                problems.append(f"{where}: a ping of {count or 'unbounded'} packets")
    return problems


def _dead(obs: CallObservation) -> set[str]:
    """Routers whose fault keeps them from answering anything (``scenario.NO_ANSWER_FAULTS``)."""
    return {r.name for r in obs.scenario.routers if r.fault in NO_ANSWER_FAULTS}


def _faulty(obs: CallObservation) -> set[str]:
    return {r.name for r in obs.scenario.routers if r.fault is not None}


@dataclass(frozen=True)
class Told:
    """One tool output the model received, with the call it answers and the query behind it."""

    call_id: str
    tool: str
    arguments: dict[str, Any]  # as the model wrote them
    data: dict[str, Any] | None  # the output (None: not a JSON object)
    at: float
    query: QueryRecord | None  # None for a refused call (no router was asked)

    @property
    def asked(self) -> list[str] | None:
        """The routers the query asked (inventory names), None when there was no query."""
        return [r.name for r in self.query.per_router] if self.query is not None else None


def tool_outputs(obs: CallObservation) -> list[Told]:
    """Every tool output the model received (once per call: a replay into a new session repeats it)."""
    calls: dict[str, tuple[str, str]] = {}
    for session in obs.ledger.sessions:
        for call_id, call in (*session.calls.items(), *session.client_calls.items()):
            calls.setdefault(call_id, (call.name, call.arguments))
    if obs.record is not None:
        for record in obs.record.tool_calls:
            calls.setdefault(record.call_id, (record.name, record.arguments))
    queries = {q.call_id: q for q in obs.record.queries} if obs.record is not None else {}
    told, seen = [], set()
    for output in obs.tool_outputs:
        if output.call_id in seen or output.call_id not in calls:
            continue
        seen.add(output.call_id)
        name, arguments = calls[output.call_id]
        try:
            args = json.loads(arguments or "{}")
        except ValueError:
            args = {}
        told.append(Told(output.call_id, name, args if isinstance(args, dict) else {}, output.data(), output.at,
                         queries.get(output.call_id)))
    return told


def _entries(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-router lines of an output: its ``routers`` entries with an ``estado``, or the output
    itself for a one-router tool (``router`` and ``estado`` at the top)."""
    entries = [e for e in data.get("routers") or [] if isinstance(e, dict) and "estado" in e]
    if "estado" in data and "router" in data:
        entries.append(data)
    return entries


def _reason_phrases(obs: CallObservation) -> set[str]:
    """What the caller may be told about a router that did not answer (``Phrases.router_*``)."""
    return {str(getattr(obs.settings.phrases, f"router_{reason.value}")) for reason in Reason}


#: A one-router output's error for a router whose query never ended (``tools``' own words).
NOT_FINISHED = "la consulta no terminó"


def status_honest(obs: CallObservation) -> list[str]:
    """In every tool output the model received: a router whose fault keeps it from answering
    (``NO_ANSWER_FAULTS``) is never "ok" or "degradado" nor counted in ``routers_que_respondieron``;
    every "desconocido" router and every ``sin_respuesta`` has a reason, in the caller's words
    (``Phrases.router_*``); and the counts add up: those that answered are those asked, less
    those that did not answer and those the deadline cut."""
    dead, phrases = _dead(obs), _reason_phrases(obs)
    problems = []

    def spoken(reason: Any) -> bool:
        return isinstance(reason, str) and bool(reason) and all(part in phrases for part in reason.split("; "))

    for told in tool_outputs(obs):
        data = told.data
        if data is None:
            continue
        where = f"the {told.tool} output {_at(obs, told.at)}"
        for entry in _entries(data):
            router, status = entry.get("router"), entry.get("estado")
            if router in dead and status in ("ok", "degradado"):
                problems.append(f"{where} says router {router} is {status!r}; it cannot answer "
                                f"({_fault_of(obs, router)})")
            if status == "desconocido":
                if entry is data:  # a one-router tool: "el router X <reason>"
                    error = str(entry.get("error") or "")
                    reason = error.removeprefix(f"el router {router} ")
                    if not error or (reason != NOT_FINISHED and not spoken(reason)):
                        problems.append(f"{where} gives router {router} no reason in the caller's words: {error!r}")
                elif not spoken(entry.get("motivo")):
                    problems.append(f"{where} gives router {router} no reason in the caller's words: "
                                    f"{entry.get('motivo')!r}")
            elif status not in ("ok", "degradado"):
                problems.append(f"{where}: router {router} has the status {status!r}")
        missing = data.get("sin_respuesta", {})
        if not isinstance(missing, dict):
            problems.append(f"{where}: sin_respuesta is not a router -> reason object: {missing!r}")
            missing = {}
        for router, reason in missing.items():
            if not spoken(reason):
                problems.append(f"{where}: router {router} did not answer, with no reason in the caller's words: "
                                f"{reason!r}")
        answered, total, asked = data.get("routers_que_respondieron"), data.get("routers_consultados"), told.asked
        if answered is None or asked is None:
            continue
        if not isinstance(answered, int) or total != len(asked):
            problems.append(f"{where} counts {answered!r} of {total!r} routers; {len(asked)} were asked")
            continue
        counted = [r for r in asked if r not in missing and r not in (data.get("sin_terminar") or [])]
        if answered != len(counted):
            problems.append(f"{where} counts {answered} routers that answered; of the {len(asked)} asked, "
                            f"{len(missing)} did not answer and {len(asked) - len(counted) - len(missing)} were cut: "
                            f"{len(counted)} answered")
        counted_dead = sorted(set(counted) & dead)
        if counted_dead:
            problems.append(f"{where} counts {', '.join(counted_dead)} among the routers that answered; "
                            f"{'it' if len(counted_dead) == 1 else 'they'} cannot answer")
    return problems


def _fault_of(obs: CallObservation, router: str) -> str:
    return next((r.fault or "healthy" for r in obs.scenario.routers if r.name == router), "healthy")


def _answering(told: Told) -> list[str]:
    """The routers whose answer the output holds: asked, not without answer, not cut by the deadline."""
    data = told.data or {}
    missing = data.get("sin_respuesta")
    missing = missing if isinstance(missing, dict) else {}
    cut = data.get("sin_terminar") or []
    return [r for r in told.asked or [] if r not in missing and r not in cut]


def _plain(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().strip()


def _near(reported: Any, truth: float, slack: float) -> bool:
    return isinstance(reported, int | float) and abs(reported - truth) <= slack


def output_true(obs: CallObservation) -> list[str]:
    """What an answering router reports in a tool output is what the simulated router holds.

    dispositivos_activos: the router's bound leases; quien_tiene: every router that answered and has
    the IP (or MAC) in its leases or ARP is named, with the right MAC (IP), and nobody else;
    sesion_pppoe: the right router, IP and CPE MAC, and "not connected" only if no router that
    answered has the session; estado_routers: online, CPU, memory and version as the router says;
    ping: the count asked, the target, and the echoes the router got back; optica_sfp: the port's
    powers, and a verdict consistent with them and the operator's ``[optics]`` thresholds; log_router: real log
    lines, on the topic asked, no more than asked; trafico_interfaces: real interfaces (SFP when
    the SFPs were asked) and their rates; listar_routers: the inventory."""
    problems = []
    for told in tool_outputs(obs):
        data = told.data
        if data is None or "error" in data and "estado" not in data:
            continue  # a refusal: nothing was asked
        check = _TRUTHS.get(told.tool)
        if check is None:
            continue
        where = f"the {told.tool} output {_at(obs, told.at)}"
        problems += [f"{where}: {p}" for p in check(obs, told, data)]
    return problems


def _devices_truth(obs: CallObservation, told: Told, data: dict[str, Any]) -> list[str]:
    if data.get("estado") not in ("ok", "degradado"):
        return []
    router = obs.routers[data["router"]]
    bound = [r for r in router.table("/ip/dhcp-server/lease") if r.get("status") == "bound"]
    problems = []
    if data.get("dispositivos_activos") != len(bound):
        problems.append(f"router {router.name} has {len(bound)} bound leases, the output says "
                        f"{data.get('dispositivos_activos')!r}")
    pairs = {(r.get("address"), r.get("mac-address")) for r in bound}
    for device in data.get("dispositivos") or []:
        if (device.get("ip"), device.get("mac")) not in pairs:
            problems.append(f"device {device.get('ip')} ({device.get('mac')}) is no bound lease of {router.name}")
    return problems


def _who_has_truth(obs: CallObservation, told: Told, data: dict[str, Any]) -> list[str]:
    ip, mac = told.arguments.get("ip"), told.arguments.get("mac")
    try:
        wanted_ip = str(ipaddress.ip_address(str(ip).strip())) if ip is not None else None
    except ValueError:
        return []
    wanted_mac = ":".join(re.findall(r"[0-9A-F]{2}", str(mac).upper().replace("-", ":"))) if mac is not None else None

    def matches(row: dict[str, str]) -> bool:
        return (row.get("address") == wanted_ip) if wanted_ip is not None else (
            row.get("mac-address", "").upper() == wanted_mac)

    problems = []
    found = [e for e in data.get("encontrado") or [] if isinstance(e, dict)]
    answering = _answering(told)
    # What each answering router holds for the IP or MAC asked (its leases and ARP), read once.
    holds = {name: [r for r in (*obs.routers[name].table("/ip/dhcp-server/lease"), *obs.routers[name].table("/ip/arp"))
                    if matches(r)] for name in answering}
    for entry in found:
        name = entry.get("router")
        if name not in answering:
            problems.append(f"it names router {name}, which did not answer")
            continue
        rows = holds[name]
        if not any(r.get("address") == entry.get("ip") and r.get("mac-address", "").upper()
                   == str(entry.get("mac", "")).upper() for r in rows):
            problems.append(f"router {name} has no {entry.get('ip')} with MAC {entry.get('mac')} for "
                            f"{wanted_ip or wanted_mac}")
    if len(found) < 20:  # the output's detail is complete
        for name in answering:
            truth = {r.get("mac-address", "").upper() for r in holds[name]}
            said = {str(e.get("mac", "")).upper() for e in found if e.get("router") == name}
            if truth - said:
                problems.append(f"router {name} answered and has {wanted_ip or wanted_mac} (MAC "
                                f"{', '.join(sorted(truth - said))}), yet the output does not say so")
    return problems


def _pppoe_truth(obs: CallObservation, told: Told, data: dict[str, Any]) -> list[str]:
    user = str(told.arguments.get("usuario", "")).strip()
    problems = []
    sessions = [s for s in data.get("sesiones") or [] if isinstance(s, dict)]
    answering = _answering(told)
    for session in sessions:
        name = session.get("router")
        if name not in answering:
            problems.append(f"it places {user} on router {name}, which did not answer")
            continue
        rows = [r for r in obs.routers[name].table("/ppp/active") if r.get("name") == user]
        if not any(r.get("address") == session.get("ip") and r.get("caller-id") == session.get("mac") for r in rows):
            problems.append(f"router {name} has no PPPoE session of {user} from {session.get('mac')} with IP "
                            f"{session.get('ip')}")
    for name in answering:
        rows = [r for r in obs.routers[name].table("/ppp/active") if r.get("name") == user]
        if rows and not any(s.get("router") == name for s in sessions):
            problems.append(f"router {name} answered and has {user} connected (IP {rows[0].get('address')}), "
                            f"yet the output does not say so")
    if data.get("conectado") is not bool(sessions):
        problems.append(f"conectado is {data.get('conectado')!r} with {len(sessions)} sessions")
    return problems


def _health_truth(obs: CallObservation, told: Told, data: dict[str, Any]) -> list[str]:
    problems = []
    for entry in _entries(data):
        if entry.get("estado") not in ("ok", "degradado"):
            continue
        router = obs.routers[entry["router"]]
        resource = router.table("/system/resource")[0]
        if entry.get("en_linea") is not True:
            problems.append(f"router {router.name} answered, yet en_linea is {entry.get('en_linea')!r}")
        if "cpu_pct" in entry and not _near(entry["cpu_pct"], float(resource["cpu-load"]), 0.01):
            problems.append(f"router {router.name}'s CPU is {resource['cpu-load']}%, the output says {entry['cpu_pct']!r}")
        memory = round(100 * int(resource["free-memory"]) / int(resource["total-memory"]))
        if "memoria_libre_pct" in entry and entry["memoria_libre_pct"] != memory:
            problems.append(f"router {router.name} has {memory}% free memory, the output says "
                            f"{entry['memoria_libre_pct']!r}")
        if "version" in entry and entry["version"] != resource["version"].split(" ")[0]:
            problems.append(f"router {router.name} runs {resource['version']}, the output says {entry['version']!r}")
    return problems


def _ping_truth(obs: CallObservation, told: Told, data: dict[str, Any]) -> list[str]:
    if data.get("estado") not in ("ok", "degradado"):
        return []
    router = obs.routers[data["router"]]
    count = told.arguments.get("cantidad", PING_DEFAULT_COUNT)
    target = str(told.arguments.get("destino", "")).strip()
    problems = []
    if data.get("enviados") != count:
        problems.append(f"{count} pings were asked, the output says {data.get('enviados')!r} sent")
    if data.get("destino") != target:
        problems.append(f"the ping was to {target}, the output says {data.get('destino')!r}")
    elif isinstance(count, int):
        back = sum(1 for seq in range(count) if router.ping_rtt_us(target, seq) is not None)
        if data.get("recibidos") != back:
            problems.append(f"router {router.name} got {back} of {count} echoes from {target}, the output says "
                            f"{data.get('recibidos')!r}")
    return problems


def _optics_truth(obs: CallObservation, told: Told, data: dict[str, Any]) -> list[str]:
    problems = []
    answering = _answering(told)
    for port in data.get("puertos") or []:
        name, iface = port.get("router"), port.get("interfaz")
        if name not in answering:
            problems.append(f"it reports {iface} of router {name}, which did not answer")
            continue
        truth = obs.routers[name].optics.get(iface)
        if truth is None:
            problems.append(f"router {name} has no port {iface}")
            continue
        verdict = str(port.get("veredicto", ""))
        if truth.get("sfp-module-present") == "false":
            if port.get("modulo") is not False:
                problems.append(f"{iface} of {name} has no SFP module, the output says {port.get('modulo')!r}")
            continue
        if "sfp-rx-power" not in truth:
            continue  # copper: no optics to judge
        rx, tx, temperature = port.get("rx_dbm"), port.get("tx_dbm"), port.get("temperatura_c")
        if not _near(rx, float(truth["sfp-rx-power"]), 0.05) or not _near(tx, float(truth["sfp-tx-power"]), 0.05):
            problems.append(f"{iface} of {name} receives {truth['sfp-rx-power']} and sends {truth['sfp-tx-power']} "
                            f"dBm, the output says {rx!r} and {tx!r}")
            continue
        loss = truth.get("sfp-rx-loss") == "true"
        OPTICS = OpticsLimits(**obs.settings.optics_limits)  # noqa: N806 (the operator's thresholds)
        expect = {
            "pérdida de señal": loss,
            "crítica": not loss and rx <= OPTICS.rx_critical_dbm,
            "recepción": loss is False and (rx <= OPTICS.rx_low_dbm or rx >= OPTICS.rx_high_dbm),
            "saturada": not loss and rx >= OPTICS.rx_high_dbm,
        }
        for words, due in expect.items():
            if due != (words in verdict):
                problems.append(f"{iface} of {name} receives {rx} dBm (rx-loss {truth.get('sfp-rx-loss')}; limits "
                                f"{OPTICS.rx_critical_dbm}/{OPTICS.rx_low_dbm}/{OPTICS.rx_high_dbm}), yet the verdict "
                                f"is {verdict!r}")
                break
        healthy = (not loss and OPTICS.rx_low_dbm < rx < OPTICS.rx_high_dbm and truth.get("sfp-tx-fault") != "true"
                   and tx > OPTICS.tx_low_dbm and (not isinstance(temperature, int | float)
                                                   or temperature < OPTICS.temperature_high_c)
                   and truth.get("status") == "link-ok")
        if healthy != (verdict == "bien"):
            problems.append(f"{iface} of {name}: rx {rx}, tx {tx} dBm, {temperature} °C, {truth.get('status')}; "
                            f"the verdict {verdict!r} should {'' if healthy else 'not '}be 'bien'")
    return problems


def _log_truth(obs: CallObservation, told: Told, data: dict[str, Any]) -> list[str]:
    if data.get("estado") not in ("ok", "degradado"):
        return []
    router = obs.routers[data["router"]]
    rows = {(r["time"], r["topics"], r["message"]) for r in router.table("/log", obs.settled_at)}
    topic = _plain(str(told.arguments.get("tema") or ""))
    wanted = LOG_TOPICS.get(topic, topic)
    limit = told.arguments.get("lineas", 8)
    lines = [line for line in data.get("lineas") or [] if isinstance(line, dict)]
    problems = []
    if isinstance(limit, int) and len(lines) > limit:
        problems.append(f"{len(lines)} lines, {limit} were asked")
    for line in lines:
        key = (line.get("hora"), line.get("temas"), line.get("mensaje"))
        if key not in rows:
            problems.append(f"router {router.name}'s log has no line {key}")
        elif topic and wanted not in str(key[1]).split(",") and topic not in str(key[2]).lower():
            problems.append(f"the line {key} is not about {topic!r}")
    if isinstance(data.get("coincidencias"), int) and data["coincidencias"] < len(lines):
        problems.append(f"{data['coincidencias']} matching lines, yet {len(lines)} given")
    return problems


def _traffic_truth(obs: CallObservation, told: Told, data: dict[str, Any]) -> list[str]:
    problems = []
    answering = _answering(told)
    sfp_only = str(told.arguments.get("interfaces") or "sfp").lower() == "sfp"
    for row in data.get("interfaces") or []:
        name, iface = row.get("router"), row.get("interfaz")
        if name not in answering:
            problems.append(f"it reports {iface} of router {name}, which did not answer")
            continue
        router = obs.routers[name]
        if iface not in router.traffic:
            problems.append(f"router {name} has no interface {iface}")
            continue
        if sfp_only and not str(iface).startswith(("sfp", "qsfp", "combo")):
            problems.append(f"the SFPs were asked, and {iface} of {name} is no SFP")
        rx = router.traffic[iface][0] / 1e6
        if not _near(row.get("rx_mbps"), rx, 0.05 * rx + 0.1):  # a monitor's later seconds wander 5 %
            problems.append(f"{iface} of {name} receives {rx:.1f} Mbps, the output says {row.get('rx_mbps')!r}")
    return problems


def _inventory_truth(obs: CallObservation, told: Told, data: dict[str, Any]) -> list[str]:
    configured = {r.name: r.site for r in obs.settings.routers}
    listed = [entry.get("router") for entry in data.get("routers") or [] if isinstance(entry, dict)]
    problems = [f"router {name} is not in the inventory" for name in listed if name not in configured]
    if not told.arguments.get("sitio") and data.get("routers_en_inventario") != len(configured):
        problems.append(f"the inventory has {len(configured)} routers, the output says "
                        f"{data.get('routers_en_inventario')!r}")
    return problems


_TRUTHS: dict[str, Callable[[CallObservation, Told, dict[str, Any]], list[str]]] = {
    "dispositivos_activos": _devices_truth, "quien_tiene": _who_has_truth, "sesion_pppoe": _pppoe_truth,
    "estado_routers": _health_truth, "ping": _ping_truth, "optica_sfp": _optics_truth, "log_router": _log_truth,
    "trafico_interfaces": _traffic_truth, "listar_routers": _inventory_truth,
}


def answer_true(obs: CallObservation) -> list[str]:
    """What the caller hears matches the routers: device counts, and who answered an SFP query."""
    problems = []
    settings, faulty, dead = obs.settings, _faulty(obs), _dead(obs)
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
            elif name in dead:
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
            down = {r for r in asked if r in dead}
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
    queries = [q for q in obs.record.queries if q.tool == "trafico_interfaces" and q.started_at <= answer.start]
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
    admitted_at = _admitted_at(obs)
    if obs.record is None or obs.scenario.model != ModelFaults() or admitted_at is None:
        return []
    settings = obs.settings
    end = obs.record.ended_at
    human = settings.phrases.human_contact[:40]
    problems = []
    for pressed_at, raw in obs.caller.dtmf:
        digit = raw.upper() if raw in "abcd" else raw
        if pressed_at + DIGIT_EFFECT_S > end or pressed_at < admitted_at:  # a PIN's keys are not commands
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
    return bool(brain.is_answer(text) or brain.ANSWER_PROBLEM.search(text) or brain.ANSWER_CLARIFY.search(text))


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


def _admitted_at(obs: CallObservation) -> float | None:
    """When the call left ``authorising`` for the conversation (None: it never did)."""
    if obs.record is None:
        return None
    return next((at for at, state in obs.record.state_times if state == "greeting"), None)


@dataclass(frozen=True)
class Admission:
    admitted: bool
    operator: str | None = None
    why: str = ""


def expected_admission(obs: CallObservation) -> Admission:
    """The [auth] policy, written again from the configuration and what the caller did (not by
    asking ``call.auth``): whether the caller must be admitted, and as whom."""
    auth, scenario = obs.settings.auth, obs.scenario
    line = scenario.line
    number = line.caller_id if line.transport == "websocket" and line.control == "json" else None
    if auth.require == "open":
        return Admission(True, None, "an open line")
    known = next((op for op in auth.operators if any(same_number(number, n) for n in op.numbers)), None)
    whose = f"number {number or '(not told)'} is " + (f"{known.name}'s" if known else "nobody's")
    if auth.require == "caller_id" or (auth.require == "caller_id_or_pin" and known is not None):
        return Admission(known is not None, known.name if known else None, whose)
    if auth.require == "caller_id_and_pin" and known is None:
        return Admission(False, None, whose)
    for index, pin in enumerate(scenario.pins[: auth.attempts]):
        owner = next((op for op in auth.operators if op.pin and op.pin == pin), None)
        if owner is not None and (auth.require != "caller_id_and_pin" or owner == known):
            return Admission(True, owner.name, f"PIN {index + 1} is {owner.name}'s")
    return Admission(False, None, f"no valid PIN in {auth.attempts} attempt(s)")


def authorisation(obs: CallObservation) -> list[str]:
    """Only a caller the [auth] policy admits reaches the model and the routers, with only their
    operator's tools; any other caller hears the refusal and is hung up, having cost no model
    session; no PIN is ever written to a log."""
    record = obs.record
    if record is None or not record.states:
        return []
    problems = []
    admitted_at = _admitted_at(obs)
    refused = "refusing" in record.states
    expected = expected_admission(obs)
    decided = admitted_at is not None or refused
    if decided and expected.admitted != (admitted_at is not None):
        problems.append(f"the caller was {'admitted' if admitted_at is not None else 'refused'}, but the policy "
                        f"({obs.settings.auth.require}) says {'admit' if expected.admitted else 'refuse'}: {expected.why}")
    if admitted_at is not None and expected.admitted and record.operator != expected.operator:
        problems.append(f"admitted as {record.operator!r}, but {expected.why}")
    first_session = min((s.started_at for s in obs.ledger.sessions), default=None)
    if first_session is not None and (admitted_at is None or first_session < admitted_at - FRAME_SLACK_S):
        problems.append(f"a model session was opened {_at(obs, first_session)}, before the caller was admitted")
    if admitted_at is None:
        asked = [name for name, router in obs.routers.items() if any(w and w[0] != "/login" for _, w in router.journal)]
        if asked:
            problems.append(f"routers {', '.join(asked[:3])} were asked something for a caller never admitted")
        if refused and obs.caller.hung_up_at is None:
            refusal = obs.settings.phrases.auth_refused[:30]
            if record.end_reason and not record.end_reason.startswith("busy") and not any(
                    refusal in h.text for h in obs.caller.heard):
                problems.append("the caller was refused without hearing the refusal")
            if obs.caller.server_hung_up_at is None:
                problems.append("the caller was refused but the service did not hang up")
    phrases = obs.settings.phrases
    for prompt in (phrases.pin_request, phrases.pin_wrong):  # a recording cut short is heard as its start
        cut = [h for h in obs.caller.heard if h.text != prompt and prompt.startswith(h.text[:20])
               and len(h.text) >= 4 and (obs.caller.hung_up_at is None or h.end < obs.caller.hung_up_at - 0.5)]
        if cut:
            problems.append(f"{_at(obs, cut[0].start)} the caller heard only «{cut[0].text}» of «{prompt}»")
    operator = next((op for op in obs.settings.auth.operators if op.name == record.operator), None)
    if operator is not None and "*" not in operator.tools:
        for query in record.queries:
            if query.tool not in operator.tools:
                problems.append(f"{operator.name} may not use {query.tool}, and it ran")
    secrets = [op.pin for op in obs.settings.auth.operators if op.pin]
    for line in obs.logs:
        if any(pin in line.message for pin in secrets):
            problems.append(f"{_at(obs, line.at)}: a PIN in the log: {line.event}")
            break
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
    Invariant("status_honest", "a router that cannot answer is never 'ok' nor counted as answering; every "
              "unknown router has a reason in the caller's words", status_honest),
    Invariant("output_true", "what an answering router reports in a tool output is what the router holds",
              output_true),
    Invariant("barge_in_heard", "a barge-in stops the speech at once and truncates it at what the caller heard",
              barge_in_heard),
    Invariant("short_speech_cuts_nothing", "an 'ajá' shorter than min_speech_ms cuts nothing and cancels nothing",
              short_speech_cuts_nothing),
    Invariant("digits_answered", "the human digit says how to reach a person; the repeat digit repeats the last answer",
              digits_answered),
    Invariant("flow_control", "chan_websocket: Asterisk's queue never reaches MEDIA_XOFF; no command is ignored",
              flow_control),
    Invariant("authorisation", "only a caller the [auth] policy admits reaches the model and the routers, with "
              "their tools only; any other hears the refusal, costs no model session; no PIN in a log",
              authorisation),
)


def check(obs: CallObservation) -> dict[str, list[str]]:
    """Every invariant's violations (only those with any)."""
    found = {}
    for invariant in INVARIANTS:
        problems = invariant.check(obs)
        if problems:
            found[invariant.name] = problems
    return found
