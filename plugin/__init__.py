"""SLA plugin for Chatwoot-style helpdesks: the helpdesk-neutral core, web app, workers and CLI."""
