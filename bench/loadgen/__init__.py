"""The load generator of ``bench/calls.py``: lean simulated callers and the model/router world.

Two processes, both pinned to the load core while the service under test has the other one:

- ``callers.py``: N AudioSocket callers in one stdlib epoll loop (no Trio, no per-call
  objects beyond a small record), each sending a 20 ms frame on its own phase, timestamping what
  the service plays back, and asking the simulated model quick NOC questions in ToneVoice;
- ``world.py``: the simulated Realtime model (``ws://`` and ``wss://``) and the demo's routers, on
  Trio, as ``bench/soak.py`` runs them.

The product's own simulated caller (``sim.asterisk.AsteriskCaller``: a Trio task tree per call,
every frame decoded) needed a whole core for 200 silent callers; these need a fraction of one for
400 talking ones, so the load generator's starvation does not pass for the service's lateness.
"""
