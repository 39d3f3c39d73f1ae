"""The demo: a small Chatwoot-compatible helpdesk and a scripted day of conversations.

Only ``sla-plugin dev`` starts it (and the tests use it as a stand-in helpdesk); the product never imports
this package. :mod:`plugin.demo.helpdesk` is the helpdesk (REST API subset, signed webhooks),
:mod:`plugin.demo.script` the scripted day, :mod:`plugin.demo.run` the wiring that ``dev`` uses.
"""
