"""``sla-plugin``: the single command line of the plugin (docs/contracts.md section 3).

Entry points a newcomer looks for: ``serve`` (the web app, ``plugin.web:create_app``), ``worker`` (RQ workers
and the deadline sweeper, ``plugin.jobs.drain``), ``dev`` (both, with embedded defaults), ``replay``, ``rules``.
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from plugin.adapters import redis_keys
from plugin.adapters.settings import rules_dir
from plugin.cli.report import rebuild_rollups, report
from plugin.cli.rules import rules
from plugin.core.events import parse_time


@click.group()
@click.version_option(package_name="sla-plugin")
def main() -> None:
    """SLA clocks, labels, miss notes and reports for Chatwoot-style helpdesks."""


main.add_command(rules)
main.add_command(report)
main.add_command(rebuild_rollups)


@main.command()
@click.argument("events_file", type=click.File("r", encoding="utf-8"))
@click.option(
    "--rules",
    "rules_dir",
    default=rules_dir,
    show_default="$SLA_RULES_DIR, else rules, else the shipped rules",
    type=click.Path(file_okay=False, exists=True),
    help="Folder of rule files.",
)
@click.option(
    "--at",
    "at_text",
    default=None,
    metavar="ISO-8601",
    help="Evaluate at this instant (default: the latest event time).",
)
@click.option(
    "--account",
    "account_id",
    default=lambda: os.environ.get("CHATWOOT_ACCOUNT_ID") or None,
    show_default="$CHATWOOT_ACCOUNT_ID",
    type=click.IntRange(min=1),
    help="The account of conversation webhooks that name none (Chatwoot before v4.14.2).",
)
@click.option(
    "--timeline",
    is_flag=True,
    help="Add each clock's timeline (running, paused and why, outside hours, holiday) in the "
    'calendar\'s zone, as a "timeline" key.',
)
def replay(events_file, rules_dir: str, at_text: str | None, account_id: int | None, timeline: bool) -> None:
    """Replay webhook bodies (one JSON object per line) and print each conversation's SLA as JSON lines."""
    import json

    from connectors import get_connector
    from plugin.adapters.rule_files import load_rules
    from plugin.cli.replay import replay as run_replay
    from plugin.core.engine.timeline import timelines_json
    from plugin.core.rules import RulesError

    try:
        at = parse_time(at_text) if at_text else None
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 time: {at_text!r}", param_hint="--at") from None
    try:
        rule_set = load_rules(rules_dir)
    except RulesError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    connector = get_connector("chatwoot", {"CHATWOOT_ACCOUNT_ID": str(account_id or "")})
    result = run_replay(events_file, connector, rule_set.match, rule_set.content_hash, at, rule_set.priority_for)
    for evaluation in result.evaluations:
        output = evaluation.to_replay_json()
        if timeline:
            output["timeline"] = timelines_json(evaluation)
        click.echo(json.dumps(output, ensure_ascii=False))
    for message in result.errors:
        click.echo(message, err=True)
    if result.errors:
        sys.exit(2)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn worker processes.")
@click.option(
    "--insecure-no-webhook-auth",
    is_flag=True,
    help="Start even though neither CHATWOOT_WEBHOOK_SECRET nor SLA_WEBHOOK_TOKEN is set: anyone who can "
    "reach the webhook URL can then feed the plugin events. Never in production.",
)
def serve(host: str, port: int, workers: int, insecure_no_webhook_auth: bool) -> None:
    """Run the web app under gunicorn (production): webhooks, health, metrics, reports.

    Refuses to start when webhooks would be accepted without a signature or token (see
    ``--insecure-no-webhook-auth``).
    """
    if not insecure_no_webhook_auth and not _webhook_auth_configured():
        click.echo(
            "sla-plugin serve: refusing to start: neither CHATWOOT_WEBHOOK_SECRET nor SLA_WEBHOOK_TOKEN is set "
            "(or, with SLA_ACCOUNTS_FILE, an account has neither webhook_secret nor webhook_token), "
            "so anyone who can reach /webhooks/chatwoot could feed the plugin events. Set the signing secret "
            "(`sla-plugin install` saves it) or a URL token, or pass --insecure-no-webhook-auth to accept "
            "unsigned webhooks anyway.",
            err=True,
        )
        sys.exit(2)
    # The access log shows the path without its query string: links to reports may carry ?token=.
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{host}:{port}",
            "--workers",
            str(workers),
            "--access-logfile",
            "-",
            "--access-logformat",
            '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss',
            # The path is written with control characters percent-encoded: a %0A must not forge a line.
            "--logger-class",
            "plugin.web.access_log.AccessLogger",
            # gunicorn's control socket would default to a file under the user's home; nothing uses it.
            "--no-control-socket",
            "plugin.web:create_app()",
        ],
    )


