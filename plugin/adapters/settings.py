"""The plugin's configuration: environment variables only (12-factor), described in one place.

:data:`SETTINGS` lists every setting with its default, description and whether it is a secret. The same list
builds :class:`Settings` from the environment, masks secrets in ``repr`` and logs, and writes
``docs/configuration.md`` (:func:`settings_reference_markdown`), so the reference cannot drift from the code.
The names of docs/contracts.md section 3 are pinned; the others are additions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from plugin.resources import shipped

MASK = "********"
ONE_MEBIBYTE = 1024 * 1024


class SettingsError(ValueError):
    """A setting whose value cannot be used; the message names the variable and what was expected."""


@dataclass(frozen=True)
class SettingSpec:
    """One environment variable: its name, default (as documented), meaning, and how to read it."""

    name: str
    default: Any
    description: str
    secret: bool = False
    kind: str = "text"  # "text" or "integer"
    default_text: str | None = None  # how the documentation shows a default computed at run time


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "DATABASE_URL",
        None,
        "SQLAlchemy URL of the store, e.g. `postgresql://user@host/sla` in production.",
        default_text="a SQLite file in the instance folder, `instance/sla.sqlite3`",
    ),
    SettingSpec(
        "REDIS_URL",
        None,
        "Redis for queues, the deadline index, dedupe keys, locks and metrics "
        "(`redis://host:6379/0` or `unix:///path/redis.sock`).",
        default_text="an embedded `redis-server` on a unix socket in the instance folder",
    ),
    SettingSpec(
        "SLA_RULES_DIR",
        None,
        "Folder of the rule files (`*.json`), relative to the working directory.",
        default_text="`rules` in the working directory when there is one, else the rule files shipped with the plugin",
    ),
    SettingSpec("CHATWOOT_URL", None, "Base URL of the helpdesk, e.g. `https://chat.example.com`."),
    SettingSpec(
        "CHATWOOT_ACCOUNT_ID",
        None,
        "The account the plugin serves; webhooks of other accounts get 202, are logged and ignored.",
        kind="integer",
    ),
    SettingSpec(
        "CHATWOOT_API_TOKEN",
        None,
        "User access token of the agent the plugin writes as (labels, private notes).",
        secret=True,
    ),
    SettingSpec(
        "CHATWOOT_WEBHOOK_SECRET",
        None,
        "Webhook signing secret; when set, requests without a valid `X-Chatwoot-Signature` get 401.",
        secret=True,
    ),
    SettingSpec("SLA_ADMIN_TOKEN", None, "Bearer token for the reports and admin endpoints.", secret=True),
    SettingSpec(
        "SLA_WEBHOOK_TOKEN",
        None,
        "URL token (`/webhooks/chatwoot?token=...`) for installs whose helpdesk does not sign "
        "webhooks; never the signing secret.",
        secret=True,
    ),
    SettingSpec(
        "SLA_SIDEBAR_TOKEN",
        None,
        "Read-only token carried in the Dashboard App's URL: reads one conversation's SLA, nothing else.",
        secret=True,
    ),
    SettingSpec(
        "SLA_ACCOUNTS_FILE",
        None,
        "JSON file of the accounts one deployment serves, each with its helpdesk URL, API token, webhook "
        "secret or token, rules folder and report and sidebar tokens (docs/accounts.md); re-read when it "
        "changes. Unset: the single-account settings above describe one account.",
    ),
    SettingSpec(
        "SLA_MAX_BODY_BYTES",
        ONE_MEBIBYTE,
        "Largest request body accepted, in bytes; larger webhooks get 413.",
        kind="integer",
    ),
    SettingSpec(
        "CHATWOOT_PLUGIN_USER_ID",
        None,
        "Id of the helpdesk user the plugin writes as, so its own notes and label changes that come "
        "back as webhooks are recognised and ignored.",
        kind="integer",
    ),
    SettingSpec(
        "SLA_CLAIM_IDLE_SECONDS",
        60,
        "How long a batch read by a worker may stay unacknowledged before another worker takes it over "
        "(a worker killed mid-batch); longer than any batch takes.",
        kind="integer",
    ),
    SettingSpec(
        "SLA_RECONCILE_SECONDS",
        300,
        "How often the reconciler polls the helpdesk's open conversations for what webhooks lost (0: never).",
        kind="integer",
    ),
    SettingSpec(
        "SLA_HELPDESK_REQUESTS_PER_MINUTE",
        2940,
        "The write-back's budget of helpdesk API calls per minute, shared by every worker: below the "
        "helpdesk's rate limit (Chatwoot allows 3,000 a minute by default), less what other API clients use.",
        kind="integer",
    ),
    SettingSpec(
        "SLA_DELIVERED_RETENTION_DAYS",
        7,
        "How many days a delivered notification and a written write-back intent are kept before the sweeper "
        "deletes them (0: kept forever). A miss that comes back after its correction, later than this, gets "
        "a new note; within it, none.",
        kind="integer",
    ),
    SettingSpec(
        "SLA_QUEUE_STUCK_SECONDS",
        300,
        "`/healthz` reports the event queue as stuck (503) when its oldest unprocessed event is older than this.",
        kind="integer",
    ),
    SettingSpec(
        "SLA_NAMES_REFRESH_SECONDS",
        3600,
        "How often the names of the helpdesk's inboxes, agents and teams are read from its API for the "
        "reports (0: never; webhooks still teach the names they show).",
        kind="integer",
    ),
    SettingSpec(
        "SLA_REPORT_TIMEZONE",
        "UTC",
        "IANA time zone of the reports when a request names none (`tz`): date filters, hourly and daily "
        "buckets and the weekday x hour grid, e.g. `Europe/Berlin`.",
    ),
    SettingSpec(
        "SLA_LOG_LEVEL",
        "INFO",
        "Level of the JSON logs written to standard error: `DEBUG`, `INFO`, `WARNING` or `ERROR`.",
    ),
)

SECRET_NAMES = frozenset(spec.name for spec in SETTINGS if spec.secret)
# URLs may carry a password; repr and logs show them without it.
URL_NAMES = frozenset({"DATABASE_URL", "REDIS_URL", "CHATWOOT_URL"})


@dataclass(frozen=True, repr=False)
class Settings:
    """The plugin's settings, one attribute per environment variable (same name), plus the instance folder.

    Build it with :meth:`from_env`; ``repr`` never shows a secret.
    """

    instance_path: str
    DATABASE_URL: str
    REDIS_URL: str | None
    SLA_RULES_DIR: str
    CHATWOOT_URL: str | None
    CHATWOOT_ACCOUNT_ID: int | None
    CHATWOOT_API_TOKEN: str | None
    CHATWOOT_WEBHOOK_SECRET: str | None
    SLA_ADMIN_TOKEN: str | None
    SLA_WEBHOOK_TOKEN: str | None
    SLA_SIDEBAR_TOKEN: str | None
    SLA_ACCOUNTS_FILE: str | None
    SLA_MAX_BODY_BYTES: int
    CHATWOOT_PLUGIN_USER_ID: int | None
    SLA_CLAIM_IDLE_SECONDS: int
    SLA_RECONCILE_SECONDS: int
    SLA_HELPDESK_REQUESTS_PER_MINUTE: int
    SLA_DELIVERED_RETENTION_DAYS: int
    SLA_QUEUE_STUCK_SECONDS: int
    SLA_NAMES_REFRESH_SECONDS: int
    SLA_REPORT_TIMEZONE: str
    SLA_LOG_LEVEL: str

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, instance_path: str | os.PathLike | None = None
    ) -> Settings:
        """Read every setting of :data:`SETTINGS` from *environ*; an empty value counts as unset.

        *instance_path* is the folder for local state (the default SQLite file, the embedded Redis);
        it defaults to ``instance/`` in the working directory. Raises :class:`SettingsError` on a bad value.
        """
        instance = Path(instance_path) if instance_path is not None else Path.cwd() / "instance"
        values: dict[str, Any] = {}
        for spec in SETTINGS:
            raw = environ.get(spec.name, "").strip()
            values[spec.name] = _PARSERS[spec.kind](spec, raw) if raw else spec.default
        if values["SLA_RULES_DIR"] is None:
            values["SLA_RULES_DIR"] = default_rules_dir()
        if values["DATABASE_URL"] is None:
            values["DATABASE_URL"] = f"sqlite:///{instance / 'sla.sqlite3'}"
        values["SLA_LOG_LEVEL"] = values["SLA_LOG_LEVEL"].upper()
        _check_zone(values["SLA_REPORT_TIMEZONE"])
        if values["SLA_HELPDESK_REQUESTS_PER_MINUTE"] <= 0:
            raise SettingsError(
                "SLA_HELPDESK_REQUESTS_PER_MINUTE must be a positive number of calls, "
                f"got {values['SLA_HELPDESK_REQUESTS_PER_MINUTE']}"
            )
        if values["SLA_DELIVERED_RETENTION_DAYS"] < 0:
            raise SettingsError(
                "SLA_DELIVERED_RETENTION_DAYS must be a number of days (0: kept forever), "
                f"got {values['SLA_DELIVERED_RETENTION_DAYS']}"
            )
        if values["SLA_MAX_BODY_BYTES"] <= 0:
            raise SettingsError(
                f"SLA_MAX_BODY_BYTES must be a positive number of bytes, got {values['SLA_MAX_BODY_BYTES']}"
            )
        return cls(instance_path=str(instance), **values)

    def as_mapping(self) -> dict[str, str]:
        """The settings that have a value, environment-style: name to text (what connectors take, and what
        a child process's environment needs to build the same settings)."""
        values = {spec.name: getattr(self, spec.name) for spec in SETTINGS}
        return {name: str(value) for name, value in values.items() if value is not None}

    def secret_values(self) -> tuple[str, ...]:
        """The values that must never appear in a log line: secrets, and passwords inside URLs."""
        values = [getattr(self, name) for name in SECRET_NAMES]
        values += [urlsplit(getattr(self, name)).password for name in URL_NAMES if getattr(self, name)]
        return tuple(value for value in values if value)

    def __repr__(self) -> str:
        shown = [f"instance_path={self.instance_path!r}"]
        for spec in SETTINGS:
            value = getattr(self, spec.name)
            if spec.secret and value is not None:
                value = MASK
            elif spec.name in URL_NAMES and value is not None:
                value = mask_url_password(value)
            shown.append(f"{spec.name}={value!r}")
        return f"Settings({', '.join(shown)})"


def default_rules_dir() -> str:
    """``rules`` in the working directory when there is one (a checkout, a deployment's folder), else the
    rule files shipped with the plugin, so an installed plugin works from any folder."""
    return "rules" if Path("rules").is_dir() else str(shipped("rules"))


def rules_dir(environ: Mapping[str, str] = os.environ) -> str:
    """``SLA_RULES_DIR`` from *environ*, else :func:`default_rules_dir` (for commands that need no other
    setting)."""
    return environ.get("SLA_RULES_DIR", "").strip() or default_rules_dir()


def mask_url_password(url: str) -> str:
    """*url* with its password, if any, replaced by a mask (``redis://:secret@host`` -> ``redis://:****@host``)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}{port}"))


def _check_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"SLA_REPORT_TIMEZONE must be an IANA time zone such as UTC or Europe/Berlin, got {name!r}"
        ) from None


def _parse_text(spec: SettingSpec, raw: str) -> str:
    return raw


def _parse_integer(spec: SettingSpec, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{spec.name} must be a whole number, got {raw!r}") from None


_PARSERS: dict[str, Callable[[SettingSpec, str], Any]] = {
    "text": _parse_text,
    "integer": _parse_integer,
}


def load_dotenv_for_dev(path: str | os.PathLike = ".env") -> bool:
    """Load a ``.env`` file from the working directory into ``os.environ`` (only ``sla-plugin dev`` does).

    Variables already set in the environment win. Returns whether a file was read.
    """
    from dotenv import load_dotenv

    return load_dotenv(path, override=False) if Path(path).is_file() else False


def settings_reference_markdown() -> str:
    """The configuration reference, ``docs/configuration.md``, generated from :data:`SETTINGS`."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated by `python -m plugin.adapters.settings > docs/configuration.md`; do not edit by hand. -->",
        "",
        "Every setting is an environment variable (12-factor). `sla-plugin dev` also reads a `.env` file in "
        "the working directory; variables already set in the environment win. The instance folder is "
        "`instance/` in the working directory. Secrets are never logged: `repr` and log lines show them masked.",
        "",
        "| Variable | Default | Secret | Description |",
        "| --- | --- | --- | --- |",
    ]
    for spec in SETTINGS:
        if spec.default_text is not None:
            default = spec.default_text
        elif spec.default is None:
            default = "unset"
        else:
            default = f"`{spec.default}`"
        lines.append(f"| `{spec.name}` | {default} | {'yes' if spec.secret else 'no'} | {spec.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_reference_markdown(), end="")
