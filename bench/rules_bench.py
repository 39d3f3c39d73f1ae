"""Rule evaluation throughput: compiled closures against interpreting the same JSON, same run, same events.

Writes 200 rules of mixed conditions (equality, lists, labels, words, regular expressions, custom
attributes, number comparisons, business hours, nesting) into a temporary rules directory, loads it the
way the plugin does, and pushes the same seeded contexts through ``RuleSet.match`` and through
:func:`plugin.core.rules.fields.interpret` (first match wins in both). The results must agree; the rates
and their ratio are printed. Target: at least 20,000 events per second compiled, on one core.

    python bench/rules_bench.py [--rules 200] [--events 5000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plugin.adapters.rule_files import load_rules
from plugin.core.events import CONTACT, HUMAN, INCOMING, OUTGOING, Contact, Conversation, MatchContext, Message  # noqa: E402
from plugin.core.rules import RuleSet  # noqa: E402
from plugin.core.rules.conditions import interpret  # noqa: E402
from plugin.core.rules.fields import Environment, fold  # noqa: E402

PRODUCTS = ["Orange", "Apple", "Pear", "Plum", "Kiwi", "Mango"]
CHANNELS = ["Channel::Email", "Channel::WebWidget", "Channel::Whatsapp", "Channel::Api", "Channel::Telegram"]
PRIORITIES = ["low", "medium", "high", "urgent"]
STATUSES = ["open", "pending", "snoozed", "resolved"]
LABELS = ["billing", "vip", "refund", "bug", "feature", "churn-risk", "enterprise", "trial"]
WORDS = ["urgent", "refund", "broken", "invoice", "cancel", "password", "down", "slow", "angry", "lawyer"]
DOMAINS = ["example.com", "acme.io", "bigcorp.de", "mail.ru", "gmail.com"]
TIERS = ["gold", "silver", "bronze"]
SENTENCES = [
    "Hi, my order #{n} has not arrived yet.",
    "The app is {w} again, please help!",
    "Can I get a {w} for invoice {n}?",
    "Thanks, that worked.",
    "Why is everything so {w}?",
]


def _condition(kind: int, pick: random.Random) -> dict:
    """One rule condition of a mixed shape (the mix a large helpdesk's rule files might have)."""
    if kind == 0:
        return {
            "all": [
                {"field": "inbox_id", "op": "in", "value": pick.sample(range(1, 40), 2)},
                {"field": "priority", "op": "equals", "value": pick.choice(PRIORITIES)},
            ]
        }
    if kind == 1:
        return {
            "all": [
                {"field": "custom_attributes.product", "op": "equals", "value": pick.choice(PRODUCTS)},
                {"field": "channel", "op": "equals", "value": pick.choice(CHANNELS)},
                {"field": "priority", "op": "in", "value": pick.sample(PRIORITIES, 2)},
            ]
        }
    if kind == 2:
        return {"field": "labels", "op": "contains", "value": pick.choice(LABELS) + str(pick.randrange(3))}
    if kind == 3:
        return {
            "all": [
                {"field": "content", "op": "contains_any_word", "value": pick.sample(WORDS, 2)},
                {"field": "team_id", "op": "equals", "value": pick.randrange(1, 12)},
            ]
        }
    if kind == 4:
        return {
            "all": [
                {
                    "any": [
                        {"field": "email_domain", "op": "equals", "value": pick.choice(DOMAINS)},
                        {"field": "contact.custom_attributes.tier", "op": "in", "value": pick.sample(TIERS, 1)},
                    ]
                },
                {"field": "inbox_id", "op": "equals", "value": pick.randrange(1, 40)},
            ]
        }
    if kind == 5:
        return {
            "all": [
                {"not": {"field": "status", "op": "equals", "value": "resolved"}},
                {"field": "assignee_id", "op": "gt", "value": pick.randrange(50, 100)},
                {"field": "custom_attributes.seats", "op": "gte", "value": pick.randrange(100, 500)},
            ]
        }
    if kind == 6:
        return {
            "all": [
                {"field": "content", "op": "matches", "value": rf"(?i)\border #?{pick.randrange(10)}\d{{3}}\b"},
                {"field": "channel", "op": "equals", "value": pick.choice(CHANNELS)},
            ]
        }
    if kind == 7:
        return {
            "all": [
                {"field": "created_at", "op": "within_hours", "value": "office"},
                {"field": "custom_attributes.product", "op": "equals", "value": pick.choice(PRODUCTS)},
                {"field": "inbox_id", "op": "equals", "value": pick.randrange(1, 40)},
            ]
        }
    if kind == 8:
        return {
            "all": [
                {"field": "mail_subject", "op": "starts_with", "value": "re: " + pick.choice(WORDS)},
                {"field": "email", "op": "not_contains", "value": "noreply"},
            ]
        }
    return {
        "all": [
            {"field": "message_type", "op": "equals", "value": "incoming"},
            {"field": "labels", "op": "not_in", "value": pick.sample(LABELS, 3)},
            {"field": "content", "op": "contains", "value": pick.choice(WORDS) + " " + pick.choice(WORDS)},
        ]
    }


def write_rules(directory: Path, count: int, pick: random.Random) -> list[dict]:
    """*count* rules (the last a catch-all) in one rule file; returns their JSON."""
    rules = [
        {"name": f"rule {index}", "when": _condition(index % 10, pick), "apply": "standard"}
        for index in range(count - 1)
    ]
    rules.append({"name": "everything else", "when": {"all": []}, "apply": "standard"})
    document = {
        "calendars": {
            "office": {
                "timezone": "Europe/Berlin",
                "hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
                "holidays": {"country": "DE"},
            }
        },
        "policies": {"standard": {"first_response": "2h", "resolution": "24h"}},
        "rules": rules,
    }
    (directory / "50-bench.json").write_text(json.dumps(document, indent=1))
    return rules


def make_contexts(count: int, pick: random.Random) -> list[MatchContext]:
    """Seeded contexts drawn from the same value pools as the rules, so matches land all over the list."""
    start = datetime(2026, 1, 5, tzinfo=UTC)
    contexts = []
    for number in range(count):
        created = start + timedelta(minutes=pick.randrange(60 * 24 * 60))
        texts = tuple(
            pick.choice(SENTENCES).format(n=pick.randrange(10000), w=pick.choice(WORDS))
            for _ in range(pick.randrange(0, 4))
        )
        conversation = Conversation(
            account_id=1,
            conversation_id=number,
            created_at=created,
            status=pick.choice(STATUSES),
            inbox_id=pick.randrange(1, 40),
            channel=pick.choice(CHANNELS),
            priority=pick.choice(PRIORITIES + [None]),
            team_id=pick.choice([None, *range(1, 12)]),
            assignee_id=pick.choice([None, *range(1, 120)]),
            labels=tuple(pick.sample(LABELS, pick.randrange(0, 3))) + ("sla-on-track",),
            custom_attributes={"product": pick.choice(PRODUCTS), "seats": pick.randrange(1, 600)},
            mail_subject=pick.choice([None, "Re: " + pick.choice(WORDS) + " issue"]),
            contact=Contact(
                email=f"user{number}@{pick.choice(DOMAINS)}", custom_attributes={"tier": pick.choice(TIERS)}
            ),
        )
        message = None
        if pick.random() < 0.6:
            incoming = pick.random() < 0.7
            message = Message(
                id=number,
                created_at=created,
                direction=INCOMING if incoming else OUTGOING,
                sender_kind=CONTACT if incoming else HUMAN,
                content=texts[-1] if texts else None,
            )
        contexts.append(MatchContext(conversation, at=created, message=message, customer_texts=texts))
    return contexts


def interpreted_match(rules: list[dict], context: MatchContext, environment: Environment) -> int | None:
    """First matching rule's index, evaluating the parsed JSON directly."""
    for index, rule in enumerate(rules):
        if interpret(rule["when"], context, environment):
            return index
    return None


def rate(run, events: int) -> tuple[float, list]:
    """Events per second of CPU time (one core, whatever else the machine runs), best of three runs, and
    the last run's results."""
    best = float("inf")
    results: list = []
    for _ in range(3):
        began = time.process_time()
        results = run()
        best = min(best, time.process_time() - began)
    return events / best, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    arguments = parser.parse_args()
    pick = random.Random(arguments.seed)
    with tempfile.TemporaryDirectory() as directory:
        rules = write_rules(Path(directory), arguments.rules, pick)
        began = time.perf_counter()
        rule_set: RuleSet = load_rules(directory)
        load_seconds = time.perf_counter() - began
    contexts = make_contexts(arguments.events, pick)
    environment = Environment(rule_set.calendars, frozenset(map(fold, rule_set.owned_label_titles)))

    compiled_rate, compiled = rate(lambda: [rule_set.match(context).index for context in contexts], len(contexts))
    interpreted_rate, interpreted = rate(
        lambda: [interpreted_match(rules, context, environment) for context in contexts], len(contexts)
    )
    if compiled != interpreted:
        raise SystemExit("compiled and interpreted evaluation disagree")

    catch_all = sum(1 for index in compiled if index == len(rules) - 1)
    mean_position = sum(compiled) / len(compiled) + 1
    print(
        f"{len(rules)} rules (loaded in {load_seconds * 1000:.0f} ms), {len(contexts)} events; "
        f"mean matching rule #{mean_position:.0f}, {catch_all} events fell through to the catch-all"
    )
    print(f"compiled:    {compiled_rate:12,.0f} events/s of CPU time")
    print(f"interpreted: {interpreted_rate:12,.0f} events/s of CPU time")
    print(f"ratio:       {compiled_rate / interpreted_rate:12.1f}x (target: at least 20,000 events/s compiled)")


if __name__ == "__main__":
    main()
