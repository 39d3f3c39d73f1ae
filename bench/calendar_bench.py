"""Due-time computations per second: plugin.core.calendar against businesstimedelta, same inputs, same run.

    python bench/calendar_bench.py [--inputs 2000] [--seed 7] [--repeats 3]

A realistic office calendar (Europe/Berlin, 09:00-12:30 and 13:30-17:00 on weekdays, 12 holidays a year),
a week-long target (40 working hours), starts spread over a year, a few pause breaks on a third of the
inputs. Prints both rates, their ratio (the goal is at least 50x), and every input on which the two
libraries disagree, grouped by the reason.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

try:
    import businesstimedelta
    import pytz
except ImportError:
    print(
        "this benchmark compares against businesstimedelta, which is not installed:\n    pip install businesstimedelta",
        file=sys.stderr,
    )
    sys.exit(2)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import holidays  # noqa: E402

from plugin.core.calendar import Calendar, parse_calendar  # noqa: E402  (needs the repository on the path)

ZONE = "Europe/Berlin"
TARGET_SECONDS = 40 * 3600
YEAR = 2026
UTC = UTC


def holiday_dates() -> list[date]:
    """Twelve closed days a year: Berlin's public holidays plus Christmas Eve and New Year's Eve."""
    dates: list[date] = []
    for year in (YEAR, YEAR + 1):
        public = sorted(holidays.country_holidays("DE", subdiv="BE", years=year))
        dates += (public + [date(year, 12, 24), date(year, 12, 31)])[:12]
    return sorted(set(dates))


def our_calendar(closed: list[date]) -> Calendar:
    return parse_calendar(
        {
            "timezone": ZONE,
            "hours": {day: ["09:00-12:30", "13:30-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": {"dates": [day.isoformat() for day in closed]},
        }
    )


class PauseRule(businesstimedelta.rules.Rule):
    """Pause breaks as businesstimedelta time off: the first break not over yet, clipped to ``moment``."""

    def __init__(self, pauses: list[tuple[datetime, datetime]]) -> None:
        super().__init__(tz=pytz.utc, time_off=True)
        self.pauses = sorted(pauses)

    def next(self, moment: datetime, reverse: bool = False) -> tuple[datetime, datetime]:
        for start, end in self.pauses:
            if end > moment:
                return max(start, moment), end
        never = moment + timedelta(days=365 * 100)
        return never, never + timedelta(seconds=1)


def their_rules(closed: list[date], pauses: list[tuple[datetime, datetime]]):
    zone = pytz.timezone(ZONE)
    rules = [
        businesstimedelta.WorkDayRule(
            start_time=clock_time(9), end_time=clock_time(17), working_days=[0, 1, 2, 3, 4], tz=zone
        ),
        businesstimedelta.LunchTimeRule(
            start_time=clock_time(12, 30), end_time=clock_time(13, 30), working_days=[0, 1, 2, 3, 4], tz=zone
        ),
        businesstimedelta.HolidayRule(closed, tz=zone),
    ]
    if pauses:
        rules.append(PauseRule(pauses))
    return businesstimedelta.Rules(rules)


def make_inputs(count: int, seed: int) -> list[tuple[datetime, list[tuple[datetime, datetime]]]]:
    generator = random.Random(seed)
    year_start = datetime(YEAR, 1, 1, tzinfo=UTC)
    inputs = []
    for _ in range(count):
        start = year_start + timedelta(seconds=generator.randrange(365 * 86_400))
        pauses = []
        if generator.random() < 1 / 3:
            for _ in range(generator.randint(1, 3)):
                begin = start + timedelta(seconds=generator.randrange(-86_400, 10 * 86_400))
                pauses.append((begin, begin + timedelta(seconds=generator.randrange(600, 2 * 86_400))))
        inputs.append((start, pauses))
    return inputs


def rate(run, repeats: int) -> tuple[float, list]:
    """Best wall-clock time of ``repeats`` runs (the results of the last), as computations per second."""
    best = float("inf")
    results: list = []
    for _ in range(repeats):
        began = time.perf_counter()
        results = run()
        best = min(best, time.perf_counter() - began)
    return len(results) / best, results


def disagreement_reason(calendar: Calendar, start: datetime, pauses: list[tuple[datetime, datetime]]) -> str:
    for begin, end in pauses:
        begin = max(begin, start)
        if (
            begin < end
            and calendar.is_open(begin)
            and calendar.working_between(begin, end) < (end - begin).total_seconds()
        ):
            return (
                "a break runs past a closing time: businesstimedelta's Rules.next shortens a working period "
                "only for time off that also ends inside it, so the rest of that period still counts"
            )
    return "unexplained"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()

    closed = holiday_dates()
    inputs = make_inputs(arguments.inputs, arguments.seed)
    their_inputs = [(start, their_rules(closed, pauses)) for start, pauses in inputs]

    cold_calendar = Calendar(
        ZONE, [[(9 * 3600, 12 * 3600 + 1800), (13 * 3600 + 1800, 17 * 3600)]] * 5 + [[], []], holiday_dates=closed
    )
    began = time.perf_counter()
    for start, pauses in inputs:
        cold_calendar.add_working(start, TARGET_SECONDS, pauses)
    cold_rate = len(inputs) / (time.perf_counter() - began)

    calendar = our_calendar(closed)
    our_rate, ours = rate(
        lambda: [calendar.add_working(start, TARGET_SECONDS, pauses) for start, pauses in inputs], arguments.repeats
    )
    their_rate, theirs = rate(
        lambda: [
            start + businesstimedelta.BusinessTimeDelta(rules, seconds=TARGET_SECONDS) for start, rules in their_inputs
        ],
        1,
    )

    print(
        f"calendar: {ZONE}, Mon-Fri 09:00-12:30 + 13:30-17:00, {len(closed)} holidays over {YEAR}-{YEAR + 1}; "
        f"target 40 working hours; {len(inputs)} starts over {YEAR}, "
        f"{sum(1 for _, pauses in inputs if pauses)} with 1-3 breaks"
    )
    print(f"plugin.core.calendar      {our_rate:12,.0f} due times/s (first pass, empty day cache: {cold_rate:,.0f}/s)")
    print(f"businesstimedelta    {their_rate:12,.0f} due times/s")
    print(f"ratio                {our_rate / their_rate:12,.1f}x  (goal: at least 50x)")

    reasons: dict[str, list[int]] = {}
    for index, ((start, pauses), our_due, their_due) in enumerate(zip(inputs, ours, theirs, strict=False)):
        if our_due != their_due:
            reasons.setdefault(disagreement_reason(calendar, start, pauses), []).append(index)
    disagreements = sum(len(indexes) for indexes in reasons.values())
    with_breaks = sum(1 for indexes in reasons.values() for index in indexes if inputs[index][1])
    print(
        f"disagreements        {disagreements} of {len(inputs)} ({with_breaks} of them on inputs with breaks; "
        f"none expected without: both land on closing times and 09:00-17:00 never meets a clock change)"
    )
    for reason, indexes in reasons.items():
        print(f"  {len(indexes)}: {reason}")
        for index in indexes[:3]:
            start, pauses = inputs[index]
            their_due = theirs[index].astimezone(UTC)
            print(
                f"     e.g. start {start:%Y-%m-%d %H:%M:%S}Z breaks "
                f"{[(f'{b:%m-%d %H:%M}', f'{e:%m-%d %H:%M}') for b, e in pauses]}: "
                f"ours {ours[index]:%Y-%m-%d %H:%M:%S}Z, theirs {their_due:%Y-%m-%d %H:%M:%S}Z "
                f"(theirs is {TARGET_SECONDS - calendar.working_between(start, their_due, pauses)} s "
                f"of working time early)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
