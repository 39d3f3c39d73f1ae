"""Bad input: the webhook endpoint fuzzed with hypothesis (Flask's test client, the real private Redis), then
a real RQ worker over everything that was accepted; rule files that are malformed, break the schema or hold
catastrophic regular expressions.

Properties: every webhook request gets a 2xx or 4xx answer, never a 5xx; the worker never fails a job on what
was accepted, acknowledges every entry, and keeps what it cannot read in the dead-letter stream; every bad
rule file is a clear error of ``sla-plugin rules check`` (file, line, what was expected), never a crash.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry

from plugin.adapters import redis_keys
from plugin.adapters.rule_files import check_rules, load_rules
from plugin.cli.main import main as cli
from plugin.core.events import Conversation, MatchContext
from plugin.demo.helpdesk import chatwoot_headers
from plugin.jobs.drain import backlog

FIXTURES = Path(__file__).parents[1] / "fixtures" / "chatwoot"
FIXTURE_NAMES = sorted(path.stem for path in FIXTURES.glob("*.json"))
SECRET = "whsec-fuzz-5f4e3d2c1b"
FUZZ = settings(
    max_examples=120,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    deadline=None,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def paths_of(value, prefix=()) -> list[tuple]:
    """Every path (tuple of keys and indexes) inside a JSON value."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_of(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_of(item, prefix + (index,))
    return found


def mutate(payload: dict, path: tuple, replacement, delete: bool) -> dict:
    if not path:
        return payload
    holder = payload
    for step in path[:-1]:
        holder = holder[step]
    if delete and isinstance(holder, dict):
        del holder[path[-1]]
    else:
        holder[path[-1]] = replacement
    return payload


def post(client, body: bytes, headers: dict | None = None):
    return client.post("/webhooks/chatwoot", data=body, headers={"Content-Type": "application/json", **(headers or {})})


def assert_not_5xx(response) -> None:
    assert 200 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])


def run_worker_over_accepted(redis) -> dict:
    """A real RQ worker over everything accepted: no failed job, nothing left unacknowledged."""
    SimpleWorker([Queue(redis_keys.EVENTS_QUEUE, connection=redis)], connection=redis).work(
        burst=True, logging_level="ERROR"
    )
    failed = FailedJobRegistry(redis_keys.EVENTS_QUEUE, connection=redis)
    assert failed.count == 0, [failed.get_job_ids()]
    assert backlog(redis) == 0, "entries left unacknowledged in the stream"
    outcome = {
        "dead_letters": redis.xlen(redis_keys.DEAD_LETTERS) if redis.exists(redis_keys.DEAD_LETTERS) else 0,
        "stream": redis.xlen(redis_keys.EVENT_STREAM) if redis.exists(redis_keys.EVENT_STREAM) else 0,
    }
    print(f"worker over fuzzed input: {outcome}")
    return outcome


@pytest.fixture(autouse=True)
def worker_environment(tmp_path, redis_server, runtime_environment):
    """The in-process worker's runtime reads the environment: the same Redis and database as the app."""
    runtime_environment(
        DATABASE_URL=f"sqlite:///{tmp_path / 'sla.sqlite3'}",
        REDIS_URL=redis_server.url,
        SLA_RULES_DIR=str(Path(__file__).parents[2] / "rules"),
        CHATWOOT_URL=None,
        CHATWOOT_ACCOUNT_ID=None,
        CHATWOOT_WEBHOOK_SECRET=None,
    )


@pytest.fixture
def worker_database(database_url, worker_environment, runtime_environment):
    """The worker over what the app accepted writes to each database: PostgreSQL refuses values (too long for
    a column, a NUL) that SQLite keeps."""
    runtime_environment(DATABASE_URL=database_url)


@pytest.fixture
def client(make_app, worker_database):
    return make_app(CHATWOOT_ACCOUNT_ID=1).test_client()


@pytest.fixture
def open_client(make_app, worker_database):
    """No account filter: every readable body reaches the worker."""
    return make_app().test_client()


def test_random_json_bodies_never_get_a_5xx_and_never_crash_the_worker(open_client, redis):
    answers = []

    @FUZZ
    @given(value=json_values)
    def check(value):
        response = post(open_client, json.dumps(value).encode())
        assert_not_5xx(response)
        answers.append(response.status_code)
        if not isinstance(value, dict):
            assert response.status_code == 400

    check()
    assert 202 in answers and 400 in answers
    run_worker_over_accepted(redis)


