"""The fake Chatwoot: an in-memory helpdesk that speaks the subset of Chatwoot's REST API the plugin uses and
sends Chatwoot's webhooks, each rendered as Chatwoot's own code renders it (the Chatwoot file of each shape
is named beside the code that renders it; docs/chatwoot-versions.md). The demo, the tests and the benchmarks
all use this one fake.

Version profiles (:data:`PROFILES`), because every one of these Chatwoot releases is in use:

- ``unsigned``: before v4.12.0. No ``X-Chatwoot-Signature``/``-Timestamp``/``-Delivery`` headers, webhooks
  have no ``secret``, conversation webhooks have no ``account``;
- ``signed``: v4.12.0 to v4.14.1. Signed, with ``X-Chatwoot-Delivery`` (PR #13573), conversation webhooks
  still without ``account``;
- ``current``: v4.14.2 and later. Signed, and conversation webhooks carry ``account`` (PR #12445).

It answers like Chatwoot: conversations have their channel at ``meta.channel``; messages come 20 a page,
older ones with ``before=``; an agent's token sees its own inboxes only and gets 401 "You are not authorized
to do this action" for others, a wrong token 401 "Invalid Access Token"; a rate limit is 429; a label POST
replaces the whole list. Faults are injected with :meth:`DemoHelpdesk.fail_next` (``down``, ``slow``,
``5xx``, ``429``, ``401``) and served both over real HTTP (:class:`HelpdeskServer`) and through
``responses`` (:meth:`DemoHelpdesk.register`).

What it serves: ``GET /api/v1/profile`` (whose the token is), and under ``/api/v1/accounts/<account>/``
(header ``api_access_token`` required): inboxes, account labels (list, create, delete), a conversation's
labels (get, and set, which REPLACES the whole list as Chatwoot's does), messages (list, create: the plugin's
private notes), conversations (list by status, get), custom attributes (replace the whole object), webhooks
(list, create with a generated ``secret`` when signed, delete) and dashboard apps (list, create, delete).

What it sends: ``conversation_created``, ``message_created`` (incoming from a contact, outgoing from a user,
an automation or a campaign, private notes too), ``conversation_status_changed`` (``changed_attributes:
null``, as Chatwoot sends it) and ``conversation_updated`` (status, assignee, waiting time, first reply,
labels, custom attributes; null changes for the SLA evaluator), and typing events; the webhook fixtures of
``tests/fixtures/chatwoot/`` are generated from it. Every change is sent, including the plugin's own label
writes and notes, because Chatwoot echoes them too. A delivery carries Chatwoot's headers
(:func:`chatwoot_headers`) and is POSTed once (Chatwoot does not retry account webhooks either).

The scripted conversations call :class:`DemoHelpdesk`'s methods (what customers and agents do in the
Chatwoot UI); the plugin calls the REST API. Times are real: an action happens now unless the script
gives an explicit time (the weekend conversation is played with past timestamps).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import queue
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import requests
from flask import Flask, Response, abort, g, jsonify, request
from werkzeug.serving import WSGIRequestHandler, make_server

DEMO_API_TOKEN = "demo-api-token"
ACCOUNT_ID = 1
ACCOUNT_NAME = "Acme Support (demo)"
# The plugin's own user: notes it posts come back as message_created webhooks from this sender.
PLUGIN_USER_ID = 12
WEBHOOK_EVENTS = (
    "conversation_status_changed",
    "conversation_updated",
    "conversation_created",
    "contact_created",
    "contact_updated",
    "message_created",
    "message_updated",
    "webwidget_triggered",
    "inbox_created",
    "inbox_updated",
    "conversation_typing_on",
    "conversation_typing_off",
)
# The keys whose change makes Chatwoot send conversation_updated (Conversation#allowed_keys?).
UPDATE_KEYS = (
    "team_id",
    "assignee_id",
    "status",
    "snoozed_until",
    "custom_attributes",
    "label_list",
    "waiting_since",
    "first_reply_created_at",
    "priority",
)
# lib/regex_helper.rb: letters and digits first, then letters, digits, "_" or "-"; two characters at least.
LABEL_TITLE = re.compile(r"[^\W_][\w-]+")
# Chatwoot waits about 5 s for a webhook receiver.
WEBHOOK_TIMEOUT_SECONDS = 5
PAGE_SIZE = 25
MESSAGES_PAGE_SIZE = 20
MESSAGE_TYPES = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}
# Chatwoot's 401 texts (app/controllers/concerns/access_token_auth_helper.rb, request_exception_handler.rb).
INVALID_TOKEN = "Invalid Access Token"
NOT_AUTHORIZED = "You are not authorized to do this action"
FAULT_KINDS = ("down", "slow", "5xx", "429", "401")


@dataclass(frozen=True)
class Profile:
    """What one range of Chatwoot releases sends (docs/chatwoot-versions.md)."""

    name: str
    releases: str
    signed: bool  # X-Chatwoot-Signature, -Timestamp and -Delivery; webhooks have a secret
    conversation_account: bool  # conversation webhooks carry ``account``


PROFILES = {
    profile.name: profile
    for profile in (
        Profile("unsigned", "before v4.12.0", signed=False, conversation_account=False),
        Profile("signed", "v4.12.0 to v4.14.1", signed=True, conversation_account=False),
        Profile("current", "v4.14.2 and later", signed=True, conversation_account=True),
    )
}
CURRENT = PROFILES["current"]


@dataclass
class TokenUser:
    """Whose an API token is: the user, its role in the account, and (agents) the inboxes it is a member of."""

    person: Person
    role: str = "administrator"
    inbox_ids: frozenset[int] | None = None  # None: every inbox (an administrator)

    def sees(self, inbox_id: int) -> bool:
        return self.inbox_ids is None or inbox_id in self.inbox_ids


@dataclass
class Fault:
    """One injected failure: ``kind`` of FAULT_KINDS, ``status`` for 5xx, ``seconds`` for slow and 429."""

    kind: str
    status: int = 500
    seconds: float = 0.0


@dataclass
class Person:
    """A contact (customer) or a user (agent); ``kind`` is ``"contact"`` or ``"user"``."""

    id: int
    name: str
    email: str
    kind: str
    phone_number: str | None = None
    additional_attributes: dict[str, Any] = field(default_factory=dict)
    custom_attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Inbox:
    """An inbox and its channel type (``Channel::WebWidget``, ``Channel::Email``...)."""

    id: int
    name: str
    channel: str


@dataclass
class Message:
    """One message of a conversation; ``created_at`` in Unix seconds (with a fraction). ``sender`` is None
    for an automation rule's message (AutomationRules::ActionService builds it without one)."""

    id: int
    message_type: str
    content: str
    private: bool
    sender: Person | None
    created_at: float
    content_attributes: dict[str, Any] = field(default_factory=dict)
    additional_attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Conversation:
    """One conversation's state, as Chatwoot's columns hold it (times in Unix seconds)."""

    id: int
    inbox: Inbox
    contact: Person
    created_at: float
    updated_at: float
    status: str = "open"
    assignee: Person | None = None
    priority: str | None = None
    labels: list[str] = field(default_factory=list)
    custom_attributes: dict[str, Any] = field(default_factory=dict)
    additional_attributes: dict[str, Any] = field(default_factory=dict)
    waiting_since: float | None = None
    first_reply_created_at: float | None = None
    messages: list[Message] = field(default_factory=list)
    source_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Webhook:
    """A registered account webhook."""

    id: int
    url: str
    name: str | None
    subscriptions: list[str]
    secret: str | None  # None before v4.12.0: Chatwoot had no webhook secrets
    account_id: int = ACCOUNT_ID

    def to_json(self) -> dict[str, Any]:
        """app/views/api/v1/accounts/webhooks/_webhook.json.jbuilder (``secret`` since v4.12.0)."""
        rendered: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "account_id": self.account_id,
            "subscriptions": self.subscriptions,
        }
        if self.secret is not None:
            rendered["secret"] = self.secret
        return rendered


