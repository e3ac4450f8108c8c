"""One real Asterisk and the real service for the whole interop session.

The ``interop`` fixture places the calls of every collected interop module (their ``INTEROP_CALLS``) at
once, in one Trio run, and hands the results to many small synchronous tests. No Asterisk here:
the tests skip, saying why (or fail, when ``$CI`` is set).
"""

from __future__ import annotations

import pytest
import trio

from tests.interop.asterisk import AsteriskUnavailable, RealAsterisk, locate, skip_or_fail
from tests.interop.scenarios import PLANS, Run, run_all


@pytest.fixture(scope="session")
def interop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    # The calls the collected interop modules need (their INTEROP_CALLS), placed all at once.
    wanted = {name for item in request.session.items for name in getattr(item.module, "INTEROP_CALLS", ())}
    plans = {name: plan for name, plan in PLANS.items() if name in wanted}
    try:
        asterisk = RealAsterisk(locate(), tmp_path_factory.mktemp("asterisk"))
    except AsteriskUnavailable as exc:
        skip_or_fail(str(exc))
    try:
        return trio.run(run_all, asterisk, plans)
    finally:
        asterisk.kill()  # run_all stops it; this is for a run that never got that far
