"""Shared fixtures: a virtual clock for every test that asks for ``autojump_clock``."""
