"""What every field and operator means (docs/contracts.md section 1), through the compiled path and the interpreter.

``holds`` evaluates a condition both ways and insists they agree, so every case here also pins that the
interpreter (the benchmark's baseline) and the compiled closures share one set of semantics.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugin.core.calendar import parse_calendar
from plugin.core.events import CONTACT, HUMAN, INCOMING, OUTGOING, Contact, Conversation, MatchContext, Message
from plugin.core.rules.conditions import ConditionCompiler, FirstMatch, interpret
from plugin.core.rules.explain import explain
from plugin.core.rules.fields import MATCH_TEXT_LIMIT, Environment, fold

CREATED = datetime(2026, 1, 14, 9, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Berlin
OFFICE = parse_calendar(
    {
        "timezone": "Europe/Berlin",
        "hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": {"country": "DE"},
    }
)
OWN_LABELS = frozenset({"sla-on-track", "sla-at-risk", "sla-missed"})
ENVIRONMENT = Environment({"office": OFFICE}, OWN_LABELS)


def context(
    *, texts: tuple[str, ...] = (), message: Message | None = None, contact: Contact | None = None, **conversation: Any
) -> MatchContext:
    conversation.setdefault("created_at", CREATED)
    return MatchContext(
        Conversation(account_id=1, conversation_id=87, contact=contact or Contact(), **conversation),
        at=CREATED,
        message=message,
        customer_texts=texts,
    )


def holds(condition: dict, on: MatchContext) -> bool:
    """The compiled result, after checking that the interpreter agrees."""
    compiler = ConditionCompiler(ENVIRONMENT)
    compiled = compiler.compile(condition, "")
    assert compiled is not None, compiler.problems
    result = compiled.test(compiler.facts(on))
    assert interpret(condition, on, ENVIRONMENT) is result
    assert explain(compiled, compiler.facts(on)).matched is result
    return result


def leaf(field: str, op: str, value: Any = None) -> dict:
    return {"field": field, "op": op} if op in ("exists", "not_exists") else {"field": field, "op": op, "value": value}


INCOMING_MESSAGE = Message(id=1, created_at=CREATED, direction=INCOMING, sender_kind=CONTACT, content="hi")
OUTGOING_MESSAGE = Message(id=2, created_at=CREATED, direction=OUTGOING, sender_kind=HUMAN, content="hello")


# --- missing values ------------------------------------------------------------------------------------

TEXT_LEAVES = [
    leaf("email", "equals", "a@b.c"),
    leaf("email", "not_equals", "a@b.c"),
    leaf("email", "in", ["a@b.c"]),
    leaf("email", "not_in", ["a@b.c"]),
    leaf("email", "contains", "b"),
    leaf("email", "not_contains", "b"),
    leaf("email", "contains_any_word", ["b"]),
    leaf("email", "starts_with", "a"),
    leaf("email", "matches", "."),
    leaf("email", "exists"),
]


@pytest.mark.parametrize("condition", TEXT_LEAVES, ids=lambda condition: condition["op"])
def test_every_leaf_but_not_exists_is_false_on_a_missing_value(condition: dict) -> None:
    assert holds(condition, context()) is False
    assert holds(condition, context(contact=Contact(email=None))) is False


@pytest.mark.parametrize(
    "condition",
    [
        leaf("inbox_id", "not_equals", 3),
        leaf("inbox_id", "not_in", [3]),
        leaf("inbox_id", "gt", 0),
        leaf("inbox_id", "lte", 100),
        leaf("custom_attributes.tier", "not_equals", "gold"),
        leaf("custom_attributes.tier", "not_contains", "gold"),
        leaf("contact.custom_attributes.seats", "lt", 10),
        leaf("priority", "not_equals", "low"),
        leaf("team_id", "not_in", [1, 2]),
    ],
    ids=lambda condition: f"{condition['field']} {condition['op']}",
)
def test_negations_and_comparisons_are_false_on_missing_values_too(condition: dict) -> None:
    assert holds(condition, context()) is False


def test_not_exists_is_the_one_leaf_true_on_a_missing_value() -> None:
    assert holds(leaf("email", "not_exists"), context()) is True
    assert holds(leaf("email", "not_exists"), context(contact=Contact(email="a@b.c"))) is False
    assert holds(leaf("custom_attributes.tier", "not_exists"), context(custom_attributes={"tier": None})) is True


def test_exists_has_no_truthiness_trap() -> None:
    assert holds(leaf("team_id", "exists"), context(team_id=0)) is True
    assert holds(leaf("email", "exists"), context(contact=Contact(email=""))) is True
    assert holds(leaf("custom_attributes.vip", "exists"), context(custom_attributes={"vip": False})) is True


def test_not_is_plain_negation_so_it_is_true_on_a_missing_value() -> None:
    assert holds({"not": leaf("email", "equals", "a@b.c")}, context()) is True


def test_empty_all_is_true_and_empty_any_is_false() -> None:
    assert holds({"all": []}, context()) is True
    assert holds({"any": []}, context()) is False
    assert holds({"not": {"any": []}}, context()) is True


# --- text ----------------------------------------------------------------------------------------------


def test_text_operators_ignore_case() -> None:
    jane = context(contact=Contact(email="Jane.Doe@Example.COM", phone_number="+49 30 1234", company="ACME GmbH"))
    assert holds(leaf("email", "equals", "jane.doe@example.com"), jane)
    assert holds(leaf("email", "in", ["x@y.z", "JANE.DOE@EXAMPLE.COM"]), jane)
    assert holds(leaf("email", "contains", "@EXAMPLE"), jane)
    assert holds(leaf("email", "not_contains", "acme"), jane)
    assert holds(leaf("company", "starts_with", "acme"), jane)
    assert holds(leaf("phone_number", "starts_with", "+49"), jane)
    assert holds(leaf("email", "not_equals", "JANE.DOE@example.com"), jane) is False
    assert holds(leaf("company", "equals", "acme gmbh"), jane)


def test_case_folding_is_full_unicode_folding() -> None:
    assert holds(leaf("city", "equals", "STRASSE"), context(contact=Contact(city="Straße")))
    assert holds(leaf("city", "equals", "Ελλάδα"), context(contact=Contact(city="ΕΛΛΆΔΑ")))


def test_matches_searches_anywhere_with_the_expression_as_written() -> None:
    chat = context(referer="https://shop.example.com/Orders/5531")
    assert holds(leaf("referer", "matches", r"/Orders/\d+"), chat)
    assert holds(leaf("referer", "matches", r"/orders/\d+"), chat) is False
    assert holds(leaf("referer", "matches", r"(?i)/orders/\d+"), chat)
    assert holds(leaf("referer", "matches", r"^/Orders"), chat) is False


def test_matches_reads_only_the_first_ten_thousand_characters() -> None:
    assert MATCH_TEXT_LIMIT == 10_000
    early = "refund " + "x" * 20_000
    late = "x" * MATCH_TEXT_LIMIT + " refund"
    assert holds(leaf("content", "matches", "refund"), context(texts=(early,)))
    assert holds(leaf("content", "matches", "refund"), context(texts=(late,))) is False
    assert holds(leaf("content", "contains", "refund"), context(texts=(late,)))


def test_email_domain_is_the_lower_cased_part_after_the_at() -> None:
    assert holds(leaf("email_domain", "equals", "example.com"), context(contact=Contact(email="Jane@Example.COM")))
    assert holds(
        leaf("email_domain", "in", ["acme.io", "example.com"]), context(contact=Contact(email="a@example.com"))
    )
    assert holds(leaf("email_domain", "exists"), context(contact=Contact(email="not-an-address"))) is False


def test_channel_is_the_inbox_channel_type() -> None:
    mail = context(channel="Channel::Email")
    assert holds(leaf("channel", "equals", "Channel::Email"), mail)
    assert holds(leaf("channel", "equals", "channel::email"), mail)
    assert holds(leaf("channel", "in", ["Channel::WebWidget", "Channel::Api"]), mail) is False


def test_conversation_text_fields() -> None:
    conversation = context(
        browser_language="de",
        conversation_language="de",
        mail_subject="Re: Invoice 42",
        referer="https://shop.example.com",
    )
    assert holds(leaf("browser_language", "equals", "DE"), conversation)
    assert holds(leaf("conversation_language", "in", ["de", "fr"]), conversation)
    assert holds(leaf("mail_subject", "contains", "invoice"), conversation)
    assert holds(leaf("mail_subject", "starts_with", "re:"), conversation)
    assert holds(leaf("referer", "contains", "shop."), conversation)


def test_contact_text_fields() -> None:
    contact = Contact(phone_number="+4930123", country_code="DE", city="Berlin", company="Acme")
    on = context(contact=contact)
    assert holds(leaf("country_code", "equals", "de"), on)
    assert holds(leaf("city", "not_in", ["Hamburg", "Munich"]), on)
    assert holds(leaf("company", "contains_any_word", ["acme", "globex"]), on)
    assert holds(leaf("phone_number", "matches", r"^\+49"), on)


# --- content: every customer message so far ----------------------------------------------------------


def test_content_tests_every_customer_message_so_far() -> None:
    texts = ("This is URGENT!", "Thanks, all good now.")
    assert holds(leaf("content", "contains_any_word", ["urgent"]), context(texts=texts))
    assert holds(leaf("content", "contains", "all good"), context(texts=texts))
    assert holds(leaf("content", "equals", "thanks, all good now."), context(texts=texts))


def test_content_negations_mean_no_message_at_all() -> None:
    texts = ("Where is my order?", "I want a refund")
    assert holds(leaf("content", "not_contains", "refund"), context(texts=texts)) is False
    assert holds(leaf("content", "not_contains", "lawyer"), context(texts=texts)) is True
    assert holds(leaf("content", "not_equals", "where is my order?"), context(texts=texts)) is False


def test_content_is_missing_until_the_customer_writes() -> None:
    assert holds(leaf("content", "not_contains", "refund"), context()) is False
    assert holds(leaf("content", "not_exists"), context()) is True
    assert holds(leaf("content", "exists"), context(texts=("hi",))) is True


@pytest.mark.parametrize(
    "text, expected",
    [
        ("URGENT: server down", True),
        ("this is urgent.", True),
        ("(urgent)", True),
        ("reply urgently please", False),
        ("nonurgent request", False),
        ("urgent_fix", False),  # the underscore is a word character
        ("e-mergency", False),
        ("an emergency!", True),
    ],
)
def test_contains_any_word_splits_on_word_boundaries(text: str, expected: bool) -> None:
    assert holds(leaf("content", "contains_any_word", ["urgent", "emergency"]), context(texts=(text,))) is expected


def test_contains_any_word_takes_a_comma_separated_string_too() -> None:
    assert holds(leaf("content", "contains_any_word", "urgent, Emergency"), context(texts=("EMERGENCY now",)))


def test_contains_any_word_handles_unicode_words() -> None:
    assert holds(leaf("content", "contains_any_word", ["straße"]), context(texts=("In der STRASSE.",)))
    assert holds(leaf("content", "contains_any_word", ["दुनिया"]), context(texts=("नमस्ते दुनिया!",)))
    assert holds(leaf("content", "contains_any_word", ["दु"]), context(texts=("नमस्ते दुनिया!",))) is False
    assert holds(leaf("content", "contains_any_word", ["café"]), context(texts=("Un CAFÉ, s'il vous plaît",)))
    # A decomposed accent (e + U+0301) is the same word as the composed one.
    assert holds(leaf("content", "contains_any_word", ["café"]), context(texts=("un cafe\u0301 noir",)))


def test_fold_is_nfc_then_casefold() -> None:
    assert fold("CAFE\u0301") == "café"
    assert fold(5) == 5


# --- labels ---------------------------------------------------------------------------------------------


def test_labels_equals_and_contains_mean_has_the_label() -> None:
    labelled = context(labels=("billing", "VIP-Gold"))
    assert holds(leaf("labels", "equals", "billing"), labelled)
    assert holds(leaf("labels", "contains", "vip-gold"), labelled)
    assert holds(leaf("labels", "contains", "vip"), labelled) is False  # a label, not a substring
    assert holds(leaf("labels", "not_equals", "billing"), labelled) is False
    assert holds(leaf("labels", "not_contains", "refund"), labelled)


def test_labels_in_means_any_of_and_not_in_none_of() -> None:
    labelled = context(labels=("billing",))
    assert holds(leaf("labels", "in", ["refund", "billing"]), labelled)
    assert holds(leaf("labels", "not_in", ["refund", "billing"]), labelled) is False
    assert holds(leaf("labels", "not_in", ["refund", "vip"]), labelled)


def test_no_label_is_an_empty_list_not_a_missing_value() -> None:
    assert holds(leaf("labels", "not_in", ["vip"]), context()) is True
    assert holds(leaf("labels", "not_contains", "vip"), context()) is True
    assert holds(leaf("labels", "exists"), context()) is False
    assert holds(leaf("labels", "not_exists"), context()) is True


def test_the_plugins_own_status_labels_are_invisible() -> None:
    own_only = context(labels=("sla-missed", "SLA-At-Risk"))
    assert holds(leaf("labels", "exists"), own_only) is False
    assert holds(leaf("labels", "not_exists"), own_only) is True
    assert holds(leaf("labels", "not_in", ["vip"]), own_only) is True
    mixed = context(labels=("sla-on-track", "vip"))
    assert holds(leaf("labels", "in", ["vip"]), mixed)
    assert holds({"not": leaf("labels", "not_in", ["vip"])}, mixed)


# --- numbers, choices, custom attributes -------------------------------------------------------------


def test_number_fields() -> None:
    conversation = context(inbox_id=3, team_id=2, assignee_id=7)
    assert holds(leaf("inbox_id", "equals", 3), conversation)
    assert holds(leaf("inbox_id", "in", [3, 5]), conversation)
    assert holds(leaf("inbox_id", "not_in", [5, 6]), conversation)
    assert holds(leaf("team_id", "not_equals", 3), conversation)
    assert holds(leaf("assignee_id", "gt", 6), conversation)
    assert holds(leaf("assignee_id", "gt", 7), conversation) is False
    assert holds(leaf("assignee_id", "gte", 7), conversation)
    assert holds(leaf("assignee_id", "lt", 7.5), conversation)
    assert holds(leaf("assignee_id", "lte", 6), conversation) is False


def test_status_priority_and_message_type_values_ignore_case() -> None:
    conversation = context(status="pending", priority="urgent", message=INCOMING_MESSAGE)
    assert holds(leaf("status", "equals", "Pending"), conversation)
    assert holds(leaf("status", "in", ["pending", "snoozed"]), conversation)
    assert holds(leaf("priority", "not_in", ["low", "medium"]), conversation)
    assert holds(leaf("message_type", "equals", "INCOMING"), conversation)


def test_message_type_is_tested_on_message_events_only() -> None:
    assert holds(leaf("message_type", "equals", "incoming"), context(message=INCOMING_MESSAGE))
    assert holds(leaf("message_type", "equals", "outgoing"), context(message=OUTGOING_MESSAGE))
    assert holds(leaf("message_type", "equals", "incoming"), context()) is False
    assert holds(leaf("message_type", "not_equals", "incoming"), context()) is False
    assert holds(leaf("message_type", "not_exists"), context()) is True


def test_custom_attributes_of_the_conversation_and_the_contact() -> None:
    on = context(
        custom_attributes={"product": "Orange", "seats": 250, "beta": True, "plan": None},
        contact=Contact(custom_attributes={"tier": "Gold", "since": 2019}),
    )
    assert holds(leaf("custom_attributes.product", "equals", "orange"), on)
    assert holds(leaf("custom_attributes.product", "in", ["Apple", "ORANGE"]), on)
    assert holds(leaf("custom_attributes.seats", "gte", 250), on)
    assert holds(leaf("custom_attributes.seats", "equals", 250), on)
    assert holds(leaf("custom_attributes.beta", "equals", True), on)
    assert holds(leaf("custom_attributes.plan", "exists"), on) is False
    assert holds(leaf("custom_attributes.missing", "equals", "x"), on) is False
    assert holds(leaf("contact.custom_attributes.tier", "equals", "gold"), on)
    assert holds(leaf("contact.custom_attributes.since", "lt", 2020), on)
    assert holds(leaf("custom_attributes.product", "starts_with", "Or"), on)


def test_values_of_another_type_never_compare_equal_or_ordered() -> None:
    on = context(custom_attributes={"flag": True, "count": 1, "code": "5"})
    assert holds(leaf("custom_attributes.flag", "equals", 1), on) is False
    assert holds(leaf("custom_attributes.count", "equals", True), on) is False
    assert holds(leaf("custom_attributes.count", "in", [True]), on) is False
    assert holds(leaf("custom_attributes.code", "equals", 5), on) is False
    assert holds(leaf("custom_attributes.code", "gt", 1), on) is False
    assert holds(leaf("custom_attributes.count", "contains", "1"), on) is False
    assert holds(leaf("custom_attributes.count", "matches", "1"), on) is False


# --- business hours -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "created, expected",
    [
        (datetime(2026, 1, 14, 9, 0, tzinfo=UTC), True),  # Wednesday 10:00 in Berlin
        (datetime(2026, 1, 14, 16, 0, tzinfo=UTC), False),  # Wednesday 17:00, closing time
        (datetime(2026, 1, 14, 7, 59, tzinfo=UTC), False),  # Wednesday 08:59
        (datetime(2026, 1, 17, 10, 0, tzinfo=UTC), False),  # Saturday
        (datetime(2026, 12, 25, 10, 0, tzinfo=UTC), False),  # Christmas Day, a German holiday
        (datetime(2026, 7, 1, 7, 0, tzinfo=UTC), True),  # 09:00 in summer time
    ],
)
def test_within_hours_tests_the_conversations_creation_in_a_calendar(created: datetime, expected: bool) -> None:
    assert holds(leaf("created_at", "within_hours", "office"), context(created_at=created)) is expected


def test_within_hours_depends_on_creation_not_on_the_event_time() -> None:
    late_event = MatchContext(context().conversation, at=datetime(2026, 1, 17, 23, 0, tzinfo=UTC))
    assert holds(leaf("created_at", "within_hours", "office"), late_event)


# --- compilation ------------------------------------------------------------------------------------


def test_identical_leaves_share_a_closure_and_costly_results_are_kept_per_event() -> None:
    calls = []

    class CountingCalendar:
        def is_open(self, instant: datetime) -> bool:
            calls.append(instant)
            return True

    compiler = ConditionCompiler(Environment({"office": CountingCalendar()}, OWN_LABELS))
    conditions = [
        compiler.compile(
            {"all": [leaf("inbox_id", "equals", index), leaf("created_at", "within_hours", "office")]},
            f"/rules/{index}",
        )
        for index in range(5)
    ]
    assert len({condition.children[1].test for condition in conditions}) == 1
    facts = compiler.facts(context(inbox_id=4))
    assert [condition.test(facts) for condition in conditions] == [False, False, False, False, True]
    assert [condition.children[1].test(facts) for condition in conditions] == [True] * 5
    assert len(calls) == 1


def test_an_all_tests_its_cheap_members_first_but_explains_in_written_order() -> None:
    compiler = ConditionCompiler(ENVIRONMENT)
    condition = compiler.compile({"all": [leaf("content", "matches", "x+y"), leaf("inbox_id", "equals", 9)]}, "")
    facts = compiler.facts(context(inbox_id=3, texts=("xy",)))
    assert condition.test(facts) is False
    assert len(facts) == 1  # only inbox_id was read: the regular expression never ran
    result = explain(condition, facts)
    assert [child.text for child in result.children] == ['content matches "x+y"', "inbox_id equals 9"]


def test_first_match_skips_guarded_rules_and_keeps_list_order() -> None:
    compiler = ConditionCompiler(ENVIRONMENT)
    written = [
        leaf("inbox_id", "in", [1, 2]),
        {"all": [leaf("priority", "equals", "high"), leaf("labels", "contains", "vip")]},
        {"any": [leaf("status", "equals", "pending"), leaf("status", "equals", "snoozed")]},
        leaf("labels", "in", ["vip", "billing"]),
        {"all": []},
    ]
    conditions = [compiler.compile(condition, f"/rules/{index}") for index, condition in enumerate(written)]
    first = FirstMatch(conditions)
    cases = [
        (context(inbox_id=2), 0),
        (context(priority="HIGH", labels=("VIP",)), 1),
        (context(status="snoozed", labels=("vip",)), 2),
        (context(labels=("Billing",)), 3),
        (context(), 4),
    ]
    for on, expected in cases:
        assert first.first(compiler.facts(on)) == expected
    assert FirstMatch([]).first(compiler.facts(context())) is None


# --- compiled and interpreted agree everywhere ----------------------------------------------------------

LEAF_POOL = [
    leaf("inbox_id", "in", [1, 3]),
    leaf("inbox_id", "gt", 2),
    leaf("team_id", "not_equals", 1),
    leaf("assignee_id", "exists"),
    leaf("status", "in", ["open", "pending"]),
    leaf("priority", "equals", "high"),
    leaf("priority", "not_exists"),
    leaf("labels", "contains", "vip"),
    leaf("labels", "not_in", ["bug", "vip"]),
    leaf("labels", "exists"),
    leaf("content", "contains_any_word", ["refund", "urgent"]),
    leaf("content", "not_contains", "thanks"),
    leaf("content", "matches", r"(?i)order #\d"),
    leaf("message_type", "equals", "incoming"),
    leaf("email", "contains", "example"),
    leaf("email_domain", "not_equals", "example.com"),
    leaf("channel", "starts_with", "channel::e"),
    leaf("custom_attributes.product", "equals", "Orange"),
    leaf("custom_attributes.seats", "lte", 10),
    leaf("contact.custom_attributes.tier", "not_in", ["gold"]),
    leaf("created_at", "within_hours", "office"),
    leaf("mail_subject", "not_exists"),
]


def conditions(depth: int = 3) -> st.SearchStrategy[dict]:
    leaves = st.sampled_from(LEAF_POOL)
    if depth == 0:
        return leaves
    inner = conditions(depth - 1)
    return st.one_of(
        leaves,
        st.builds(lambda items: {"all": items}, st.lists(inner, max_size=3)),
        st.builds(lambda items: {"any": items}, st.lists(inner, max_size=3)),
        st.builds(lambda item: {"not": item}, inner),
    )


contexts = st.builds(
    lambda inbox, team, status, priority, labels, texts, incoming, email, product, seats, tier, hour, subject: context(
        inbox_id=inbox,
        team_id=team,
        status=status,
        priority=priority,
        labels=labels,
        texts=texts,
        message=(INCOMING_MESSAGE if incoming else OUTGOING_MESSAGE) if incoming is not None else None,
        contact=Contact(email=email, custom_attributes={} if tier is None else {"tier": tier}),
        custom_attributes={key: value for key, value in (("product", product), ("seats", seats)) if value is not None},
        created_at=datetime(2026, 1, 12, hour, tzinfo=UTC),
        mail_subject=subject,
    ),
    st.sampled_from([None, 1, 3, 5]),
    st.sampled_from([None, 1, 2]),
    st.sampled_from(["open", "pending", "snoozed", "resolved"]),
    st.sampled_from([None, "low", "high", "urgent"]),
    st.lists(st.sampled_from(["vip", "VIP", "bug", "sla-missed", "billing"]), max_size=3).map(tuple),
    st.lists(st.sampled_from(["Refund please", "order #5 late", "thanks!", "URGENT", ""]), max_size=3).map(tuple),
    st.sampled_from([None, True, False]),
    st.sampled_from([None, "a@example.com", "b@Acme.io", "broken"]),
    st.sampled_from([None, "orange", "Apple", 5]),
    st.sampled_from([None, 3, 50, "many"]),
    st.sampled_from([None, "gold", "GOLD", True]),
    st.integers(0, 23),
    st.sampled_from([None, "Re: hi"]),
)


@given(condition=conditions(), on=contexts)
def test_compiled_and_interpreted_conditions_agree(condition: dict, on: MatchContext) -> None:
    holds(condition, on)


@given(written=st.lists(conditions(2), min_size=1, max_size=8), on=contexts)
def test_first_match_is_the_sequential_first_match(written: list[dict], on: MatchContext) -> None:
    compiler = ConditionCompiler(ENVIRONMENT)
    compiled = [compiler.compile(condition, f"/rules/{index}") for index, condition in enumerate(written)]
    sequential = next((index for index, condition in enumerate(written) if interpret(condition, on, ENVIRONMENT)), None)
    assert FirstMatch(compiled).first(compiler.facts(on)) == sequential


# --- matches runs in linear time (RE2) ------------------------------------------------------------------

# Accepted before and slow on short texts (12-30 s and more each with a backtracking matcher), or refused
# by the shape blacklist that came before RE2.
BACKTRACKING_PATTERNS = [
    r".*refund.*asap",
    r"\d+\d+\d+x",
    r"a*a*a*a*a*a*b",
    r"(a{1,2}){40}$",
    r"(a?){30}a{30}",
    r"(a+)+$",
    r"(a|aa)+$",
    r"^(\w+\s?)+$",
]
HOSTILE_TEXTS = ("a" * 10_000, "1" * 10_000, "refund " * 1_400, "a" * 30, "a" * 79 + "!", "word " * 2_000 + "!")


@pytest.mark.parametrize("pattern", BACKTRACKING_PATTERNS)
def test_no_regular_expression_stalls_on_hostile_text(pattern: str) -> None:
    """Not a timing assertion: the deadline is far above what a linear-time search of these texts needs
    (milliseconds) and far below what backtracking took; a search still running after it has stalled."""
    outcome: dict[str, list[bool]] = {}

    def search() -> None:
        condition = leaf("content", "matches", pattern)
        outcome["results"] = [holds(condition, context(texts=(text,))) for text in HOSTILE_TEXTS]

    searcher = threading.Thread(target=search, daemon=True)
    searcher.start()
    searcher.join(timeout=20)
    assert "results" in outcome, f"{pattern!r} was still searching hostile text after 20 s"


def test_expressions_that_backtrack_elsewhere_still_find_what_they_describe() -> None:
    assert holds(leaf("content", "matches", r"(a?){30}a{30}"), context(texts=("a" * 30,)))
    assert holds(leaf("content", "matches", r".*refund.*asap"), context(texts=("refund, asap!",)))
    assert holds(leaf("content", "matches", r"(a+)+$"), context(texts=("baaa",)))
    assert holds(leaf("content", "matches", r"(a+)+$"), context(texts=("aaab",))) is False


# Python's Unicode classes, as RE2 runs them after rewriting: the same answers as Python's re.
CLASS_PATTERNS = [r"\d+", r"\w+$", r"\s", r"\D", r"\W", r"\S", r"[\w-]+x", r"[^\d\s]", r"[\d.]", r"^\w+$", r"a\Z"]
CLASS_PATTERNS += [r"\u00e9", r"[]a]", r"[^]a]", r"(?i)straSSe", r"[\s\w]+!", r"a$", r"(?m)a$", r"[$]b", r"\$"]


@given(
    pattern=st.sampled_from(CLASS_PATTERNS),
    text=st.text(st.characters(exclude_categories=("Cn", "Cs", "Co")) | st.sampled_from(" _-.!aé٣\u00a0\u2028")),
)
def test_character_classes_keep_their_unicode_meaning(pattern: str, text: str) -> None:
    assert holds(leaf("content", "matches", pattern), context(texts=(text,))) is (re.search(pattern, text) is not None)


def test_a_lone_surrogate_in_a_text_is_searched_not_failed() -> None:
    assert holds(leaf("content", "matches", "refund"), context(texts=("\ud800 refund",)))


@pytest.mark.parametrize(
    "pattern, reason",
    [
        (r"(?<!not )urgent", "linear-time matcher (RE2) does not have"),
        (r"(a)\1", "linear-time matcher (RE2) does not have"),
        (r"[\W_]", r"\W inside [...]"),
        (r"(unclosed", "does not compile"),
    ],
)
def test_an_expression_the_matcher_cannot_run_is_refused_with_the_reason(pattern: str, reason: str) -> None:
    compiler = ConditionCompiler(ENVIRONMENT)
    assert compiler.compile(leaf("content", "matches", pattern), "/when") is None
    assert any(reason in problem.message for problem in compiler.problems), compiler.problems
