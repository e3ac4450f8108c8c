"""OpenAI Realtime (GA) over WebSocket: sans-IO events and response arbitration, plus the Trio link."""