def _webhook_auth_configured() -> bool:
    """Whether every account served has a webhook signing secret or a URL token (the receiver's credentials).
    A settings or accounts file that cannot be used stops the command with its error (``FILE: pointer:
    message`` for the accounts file)."""
    from plugin.adapters.accounts import Accounts
    from plugin.adapters.settings import Settings, SettingsError

    try:
        accounts = Accounts(Settings.from_env())
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    return not accounts.unauthenticated()


UNAUTHENTICATED_WEBHOOKS_WARNING = """
  !!! WARNING: webhooks are accepted WITHOUT authentication !!!
  Neither CHATWOOT_WEBHOOK_SECRET nor SLA_WEBHOOK_TOKEN is set: anyone who can reach
  /webhooks/chatwoot can feed this plugin events. Fine for a local try-out only;
  `sla-plugin install` saves the helpdesk's signing secret to .env.
"""


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty (tests, one-off catch-up).")
@click.option(
    "--sweeper/--no-sweeper",
    default=True,
    show_default=True,
    help="Also take part in the election of the deadline sweeper.",
)
@click.option(
    "--queue",
    "queue_names",
    multiple=True,
    default=redis_keys.QUEUES,
    show_default=True,
    help="Queues to work on, in priority order (repeat the option).",
)
def worker(burst: bool, sweeper: bool, queue_names: tuple[str, ...]) -> None:
    """Run an RQ worker for the events, write-back and notifications queues, and the deadline sweeper.

    Production runs separate pools: ``--queue events`` for event processing, ``--queue writeback --queue
    notifications`` for the calls to the helpdesk and other hosts, so a slow helpdesk never delays an event.
    A lost Redis does not end the process: the worker starts again once Redis answers.
    """
    from plugin.adapters.logging import configure_logging
    from plugin.adapters.settings import SettingsError
    from plugin.jobs.drain import utcnow
    from plugin.jobs.rq_worker import work
    from plugin.jobs.runtime import current_runtime
    from plugin.jobs.sweeper import Sweeper

    try:
        runtime = current_runtime()
        accounts = runtime.accounts  # read now: a malformed accounts file stops the worker at start
    except SettingsError as error:  # FILE: pointer: message
        raise click.ClickException(str(error)) from None
    configure_logging(runtime.settings.SLA_LOG_LEVEL, runtime.settings.secret_values() + accounts.secret_values())
    stop = threading.Event()
    if sweeper:
        threading.Thread(target=Sweeper(runtime, utcnow).run, args=(stop,), daemon=True, name="sla-sweeper").start()
    try:
        # RQ blocks on the queues for minutes at a time: its client has no socket timeout.
        work(queue_names, runtime.blocking_redis(), burst=burst)
    finally:
        stop.set()


