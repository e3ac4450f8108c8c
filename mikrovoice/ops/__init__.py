"""Operations: Prometheus metrics derived from the log events, the health state, and the HTTP
endpoint that serves both (``/metrics``, ``/healthz``).

Wiring: ``metrics = Metrics(...)``; ``logs.add_observer(metrics.observe)``; ``health = Health(...)``;
``await nursery.start(serve_http, host, port, metrics, health)``.
"""

from mikrovoice.ops.http import serve_http
from mikrovoice.ops.metrics import Health, Metrics

__all__ = ["Health", "Metrics", "serve_http"]