def test_random_bytes_never_get_a_5xx(client, redis):
    @FUZZ
    @given(body=st.binary(max_size=300))
    def check(body):
        assert_not_5xx(post(client, body))

    check()
    run_worker_over_accepted(redis)


def test_real_payloads_with_fields_replaced_or_removed_never_crash_anything(open_client, redis):
    @FUZZ
    @given(data=st.data())
    def check(data):
        name = data.draw(st.sampled_from(FIXTURE_NAMES))
        payload = fixture(name)
        for _ in range(data.draw(st.integers(1, 3))):
            paths = [path for path in paths_of(payload) if path]
            path = data.draw(st.sampled_from(paths))
            payload = mutate(payload, path, data.draw(json_values), data.draw(st.booleans()))
        response = post(open_client, json.dumps(payload).encode())
        assert_not_5xx(response)

    check()
    outcome = run_worker_over_accepted(redis)
    assert outcome["dead_letters"] > 0  # some mutations made a payload unusable: kept aside, not dropped


@pytest.mark.parametrize(
    "case",
    [
        "huge string",
        "body over the limit",
        "10,000 nested lists",
        "deep nesting inside a payload",
        "nesting just under the limit",
        "unicode everywhere",
        "lone surrogate",
        "invalid UTF-8",
        "NaN and Infinity",
        "huge numbers",
        "missing every field",
        "empty body",
        "byte order mark",
        "null id",
        "negative id",
        "values longer than their columns",
        "NUL and lone surrogates in labels, channel and priority",
    ],
)
def test_hostile_bodies_get_a_clear_answer_and_the_worker_survives(open_client, redis, case):
    created = fixture("conversation_created")
    message = fixture("message_created-incoming")
    if case == "huge string":
        body, expected = json.dumps(dict(message, content="x" * 900_000)).encode(), 202
    elif case == "body over the limit":
        body, expected = json.dumps(dict(message, content="x" * 1_100_000)).encode(), 413
    elif case == "10,000 nested lists":
        body, expected = b"[" * 10_000 + b"]" * 10_000, 400
    elif case == "deep nesting inside a payload":
        body, expected = (
            json.dumps(dict(created, custom_attributes={"x": json.loads("[" * 900 + "]" * 900)})).encode(),
            400,
        )
    elif case == "nesting just under the limit":
        body, expected = (
            json.dumps(dict(created, custom_attributes={"x": json.loads("[" * 60 + "]" * 60)})).encode(),
            202,
        )
    elif case == "unicode everywhere":
        text = "Ünïcødé 🚀 مرحبا 你好 \u200b\u202e zalgo ̸̡̛"
        body, expected = (
            json.dumps(
                dict(message, content=text, sender=dict(message["sender"], name=text)), ensure_ascii=False
            ).encode(),
            202,
        )
    elif case == "lone surrogate":
        body, expected = json.dumps(dict(message, content="\ud800 broken")).encode(), 202
    elif case == "invalid UTF-8":
        body, expected = b'{"event": "message_created", "content": "\xff\xfe"}', 400
    elif case == "NaN and Infinity":
        body, expected = json.dumps(dict(created, id=float("nan"), created_at=float("inf"))).encode(), 202
    elif case == "huge numbers":
        body = json.dumps(dict(created, id=10**40, created_at=10**30, inbox_id=-(10**50))).encode()
        expected = 202
    elif case == "missing every field":
        body, expected = b'{"event": "message_created"}', 202
    elif case == "empty body":
        body, expected = b"", 400
    elif case == "byte order mark":
        body, expected = b"\xef\xbb\xbf" + json.dumps(created).encode(), 202  # json reads UTF-8 with a BOM
    elif case == "null id":
        body, expected = json.dumps(dict(created, id=None)).encode(), 202
    elif case == "values longer than their columns":
        body = json.dumps(dict(created, priority="p" * 300, channel="c" * 300, labels=["l" * 5000])).encode()
        expected = 202
    elif case == "NUL and lone surrogates in labels, channel and priority":
        body = json.dumps(dict(created, priority="hi\x00gh", channel="\ud800", labels=["a\x00b", "\udfff"])).encode()
        expected = 202
    else:
        body, expected = json.dumps(dict(created, id=-5)).encode(), 202
    response = post(open_client, body)
    assert response.status_code == expected, response.get_data(as_text=True)
    outcome = run_worker_over_accepted(redis)
    if case in ("values longer than their columns", "NUL and lone surrogates in labels, channel and priority"):
        assert outcome["dead_letters"] == 0  # stored, made storable, not set aside