@main.command()
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=int,
    help="Worker processes to start in each pool (events; write-back and notifications).",
)
@click.option(
    "--demo/--no-demo",
    default=None,
    help="Start the demo helpdesk, install into it and play its scripted morning "
    "[default: when CHATWOOT_URL is not set].",
)
def dev(port: int, workers: int, demo: bool | None) -> None:
    """Run web, worker and sweeper in one process group with the embedded defaults (SQLite, embedded Redis)."""
    from plugin.adapters.services import embedded_redis, port_is_free
    from plugin.adapters.settings import Settings, load_dotenv_for_dev

    # Before anything is registered with the helpdesk: a webhook pointing at someone else's server would
    # outlive this failed start.
    if not port_is_free(port):
        raise click.ClickException(f"port {port} on 127.0.0.1 is in use: stop what listens there or pass --port")
    load_dotenv_for_dev()
    if demo is None:
        demo = not os.environ.get("CHATWOOT_URL")
    session = None
    if demo:
        from plugin.demo.run import DemoSession  # the product never imports the demo; only dev starts it

        session = DemoSession(port)
        os.environ.update(session.prepare(os.environ, Settings.from_env().instance_path))
    settings = Settings.from_env()
    Path(settings.instance_path).mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ)
    if not settings.REDIS_URL:
        # Started here and kept for the children, which all share it.
        environment["REDIS_URL"] = embedded_redis(settings.instance_path).url
    command = [sys.executable, "-m", "plugin.cli"]
    # In the demo, the access log (a line per webhook) goes to a file: the terminal tells the demo's story.
    access_log = open(Path(settings.instance_path) / "access.log", "ab") if session else None
    serve_command = [*command, "serve", "--port", str(port), "--workers", "1"]
    if not (settings.CHATWOOT_WEBHOOK_SECRET or settings.SLA_WEBHOOK_TOKEN):
        click.secho(UNAUTHENTICATED_WEBHOOKS_WARNING, fg="red", bold=True, err=True)
        serve_command.append("--insecure-no-webhook-auth")
    web = subprocess.Popen(serve_command, env=environment, stdout=access_log)
    # Two pools, as in production: a slow helpdesk must not delay the events behind its write-back.
    pools = [[*command, "worker", *WORKER_POOLS[pool]] for pool in WORKER_POOLS for _ in range(workers)]
    click.echo(
        f"sla-plugin dev: web on http://127.0.0.1:{port}, {workers} worker(s) per pool ({', '.join(WORKER_POOLS)}), "
        f"database {settings.DATABASE_URL.split('://')[0]}, redis {environment.get('REDIS_URL')}"
    )
    if session:
        session.play_in_background()
    try:
        _supervise(web, pools, environment)
    finally:
        if session:
            session.stop()


# `sla-plugin worker` options of each worker pool (deploy/Procfile, compose.yaml and the systemd units run the
# same two pools).
WORKER_POOLS = {
    "events": ("--queue", "events"),
    "writeback": ("--queue", "writeback", "--queue", "notifications"),
}
WORKER_RESTART_DELAY_SECONDS = 2.0


def _supervise(web: subprocess.Popen, worker_commands: list[list[str]], environment: dict[str, str]) -> None:
    """Run the workers beside the web process until it exits or we are interrupted, then stop them all.

    A worker that exits is started again (after a short pause, so one that cannot start does not spin).
    """
    workers = [subprocess.Popen(command, env=environment) for command in worker_commands]
    exited_at: dict[int, float] = {}
    stopping = threading.Event()

    def children() -> list[subprocess.Popen]:
        return [web, *workers]

    def stop_all(*_):
        stopping.set()  # no worker is started again from now on
        for child in children():
            if child.poll() is None:
                child.terminate()

    previous_handler = signal.signal(signal.SIGTERM, stop_all)
    try:
        while web.poll() is None and not stopping.is_set():
            for number, child in enumerate(workers):
                if child.poll() is None:
                    continue
                exited_at.setdefault(number, time.monotonic())
                if time.monotonic() - exited_at[number] >= WORKER_RESTART_DELAY_SECONDS:
                    click.echo(f"sla-plugin dev: a worker exited ({child.returncode}); starting it again", err=True)
                    workers[number] = subprocess.Popen(worker_commands[number], env=environment)
                    del exited_at[number]
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop_all()
        for child in children():
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        signal.signal(signal.SIGTERM, previous_handler)


def _helpdesk_options(command, from_accounts_file: bool = False):
    """The helpdesk's options; with ``from_accounts_file``, ``--url`` and ``--token`` may be left out when
    SLA_ACCOUNTS_FILE holds them for the account (the command checks)."""
    required = not from_accounts_file
    also = " or the account's in SLA_ACCOUNTS_FILE" if from_accounts_file else ""
    for option in reversed(
        [
            click.option(
                "--url", envvar="CHATWOOT_URL", required=required, help=f"Helpdesk base URL ($CHATWOOT_URL{also})."
            ),
            click.option(
                "--account",
                envvar="CHATWOOT_ACCOUNT_ID",
                required=True,
                type=int,
                help="Account id ($CHATWOOT_ACCOUNT_ID).",
            ),
            click.option(
                "--token",
                envvar="CHATWOOT_API_TOKEN",
                required=required,
                help=f"Administrator access token ($CHATWOOT_API_TOKEN{also}).",
            ),
            click.option("--public-url", required=True, help="Where the helpdesk reaches this plugin."),
        ]
    ):
        command = option(command)
    return command


