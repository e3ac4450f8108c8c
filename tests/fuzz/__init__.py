"""Hostile input (issue 9, deliverable 5): every decoder of what a peer sends, fuzzed with hypothesis.

A peer is Asterisk (AudioSocket, chan_websocket), a router (RouterOS API) or the model service
(Realtime); a client of the simulators is a peer too. Whatever it sends, the decoder answers with
a typed message, a typed "ignored/unknown" result, or the module's own protocol error; the server
keeps serving the other calls and logs one clear line for the bad one. ``hostile`` holds the
settings and the shared strategies; ``test_decoders_*`` are pure and fast; ``test_service`` and
``test_simulators`` send the garbage over real loopback sockets on Trio's virtual clock.
"""
