"""The helpdesk accounts one deployment serves, and what each one has of its own (docs/accounts.md).

Without ``SLA_ACCOUNTS_FILE`` the single-account settings (``CHATWOOT_URL``, ``CHATWOOT_ACCOUNT_ID``,
``CHATWOOT_API_TOKEN``, ``CHATWOOT_WEBHOOK_SECRET``, ``SLA_WEBHOOK_TOKEN``, ``SLA_RULES_DIR``,
``SLA_SIDEBAR_TOKEN``) describe one account: an :class:`Accounts` registry of one, which the web app and the
workers consult exactly as they consult a registry read from the file. With it, the file is JSON::

    {"accounts": {"7": {"chatwoot_url": "https://chat.example.com", "api_token": {"env": "ACME_TOKEN"},
                        "webhook_secret": {"env": "ACME_SECRET"}, "rules_dir": "acme-rules",
                        "admin_token": {"env": "ACME_REPORTS"}, "sidebar_token": {"env": "ACME_SIDEBAR"}}}}

Any value may be ``{"env": "NAME"}`` (read from the environment when the file is loaded). A file that cannot
be used raises :class:`AccountsError` (``FILE: pointer: message``) when the registry is built, so a process
refuses to start; later, the registry re-reads the file when its content changes and a broken version never
replaces the accounts in force (the error is kept for ``/healthz`` and logged once).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from plugin.adapters import redis_keys
from plugin.adapters.rule_files import RulesHolder
from plugin.adapters.settings import MASK, Settings, SettingsError
from plugin.core.events import format_time

logger = logging.getLogger("plugin.accounts")

# The keys of one account in the file (docs/accounts.md); the first seven are pinned, the others additions.
TEXT_KEYS = (
    "chatwoot_url",
    "api_token",
    "webhook_secret",
    "webhook_token",
    "rules_dir",
    "admin_token",
    "sidebar_token",
)
INTEGER_KEYS = ("plugin_user_id", "writeback_concurrency")
SECRET_KEYS = frozenset({"api_token", "webhook_secret", "webhook_token", "admin_token", "sidebar_token"})
DEFAULT_WRITEBACK_CONCURRENCY = 4
MAX_ACCOUNT_ID = 2**31 - 1


class AccountsError(SettingsError):
    """An accounts file that cannot be used; the message is ``FILE: pointer: message``."""


@dataclass(frozen=True, repr=False)
class Account:
    """One account the deployment serves, with its helpdesk credentials, rules folder and tokens.

    ``id`` is None only for a single-account deployment without ``CHATWOOT_ACCOUNT_ID``, which serves every
    account its webhooks name (as it always did). ``stream`` is the Redis stream its events wait in.
    """

    id: int | None
    rules_dir: str
    stream: str
    chatwoot_url: str | None = None
    api_token: str | None = None
    webhook_secret: str | None = None
    webhook_token: str | None = None
    admin_token: str | None = None
    sidebar_token: str | None = None
    plugin_user_id: int | None = None
    writeback_concurrency: int = DEFAULT_WRITEBACK_CONCURRENCY

    def serves(self, account_id: int | None) -> bool:
        """Whether events of ``account_id`` are this account's."""
        return self.id is None or account_id is None or account_id == self.id

    def connector_settings(self, base: Mapping[str, str]) -> dict[str, str]:
        """Environment-style settings for a connector of this account: ``base`` (the process's settings) with
        this account's id, helpdesk and webhook credentials in place of the single-account ones."""
        own = {
            "CHATWOOT_ACCOUNT_ID": self.id,
            "CHATWOOT_URL": self.chatwoot_url,
            "CHATWOOT_API_TOKEN": self.api_token,
            "CHATWOOT_WEBHOOK_SECRET": self.webhook_secret,
            "SLA_WEBHOOK_TOKEN": self.webhook_token,
            "CHATWOOT_PLUGIN_USER_ID": self.plugin_user_id,
        }
        merged = dict(base)
        for name, value in own.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = str(value)
        return merged

    def secret_values(self) -> tuple[str, ...]:
        """This account's secrets, for the log handler to mask."""
        values = (getattr(self, name) for name in SECRET_KEYS)
        return tuple(value for value in values if value)

    def __repr__(self) -> str:
        shown = []
        for item in fields(self):
            value = getattr(self, item.name)
            shown.append(f"{item.name}={MASK if item.name in SECRET_KEYS and value else value!r}")
        return f"Account({', '.join(shown)})"


