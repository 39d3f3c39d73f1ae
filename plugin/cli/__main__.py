"""``python -m plugin.cli``: the same CLI as ``sla-plugin``."""

from plugin.cli.main import main

main()
