"""The call: ``machine`` (pure CallMachine), ``progress`` (when to speak), ``session`` (the Trio driver)."""
