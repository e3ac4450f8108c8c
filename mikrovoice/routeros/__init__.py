"""RouterOS API: sentence codec (sans-IO, on librouteros.protocol), read-only commands, Trio client, fleet."""
