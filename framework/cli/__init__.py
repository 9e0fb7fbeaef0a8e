"""The ``framework`` command line: run an app, and operate its queues."""
