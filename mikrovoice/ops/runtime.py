"""The Python runtime, tuned for a process that must write a frame every 20 ms.

CPython's cyclic garbage collector stops the whole process while it runs, and a full (generation
2) collection walks every container object alive: measured on ``bench/calls.py`` at 200 calls
(about 300 000 objects), a full collection about every 5 s, each a 60-130 ms pause of every
call's audio (the frames more than 100 ms late that ``late_frames`` counts).

``tune_gc`` (called once the service is built) freezes what exists at start (modules, tables, the
prompts, the router inventory: ``gc.freeze()``), so no collection walks it again and each full
one is that much shorter. The thresholds stay CPython's (700, 10, 10). Raising them was measured
and rejected: with (5000, 20, 100) the full collections at 200 calls fell from 8 to 2 per run and
the longest from 131 to 18 ms, but a 100-call soak's memory grew 125 MiB a minute (the calls'
cyclic garbage waited in the old generation); with (2000, 10, 10), still 35 MiB a minute; with
the defaults, flat (``bench/soak.py``). Fewer pauses need fewer live objects per call, not a lazier
collector.
"""

from __future__ import annotations

import gc


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