def signed(body: bytes, timestamp: int, secret: str = SECRET) -> dict:
    return chatwoot_headers(body, secret, sent_at=timestamp)


latin1_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=80)


def test_signatures_stale_replayed_or_garbage_are_401_never_5xx(make_app, redis):
    client = make_app(CHATWOOT_WEBHOOK_SECRET=SECRET, CHATWOOT_ACCOUNT_ID=1).test_client()
    body = (FIXTURES / "message_created-incoming.json").read_bytes()

    @FUZZ
    @given(offset=st.integers(min_value=-(10**7), max_value=10**7), delivery=latin1_text)
    def skewed(offset, delivery):
        headers = {**signed(body, int(time.time()) + offset), "X-Chatwoot-Delivery": delivery}
        response = post(client, body, headers)
        assert_not_5xx(response)
        if abs(offset) > 301:  # the receiver's window is 300 s; a second of slack for the clock ticking
            assert response.status_code == 401
        elif abs(offset) < 299:
            assert response.status_code == 202

    @FUZZ
    @given(signature=latin1_text, timestamp=latin1_text)
    def garbage(signature, timestamp):
        response = post(client, body, {"X-Chatwoot-Signature": signature, "X-Chatwoot-Timestamp": timestamp})
        assert response.status_code == 401

    skewed()
    garbage()
    # A timestamp of thousands of digits, a signature of another body, of another secret.
    now = int(time.time())
    for headers in (
        {"X-Chatwoot-Signature": "sha256=00", "X-Chatwoot-Timestamp": "9" * 5000},
        {**signed(body + b" ", now)},
        {**signed(body, now, secret="another-secret")},
        {**signed(body, now - 360)},
    ):
        assert post(client, body, headers).status_code == 401
    run_worker_over_accepted(redis)


# -- rule files ---------------------------------------------------------------------------------------------

# Expressions that backtrack catastrophically in a backtracking matcher; RE2 runs them in linear time.
CATASTROPHIC = [
    ".*refund.*asap",
    "\\d+\\d+\\d+x",
    "a*a*a*a*a*a*b",
    "(a{1,2}){40}$",
    "(a?){30}a{30}",
    "(a+)+$",
    "(.*)*x",
    "^(\\w+\\s?)+$",
    "(a*)*b",
    "([a-z]+)*@",
    "(?:x+y*)+z",
    "(a|b+)*c",
    "((ab)*)+$",
    "(\\d+\\.?)+$",
    "(a|a)*$",
    "(a|aa)+$",
    "(a+){10}$",
    "(x|xy)*z",
]


def rules_file(directory: Path, content: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "10-rules.json").write_text(content, encoding="utf-8")
    return directory


def rules_check(directory: Path):
    return CliRunner().invoke(cli, ["rules", "check", str(directory)])


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_regular_expressions_load_and_match_hostile_text_quickly(tmp_path, pattern):
    directory = rules_file(
        tmp_path / "rules",
        json.dumps(
            {
                "policies": {"p": {"first_response": "1h"}},
                "rules": [{"name": "r", "apply": "p", "when": {"field": "content", "op": "matches", "value": pattern}}],
            },
            indent=2,
        ),
    )
    result = rules_check(directory)
    assert result.exit_code == 0, result.output
    match = load_rules(directory).match
    conversation = Conversation(account_id=1, conversation_id=1, created_at=datetime(2026, 1, 1, tzinfo=UTC))
    hostile = tuple(text * 10_000 for text in ("a", "1", "x")) + ("refund " * 1_400, "a" * 79 + "!")
    outcome = []
    # A deadline far above a linear-time search (milliseconds) and far below what backtracking took.
    searcher = threading.Thread(
        target=lambda: outcome.append(match(MatchContext(conversation, conversation.created_at, None, hostile))),
        daemon=True,
    )
    searcher.start()
    searcher.join(timeout=20)
    assert outcome, f"{pattern!r} was still searching 10 KB of hostile text after 20 s"


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"policies": {"p": {"first_response": "1h"}', "not valid JSON: Expecting ',' delimiter"),
        ('{"policies": {"p": {"first_response": "1h"}}, "rules": [,]}', "not valid JSON"),
        ("", "not valid JSON"),
        ('["not", "an", "object"]', "is not of type 'object'"),
        ('{"policies": {"p": {"first_response": "soon"}}}', "duration"),
        ('{"policies": {"p": {"first_response": "1h", "target": 7}}}', "target"),
        (
            '{"rules": [{"name": "r", "apply": "p", "when": {"field": "content", "op": "matches", "value": "("}}]}',
            "does not compile",
        ),
        (
            '{"policies": {"p": {"first_response": "1h"}}, "rules": [{"name": 5, "apply": "p", "when": {"all": []}}]}',
            "name",
        ),
        ('{"policies": {"p": {"first_response": "1h"}}, "surprise": true}', "surprise"),
        # Found by the fuzzing below: an "apply" that is a list or an object crashed the check (unhashable).
        (
            '{"policies": {"p": {"first_response": "1h"}}, "rules": [{"name": "r", "apply": [], "when": {"all": []}}]}',
            "is not of type 'string'",
        ),
        (
            '{"policies": {"p": {"first_response": "1h"}}, "rules": [{"name": "r", "apply": {}, "when": {"all": []}}]}',
            "is not of type 'string'",
        ),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
)
def test_malformed_and_schema_violating_rule_files_are_clear_errors(tmp_path, content, expected):
    result = rules_check(rules_file(tmp_path / "rules", content))
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "10-rules.json:" in result.output and expected in result.output, result.output


