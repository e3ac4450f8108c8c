"""Prometheus metrics derived from the log event stream, and the health state of the service.

``Metrics`` owns its own ``CollectorRegistry`` (never the process-wide default one) and is fed
by ``logs.add_observer(metrics.observe)``: every ``logs.event()`` reaches it, whatever the log
level, and it counts the events below. Nothing in the call code knows about Prometheus.

Every label value is bounded: a value outside its known set becomes ``other`` (tools and
routers, when the known names are not given, keep the first ``max_label_values`` names seen and
call the rest ``other``). No call id, caller number, PIN, free text or number is ever a label.

=============================================  ===================  ==========================================
metric                                         labels               from
=============================================  ===================  ==========================================
``mikrovoice_build_info`` (gauge, 1)           version              the installed package
``mikrovoice_active_calls`` (gauge)            -                    ``call.started`` +1; ``call.ended`` -1 for
                                                                    a call id counted as started
``mikrovoice_calls_total``                     outcome              ``call.ended``: completed, caller_hung_up,
                                                                    model_unavailable, auth_refused, busy,
                                                                    shutdown, error, other
``mikrovoice_call_duration_seconds`` (hist.)   -                    ``call.ended`` duration_s
``mikrovoice_call_dead_air_max_seconds`` (h.)  -                    ``call.ended`` dead_air_max_s
``mikrovoice_playout_late_frames_total``       -                    ``call.ended`` late_frames
``mikrovoice_query_duration_seconds`` (hist.)  tool, outcome        ``query.finished`` (outcome finished or
                                                                    timed_out), ``query.cancelled``
                                                                    (cancelled); elapsed_s
``mikrovoice_router_answer_seconds`` (hist.)   router, status       ``router.answered``: status ok, degraded,
                                                                    unknown; elapsed_s
``mikrovoice_router_up`` (gauge)               router               ``router.answered``: 1 ok/degraded, 0 unknown
``mikrovoice_router_failures_total``           router, reason       ``router.answered`` with status unknown;
                                                                    reason: ``routeros.errors.Reason`` values
``mikrovoice_model_link_drops_total``          fatal (true/false)   ``model.link_lost``
``mikrovoice_model_reconnects_total``          -                    ``model.reconnect``
``mikrovoice_model_recycles_total``            -                    ``model.recycle``
``mikrovoice_model_errors_total``              effect               ``model.error``: ``ErrorEffect`` names
                                                                    in lower case
``mikrovoice_tool_calls_total``                tool                 ``tool.called``
``mikrovoice_tool_refusals_total``             tool                 ``tool.refused``
``mikrovoice_auth_results_total``              result               ``auth.result``: accepted, wrong_pin,
                                                                    refused, locked_out, timeout, other
=============================================  ===================  ==========================================

Under ``serve --workers N`` each worker has its own ``Metrics`` (``const_labels={"worker": "<i>"}``):
its registry (``LabelledRegistry``) adds that label to every sample of every collector registered
on it, those above and any added later, so Prometheus tells the workers apart (sum them with
``sum without (worker) (...)``). Without ``const_labels`` the samples are as listed.

``Health`` is what ``/healthz`` answers: the service sets its fields as it starts, serves and drains.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from mikrovoice import logs
from mikrovoice.realtime.protocol import ErrorEffect
from mikrovoice.routeros.errors import Reason
from mikrovoice.timings import TimingsCollector

OTHER = "other"
OUTCOMES = ("completed", "caller_hung_up", "model_unavailable", "auth_refused", "busy", "shutdown", "error")
AUTH_RESULTS = ("accepted", "wrong_pin", "refused", "locked_out", "timeout")
ROUTER_STATUSES = ("ok", "degraded", "unknown")
ROUTER_REASONS = tuple(r.value for r in Reason)
ERROR_EFFECTS = tuple(e.name.lower() for e in ErrorEffect)
QUERY_OUTCOMES = ("finished", "timed_out", "cancelled")

CALL_DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
DEAD_AIR_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0, 30.0)
QUERY_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0)
ROUTER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 15.0, 20.0, 30.0, 60.0)


class BoundedLabel:
    """Label values from a known set, or (no set given) the first ``cap`` values seen; else ``other``."""

    def __init__(self, known: Iterable[str] | None = None, cap: int = 64) -> None:
        self.known = frozenset(known) if known is not None else None
        self.cap = cap
        self._seen: set[str] = set()

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            return OTHER
        if self.known is not None:
            return value if value in self.known else OTHER
        if value in self._seen:
            return value
        if len(self._seen) < self.cap and len(value) <= 64 and value.isprintable():
            self._seen.add(value)
            return value
        return OTHER


def _number(fields: Mapping[str, Any], key: str) -> float | None:
    value = fields.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mikrovoice")
    except PackageNotFoundError:
        return "unknown"


class LabelledRegistry(CollectorRegistry):
    """A ``CollectorRegistry`` whose every sample, from any collector registered on it, also carries
    ``const_labels`` (a worker's index). A collector's own label of the same name wins."""

    def __init__(self, const_labels: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.const_labels = dict(const_labels or {})

    def collect(self) -> Iterable[Metric]:
        if not self.const_labels:
            yield from super().collect()
            return
        for metric in super().collect():
            labelled = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            labelled.samples = [sample._replace(labels={**self.const_labels, **sample.labels})
                                for sample in metric.samples]
            yield labelled


class Metrics:
    """The service's Prometheus metrics (see the module docstring), fed by ``observe``.

    ``tools``: the tool names the model may call (``[s.name for s in NocTools(...).specs]``);
    ``routers``: the inventory's router names. Without them the first ``max_label_values`` names
    seen are labels and the rest ``other``. ``const_labels``: on every sample (a worker's
    ``{"worker": "<i>"}``), also of collectors registered on ``registry`` later."""

    def __init__(self, *, version: str | None = None, tools: Iterable[str] | None = None,
                 routers: Iterable[str] | None = None, max_label_values: int = 256,
                 const_labels: Mapping[str, str] | None = None) -> None:
        self.registry: CollectorRegistry = LabelledRegistry(const_labels)
        r = self.registry
        self._tool = BoundedLabel(tools, cap=64)
        self._router = BoundedLabel(routers, cap=max_label_values)
        self._outcome = BoundedLabel(OUTCOMES)
        self._auth = BoundedLabel(AUTH_RESULTS)
        self._status = BoundedLabel(ROUTER_STATUSES)
        self._reason = BoundedLabel(ROUTER_REASONS)
        self._effect = BoundedLabel(ERROR_EFFECTS)
        #: call id -> calls counted as started and not yet ended under that id
        self._active: dict[str, int] = {}

        self.build_info = Gauge("mikrovoice_build_info", "Version of mikrovoice (always 1).", ["version"], registry=r)
        self.build_info.labels(version=str(version or _installed_version())).set(1)
        self.active_calls_gauge = Gauge("mikrovoice_active_calls", "Calls in progress.", registry=r)
        self.calls = Counter("mikrovoice_calls_total", "Calls ended, by outcome.", ["outcome"], registry=r)
        self.call_duration = Histogram("mikrovoice_call_duration_seconds", "Call duration.",
                                       buckets=CALL_DURATION_BUCKETS, registry=r)
        self.dead_air = Histogram("mikrovoice_call_dead_air_max_seconds",
                                  "Longest stretch of dead air of each call.", buckets=DEAD_AIR_BUCKETS, registry=r)
        self.late_frames = Counter("mikrovoice_playout_late_frames_total",
                                   "Playout frames sent later than their 20 ms slot.", registry=r)
        self.query_duration = Histogram("mikrovoice_query_duration_seconds",
                                        "Tool query duration, by tool and outcome.", ["tool", "outcome"],
                                        buckets=QUERY_BUCKETS, registry=r)
        self.router_answer = Histogram("mikrovoice_router_answer_seconds",
                                       "Time for one router's answer within a query, by router and status.",
                                       ["router", "status"], buckets=ROUTER_BUCKETS, registry=r)
        self.router_up = Gauge("mikrovoice_router_up", "1 if the router's last answer was ok or degraded, "
                               "0 if it did not answer.", ["router"], registry=r)
        self.router_failures = Counter("mikrovoice_router_failures_total", "Router answers that failed, by reason.",
                                       ["router", "reason"], registry=r)
        self.link_drops = Counter("mikrovoice_model_link_drops_total", "Model links lost (fatal: no reconnect).",
                                  ["fatal"], registry=r)
        self.reconnects = Counter("mikrovoice_model_reconnects_total", "Model link reconnect attempts.", registry=r)
        self.recycles = Counter("mikrovoice_model_recycles_total", "Model sessions replaced before they expire.",
                                registry=r)
        self.model_errors = Counter("mikrovoice_model_errors_total", "Realtime error events, by effect.", ["effect"],
                                    registry=r)
        self.tool_calls = Counter("mikrovoice_tool_calls_total", "Tool calls by the model, by tool.", ["tool"],
                                  registry=r)
        self.tool_refusals = Counter("mikrovoice_tool_refusals_total",
                                     "Tool calls refused (unknown tool or router, bad arguments), by tool.", ["tool"],
                                     registry=r)
        self.auth_results = Counter("mikrovoice_auth_results_total", "Caller authorisation results.", ["result"],
                                    registry=r)
        # Known label values start at 0, so rate() and absent() work from the first scrape.
        for outcome in (*OUTCOMES, OTHER):
            self.calls.labels(outcome=outcome)
        for result in (*AUTH_RESULTS, OTHER):
            self.auth_results.labels(result=result)
        #: The audio path's timings (``mikrovoice.timings``: per frame, too hot for a Histogram).
        r.register(TimingsCollector())
        for fatal in ("true", "false"):
            self.link_drops.labels(fatal=fatal)
        for effect in ERROR_EFFECTS:
            self.model_errors.labels(effect=effect)
        if self._tool.known is not None:
            for tool in self._tool.known:
                self.tool_calls.labels(tool=tool)

        self._handlers: dict[str, Callable[[Mapping[str, Any]], None]] = {
            "call.started": self._call_started,
            "call.ended": self._call_ended,
            "query.finished": self._query_finished,
            "query.cancelled": self._query_cancelled,
            "router.answered": self._router_answered,
            "model.link_lost": self._link_lost,
            "model.reconnect": lambda f: self.reconnects.inc(),
            "model.recycle": lambda f: self.recycles.inc(),
            "model.error": lambda f: self.model_errors.labels(effect=self._effect(f.get("effect"))).inc(),
            "tool.called": lambda f: self.tool_calls.labels(tool=self._tool(f.get("tool"))).inc(),
            "tool.refused": lambda f: self.tool_refusals.labels(tool=self._tool(f.get("tool"))).inc(),
            "auth.result": lambda f: self.auth_results.labels(result=self._auth(f.get("result"))).inc(),
        }

    # ------------------------------------------------------------------ the observer

    def observe(self, name: str, fields: Mapping[str, Any], level: int) -> None:
        """A ``logs`` observer: ``logs.add_observer(metrics.observe)``."""
        handler = self._handlers.get(name)
        if handler is not None:
            handler(fields)

    @property
    def active_calls(self) -> int:
        return sum(self._active.values())

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition (body, content type): Prometheus text 0.0.4 unless ``accept`` (the
        request's Accept header) asks for OpenMetrics or text 1.0.0."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    # ------------------------------------------------------------------ per event

    def _call_started(self, fields: Mapping[str, Any]) -> None:
        call = logs.call_id.get()
        self._active[call] = self._active.get(call, 0) + 1
        self.active_calls_gauge.inc()

    def _call_ended(self, fields: Mapping[str, Any]) -> None:
        call = logs.call_id.get()
        started = self._active.get(call, 0)
        if started:
            if started == 1:
                del self._active[call]
            else:
                self._active[call] = started - 1
            self.active_calls_gauge.dec()
        self.calls.labels(outcome=self._outcome(fields.get("outcome"))).inc()
        duration = _number(fields, "duration_s")
        if duration is not None:
            self.call_duration.observe(duration)
        dead_air = _number(fields, "dead_air_max_s")
        if dead_air is not None:
            self.dead_air.observe(dead_air)
        late = _number(fields, "late_frames")
        if late:
            self.late_frames.inc(late)

    def _query(self, fields: Mapping[str, Any], outcome: str) -> None:
        elapsed = _number(fields, "elapsed_s")
        if elapsed is not None:
            self.query_duration.labels(tool=self._tool(fields.get("tool")), outcome=outcome).observe(elapsed)

    def _query_finished(self, fields: Mapping[str, Any]) -> None:
        self._query(fields, "timed_out" if fields.get("timed_out") is True else "finished")

    def _query_cancelled(self, fields: Mapping[str, Any]) -> None:
        self._query(fields, "cancelled")

    def _router_answered(self, fields: Mapping[str, Any]) -> None:
        router = self._router(fields.get("router"))
        status = self._status(fields.get("status"))
        elapsed = _number(fields, "elapsed_s")
        if elapsed is not None:
            self.router_answer.labels(router=router, status=status).observe(elapsed)
        if status in ("ok", "degraded"):
            self.router_up.labels(router=router).set(1)
        elif status == "unknown":
            self.router_up.labels(router=router).set(0)
            self.router_failures.labels(router=router, reason=self._reason(fields.get("reason"))).inc()

    def _link_lost(self, fields: Mapping[str, Any]) -> None:
        self.link_drops.labels(fatal="true" if fields.get("fatal") is True else "false").inc()


# ---------------------------------------------------------------------- health


@dataclass
class Health:
    """What ``/healthz`` reports; the service updates the fields as it runs.

    ``listening``: the call listeners are bound; ``draining``: SIGTERM received, no new calls;
    ``started_at``: wall-clock time (``time.time()``) the service started; ``worker``: this
    process's index under ``serve --workers`` (then the body also says ``worker`` and ``pid``)."""

    listening: bool = False
    draining: bool = False
    active_calls: int = 0
    max_calls: int = 0
    started_at: float = field(default_factory=time.time)
    worker: int | None = None

    def status(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body): 200 ``ok`` when listening and not draining; else 503
        ``draining`` or ``starting``."""
        body: dict[str, Any] = {
            "status": "ok",
            "active_calls": self.active_calls,
            "max_calls": self.max_calls,
            "uptime_s": round(max(0.0, time.time() - self.started_at), 1),
        }
        if self.worker is not None:
            body["worker"] = self.worker
            body["pid"] = os.getpid()
        if self.draining:
            body["status"] = "draining"
        elif not self.listening:
            body["status"] = "starting"
        return (200 if body["status"] == "ok" else 503), body
