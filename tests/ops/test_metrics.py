"""Metrics from a synthetic event stream (through ``logs.event`` and the observer tap), bounded
labels, and the health status."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from mikrovoice import logs
from mikrovoice.logs import event
from mikrovoice.ops.metrics import OTHER, OUTCOMES, Health, Metrics

log = logging.getLogger("mikrovoice.test")
TOOLS = ("estado_routers", "trafico_interfaces", "ping", "cancelar_consulta")
ROUTERS = ("152.1", "152.7", "46.3")


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    m = Metrics(version="1.2.3", tools=TOOLS, routers=ROUTERS)
    logs.add_observer(m.observe)
    # The tap works at any log level: these tests run with the mikrovoice loggers at WARNING.
    root = logging.getLogger("mikrovoice")
    level = root.level
    root.setLevel(logging.WARNING)
    yield m
    root.setLevel(level)
    logs.remove_observer(m.observe)


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


async def test_a_synthetic_day_of_events(metrics: Metrics) -> None:
    m = metrics
    release = trio.Event()

    async def call(call_id: str, outcome: str, counted: bool = True) -> None:
        logs.call_id.set(call_id)  # as CallSession does: this task and its children carry it
        if counted:
            event(log, "call.started", transport="audiosocket", caller="1001")
            await release.wait()
        event(log, "tool.called", tool="trafico_interfaces", call="call_1", arguments="{}", problem="")
        event(log, "query.finished", tool="trafico_interfaces", elapsed_s=24.2, answered=12, failed=1, timed_out=False)
        event(log, "call.ended", reason="hang-up", outcome=outcome, duration_s=95.0, dead_air_max_s=1.2,
              late_frames=3, reconnects=0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "c-1", "completed")
        nursery.start_soon(call, "c-2", "caller_hung_up")
        await trio.testing.wait_all_tasks_blocked()
        assert value(m, "mikrovoice_active_calls") == 2.0 and m.active_calls == 2
        release.set()
    assert value(m, "mikrovoice_active_calls") == 0.0 and m.active_calls == 0

    # A busy call is refused before it starts: call.ended without call.started must not go below 0.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "c-3", "busy", False)
    assert value(m, "mikrovoice_active_calls") == 0.0
    assert value(m, "mikrovoice_calls_total", outcome="completed") == 1.0
    assert value(m, "mikrovoice_calls_total", outcome="caller_hung_up") == 1.0
    assert value(m, "mikrovoice_calls_total", outcome="busy") == 1.0
    assert value(m, "mikrovoice_calls_total", outcome="error") == 0.0  # known outcomes start at 0
    assert value(m, "mikrovoice_call_duration_seconds_count") == 3.0
    assert value(m, "mikrovoice_call_duration_seconds_sum") == 285.0
    assert value(m, "mikrovoice_call_dead_air_max_seconds_bucket", le="1.5") == 3.0
    assert value(m, "mikrovoice_call_dead_air_max_seconds_bucket", le="1.0") == 0.0
    assert value(m, "mikrovoice_playout_late_frames_total") == 9.0
    assert value(m, "mikrovoice_tool_calls_total", tool="trafico_interfaces") == 3.0
    assert value(m, "mikrovoice_query_duration_seconds_count", tool="trafico_interfaces", outcome="finished") == 3.0
    assert value(m, "mikrovoice_query_duration_seconds_bucket", tool="trafico_interfaces", outcome="finished",
                 le="25.0") == 3.0

    event(log, "query.finished", tool="ping", elapsed_s=30.0, answered=1, failed=2, timed_out=True)
    event(log, "query.cancelled", tool="ping", elapsed_s=3.5, answered=0, by="the call's end")
    assert value(m, "mikrovoice_query_duration_seconds_sum", tool="ping", outcome="timed_out") == 30.0
    assert value(m, "mikrovoice_query_duration_seconds_sum", tool="ping", outcome="cancelled") == 3.5

    event(log, "router.answered", router="152.1", status="ok", done=1, total=3, elapsed_s=0.4)
    event(log, "router.answered", router="152.7", status="degraded", done=2, total=3, elapsed_s=1.1, problems="x")
    event(log, "router.answered", router="46.3", status="unknown", done=3, total=3, elapsed_s=8.0,
          reason="connect_timeout", detail="no TCP connection within 5 s")
    assert value(m, "mikrovoice_router_up", router="152.1") == 1.0
    assert value(m, "mikrovoice_router_up", router="152.7") == 1.0
    assert value(m, "mikrovoice_router_up", router="46.3") == 0.0
    assert value(m, "mikrovoice_router_failures_total", router="46.3", reason="connect_timeout") == 1.0
    assert value(m, "mikrovoice_router_answer_seconds_count", router="46.3", status="unknown") == 1.0
    event(log, "router.answered", router="46.3", status="ok", done=1, total=1, elapsed_s=0.2)
    assert value(m, "mikrovoice_router_up", router="46.3") == 1.0

    event(log, "model.link_lost", reason="closed by the server", fatal=False)
    event(log, "model.link_lost", reason="HTTP 401", fatal=True)
    event(log, "model.reconnect", attempt=1, delay_s=0.5, reason="drop")
    event(log, "model.recycle", session_age_s=3300)
    event(log, "model.error", code="rate_limit_exceeded", message="slow down", event_id="rc_1", effect="rate_limited")
    event(log, "tool.refused", tool="ping", call="call_2", reason="unknown router")
    event(log, "auth.result", result="wrong_pin", operator="-")
    event(log, "auth.result", result="accepted", operator="ana")
    assert value(m, "mikrovoice_model_link_drops_total", fatal="false") == 1.0
    assert value(m, "mikrovoice_model_link_drops_total", fatal="true") == 1.0
    assert value(m, "mikrovoice_model_reconnects_total") == 1.0
    assert value(m, "mikrovoice_model_recycles_total") == 1.0
    assert value(m, "mikrovoice_model_errors_total", effect="rate_limited") == 1.0
    assert value(m, "mikrovoice_tool_refusals_total", tool="ping") == 1.0
    assert value(m, "mikrovoice_auth_results_total", result="wrong_pin") == 1.0
    assert value(m, "mikrovoice_auth_results_total", result="accepted") == 1.0
    assert value(m, "mikrovoice_build_info", version="1.2.3") == 1.0

    body, content_type = m.render()
    assert content_type.startswith("text/plain") and b'mikrovoice_calls_total{outcome="busy"} 1.0' in body
    body, content_type = m.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")


def test_label_values_stay_bounded(metrics: Metrics) -> None:
    m = metrics
    for i in range(500):
        logs.call_id.set(f"uuid-{i}")
        event(log, "call.ended", outcome=f"weird-{i}", duration_s=1.0)
        event(log, "tool.called", tool=f"invented_{i}", call=f"call_{i}")
        event(log, "router.answered", router=f"10.0.{i}.1", status=f"status-{i}", elapsed_s=1.0, reason=f"r{i}")
        event(log, "auth.result", result=str(1000 + i), operator="x")  # never a number (a PIN) as a label
        event(log, "model.error", code="x", effect=f"effect {i}")
        event(log, "model.link_lost", reason="x", fatal="yes")
    logs.call_id.set("-")
    values: dict[str, set[str]] = {}
    for family in m.registry.collect():
        for sample in family.samples:
            for label, label_value in sample.labels.items():
                if label != "le":
                    values.setdefault(label, set()).add(label_value)
    assert values["outcome"] <= {*OUTCOMES, OTHER, "finished", "timed_out", "cancelled"}
    assert values["tool"] <= {*TOOLS, OTHER}
    assert values["router"] <= {*ROUTERS, OTHER}
    assert values["status"] <= {"ok", "degraded", "unknown", OTHER}
    assert values["result"] <= {"accepted", "wrong_pin", "refused", "locked_out", "timeout", OTHER}
    assert values["fatal"] <= {"true", "false"}
    assert len(values["effect"]) <= 9
    assert not any(v.startswith("uuid-") or v.isdigit() for vs in values.values() for v in vs)
    assert m.registry.get_sample_value("mikrovoice_calls_total", {"outcome": OTHER}) == 500.0


def test_without_known_names_the_first_ones_seen_are_kept() -> None:
    m = Metrics(version="x", max_label_values=5)
    for i in range(20):
        m.observe("router.answered", {"router": f"r{i}", "status": "ok", "elapsed_s": 0.1}, logging.INFO)
    routers = {s.labels["router"] for f in m.registry.collect() for s in f.samples if "router" in s.labels}
    assert routers == {"r0", "r1", "r2", "r3", "r4", OTHER}


def test_each_metrics_has_its_own_registry() -> None:
    first, second = Metrics(version="a"), Metrics(version="b")
    first.observe("model.reconnect", {}, logging.INFO)
    assert first.registry.get_sample_value("mikrovoice_model_reconnects_total") == 1.0
    assert second.registry.get_sample_value("mikrovoice_model_reconnects_total") == 0.0


def test_health_status() -> None:
    health = Health(max_calls=100)
    assert health.status()[0] == 503 and health.status()[1]["status"] == "starting"
    health.listening = True
    health.active_calls = 3
    status, body = health.status()
    assert status == 200 and body["status"] == "ok" and body["active_calls"] == 3 and body["max_calls"] == 100
    assert body["uptime_s"] >= 0
    health.draining = True
    assert health.status()[0] == 503 and health.status()[1]["status"] == "draining"


def test_a_workers_metrics_all_carry_its_label_also_those_added_later() -> None:
    from prometheus_client import Gauge
    from prometheus_client.core import GaugeMetricFamily

    metrics = Metrics(version="1.2.3", tools=TOOLS, const_labels={"worker": "2"})
    metrics.observe("tool.called", {"tool": "ping"}, logging.INFO)
    assert metrics.registry.get_sample_value("mikrovoice_tool_calls_total", {"worker": "2", "tool": "ping"}) == 1.0
    assert metrics.registry.get_sample_value("mikrovoice_tool_calls_total", {"tool": "ping"}) is None

    class Clock:  # a custom collector, as the playout clock's histograms are
        def collect(self) -> Iterator[GaugeMetricFamily]:
            yield GaugeMetricFamily("mikrovoice_test_clock", "A custom collector.", value=7.0)

    metrics.registry.register(Clock())
    Gauge("mikrovoice_test_later", "Registered after the start.", ["kind"], registry=metrics.registry).labels("a").set(1)
    assert metrics.registry.get_sample_value("mikrovoice_test_clock", {"worker": "2"}) == 7.0
    assert metrics.registry.get_sample_value("mikrovoice_test_later", {"worker": "2", "kind": "a"}) == 1.0
    body, _ = metrics.render()
    samples = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
    assert samples and all('worker="2"' in line for line in samples)
    openmetrics, _ = metrics.render("application/openmetrics-text; version=1.0.0")
    assert b'mikrovoice_build_info{version="1.2.3",worker="2"} 1.0' in openmetrics  # the encoder sorts labels
    assert openmetrics.endswith(b"# EOF\n")


def test_a_workers_health_says_which_worker_and_process() -> None:
    import os

    assert "worker" not in Health().status()[1] and "pid" not in Health().status()[1]
    status, body = Health(listening=True, worker=1).status()
    assert status == 200 and body["worker"] == 1 and body["pid"] == os.getpid()