def _known_inboxes(account: int) -> dict[str, str]:
    """The inboxes the plugin has met in webhooks (id -> name), when ``DATABASE_URL`` names its database;
    empty otherwise or when it cannot be read (install must not depend on it)."""
    if not os.environ.get("DATABASE_URL"):
        return {}
    from plugin.adapters.directory import Directory
    from plugin.adapters.store import Store

    try:
        return Directory(Store.from_url(os.environ["DATABASE_URL"]).engine).names([account])["inbox"]
    except Exception:  # noqa: BLE001 - naming hidden inboxes is a courtesy; install goes on without it
        return {}


def _label_specs(rules_dir: str):
    from plugin.adapters.rule_files import load_rules
    from plugin.core.rules import RulesError

    try:
        return {
            key: {"title": spec.title, "color": spec.color, "description": spec.description}
            for key, spec in load_rules(rules_dir).labels.items()
        }
    except RulesError:
        return None  # the manifest's defaults


def _custom_attributes_enabled(rules_dir: str) -> bool:
    from plugin.adapters.rule_files import load_rules
    from plugin.core.rules import RulesError

    try:
        return load_rules(rules_dir).custom_attributes
    except RulesError:
        return False


@main.command()
@_helpdesk_options
@click.option("--dashboard-app/--no-dashboard-app", default=False, help="Also register the sidebar app.")
@click.option(
    "--secret-file",
    default=".env",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Env file the webhook's signing secret is saved to (never printed).",
)
@click.option(
    "--allow-agent-token",
    is_flag=True,
    help="Go on with an agent's token (it sees only its own inboxes and may not register webhooks or labels).",
)
def install(
    url: str,
    account: int,
    token: str,
    public_url: str,
    dashboard_app: bool,
    secret_file: str,
    allow_agent_token: bool,
) -> None:
    """Check the token's user, create the labels, register the webhook (and the Dashboard App) from
    manifest.json. Idempotent."""
    from connectors.chatwoot.client import ChatwootClient
    from plugin.adapters.manifest import load_manifest
    from plugin.cli.install import InstallRefused, account_webhook_path, save_secret
    from plugin.cli.install import install as run_install

    accounts_file = os.environ.get("SLA_ACCOUNTS_FILE", "").strip()
    manifest = load_manifest()
    webhook_token: str | None
    webhook_path: str | None
    if accounts_file:
        # One account of the accounts file: its own webhook URL, URL token and sidebar token.
        document, entry = _account_entry(accounts_file, account)
        webhook_token = entry.get("webhook_token") or secrets.token_urlsafe(24)
        sidebar_token = entry.get("sidebar_token") or (secrets.token_urlsafe(24) if dashboard_app else None)
        labels_dir = _account_rules_dir(accounts_file, entry)
        webhook_path = account_webhook_path(manifest, account)
    else:
        webhook_token = os.environ.get("SLA_WEBHOOK_TOKEN")
        sidebar_token = os.environ.get("SLA_SIDEBAR_TOKEN")
        labels_dir, webhook_path = rules_dir(), None
    try:
        report = run_install(
            ChatwootClient(url, account, token),
            manifest,
            public_url,
            labels=_label_specs(labels_dir),
            webhook_token=webhook_token,
            sidebar_token=sidebar_token,
            dashboard_app=dashboard_app,
            allow_agent_token=allow_agent_token,
            custom_attributes=_custom_attributes_enabled(labels_dir),
            known_inboxes=_known_inboxes(account),
            webhook_path=webhook_path,
        )
    except InstallRefused as refusal:
        click.echo(f"install refused: {refusal}", err=True)
        sys.exit(1)
    for line in report.lines:
        click.echo(line)
    if accounts_file:
        from plugin.adapters.accounts import set_account, write_accounts_file

        values = {
            "chatwoot_url": url,
            "api_token": token,
            "webhook_secret": report.webhook_secret,
            "webhook_token": report.webhook_token or webhook_token,
            "sidebar_token": sidebar_token,
        }
        set_account(document, account, values, os.environ)
        write_accounts_file(accounts_file, document)
        click.echo(
            f"account {account} saved to {accounts_file} (its secrets are in the file, not shown); running "
            "processes serve it within a second, without a restart"
        )
    elif report.webhook_secret:
        save_secret(report.webhook_secret, Path(secret_file))
        click.echo(f"webhook signing secret saved to {secret_file} as CHATWOOT_WEBHOOK_SECRET")