def test_rule_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "10-rules.json").write_bytes(b'{"policies": {"p": {"name": "\xff\xfe"}}}')
    result = rules_check(directory)
    assert result.exit_code == 1 and "10-rules.json" in result.output, result.output


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_and_mutated_rule_files_never_crash_the_check(tmp_path_factory, data):
    shipped = json.loads((Path(__file__).parents[2] / "rules" / "10-high-priority.json").read_text())
    if data.draw(st.booleans()):
        document = data.draw(json_values)
    else:
        document = shipped
        for _ in range(data.draw(st.integers(1, 3))):
            paths = [path for path in paths_of(document) if path]
            document = mutate(
                document, data.draw(st.sampled_from(paths)), data.draw(json_values), data.draw(st.booleans())
            )
    directory = rules_file(tmp_path_factory.mktemp("rules"), json.dumps(document, indent=2))
    problems = check_rules(directory)  # never raises
    for problem in problems:
        assert problem.message and str(problem).startswith(str(directory)), str(problem)


# -- the project's OpenAPI description, and the read endpoints fuzzed from it ------------------------------

OPENAPI = Path(__file__).parents[2] / "docs" / "openapi.yaml"
ADMIN = "admin-token-fuzz-4r5t6y"


def openapi() -> dict:
    import yaml  # a dependency of `responses`, so always there when the tests run

    return yaml.safe_load(OPENAPI.read_text())


def test_openapi_description_lists_exactly_the_apps_routes(make_app):
    app = make_app()
    documented = set(openapi()["paths"])
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.endswith("static"):
            continue
        path = rule.rule.replace("<connector_name>", "{connector}").replace("<name>", "{report}")
        served.add(re.sub(r"<(?:int:)?([^>]+)>", r"{\1}", path))
    assert documented == served


def _parameter_values(parameter: dict):
    schema = parameter.get("schema", {})
    if schema.get("enum"):
        return st.sampled_from(schema["enum"]) | st.text(max_size=10)
    if schema.get("type") == "integer" or schema.get("items", {}).get("type") == "integer":
        return st.integers(-5, 10**20).map(str) | st.text(max_size=10)
    return st.text(max_size=30)


def test_read_endpoints_fuzzed_from_the_openapi_description_never_5xx(make_app):
    client = make_app(SLA_ADMIN_TOKEN=ADMIN, SLA_SIDEBAR_TOKEN="sidebar-fuzz").test_client()
    document = openapi()
    operations = []
    for path, item in document["paths"].items():
        if "get" in item:
            parameters = [
                document["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
                for p in item["get"].get("parameters", [])
            ]
            operations.append((path, parameters))

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def check(data):
        path, parameters = data.draw(st.sampled_from(operations))
        query = {}
        for parameter in parameters:
            value = data.draw(_parameter_values(parameter))
            if parameter["in"] == "path":
                path = path.replace("{" + parameter["name"] + "}", value if value.isdigit() else "1")
            elif parameter["name"] != "token" and data.draw(st.booleans()):
                query[parameter["name"]] = value
        response = client.get(path, query_string=query, headers={"Authorization": f"Bearer {ADMIN}"})
        assert response.status_code < 500, (path, query, response.get_data(as_text=True)[:300])

    check()