@dataclass(frozen=True)
class Delivery:
    """One webhook request to send: the body is fixed; the signature is made when it is sent."""

    url: str
    secret: str | None
    event: str
    body: bytes
    delivery_id: str | None = field(default_factory=lambda: str(uuid.uuid4()))  # None before v4.12.0

    def headers(self, sent_at: float | None = None) -> dict[str, str]:
        """Chatwoot's request headers, signed at *sent_at* (default: now)."""
        return chatwoot_headers(self.body, self.secret, sent_at=sent_at, delivery_id=self.delivery_id)

    def post(self, session: requests.Session | None = None) -> int:
        """Send it once; returns the HTTP status (raises ``requests.RequestException`` on no answer)."""
        sender = session or requests
        return sender.post(
            self.url, data=self.body, headers=self.headers(), timeout=WEBHOOK_TIMEOUT_SECONDS
        ).status_code

    def again(self) -> Delivery:
        """The same body as a new delivery (a new ``X-Chatwoot-Delivery``), as a re-sent event would be."""
        return replace(self, delivery_id=str(uuid.uuid4()) if self.delivery_id else None)


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """``X-Chatwoot-Signature``: ``sha256=`` and the hex HMAC-SHA256 of ``"<timestamp>.<body>"`` with the
    webhook's secret (lib/webhooks/trigger.rb)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def chatwoot_headers(
    body: bytes, secret: str | None, *, sent_at: float | None = None, delivery_id: str | None = None
) -> dict[str, str]:
    """The headers Chatwoot sends with a webhook body (``Webhooks::Trigger#request_headers``): JSON, then
    ``X-Chatwoot-Delivery`` when there is one, and with a secret ``X-Chatwoot-Timestamp`` (``sent_at``,
    default now) and ``X-Chatwoot-Signature``. Every test and bench that posts webhooks signs with this."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if delivery_id:
        headers["X-Chatwoot-Delivery"] = delivery_id
    if secret:
        timestamp = str(int(time.time() if sent_at is None else sent_at))
        headers["X-Chatwoot-Timestamp"] = timestamp
        headers["X-Chatwoot-Signature"] = signature(secret, timestamp, body)
    return headers


class DemoHelpdesk:
    """The helpdesk's state and what people do in it; thread-safe (the REST API, the script and the webhook
    sender run in different threads).

    ``announce`` receives one readable line for every label change and message the REST API receives (what
    the plugin writes), so a terminal can show them as they happen.
    """

    def __init__(
        self,
        api_token: str = DEMO_API_TOKEN,
        announce: Callable[[str], None] | None = None,
        first_conversation_id: int = 101,
        profile: Profile | str = CURRENT,
        account_id: int = ACCOUNT_ID,
        adopt_unknown_with_labels: Sequence[str] | None = None,
    ) -> None:
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile
        self.account_id = account_id
        self.announce = announce or (lambda line: None)
        self.plugin_user = Person(PLUGIN_USER_ID, "SLA Monitor", "sla-monitor@acme.example", "user")
        self.tokens: dict[str, TokenUser] = {api_token: TokenUser(self.plugin_user)}
        self.inboxes: dict[int, Inbox] = {}
        self.calls: list[tuple[str, str, int]] = []  # (method, path, status) of every REST call
        self._faults: list[Fault] = []
        # Tests that send their own webhook bodies: a conversation the fake never played exists all the same
        # (with these labels) when the plugin first calls for it.
        self.adopt_unknown_with_labels = adopt_unknown_with_labels
        self.label_history: dict[int, list[tuple[float, list[str]]]] = {}  # REST label writes, by conversation
        # Called with (method, path) at the start of every REST call: a test can hold the helpdesk there.
        self.before_call: Callable[[str, str], None] | None = None
        # A bench's helpdesk: every REST call answered this many seconds late, and at most this many calls
        # in each minute of the clock (Rack::Attack's throttle: a fixed window, 429 without Retry-After).
        self.latency = 0.0
        self.rate_limit_per_minute: int | None = None
        self.throttled = 0  # calls answered 429 by the rate limit
        self._window: tuple[int, int] = (0, 0)  # (minute, calls in it)
        self.conversations: dict[int, Conversation] = {}
        self.account_labels: dict[int, dict[str, Any]] = {}
        self.webhooks: dict[int, Webhook] = {}
        self.dashboard_apps: dict[int, dict[str, Any]] = {}
        self.attribute_definitions: dict[int, dict[str, Any]] = {}
        self.last_api_write_at = time.monotonic()
        self._next_conversation_id = first_conversation_id
        self._next_message_id = 9001
        self._next_id = 1
        self._lock = threading.RLock()
        self._captured: list[Delivery] | None = None
        self._outbox: queue.Queue[Delivery | None] = queue.Queue()
        self._sender: threading.Thread | None = None

    @property
    def api_token(self) -> str:
        """The first (administrator's) API token."""
        return next(iter(self.tokens))

    def add_token(
        self, token: str, person: Person, role: str = "agent", inbox_ids: Iterator[int] | None = None
    ) -> None:
        """Another API token: an agent's sees only the conversations of ``inbox_ids`` (InboxPolicy,
        Conversations::PermissionFilterService) and may not call administrators' endpoints."""
        with self._lock:
            inboxes = None if inbox_ids is None else frozenset(inbox_ids)
            self.tokens[token] = TokenUser(person, role, inboxes)

    # -- faults ---------------------------------------------------------------------------------------

    def fail_next(self, count: int, kind: str, *, status: int = 500, seconds: float = 0.0) -> None:
        """The next ``count`` REST calls fail: ``down`` (the connection is closed unanswered), ``slow`` (the
        answer comes after ``seconds``), ``5xx`` (``status``), ``429`` (``Retry-After: seconds`` when
        ``seconds`` is set; Rack::Attack's own answer has none), ``401`` (a refused token)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults.extend(Fault(kind, status, seconds) for _ in range(count))

    def faults_left(self) -> int:
        """Injected faults not yet served."""
        with self._lock:
            return len(self._faults)

    def _take_slow_fault(self) -> Fault | None:
        with self._lock:
            if self._faults and self._faults[0].kind == "slow":
                return self._faults.pop(0)
            return None

    def take_fault(self) -> Fault | None:
        """The next injected fault, if any (the API calls this once per request)."""
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def over_rate_limit(self) -> bool:
        """Count one call in the current minute; whether it is over :attr:`rate_limit_per_minute`."""
        if self.rate_limit_per_minute is None:
            return False
        with self._lock:
            minute = int(time.time() // 60)
            calls = self._window[1] + 1 if self._window[0] == minute else 1
            self._window = (minute, calls)
            if calls > self.rate_limit_per_minute:
                self.throttled += 1
                return True
            return False

    # -- what customers and agents do (the script calls these) ----------------------------------------

    def open_conversation(
        self,
        contact: Person,
        inbox: Inbox,
        content: str,
        *,
        at: datetime | None = None,
        assignee: Person | None = None,
        priority: str | None = None,
        additional_attributes: dict[str, Any] | None = None,
        message_at: datetime | None = None,
    ) -> int:
        """A customer starts a conversation with a first message (at ``message_at``, default the same time);
        returns its display id."""
        moment = _seconds(at)
        with self._lock:
            conversation = self._new_conversation(
                contact,
                inbox,
                moment,
                assignee=assignee,
                priority=priority,
                additional_attributes=additional_attributes,
            )
            # Chatwoot's listeners render webhooks in a job, after the request that created the conversation
            # and its first message: conversation_created already shows that message.
            with self.capturing() as first_message:
                first_moment = moment if message_at is None else _seconds(message_at)
                self._add_message(conversation, "incoming", content, contact, first_moment, private=False)
            self._emit("conversation_created", self._conversation_webhook(conversation))
            self.send(first_message)
            return conversation.id

    def _new_conversation(
        self,
        contact: Person,
        inbox: Inbox,
        moment: float,
        *,
        assignee: Person | None = None,
        priority: str | None = None,
        additional_attributes: dict[str, Any] | None = None,
        waiting_since: float | None | bool = True,
    ) -> Conversation:
        conversation = Conversation(
            id=self._next_conversation_id,
            inbox=inbox,
            contact=contact,
            created_at=moment,
            updated_at=moment,
            assignee=assignee,
            priority=priority,
            waiting_since=moment if waiting_since is True else None,
            additional_attributes=additional_attributes or _default_attributes(inbox),
        )
        self._next_conversation_id += 1
        self.conversations[conversation.id] = conversation
        self.inboxes[inbox.id] = inbox
        return conversation

    def customer_writes(self, conversation_id: int, content: str, *, at: datetime | None = None) -> None:
        """A customer message; it reopens a resolved or snoozed conversation, as Chatwoot's does."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            self._add_message(conversation, "incoming", content, conversation.contact, _seconds(at), private=False)

    def agent_replies(self, conversation_id: int, agent: Person, content: str, *, at: datetime | None = None) -> None:
        """A public reply by an agent (a human: it stops the response clocks)."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            self._add_message(conversation, "outgoing", content, agent, _seconds(at), private=False)

    def set_status(self, conversation_id: int, status: str, *, at: datetime | None = None) -> None:
        """An agent resolves, reopens, or sets a conversation pending."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            self._change_status(conversation, status, _seconds(at))

    def automation_replies(
        self, conversation_id: int, content: str, *, rule_id: int = 1, at: datetime | None = None
    ) -> None:
        """An automation rule's public message: no sender, ``content_attributes.automation_rule_id``
        (app/services/automation_rules/action_service.rb). Not a human reply."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            self._add_message(
                conversation,
                "outgoing",
                content,
                None,
                _seconds(at),
                private=False,
                content_attributes={"automation_rule_id": rule_id},
            )

    def campaign_opens(
        self, contact: Person, inbox: Inbox, sender: Person, content: str, *, campaign_id: int = 1, at=None
    ) -> int:
        """A campaign opens a conversation with its message, sent as the campaign's user, with
        ``additional_attributes.campaign_id`` (app/builders/campaigns/campaign_conversation_builder.rb,
        app/builders/messages/message_builder.rb). Not a human reply. Returns the conversation's id."""
        moment = _seconds(at)
        with self._lock:
            conversation = self._new_conversation(contact, inbox, moment, waiting_since=None)
            self._emit("conversation_created", self._conversation_webhook(conversation))
            self._add_message(
                conversation,
                "outgoing",
                content,
                sender,
                moment,
                private=False,
                additional_attributes={"campaign_id": campaign_id},
            )
            return conversation.id

    def agent_adds_label(self, conversation_id: int, title: str, *, at: datetime | None = None) -> None:
        """An agent adds a label in the UI (the other labels stay)."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            self._replace_labels(conversation, [*conversation.labels, title], _seconds(at))

    def assign(self, conversation_id: int, agent: Person, *, at: datetime | None = None) -> None:
        """An agent is assigned the conversation."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            before = _tracked(conversation)
            conversation.assignee = agent
            self._updated(conversation, before, _seconds(at))

    def write_note(self, conversation_id: int, author: Person, content: str, *, at: datetime | None = None) -> None:
        """A private note (only agents see it; it answers nobody)."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            self._add_message(conversation, "outgoing", content, author, _seconds(at), private=True)

    def set_custom_attributes(
        self, conversation_id: int, attributes: dict[str, Any], *, at: datetime | None = None
    ) -> None:
        """The conversation's custom attributes are replaced (an agent, or an API client)."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            before = _tracked(conversation)
            conversation.custom_attributes = dict(attributes)
            self._updated(conversation, before, _seconds(at))

    def sla_evaluated(self, conversation_id: int) -> None:
        """Chatwoot's own SLA evaluator (enterprise) touches the conversation: ``conversation_updated`` with
        ``changed_attributes: null`` (``dispatch_conversation_updated_event`` without changes,
        enterprise/app/models/applied_sla.rb)."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            self._emit("conversation_updated", {**self._conversation_webhook(conversation), "changed_attributes": None})

    def agent_typing(self, conversation_id: int, agent: Person) -> None:
        """``conversation_typing_on``: ``{user, conversation, is_private}`` (app/listeners/webhook_listener.rb)."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            user = {"id": agent.id, "name": agent.name, "email": agent.email, "type": "user"}
            payload = {"user": user, "conversation": self._conversation_webhook(conversation), "is_private": False}
            self._emit("conversation_typing_on", payload)

    # -- webhooks -------------------------------------------------------------------------------------

    def start_sending(self) -> None:
        """Start the thread that POSTs webhooks, one at a time, in the order the changes happened."""
        with self._lock:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_until_stopped, name="demo-webhooks", daemon=True)
                self._sender.start()

    def stop_sending(self, timeout: float = 10.0) -> None:
        """Send what is queued, then stop the sender thread."""
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join(timeout)
            self._sender = None

    def all_conversations(self) -> list[Conversation]:
        """The conversations, oldest first (a copy of the list: the objects are live)."""
        with self._lock:
            return list(self.conversations.values())

    def webhooks_pending(self) -> int:
        """Webhooks queued or being sent."""
        return self._outbox.unfinished_tasks

    @contextlib.contextmanager
    def capturing(self) -> Iterator[list[Delivery]]:
        """Collect the deliveries made inside the block instead of sending them (to send them in another
        order with :meth:`send`, or for a test to post them itself). Blocks may nest."""
        with self._lock:
            outer, self._captured = self._captured, []
            captured = self._captured
        try:
            yield captured
        finally:
            with self._lock:
                self._captured = outer

    def send(self, deliveries: list[Delivery]) -> None:
        """Send *deliveries* in this order, after what is already queued (or collect them, when capturing)."""
        with self._lock:
            for delivery in deliveries:
                if self._captured is not None:
                    self._captured.append(delivery)
                else:
                    self._outbox.put(delivery)

    def _emit(self, event: str, payload: dict[str, Any]) -> None:
        body = json.dumps({**payload, "event": event}, separators=(",", ":"), ensure_ascii=False).encode()
        self.send(
            [
                Delivery(hook.url, hook.secret, event, body, str(uuid.uuid4()) if self.profile.signed else None)
                for hook in self.webhooks.values()
                if event in hook.subscriptions
            ]
        )

    def _send_until_stopped(self) -> None:
        with requests.Session() as session:
            while (delivery := self._outbox.get()) is not None:
                try:
                    status = delivery.post(session)
                    if status >= 300:
                        self.announce(f"webhook {delivery.event} answered HTTP {status}")
                except requests.RequestException as error:
                    self.announce(f"webhook {delivery.event} not delivered: {type(error).__name__}")
                finally:
                    self._outbox.task_done()

    # -- changes, with the webhooks Chatwoot sends for them -------------------------------------------

    def _add_message(
        self,
        conversation: Conversation,
        message_type: str,
        content: str,
        sender: Person | None,
        moment: float,
        *,
        private: bool,
        content_attributes: dict[str, Any] | None = None,
        additional_attributes: dict[str, Any] | None = None,
    ) -> Message:
        message = Message(
            self._next_message_id,
            message_type,
            content,
            private,
            sender,
            moment,
            content_attributes or {},
            additional_attributes or {},
        )
        self._next_message_id += 1
        conversation.messages.append(message)
        before = _tracked(conversation)
        if message_type == "incoming":
            if conversation.status in ("resolved", "snoozed"):
                conversation.status = "open"
            if conversation.waiting_since is None:
                conversation.waiting_since = moment
        elif _human_reply(message):
            if conversation.first_reply_created_at is None:
                conversation.first_reply_created_at = moment
            conversation.waiting_since = None
        self._emit("message_created", self._message_webhook(conversation, message))
        self._updated(conversation, before, moment)
        return message

    def _change_status(self, conversation: Conversation, status: str, moment: float) -> None:
        if status == conversation.status:
            return
        before = _tracked(conversation)
        conversation.status = status
        if status == "resolved":
            conversation.waiting_since = None
        self._updated(conversation, before, moment)

    def _replace_labels(self, conversation: Conversation, labels: list[str], moment: float) -> list[str]:
        # acts-as-taggable-on lower-cases titles and keeps each once.
        wanted = list(dict.fromkeys(str(label).strip().lower() for label in labels if str(label).strip()))
        if wanted != conversation.labels:
            before = _tracked(conversation)
            conversation.labels = wanted
            self._updated(conversation, before, moment)
        return conversation.labels

    def _updated(self, conversation: Conversation, before: dict[str, Any], moment: float) -> None:
        """Send conversation_updated (and conversation_status_changed) for what changed since *before*."""
        after = _tracked(conversation)
        changed = [key for key in UPDATE_KEYS if before.get(key) != after.get(key)]
        if not changed:
            return
        previous_updated_at = conversation.updated_at
        conversation.updated_at = max(moment, conversation.updated_at)
        changes = [{key: {"previous_value": before.get(key), "current_value": after.get(key)}} for key in changed]
        if "label_list" in changed:
            changes.append(
                {
                    "cached_label_list": {
                        "previous_value": ", ".join(before["label_list"]),
                        "current_value": ", ".join(after["label_list"]),
                    }
                }
            )
        changes.append(
            {
                "updated_at": {
                    "previous_value": _iso(previous_updated_at),
                    "current_value": _iso(conversation.updated_at),
                }
            }
        )
        self._emit("conversation_updated", {**self._conversation_webhook(conversation), "changed_attributes": changes})
        if "status" in changed:
            # Conversation#notify_status_change dispatches after the commit, when Rails' attribute_change
            # is nil, so BaseListener#extract_changed_attributes renders null (app/models/conversation.rb,
            # app/listeners/base_listener.rb).
            self._emit(
                "conversation_status_changed", {**self._conversation_webhook(conversation), "changed_attributes": None}
            )

    def _conversation(self, conversation_id: int) -> Conversation:
        conversation = self.conversations.get(conversation_id)
        if conversation is None and self.adopt_unknown_with_labels is not None:
            conversation = self.adopt(conversation_id, self.adopt_unknown_with_labels)
        if conversation is None:
            raise LookupError(f"no conversation {conversation_id}")
        return conversation

    def adopt(self, conversation_id: int, labels: Sequence[str] = (), inbox: Inbox | None = None) -> Conversation:
        """A conversation that exists in Chatwoot but was not played in the fake (its webhooks came from the
        test itself): with these labels, in ``inbox`` (default a web chat), no messages yet."""
        with self._lock:
            inbox = inbox or self.inboxes.get(1) or Inbox(1, "Website Chat", "Channel::WebWidget")
            contact = Person(
                10_000 + conversation_id, "A Customer", f"customer-{conversation_id}@example.com", "contact"
            )
            now = time.time()
            conversation = Conversation(conversation_id, inbox, contact, now, now, labels=list(labels))
            self.conversations[conversation_id] = conversation
            self.inboxes[inbox.id] = inbox
            return conversation

    def replace_token(self, new_token: str) -> None:
        """The administrator's token is revoked (401 "Invalid Access Token") and this one issued instead."""
        with self._lock:
            user = self.tokens.pop(self.api_token)
            self.tokens = {new_token: user, **self.tokens}

    # -- webhook bodies ---------------------------------------------------------------------------------

    def _conversation_webhook(self, conversation: Conversation) -> dict[str, Any]:
        """``Conversation#webhook_data``: ``push_data``, plus ``account`` since v4.14.2 (PR #12445)
        (app/presenters/conversations/event_data_presenter.rb)."""
        data = self.conversation_json(conversation)
        if self.profile.conversation_account:
            data["account"] = {"id": self.account_id, "name": ACCOUNT_NAME}
        return data

    def conversation_json(self, conversation: Conversation) -> dict[str, Any]:
        """``Conversations::EventDataPresenter#push_data`` (app/presenters/conversations/event_data_presenter.rb):
        the channel at the top level, ``messages`` the last public non-activity message in push format."""
        chat = [message for message in conversation.messages if _chat(message)]
        return {
            "additional_attributes": conversation.additional_attributes,
            "can_reply": True,
            "channel": conversation.inbox.channel,
            "contact_inbox": {
                "id": 600 + conversation.id,
                "contact_id": conversation.contact.id,
                "inbox_id": conversation.inbox.id,
                "source_id": conversation.source_id,
                "created_at": _iso(conversation.created_at),
                "updated_at": _iso(conversation.created_at),
                "hmac_verified": False,
                "pubsub_token": conversation.source_id.replace("-", "")[:24],
            },
            "id": conversation.id,
            "inbox_id": conversation.inbox.id,
            "messages": [self._push_message(conversation, chat[-1])] if chat else [],
            "labels": list(conversation.labels),
            "meta": {
                "sender": _contact_push(conversation.contact),
                "assignee": _user_push(conversation.assignee) if conversation.assignee else None,
                "assignee_type": "User" if conversation.assignee else None,
                "team": None,
                "hmac_verified": False,
            },
            "status": conversation.status,
            "custom_attributes": dict(conversation.custom_attributes),
            "snoozed_until": None,
            "unread_count": _unread(conversation),
            "first_reply_created_at": _iso(conversation.first_reply_created_at),
            "priority": conversation.priority,
            "waiting_since": int(conversation.waiting_since or 0),
            "agent_last_seen_at": 0,
            "contact_last_seen_at": 0,
            "last_activity_at": _last_activity(conversation),
            "timestamp": _last_activity(conversation),
            "created_at": int(conversation.created_at),
            "updated_at": round(conversation.updated_at, 4),
        }

    def _push_message(self, conversation: Conversation, message: Message) -> dict[str, Any]:
        """``Message#push_event_data`` (app/models/message.rb): the row's columns, ``message_type`` as its
        number, ``created_at`` in Unix seconds, the sender's ``push_event_data``."""
        data: dict[str, Any] = {
            "id": message.id,
            "content": message.content,
            "account_id": self.account_id,
            "inbox_id": conversation.inbox.id,
            "conversation_id": conversation.id,
            "message_type": MESSAGE_TYPES[message.message_type],
            "created_at": int(message.created_at),
            "updated_at": _iso(message.created_at),
            "private": message.private,
            "status": "sent",
            "source_id": None,
            "content_type": "text",
            "content_attributes": dict(message.content_attributes),
            "sender_type": None if message.sender is None else _sender_type(message.sender),
            "sender_id": None if message.sender is None else message.sender.id,
            "external_source_ids": {},
            "additional_attributes": dict(message.additional_attributes),
            "processed_message_content": message.content,
            "sentiment": {},
            "conversation": {
                "assignee_id": conversation.assignee.id if conversation.assignee else None,
                "unread_count": 0,
                "last_activity_at": int(message.created_at),
                "contact_inbox": {"source_id": conversation.source_id},
            },
        }
        if message.sender is not None:
            data["sender"] = _sender_push(message.sender)
        return data

    def _message_webhook(self, conversation: Conversation, message: Message) -> dict[str, Any]:
        """``Message#webhook_data`` (app/models/message.rb): ``message_type`` by name, ``created_at`` as
        ISO-8601 text, ``account`` always, the sender's ``webhook_data`` (a contact's has no ``type``)."""
        sender: dict[str, Any] | None
        if message.sender is None:
            sender = None
        elif message.sender.kind == "contact":
            sender = {
                "account": {"id": self.account_id, "name": ACCOUNT_NAME},
                "additional_attributes": {},
                "avatar": "",
                "custom_attributes": {},
                "email": message.sender.email,
                "id": message.sender.id,
                "identifier": None,
                "name": message.sender.name,
                "phone_number": message.sender.phone_number,
                "thumbnail": "",
                "blocked": False,
            }
        else:
            sender = {
                "id": message.sender.id,
                "name": message.sender.name,
                "email": message.sender.email,
                "type": "user",
            }
        return {
            "account": {"id": self.account_id, "name": ACCOUNT_NAME},
            "additional_attributes": dict(message.additional_attributes),
            "content_attributes": dict(message.content_attributes),
            "content_type": "text",
            "content": message.content,
            "conversation": self._conversation_webhook(conversation),
            "created_at": _iso(message.created_at),
            "id": message.id,
            "inbox": {"id": conversation.inbox.id, "name": conversation.inbox.name},
            "message_type": message.message_type,
            "private": message.private,
            "sender": sender,
            "source_id": None,
        }

    # -- REST bodies ----------------------------------------------------------------------------------

    def rest_conversation(self, conversation: Conversation) -> dict[str, Any]:
        """A conversation as the REST API renders it (app/views/api/v1/conversations/partials/
        _conversation.json.jbuilder): the channel ONLY at ``meta.channel``; ``meta.assignee`` and
        ``meta.team`` absent when unset; ``first_reply_created_at`` in Unix seconds (0: none); ``messages``
        the last message of any kind."""
        meta: dict[str, Any] = {"sender": _contact_rest(conversation.contact), "channel": conversation.inbox.channel}
        if conversation.assignee is not None:
            meta["assignee"] = _agent_rest(conversation.assignee, self.account_id)
            meta["assignee_type"] = "User"
        meta["hmac_verified"] = False
        last = conversation.messages[-1] if conversation.messages else None
        non_activity = [message for message in conversation.messages if message.message_type != "activity"]
        return {
            "meta": meta,
            "id": conversation.id,
            "messages": [self._push_message(conversation, last)] if last else [],
            "account_id": self.account_id,
            "uuid": conversation.source_id,
            "additional_attributes": conversation.additional_attributes,
            "agent_last_seen_at": 0,
            "assignee_last_seen_at": 0,
            "can_reply": True,
            "contact_last_seen_at": 0,
            "custom_attributes": dict(conversation.custom_attributes),
            "inbox_id": conversation.inbox.id,
            "labels": list(conversation.labels),
            "muted": False,
            "snoozed_until": None,
            "status": conversation.status,
            "created_at": int(conversation.created_at),
            "updated_at": round(conversation.updated_at, 4),
            "timestamp": _last_activity(conversation),
            "first_reply_created_at": int(conversation.first_reply_created_at or 0),
            "unread_count": _unread(conversation),
            "last_non_activity_message": self._push_message(conversation, non_activity[-1]) if non_activity else None,
            "last_activity_at": _last_activity(conversation),
            "priority": conversation.priority,
            "waiting_since": int(conversation.waiting_since or 0),
            "sla_policy_id": None,
        }

    def rest_message(self, conversation: Conversation, message: Message) -> dict[str, Any]:
        """A message as ``GET .../messages`` renders it (app/views/api/v1/models/_message.json.jbuilder):
        ``message_type`` a number, Unix seconds, no ``sender_type``, ``sender_id`` nor
        ``additional_attributes``; ``sender`` absent when there is none."""
        data: dict[str, Any] = {
            "id": message.id,
            "content": message.content,
            "inbox_id": conversation.inbox.id,
            "conversation_id": conversation.id,
            "message_type": MESSAGE_TYPES[message.message_type],
            "content_type": "text",
            "status": "sent",
            "content_attributes": dict(message.content_attributes),
            "created_at": int(message.created_at),
            "private": message.private,
            "source_id": None,
        }
        if message.sender is not None:
            data["sender"] = _sender_push(message.sender)
        return data

    def rest_messages_page(self, conversation: Conversation, before: int | None) -> dict[str, Any]:
        """``GET .../messages``: the latest 20, oldest first, or the 20 before ``before`` (app/finders/
        message_finder.rb; app/views/api/v1/accounts/conversations/messages/index.json.jbuilder)."""
        older = [message for message in conversation.messages if before is None or message.id < before]
        meta: dict[str, Any] = {
            "labels": list(conversation.labels),
            "additional_attributes": conversation.additional_attributes,
            "contact": _contact_push(conversation.contact),
            "agent_last_seen_at": None,
            "assignee_last_seen_at": None,
        }
        if conversation.assignee is not None:
            meta["assignee"] = _user_push(conversation.assignee)
        page = older[-MESSAGES_PAGE_SIZE:]
        return {"meta": meta, "payload": [self.rest_message(conversation, message) for message in page]}

    # -- the REST API's operations (called by create_api) ---------------------------------------------

    def api_set_labels(self, conversation_id: int, labels: list[str]) -> list[str]:
        """``POST .../labels``: replace the whole list; announce what changed."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            before = list(conversation.labels)
            after = self._replace_labels(conversation, labels, time.time())
            self.label_history.setdefault(conversation_id, []).append((time.time(), list(after)))
            self.last_api_write_at = time.monotonic()
        if after != before:
            removed = [label for label in before if label not in after]
            added = [label for label in after if label not in before]
            change = " ".join([f"-{label}" for label in removed] + [f"+{label}" for label in added])
            self.announce(f"{_describe(conversation)} labels {change}   (now: {', '.join(after) or 'none'})")
        return after

    def api_create_message(
        self, conversation_id: int, content: str, message_type: str, private: bool, sender: Person | None = None
    ) -> dict:
        """``POST .../messages`` by the token's user: a private note, or a public message; answered with the
        message partial (messages/create.json.jbuilder)."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            message = self._add_message(
                conversation, message_type, content, sender or self.plugin_user, time.time(), private=private
            )
            self.last_api_write_at = time.monotonic()
            result = self.rest_message(conversation, message)
        kind = "private note" if private else f"{message_type} message"
        self.announce(f"{_describe(conversation)} {kind}: {_one_line(content)}")
        return result

    def api_set_custom_attributes(self, conversation_id: int, attributes: dict[str, Any]) -> dict[str, Any]:
        """``POST .../custom_attributes``: replace the whole object."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            before = _tracked(conversation)
            conversation.custom_attributes = dict(attributes)
            self._updated(conversation, before, time.time())
            self.last_api_write_at = time.monotonic()
            return dict(conversation.custom_attributes)

    def api_toggle_priority(self, conversation_id: int, priority: str | None) -> None:
        """``POST .../toggle_priority``: ``self.priority = priority.presence; save`` (an update webhook follows)."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            before = _tracked(conversation)
            conversation.priority = priority or None
            self._updated(conversation, before, time.time())
            self.last_api_write_at = time.monotonic()
        self.announce(f"{_describe(conversation)} priority set to {priority or 'none'}")

    def api_create_label(self, title: str, description: str, color: str, show_on_sidebar: bool) -> dict:
        """``POST /labels``; raises ValueError with Chatwoot's message for a bad or taken title."""
        title = title.strip().lower()
        with self._lock:
            if not LABEL_TITLE.fullmatch(title):
                raise ValueError("Title is invalid")
            if any(label["title"] == title for label in self.account_labels.values()):
                raise ValueError("Title has already been taken")
            label: dict[str, Any] = {
                "id": self._new_id(),
                "title": title,
                "description": description,
                "color": color,
                "show_on_sidebar": show_on_sidebar,
            }
            self.account_labels[label["id"]] = label
            return label

    def api_delete_label(self, label_id: int) -> None:
        """``DELETE /labels/<id>``: the label disappears from every conversation too."""
        with self._lock:
            label = self.account_labels.pop(label_id)
            for conversation in self.conversations.values():
                if label["title"] in conversation.labels:
                    conversation.labels.remove(label["title"])

    def api_create_webhook(self, url: str, subscriptions: list[str], name: str | None) -> Webhook:
        """``POST /webhooks``: Chatwoot generates the signing secret itself."""
        with self._lock:
            secret = secrets.token_urlsafe(24) if self.profile.signed else None
            hook = Webhook(self._new_id(), url, name, list(subscriptions), secret, self.account_id)
            self.webhooks[hook.id] = hook
            return hook

    def api_create_dashboard_app(self, title: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        """``POST /dashboard_apps``."""
        with self._lock:
            app: dict[str, Any] = {
                "id": self._new_id(),
                "title": title,
                "content": content,
                "created_at": _iso(time.time()),
            }
            self.dashboard_apps[app["id"]] = app
            return app

    def register(self, mock, base_url: str) -> None:
        """Serve the REST API through a ``responses.RequestsMock`` too (in-process clients): each call goes
        through the same Flask app as over HTTP; a ``down`` fault raises ``requests.ConnectionError``."""
        import responses

        client = create_api(self).test_client()
        prefix = base_url.rstrip("/")

        def callback(request):
            path = request.url[len(prefix) :]
            body = request.body.encode() if isinstance(request.body, str) else request.body
            headers = {"api_access_token": request.headers.get("api_access_token", "")}
            # A slow answer is applied, then comes after the client's read timeout (if it has one shorter).
            slow = self._take_slow_fault()
            try:
                answer = client.open(
                    path, method=request.method, headers=headers, data=body, content_type="application/json"
                )
            except ConnectionDropped:
                return requests.ConnectionError("connection closed unanswered (injected)")
            if slow is not None:
                read_timeout = _read_timeout(request.req_kwargs.get("timeout"))
                if read_timeout is not None and slow.seconds >= read_timeout:
                    return requests.ReadTimeout(f"no answer within {read_timeout:g} s (injected)")
                time.sleep(slow.seconds)
            return answer.status_code, dict(answer.headers), answer.get_data()

        pattern = re.compile(re.escape(prefix) + r"/api/v1/.*")
        for method in (responses.GET, responses.POST, responses.DELETE, responses.PATCH):
            mock.add_callback(method, pattern, callback=callback)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id


def create_api(helpdesk: DemoHelpdesk) -> Flask:
    """The Flask app serving *helpdesk*'s REST API (Chatwoot's paths, bodies and error shapes).

    Before each call: an injected fault, then the token (401 "Invalid Access Token"), then the account
    (app/controllers/concerns/ensure_current_account_helper.rb). Conversation endpoints answer an agent's
    token 401 "You are not authorized to do this action" for a conversation of another inbox
    (ConversationPolicy); administrators' endpoints (webhooks, label create and delete) answer it to any
    agent (WebhookPolicy, LabelPolicy).
    """
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = True  # a ``down`` fault must reach the server, not become a 500
    prefix = "/api/v1/accounts/<int:account_id>"

    @app.before_request
    def authenticate() -> Response | None:
        if helpdesk.before_call is not None:
            helpdesk.before_call(request.method, request.path)
        if helpdesk.latency:
            time.sleep(helpdesk.latency)
        if helpdesk.over_rate_limit():
            return _fault_answer(Fault("429"))
        fault = helpdesk.take_fault()
        if fault is not None:
            answer = _fault_answer(fault)
            if answer is not None:
                return answer
        user = helpdesk.tokens.get(request.headers.get("api_access_token") or "")
        if user is None:
            return _error(401, INVALID_TOKEN)
        if (request.view_args or {}).get("account_id", helpdesk.account_id) != helpdesk.account_id:
            return _error(401, "You are not authorized to access this account")
        g.user = user
        if user.role != "administrator" and _admin_only(request.method, request.path):
            return _error(401, NOT_AUTHORIZED)
        conversation_id = (request.view_args or {}).get("conversation_id")
        if conversation_id is not None:
            conversation = helpdesk.conversations.get(conversation_id)
            if conversation is not None and not user.sees(conversation.inbox.id):
                return _error(401, NOT_AUTHORIZED)
        return None

    @app.after_request
    def record(response: Response) -> Response:
        with helpdesk._lock:
            helpdesk.calls.append((request.method, request.full_path.rstrip("?"), response.status_code))
        return response

    @app.errorhandler(404)
    def not_found(_exception) -> Response:
        return _error(404, "Resource could not be found")

    @app.errorhandler(LookupError)
    def unknown(_exception) -> Response:
        return _error(404, "Resource could not be found")

    @app.get("/api/v1/profile")
    def profile() -> Response:
        """app/views/api/v1/profiles/show.json.jbuilder -> api/v1/models/_user.json.jbuilder."""
        user: TokenUser = g.user
        account = {
            "id": helpdesk.account_id,
            "name": ACCOUNT_NAME,
            "status": "active",
            "active_at": None,
            "role": user.role,
            "permissions": [user.role],
            "availability": "online",
            "availability_status": "online",
            "auto_offline": True,
        }
        return jsonify(
            {
                "account_id": helpdesk.account_id,
                "available_name": user.person.name,
                "avatar_url": "",
                "confirmed": True,
                "display_name": None,
                "message_signature": None,
                "email": user.person.email,
                "id": user.person.id,
                "inviter_id": None,
                "name": user.person.name,
                "provider": "email",
                "role": user.role,
                "ui_settings": {},
                "uid": user.person.email,
                "type": None,
                "accounts": [account],
            }
        )

    @app.get(f"{prefix}/inboxes")
    def list_inboxes(account_id: int) -> Response:
        """accounts/inboxes/index.json.jbuilder: an agent sees the inboxes it is a member of (InboxPolicy)."""
        with helpdesk._lock:
            inboxes = [inbox for inbox in helpdesk.inboxes.values() if g.user.sees(inbox.id)]
        return jsonify(
            {"payload": [{"id": inbox.id, "name": inbox.name, "channel_type": inbox.channel} for inbox in inboxes]}
        )

    @app.get(f"{prefix}/agents")
    def list_agents(account_id: int) -> Response:
        """accounts/agents/index.json.jbuilder: a JSON array of the account's users (every role may list).
        The stand-in knows the users that hold a token or are assigned to a conversation."""
        with helpdesk._lock:
            users = {user.person.id: user.person for user in helpdesk.tokens.values()}
            users.update({c.assignee.id: c.assignee for c in helpdesk.conversations.values() if c.assignee})
        return jsonify([{**_user_push(user), "email": user.email} for _, user in sorted(users.items())])

    @app.get(f"{prefix}/teams")
    def list_teams(account_id: int) -> Response:
        """accounts/teams/index.json.jbuilder: a JSON array; the stand-in has no teams."""
        return jsonify([])

    @app.get(f"{prefix}/labels")
    def list_labels(account_id: int) -> Response:
        return jsonify({"payload": list(helpdesk.account_labels.values())})

    @app.post(f"{prefix}/labels")
    def create_label(account_id: int) -> Response | tuple[Response, int]:
        label = _body().get("label") or _body()
        try:
            created = helpdesk.api_create_label(
                str(label.get("title", "")),
                label.get("description") or "",
                label.get("color") or "#1f93ff",
                bool(label.get("show_on_sidebar")),
            )
        except ValueError as error:
            return jsonify({"message": str(error), "attributes": ["title"]}), 422
        return jsonify(created)

    @app.delete(f"{prefix}/labels/<int:label_id>")
    def delete_label(account_id: int, label_id: int) -> Response:
        helpdesk.api_delete_label(label_id)  # an unknown id raises KeyError, a LookupError: 404
        return Response(status=200)

    @app.get(f"{prefix}/conversations")
    def list_conversations(account_id: int) -> Response:
        """accounts/conversations/index.json.jbuilder; 25 a page (ConversationFinder), an agent's inboxes only."""
        status = request.args.get("status", "open")
        page = max(1, request.args.get("page", 1, type=int))
        with helpdesk._lock:
            chosen = [
                conversation
                for conversation in helpdesk.conversations.values()
                if (status == "all" or conversation.status == status) and g.user.sees(conversation.inbox.id)
            ]
            payload = [
                helpdesk.rest_conversation(conversation)
                for conversation in chosen[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            ]
        return jsonify({"data": {"meta": {"all_count": len(chosen)}, "payload": payload}})

    @app.get(f"{prefix}/conversations/<int:conversation_id>")
    def get_conversation(account_id: int, conversation_id: int) -> Response:
        with helpdesk._lock:
            return jsonify(helpdesk.rest_conversation(helpdesk._conversation(conversation_id)))

    @app.get(f"{prefix}/conversations/<int:conversation_id>/labels")
    def get_labels(account_id: int, conversation_id: int) -> Response:
        return jsonify({"payload": list(helpdesk._conversation(conversation_id).labels)})

    @app.post(f"{prefix}/conversations/<int:conversation_id>/labels")
    def set_labels(account_id: int, conversation_id: int) -> Response:
        labels = _body().get("labels")
        if not isinstance(labels, list):
            return _error(422, "labels must be a list of titles")
        return jsonify({"payload": helpdesk.api_set_labels(conversation_id, labels)})

    @app.get(f"{prefix}/conversations/<int:conversation_id>/messages")
    def list_messages(account_id: int, conversation_id: int) -> Response:
        before = request.args.get("before", type=int)
        with helpdesk._lock:
            return jsonify(helpdesk.rest_messages_page(helpdesk._conversation(conversation_id), before))

    @app.post(f"{prefix}/conversations/<int:conversation_id>/messages")
    def create_message(account_id: int, conversation_id: int) -> Response:
        body = _body()
        message_type = body.get("message_type") or "outgoing"
        if message_type not in ("outgoing", "template") or not isinstance(body.get("content"), str):
            return _error(422, "content and an outgoing message_type are required")
        return jsonify(
            helpdesk.api_create_message(
                conversation_id, body["content"], message_type, body.get("private") is True, g.user.person
            )
        )

    @app.post(f"{prefix}/conversations/<int:conversation_id>/custom_attributes")
    def set_custom_attributes(account_id: int, conversation_id: int) -> Response:
        attributes = _body().get("custom_attributes")
        if not isinstance(attributes, dict):
            return _error(422, "custom_attributes must be an object")
        return jsonify({"custom_attributes": helpdesk.api_set_custom_attributes(conversation_id, attributes)})

    @app.post(f"{prefix}/conversations/<int:conversation_id>/toggle_priority")
    def toggle_priority(account_id: int, conversation_id: int) -> Response:
        priority = _body().get("priority")
        if priority not in (None, "", "low", "medium", "high", "urgent"):
            return _error(500, f"'{priority}' is not a valid priority")  # Chatwoot's enum raises, unrescued
        helpdesk.api_toggle_priority(conversation_id, priority)
        return Response(status=200)  # head :ok

    @app.get(f"{prefix}/custom_attribute_definitions")
    def list_attribute_definitions(account_id: int) -> Response:
        model = request.args.get("attribute_model")
        found = [item for item in helpdesk.attribute_definitions.values() if model in (None, item["attribute_model"])]
        return jsonify(found)  # a bare array (custom_attribute_definitions/index.json.jbuilder)

    @app.post(f"{prefix}/custom_attribute_definitions")
    def create_attribute_definition(account_id: int) -> Response:
        definition = _body().get("custom_attribute_definition") or {}
        key, model = definition.get("attribute_key"), definition.get("attribute_model")
        if not key or model not in ("conversation_attribute", "contact_attribute"):
            return _error(422, "attribute_key and attribute_model are required")
        with helpdesk._lock:
            if any(
                (d["attribute_key"], d["attribute_model"]) == (key, model)
                for d in helpdesk.attribute_definitions.values()
            ):
                taken = jsonify({"message": "Attribute key has already been taken", "attributes": ["attribute_key"]})
                taken.status_code = 422  # render_record_invalid
                return taken
            identifier = len(helpdesk.attribute_definitions) + 1
            helpdesk.attribute_definitions[identifier] = {
                "id": identifier,
                "attribute_display_name": definition.get("attribute_display_name") or key,
                "attribute_display_type": definition.get("attribute_display_type") or "text",
                "attribute_description": definition.get("attribute_description") or "",
                "attribute_key": key,
                "regex_pattern": None,
                "regex_cue": None,
                "attribute_values": definition.get("attribute_values") or [],
                "attribute_model": model,
                "default_value": None,
            }
        helpdesk.announce(f"custom attribute {key} defined")
        return jsonify(helpdesk.attribute_definitions[identifier])

    @app.get(f"{prefix}/webhooks")
    def list_webhooks(account_id: int) -> Response:
        return jsonify({"payload": {"webhooks": [hook.to_json() for hook in helpdesk.webhooks.values()]}})

    @app.post(f"{prefix}/webhooks")
    def create_webhook(account_id: int) -> Response | tuple[Response, int]:
        webhook = _body().get("webhook") or {}
        url, subscriptions = webhook.get("url"), webhook.get("subscriptions") or []
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return jsonify({"message": "Url is invalid", "attributes": ["url"]}), 422
        if not isinstance(subscriptions, list) or not set(subscriptions) <= set(WEBHOOK_EVENTS):
            return jsonify({"message": "Subscriptions Invalid events", "attributes": ["subscriptions"]}), 422
        hook = helpdesk.api_create_webhook(url, subscriptions, webhook.get("name"))
        return jsonify({"payload": {"webhook": hook.to_json()}})

    @app.delete(f"{prefix}/webhooks/<int:webhook_id>")
    def delete_webhook(account_id: int, webhook_id: int) -> Response:
        with helpdesk._lock:
            if helpdesk.webhooks.pop(webhook_id, None) is None:
                abort(404)
        return Response(status=200)

    @app.get(f"{prefix}/dashboard_apps")
    def list_dashboard_apps(account_id: int) -> Response:
        return jsonify(list(helpdesk.dashboard_apps.values()))

    @app.post(f"{prefix}/dashboard_apps")
    def create_dashboard_app(account_id: int) -> Response:
        app_data = _body().get("dashboard_app") or {}
        if not app_data.get("title") or not isinstance(app_data.get("content"), list):
            return _error(422, "title and content are required")
        return jsonify(helpdesk.api_create_dashboard_app(app_data["title"], app_data["content"]))

    @app.delete(f"{prefix}/dashboard_apps/<int:app_id>")
    def delete_dashboard_app(account_id: int, app_id: int) -> Response:
        with helpdesk._lock:
            if helpdesk.dashboard_apps.pop(app_id, None) is None:
                abort(404)
        return Response(status=200)

    return app


class ConnectionDropped(ConnectionError):
    """Raised by the API for a ``down`` fault: the server closes the connection without an answer."""


def _fault_answer(fault: Fault) -> Response | None:
    """The response of an injected fault; None for ``slow`` (answered normally, late)."""
    if fault.kind == "down":
        raise ConnectionDropped
    if fault.kind == "slow":
        time.sleep(fault.seconds)
        return None
    if fault.kind == "429":
        # Rack::Attack's default throttled response (config/initializers/rack_attack.rb): text, no Retry-After;
        # a proxy in front of Chatwoot may add one.
        response = Response("Retry later\n", status=429, mimetype="text/plain")
        if fault.seconds:
            response.headers["Retry-After"] = f"{fault.seconds:g}"
        return response
    if fault.kind == "401":
        return _error(401, INVALID_TOKEN)
    return _error(fault.status, "Internal Server Error")


def _read_timeout(timeout: Any) -> float | None:
    """The read part of a requests ``timeout`` (a number, or a (connect, read) pair)."""
    if isinstance(timeout, (tuple, list)):
        timeout = timeout[-1]
    return float(timeout) if isinstance(timeout, (int, float)) else None


def _admin_only(method: str, path: str) -> bool:
    """Endpoints Chatwoot's policies keep to administrators: webhooks, creating and deleting labels."""
    account_path = path.split("/", 5)[-1] if path.startswith("/api/v1/accounts/") else ""
    return account_path.startswith("webhooks") or (
        account_path.startswith(("labels", "custom_attribute_definitions")) and method != "GET"
    )


class _RequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, with Chatwoot's token header, a ``down`` fault as a connection closed unanswered,
    and without an access log line per request (the terminal shows what the helpdesk announces instead)."""

    # Headers and body go out in two writes: without this, Nagle and delayed ACKs add ~40 ms a call.
    disable_nagle_algorithm = True

    def make_environ(self):
        environ = super().make_environ()
        # Werkzeug drops header names with "_" (a proxy could not tell them from "-"); Chatwoot's server,
        # Puma, keeps them, and api_access_token is one.
        token = self.headers.get("api_access_token")
        if token is not None:
            environ["HTTP_API_ACCESS_TOKEN"] = token
        return environ

    def connection_dropped(self, error, environ=None) -> None:
        # A ConnectionDropped from the app (a ``down`` fault): close the socket without an answer.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_request(self, *args, **kwargs) -> None:
        pass

    def log_error(self, *args, **kwargs) -> None:
        pass


class HelpdeskServer:
    """The helpdesk's HTTP server in a background thread of this process, on 127.0.0.1."""

    def __init__(self, helpdesk: DemoHelpdesk, port: int = 0, host: str = "127.0.0.1") -> None:
        self.helpdesk = helpdesk
        self._server = make_server(host, port, create_api(helpdesk), threaded=True, request_handler=_RequestHandler)
        self.url = f"http://{host}:{self._server.server_port}"
        # A short poll interval: stop() waits for the loop to notice (the default is half a second).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="demo-helpdesk", daemon=True
        )

    def start(self, send_webhooks: bool = True) -> HelpdeskServer:
        """Serve requests and (unless a test collects them with ``capturing``) send webhooks."""
        self._thread.start()
        if send_webhooks:
            self.helpdesk.start_sending()
        return self

    def stop(self) -> None:
        """Stop serving and sending."""
        self._server.shutdown()
        self._server.server_close()
        self.helpdesk.stop_sending(timeout=2)

    def __enter__(self) -> HelpdeskServer:
        return self.start()

    def __exit__(self, *exception_info) -> None:
        self.stop()


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


def _seconds(at: datetime | None) -> float:
    return time.time() if at is None else at.timestamp()


def _iso(seconds: float | None) -> str | None:
    """Rails' JSON time format: ISO-8601 in UTC with milliseconds and a ``Z``."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _tracked(conversation: Conversation) -> dict[str, Any]:
    """The columns whose change Chatwoot reports, as ``changed_attributes`` shows them."""
    return {
        "team_id": None,
        "assignee_id": conversation.assignee.id if conversation.assignee else None,
        "status": conversation.status,
        "snoozed_until": None,
        "custom_attributes": dict(conversation.custom_attributes),
        "label_list": list(conversation.labels),
        "waiting_since": _iso(conversation.waiting_since),
        "first_reply_created_at": _iso(conversation.first_reply_created_at),
        "priority": conversation.priority,
    }


def _human_reply(message: Message) -> bool:
    """Chatwoot's ``Message#human_response?`` (app/models/message.rb): outgoing, from a user, not an automation
    rule's nor a campaign's. (Chatwoot also counts private notes; the plugin never does.)"""
    return (
        message.message_type == "outgoing"
        and message.sender is not None
        and message.sender.kind == "user"
        and not message.content_attributes.get("automation_rule_id")
        and not message.additional_attributes.get("campaign_id")
        and not message.private
    )


def _chat(message: Message) -> bool:
    """``Message.chat``: neither an activity message nor a private note (the webhook's ``messages[]``)."""
    return message.message_type != "activity" and not message.private


def _unread(conversation: Conversation) -> int:
    unread = 0
    for message in reversed([message for message in conversation.messages if _chat(message)]):
        if message.message_type != "incoming":
            break
        unread += 1
    return unread


def _last_activity(conversation: Conversation) -> int:
    return int(conversation.messages[-1].created_at if conversation.messages else conversation.created_at)


def _default_attributes(inbox: Inbox) -> dict[str, Any]:
    if inbox.channel == "Channel::Email":
        return {"source": "email", "mail_subject": None}
    return {
        "browser": {"browser_name": "Firefox", "platform_name": "Linux"},
        "browser_language": "en",
        "referer": "https://shop.example.com/help",
    }


def _sender_type(person: Person) -> str:
    return "Contact" if person.kind == "contact" else "User"


def _sender_push(person: Person) -> dict[str, Any]:
    return _contact_push(person) if person.kind == "contact" else _user_push(person)


def _contact_push(contact: Person) -> dict[str, Any]:
    """``Contact#push_event_data`` (app/models/contact.rb; ``blocked`` since v4.1)."""
    return {
        "additional_attributes": contact.additional_attributes,
        "custom_attributes": contact.custom_attributes,
        "email": contact.email,
        "id": contact.id,
        "identifier": None,
        "name": contact.name,
        "phone_number": contact.phone_number,
        "thumbnail": "",
        "blocked": False,
        "type": "contact",
    }


def _contact_rest(contact: Person) -> dict[str, Any]:
    """A contact in REST (app/views/api/v1/models/_contact.json.jbuilder)."""
    return {
        "additional_attributes": contact.additional_attributes,
        "availability_status": "offline",
        "email": contact.email,
        "id": contact.id,
        "name": contact.name,
        "phone_number": contact.phone_number,
        "blocked": False,
        "identifier": None,
        "thumbnail": "",
        "custom_attributes": contact.custom_attributes,
    }


def _user_push(user: Person) -> dict[str, Any]:
    """``User#push_event_data`` (app/models/user.rb)."""
    return {
        "id": user.id,
        "name": user.name,
        "available_name": user.name,
        "avatar_url": "",
        "type": "user",
        "availability_status": "online",
        "thumbnail": "",
    }


def _agent_rest(user: Person, account_id: int, role: str = "agent") -> dict[str, Any]:
    """A user in REST (app/views/api/v1/models/_agent.json.jbuilder)."""
    return {
        "id": user.id,
        "account_id": account_id,
        "availability_status": "online",
        "auto_offline": True,
        "confirmed": True,
        "email": user.email,
        "provider": "email",
        "available_name": user.name,
        "name": user.name,
        "role": role,
        "thumbnail": "",
    }


def _describe(conversation: Conversation) -> str:
    return f"#{conversation.id} {conversation.contact.name.split()[0]:<6}"


def _one_line(text: str, limit: int = 150) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