def _account_entry(accounts_file: str, account: int) -> tuple[dict, dict[str, str]]:
    """The accounts file to edit and one account's current values (a broken file stops the command)."""
    from plugin.adapters.accounts import read_for_edit, resolved_entry
    from plugin.adapters.settings import SettingsError

    try:
        document = read_for_edit(accounts_file)
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    return document, resolved_entry(document, account, os.environ)


def _account_rules_dir(accounts_file: str, entry: dict[str, str]) -> str:
    """The account's rules folder (relative to the accounts file's folder), else ``SLA_RULES_DIR``."""
    return str(Path(accounts_file).parent / entry["rules_dir"]) if "rules_dir" in entry else rules_dir()


@main.command()
@click.option(
    "--public-url",
    default=None,
    help="Where the helpdesk reaches this plugin (default: any webhook whose path is the plugin's).",
)
@click.option("--timeout", default=10.0, show_default=True, type=float, help="Seconds to wait for each answer.")
def doctor(public_url: str | None, timeout: float) -> None:
    """Check this deployment against the configured helpdesk and say what is wrong, in plain words.

    Exits 1 when any check finds a problem (warnings alone exit 0).
    """
    from plugin.adapters.directory import Directory
    from plugin.adapters.manifest import load_manifest
    from plugin.adapters.settings import Settings, SettingsError
    from plugin.cli.doctor import PROBLEM, accounts_to_check, diagnose
    from plugin.jobs.runtime import Runtime

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        click.echo(f"[PROBLEM] settings: {error}")
        sys.exit(1)
    runtime = Runtime(settings)
    manifest = load_manifest()
    checked, findings = accounts_to_check(lambda: runtime.accounts, manifest, settings.as_mapping(), timeout)
    findings += diagnose(
        checked,
        manifest,
        public_url,
        redis_ping=lambda: runtime.redis.ping(),
        database_ping=lambda: runtime.store.ping(),
        sweeper_alive=lambda: bool(runtime.redis.exists(redis_keys.SWEEPER_LEADER)),
        known_inboxes=lambda account: Directory(runtime.store.engine).names([account.id or 0])["inbox"],
    )
    for finding in findings:
        click.echo(finding.line())
    problems = sum(finding.level == PROBLEM for finding in findings)
    click.echo(f"{problems} problem(s)" if problems else "everything checked is in order")
    sys.exit(1 if problems else 0)


@main.command()
@functools.partial(_helpdesk_options, from_accounts_file=True)
def uninstall(url: str | None, account: int, token: str | None, public_url: str) -> None:
    """Remove what install created (webhook, Dashboard App, status labels). Idempotent. With
    SLA_ACCOUNTS_FILE, also removes the account from the file (running processes stop serving it)."""
    from connectors.chatwoot.client import ChatwootClient
    from plugin.adapters.manifest import load_manifest
    from plugin.cli.install import account_webhook_path
    from plugin.cli.install import uninstall as run_uninstall

    accounts_file = os.environ.get("SLA_ACCOUNTS_FILE", "").strip()
    manifest = load_manifest()
    labels_dir, webhook_path = rules_dir(), None
    if accounts_file:
        document, entry = _account_entry(accounts_file, account)
        labels_dir, webhook_path = _account_rules_dir(accounts_file, entry), account_webhook_path(manifest, account)
        url, token = url or entry.get("chatwoot_url"), token or entry.get("api_token")
    if not url or not token:
        raise click.UsageError("Missing option '--url' or '--token' (and no account of SLA_ACCOUNTS_FILE holds them)")
    report = run_uninstall(
        ChatwootClient(url, account, token),
        manifest,
        public_url,
        labels=_label_specs(labels_dir),
        webhook_path=webhook_path,
    )
    for line in report.lines:
        click.echo(line)
    if accounts_file and document["accounts"].pop(str(account), None) is not None:
        from plugin.adapters.accounts import write_accounts_file

        write_accounts_file(accounts_file, document)
        click.echo(f"account {account} removed from {accounts_file}")


if __name__ == "__main__":
    main()
