"""Simulators of mikrovoice's three peers, over the real wire protocols and real sockets.

``asterisk`` (a caller behind Asterisk's AudioSocket), ``realtime`` (an OpenAI Realtime GA
server with a scripted model), ``routeros`` (a fleet of RouterOS API routers), and ``voice``,
the tone modem that stands in for speech so that words survive the audio path and can be
recognised at the far end. They power the demo, the tests and operators' own simulations.
"""
