"""Property-based call simulations: scenarios, whole calls on the virtual clock, invariants.

A *scenario* is the story of one call (what the caller says and when, how each router and the
model behave); the *world* runs it through the production service with the simulators as peers
over an in-memory network, on Trio's virtual clock; the *invariants* judge what happened;
``mikrovoice simulate`` generates scenarios with Hypothesis and shrinks a failure to a minimal story.
"""
