"""mikrovoice: a phone voice assistant for the operators of a MikroTik network.

Asterisk (AudioSocket) <-> OpenAI Realtime (WebSocket) <-> RouterOS API, on Trio.
Folders name the architecture: ``call`` (the call machine and its Trio session),
``telephony``, ``realtime`` and ``routeros`` (one protocol each, sans-IO core plus a thin
Trio layer), ``sim`` (faithful simulators of all three peers) and ``cli``.
"""

__version__ = "0.1.0"
