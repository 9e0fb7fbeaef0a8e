"""Runnable examples: each opens with the command that runs it."""