def single_account(settings: Settings) -> Account:
    """The one account the single-account settings describe (``SLA_ADMIN_TOKEN`` and ``SLA_SIDEBAR_TOKEN`` are
    the deployment's tokens, which see every account: here, this one)."""
    return Account(
        id=settings.CHATWOOT_ACCOUNT_ID,
        rules_dir=settings.SLA_RULES_DIR,
        stream=redis_keys.EVENT_STREAM,
        chatwoot_url=settings.CHATWOOT_URL,
        api_token=settings.CHATWOOT_API_TOKEN,
        webhook_secret=settings.CHATWOOT_WEBHOOK_SECRET,
        webhook_token=settings.SLA_WEBHOOK_TOKEN,
        plugin_user_id=settings.CHATWOOT_PLUGIN_USER_ID,
    )


def parse_accounts_file(
    path: str | os.PathLike, text: bytes, environ: Mapping[str, str] | None, default_rules_dir: str
) -> dict[int, Account]:
    """The accounts of an accounts file's content; raises :class:`AccountsError` naming the first problem.

    A relative ``rules_dir`` is relative to the file's folder; without one, an account uses
    ``default_rules_dir`` (``SLA_RULES_DIR``). With ``environ`` None, environment references are checked
    for their shape only and left unset (editing the file from a shell that does not hold the secrets).
    """
    name = str(path)

    def fail(pointer: str, message: str) -> AccountsError:
        return AccountsError(f"{name}: {pointer or '/'}: {message}")

    try:
        document = json.loads(text)
    except UnicodeDecodeError:
        raise fail("", "not UTF-8 text") from None
    except ValueError as error:
        raise fail("", f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise fail("", 'must be a JSON object with an "accounts" object')
    unknown = sorted(set(document) - {"accounts", "$schema"})
    if unknown:
        raise fail(f"/{_escape(unknown[0])}", 'unknown key (expected "accounts")')
    entries = document.get("accounts")
    if not isinstance(entries, dict):
        raise fail("/accounts", "required: an object of account id to account settings")
    folder = Path(path).parent
    accounts: dict[int, Account] = {}
    for key, entry in entries.items():
        pointer = f"/accounts/{_escape(key)}"
        if not (key.isascii() and key.isdigit() and 0 < int(key) <= MAX_ACCOUNT_ID) or key != str(int(key)):
            raise fail(pointer, "an account id is a positive whole number, written without leading zeros")
        if not isinstance(entry, dict):
            raise fail(pointer, "must be an object of the account's settings")
        values: dict[str, Any] = {}
        for item, raw in entry.items():
            where = f"{pointer}/{_escape(item)}"
            if item not in TEXT_KEYS and item not in INTEGER_KEYS:
                raise fail(where, f"unknown key (known: {', '.join(TEXT_KEYS + INTEGER_KEYS)})")
            value = _resolve(raw, environ, where, fail)
            if value is None:
                continue
            if item in INTEGER_KEYS:
                if not value.isdigit() or int(value) < 1:
                    raise fail(where, "must be a positive whole number")
                values[item] = int(value)
            else:
                values[item] = value
        url = values.get("chatwoot_url")
        if url is not None and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
            raise fail(f"{pointer}/chatwoot_url", "must be an http(s) URL such as https://chat.example.com")
        rules = values.pop("rules_dir", None)
        account_id = int(key)
        accounts[account_id] = Account(
            id=account_id,
            rules_dir=str(folder / rules) if rules is not None else default_rules_dir,
            stream=redis_keys.account_stream(account_id),
            **values,
        )
    return accounts


def _resolve(
    raw: Any, environ: Mapping[str, str] | None, where: str, fail: Callable[[str, str], AccountsError]
) -> str | None:
    """A value of the file as text (None when empty): a string, a whole number, or ``{"env": "NAME"}``."""
    if isinstance(raw, dict):
        if set(raw) != {"env"} or not isinstance(raw["env"], str) or not raw["env"]:
            raise fail(where, 'an environment reference is {"env": "NAME"} and nothing else')
        if environ is None:
            return None
        if raw["env"] not in environ:
            raise fail(where, f"environment variable {raw['env']} is not set")
        raw = environ[raw["env"]]
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise fail(where, 'must be a string or {"env": "NAME"}')
    text = str(raw).strip()
    return text or None


def _escape(token: str) -> str:
    """A JSON pointer token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


@dataclass
class _Loaded:
    accounts: dict[int, Account]
    digest: str | None
    loaded_at: datetime
    rules: dict[int | None, RulesHolder] = field(default_factory=dict)


class Accounts:
    """The accounts in force: from ``SLA_ACCOUNTS_FILE`` (re-read when it changes, checked at most once per
    ``min_interval_seconds``), or the one account of the single-account settings.

    Safe to share between threads. Each account has its own :class:`RulesHolder`, so one account's broken
    rule files leave the others untouched.
    """

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str] = os.environ,
        min_interval_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.path = Path(settings.SLA_ACCOUNTS_FILE) if settings.SLA_ACCOUNTS_FILE else None
        self.error: str | None = None
        self.min_interval_seconds = min_interval_seconds
        self._environ = environ
        self._clock = clock
        self._lock = threading.Lock()
        self._failed_digest: str | None = None
        self._checked_at = clock()
        if self.path is None:
            only = single_account(settings)
            self._loaded = _Loaded({} if only.id is None else {only.id: only}, None, datetime.now(UTC))
            self._single: Account | None = only
        else:
            self._single = None
            digest, text = self._read()
            self._loaded = _Loaded(self._parse(text), digest, datetime.now(UTC))
        self._loaded.rules = {account.id: RulesHolder(account.rules_dir) for account in self.all()}

    @property
    def from_file(self) -> bool:
        """Whether the accounts come from ``SLA_ACCOUNTS_FILE`` (else: the single-account settings)."""
        return self.path is not None

    def get(self, account_id: int | None) -> Account | None:
        """The account serving ``account_id``, or None when this deployment does not serve it."""
        if self._single is not None:
            return self._single if self._single.serves(account_id) else None
        if account_id is None:
            return None
        return self._current().accounts.get(account_id)

    def default(self) -> Account | None:
        """The account of ``POST /webhooks/<connector>`` (no account in the URL): the single account, or
        None when the accounts come from a file (each has its own URL)."""
        return self._single

    def all(self) -> list[Account]:
        """Every account served, by id (the single account, even without an id)."""
        if self._single is not None:
            return [self._single]
        return [self._current().accounts[key] for key in sorted(self._current().accounts)]

    def rules(self, account: Account) -> RulesHolder:
        """The rules holder of ``account`` (its own folder, reloaded apart from the others')."""
        loaded = self._current()
        holder = loaded.rules.get(account.id)
        if holder is None or holder.directory != Path(account.rules_dir):
            # An account removed from the file while its events were in flight: its last known folder.
            holder = RulesHolder(account.rules_dir)
            with self._lock:
                loaded.rules[account.id] = holder
        return holder

    def rules_for(self, account_id: int | None) -> RulesHolder | None:
        """The rules holder of the account serving ``account_id`` (None when not served)."""
        account = self.get(account_id)
        return None if account is None else self.rules(account)

    def unauthenticated(self) -> list[Account]:
        """The accounts whose webhooks need neither a signature nor a URL token (development only)."""
        return [account for account in self.all() if not (account.webhook_secret or account.webhook_token)]

    def secret_values(self) -> tuple[str, ...]:
        """Every account's secrets, for the log handler to mask."""
        return tuple(value for account in self.all() for value in account.secret_values())

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: the rules in force (a single account's holder status as it always was); with an
        accounts file, each account's rules by id (a broken folder names its account) and the file's state."""
        if self._single is not None:
            return self.rules(self._single).status()
        accounts = {str(account.id): self.rules(account).status() for account in self.all()}
        return {
            "ok": self.error is None and all(state["ok"] for state in accounts.values()),
            "accounts_file": {"loaded_at": format_time(self._loaded.loaded_at), "error": self.error},
            "accounts": accounts,
        }

    # -- reading the file --------------------------------------------------------------------------------

    def _current(self) -> _Loaded:
        if self.path is not None and self._clock() - self._checked_at >= self.min_interval_seconds:
            with self._lock:
                if self._clock() - self._checked_at >= self.min_interval_seconds:
                    self._checked_at = self._clock()
                    self._refresh()
        return self._loaded

    def refresh(self) -> None:
        """Re-read the file and every account's rules now if they changed, whatever the interval."""
        if self.path is not None:
            with self._lock:
                self._checked_at = self._clock()
                self._refresh()
        for account in self.all():
            self.rules(account).refresh()

    def _read(self) -> tuple[str, bytes]:
        assert self.path is not None
        try:
            text = self.path.read_bytes()
        except OSError as error:
            raise AccountsError(f"{self.path}: /: cannot read the accounts file: {error.strerror}") from None
        return hashlib.sha256(text).hexdigest(), text

    def _parse(self, text: bytes) -> dict[int, Account]:
        assert self.path is not None
        return parse_accounts_file(self.path, text, self._environ, self.settings.SLA_RULES_DIR)

    def _refresh(self) -> None:
        try:
            digest, text = self._read()
        except AccountsError as error:  # the file is gone or unreadable: its message is its identity
            self._fail(str(error), str(error))
            return
        if digest == self._loaded.digest:
            self.error, self._failed_digest = None, None
            return
        if digest == self._failed_digest:
            return
        try:
            accounts = self._parse(text)
        except AccountsError as error:
            self._fail(digest, str(error))
            return
        rules = self._rule_holders(accounts, self._loaded.rules)
        self._loaded = _Loaded(accounts, digest, datetime.now(UTC), rules)
        self.error, self._failed_digest = None, None
        logger.info("accounts loaded from %s: %s", self.path, ", ".join(map(str, sorted(accounts))) or "none")

    def _fail(self, digest: str, message: str) -> None:
        if digest == self._failed_digest:
            return
        self._failed_digest = digest
        self.error = message
        logger.error(
            "accounts file not loaded, keeping the accounts loaded at %s: %s",
            format_time(self._loaded.loaded_at),
            message,
        )

    @staticmethod
    def _rule_holders(
        accounts: Mapping[int, Account], previous: Mapping[int | None, RulesHolder]
    ) -> dict[int | None, RulesHolder]:
        """A rules holder per account, keeping the holder (and its last good rules) of an unchanged folder."""
        holders: dict[int | None, RulesHolder] = {}
        for account_id, account in accounts.items():
            kept = previous.get(account_id)
            unchanged = kept is not None and kept.directory == Path(account.rules_dir)
            holders[account_id] = kept if unchanged and kept is not None else RulesHolder(account.rules_dir)
        return holders


# -- editing the file (``sla-plugin install --account`` / ``uninstall --account``) -------------------------


def read_for_edit(path: str | os.PathLike) -> dict[str, Any]:
    """The file's document to edit (``{"accounts": {}}`` when there is no file yet); raises
    :class:`AccountsError` for a file that cannot be used, so an edit never builds on a broken one."""
    file = Path(path)
    if not file.exists():
        return {"accounts": {}}
    try:
        text = file.read_bytes()
    except OSError as error:
        raise AccountsError(f"{file}: /: cannot read the accounts file: {error.strerror}") from None
    parse_accounts_file(file, text, None, "rules")
    return json.loads(text)


def resolved_entry(document: Mapping[str, Any], account_id: int, environ: Mapping[str, str]) -> dict[str, str]:
    """One account's values in a document from :func:`read_for_edit`, references resolved where the
    environment holds them (an unset one is left out)."""
    values = {}
    for key, raw in document["accounts"].get(str(account_id), {}).items():
        value = environ.get(raw["env"]) if isinstance(raw, dict) else str(raw)
        if value:
            values[key] = value
    return values


def set_account(
    document: dict[str, Any], account_id: int, values: Mapping[str, str | None], environ: Mapping[str, str]
) -> None:
    """Add or update one account in a document: each value given replaces the file's, except where the file
    names an environment variable that already holds it (the reference is kept, so no secret lands in a file
    that had none)."""
    entry = document["accounts"].setdefault(str(account_id), {})
    for key, value in values.items():
        current = entry.get(key)
        if value is None or (isinstance(current, dict) and environ.get(current.get("env", "")) == value):
            continue
        entry[key] = value


def write_accounts_file(path: str | os.PathLike, document: Mapping[str, Any]) -> None:
    """Replace the file in one step (running processes read either the old or the new file, never half of
    one), readable only by its owner: it may hold secrets."""
    file = Path(path)
    temporary = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(document, indent=2) + "\n")
    os.replace(temporary, file)
