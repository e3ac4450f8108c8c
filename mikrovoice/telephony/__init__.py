"""Telephony: Asterisk's AudioSocket protocol (sans-IO codec), G.711 and the Trio server."""
