"""The ``sla-plugin`` command line (click): plugin/cli/main.py is the entry point; one module per command group."""
