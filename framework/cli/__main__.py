"""``python -m framework.cli``: the same as the ``framework`` command."""

from framework.cli.main import main

main()
