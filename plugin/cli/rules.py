"""``sla-plugin rules ...``: check rule files before they go live, and explain which rule an event matches.

The group is attached to the top-level CLI by :mod:`plugin.cli`; it also runs alone
(``python -m plugin.cli.rules check rules``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from plugin.adapters.rule_files import check_directory, load_rules
from plugin.adapters.settings import rules_dir
from plugin.core.events import MatchContext, format_time
from plugin.core.rules.model import WARNING, RuleProblem, RulesError


def _problem_line(problem: RuleProblem) -> str:
    # FILE:LINE: POINTER: stays first so editors and CI annotations can jump to the place.
    if problem.severity == WARNING:
        return f"{problem.file}:{problem.line}: {problem.pointer}: warning: {problem.message}"
    return str(problem)


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


@click.group("rules")
def rules() -> None:
    """Check and explain the SLA rule files."""


@rules.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def check_command(directory: str | None) -> None:
    """Check every rule file in DIRECTORY (default: $SLA_RULES_DIR, else ./rules, else the shipped rules).

    Prints each problem as FILE:LINE: POINTER: MESSAGE and a summary; exits 1 when there is an error
    (warnings alone exit 0).
    """
    directory = directory or rules_dir()
    rule_set, problems = check_directory(directory)
    for problem in problems:
        click.echo(_problem_line(problem))
    errors = sum(1 for problem in problems if problem.severity != WARNING)
    warnings = len(problems) - errors
    if rule_set is None:
        click.echo(f"{directory}: {_count(errors, 'error')}, {_count(warnings, 'warning')}; the rules would not load")
        raise SystemExit(1)
    click.echo(
        f"{directory}: OK, {_count(len(rule_set.files), 'file')}, {_count(len(rule_set.rules), 'rule')}, "
        f"{_count(len(rule_set.policies), 'policy', 'policies')}, "
        f"{_count(len(rule_set.calendars), 'calendar')}, {_count(warnings, 'warning')}; "
        f"content hash {rule_set.content_hash[:12]}"
    )


@rules.command("explain")
@click.argument("event_file", metavar="EVENT.json", type=click.File("rb"))
@click.option(
    "--rules",
    "directory",
    type=click.Path(file_okay=False),
    help="Folder of the rule files (default: $SLA_RULES_DIR, else ./rules, else the shipped rules).",
)
def explain_command(event_file, directory: str | None) -> None:
    """Show which rule a Chatwoot webhook payload matches, and why each rule above it did not."""
    from connectors import get_connector  # the connector pulls in more than `rules check` needs
    from connectors.base import PayloadError

    directory = directory or rules_dir()
    try:
        payload = json.loads(event_file.read())
        event = get_connector("chatwoot", {}).normalize(payload, received_at=datetime.now(UTC))
    except (ValueError, PayloadError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise click.ClickException(f"{event_file.name}: cannot read the payload: {error}") from None
    if event is None or event.conversation is None:
        raise click.ClickException(
            f"{event_file.name}: not a conversation or message event the plugin evaluates rules on"
        )
    try:
        rule_set = load_rules(directory)
    except RulesError as error:
        for problem in error.problems:
            click.echo(_problem_line(problem), err=True)
        raise click.ClickException(f"{directory}: the rules do not load; run `sla-plugin rules check`") from None

    message = event.message
    texts = (message.content,) if message is not None and message.is_customer_message and message.content else ()
    context = MatchContext(conversation=event.conversation, at=event.occurred_at, message=message, customer_texts=texts)
    click.echo(
        f"event {event.kind} of conversation {event.account_id}/{event.conversation_id} at "
        f"{format_time(event.occurred_at)}; rule files in {directory} ({rule_set.content_hash[:12]})"
    )
    explanations = rule_set.explain(context)
    for explanation in explanations:
        click.echo(str(explanation))
    if not explanations or not explanations[-1].matched:
        click.echo("no rule matched: the conversation gets no SLA policy from this event")


if __name__ == "__main__":
    rules()
