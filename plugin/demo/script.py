"""The demo's scripted day: a morning of helpdesk conversations, played against :class:`DemoHelpdesk`.

The script is written in minutes of a helpdesk morning and played ``speed`` times faster than that (default
60: one scripted minute per real second, so the morning takes under a minute). Only the script's pacing is
sped up: every event carries the real time at which it is played, and the plugin judges it with the real
clock, against ``demo/rules/`` whose chat targets are seconds (``"45s"``) to match the default speed. At
another speed the same script ends differently (agents answer sooner or later in real time), which is the
point of SLAs, not a fault.

What happens (minutes of the script; * = the plugin's doing):
- #101 Jane (chat) is answered after 8 min, writes again at 16 and is answered at 24: on time throughout.
- #102 Omar (chat) waits: *at risk at 31, *missed at 46 (label + one note); Priya answers late at 50.
- #103 Lee (chat) is never answered: *at risk at 32, *missed at 47, live; it stays open.
- #104 Ana (chat) is answered and resolved, then writes again at 22 (reopened) and is answered at 41.
- #105 Max (email, office hours) wrote last Friday at 16:55 and was answered on Monday at 09:20: played
  at minute 4 with those past timestamps; 25 working minutes in the office calendar, so on time.
- #106 Kim (chat): *at risk at 35, answered at 40, before the 45-minute mark: back on track.
"""

from __future__ import annotations

import threading
import time as wall_clock
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from plugin.demo.helpdesk import DemoHelpdesk, Inbox, Person

DEFAULT_SPEED = 60.0
# The office calendar of demo/rules (the weekend conversation is timed in it).
OFFICE_ZONE = ZoneInfo("Europe/Berlin")

CHAT = Inbox(1, "Website Chat", "Channel::WebWidget")
EMAIL = Inbox(2, "Support Email", "Channel::Email")
SAM = Person(7, "Sam Agent", "sam@acme.example", "user")
PRIYA = Person(8, "Priya Agent", "priya@acme.example", "user")
JANE = Person(42, "Jane Doe", "jane.doe@example.com", "contact")
OMAR = Person(43, "Omar Haddad", "omar@example.net", "contact")
LEE = Person(44, "Lee Chen", "lee.chen@example.org", "contact")
ANA = Person(45, "Ana Souza", "ana@example.com.br", "contact", additional_attributes={"country_code": "BR"})
MAX = Person(46, "Max Weber", "max.weber@example.de", "contact", additional_attributes={"country_code": "DE"})
KIM = Person(47, "Kim Park", "kim.park@example.kr", "contact")

Say = Callable[[str], None]


class Stopped(Exception):
    """The demo was asked to stop while the script waited."""


class Pacer:
    """When each scripted minute is played: ``start + minute * 60 / speed`` seconds.

    :meth:`at` waits until that instant (at once when it is past, so a script started in the past plays
    instantly with past timestamps, as the tests do) and returns it, for the event's timestamp.
    """

    def __init__(self, start: datetime, speed: float = DEFAULT_SPEED, stop: threading.Event | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.start = start
        self.speed = speed
        self.stop = stop or threading.Event()

    def at(self, minute: float) -> datetime:
        """The instant of *minute*, once it has come; raises :class:`Stopped` when stopped meanwhile."""
        instant = self.start + timedelta(seconds=minute * 60 / self.speed)
        delay = instant.timestamp() - wall_clock.time()
        if self.stop.wait(max(0.0, delay)) or self.stop.is_set():
            raise Stopped
        return instant


@dataclass(frozen=True)
class Weekend:
    """The weekend conversation's times: written on Friday, answered and resolved on Monday."""

    written: datetime
    answered: datetime
    resolved: datetime


def last_weekend(now: datetime) -> Weekend:
    """The latest weekend whose Monday morning (09:40 in the office's zone) is already over at *now*."""
    local = now.astimezone(OFFICE_ZONE)
    friday = local.date() - timedelta(days=(local.weekday() - 4) % 7)
    while _office_time(friday + timedelta(days=3), 9, 40) > now:
        friday -= timedelta(days=7)
    monday = friday + timedelta(days=3)
    return Weekend(_office_time(friday, 16, 55), _office_time(monday, 9, 20), _office_time(monday, 9, 40))


def play_weekend(helpdesk: DemoHelpdesk, weekend: Weekend, say: Say) -> int:
    """The email written on Friday at 16:55 and answered on Monday at 09:20, sent now with those times.

    Its webhooks are sent Monday's reply first. Chatwoot does not order webhooks either, and in this order no
    batch of the plugin's sees Friday's email without the reply: one that did would judge it, rightly, missed
    (its due time is long past), and the reply's arrival would then add a correction note to the story.
    """
    with helpdesk.capturing() as deliveries:
        conversation = helpdesk.open_conversation(
            MAX,
            EMAIL,
            "Hello, could you send me a copy of the October invoice? Thanks, Max",
            at=weekend.written,
            additional_attributes={"source": "email", "mail_subject": "Invoice copy for October"},
        )
        with helpdesk.capturing() as reply:
            helpdesk.agent_replies(
                conversation, SAM, "Good morning Max, the copy is attached. Have a good week!", at=weekend.answered
            )
        helpdesk.set_status(conversation, "resolved", at=weekend.resolved)
    helpdesk.send(reply + deliveries)
    wall_hours = (weekend.answered - weekend.written).total_seconds() / 3600
    say(
        f"#{conversation} Max    emailed {_local(weekend.written, '%a %d %b %H:%M')}, answered "
        f"{_local(weekend.answered, '%a %H:%M')} ({OFFICE_ZONE.key}): {wall_hours:.0f} h on the wall clock, "
        f"25 min in office hours (past timestamps)"
    )
    return conversation


def play(
    helpdesk: DemoHelpdesk,
    say: Say,
    start: datetime | None = None,
    speed: float = DEFAULT_SPEED,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Play the scripted morning from *start* (default: now); returns each contact's conversation id.

    Raises :class:`Stopped` when *stop* is set before the end.
    """
    pace = Pacer(start or datetime.now(UTC), speed, stop)
    at = pace.at

    def opens(contact: Person, minute: float, content: str, story: str, assignee: Person | None) -> int:
        conversation = helpdesk.open_conversation(contact, CHAT, content, at=at(minute), assignee=assignee)
        say(f'#{conversation} {contact.name.split()[0]:<6} opens a chat: "{content}"  ({story})')
        return conversation

    def replies(conversation: int, agent: Person, minute: float, content: str) -> None:
        helpdesk.agent_replies(conversation, agent, content, at=at(minute))
        say(f'#{conversation} {agent.name.split()[0]:<6} replies: "{content}"')

    def writes(conversation: int, contact: Person, minute: float, content: str) -> None:
        helpdesk.customer_writes(conversation, content, at=at(minute))
        say(f'#{conversation} {contact.name.split()[0]:<6} writes again: "{content}"')

    def resolves(conversation: int, agent: Person, minute: float) -> None:
        helpdesk.set_status(conversation, "resolved", at=at(minute))
        say(f"#{conversation} {agent.name.split()[0]:<6} resolves the conversation")

    jane = opens(JANE, 0, "Hi, my order #5531 hasn't arrived yet.", "will be answered in time", SAM)
    omar = opens(OMAR, 1, "Can I still change the delivery address?", "will be answered late", PRIYA)
    lee = opens(LEE, 2, "Is the shop open on Sunday?", "nobody will answer", None)
    ana = opens(ANA, 3, "The invoice shows the wrong VAT number.", "will be resolved, then reopened", SAM)
    max_conversation = play_weekend(helpdesk, last_weekend(at(4)), say)
    kim = opens(KIM, 5, "My discount code doesn't work.", "will be answered just in time", PRIYA)
    replies(jane, SAM, 8, "Sorry about that, Jane! The courier says it arrives tomorrow.")
    replies(ana, SAM, 10, "Thanks Ana, I corrected it and sent a new invoice.")
    helpdesk.agent_adds_label(ana, "billing", at=at(12))
    say(f"#{ana} Sam    adds the label billing (the plugin keeps it: it owns only its status labels)")
    resolves(ana, SAM, 14)
    writes(jane, JANE, 16, "Thanks! Could you send me the tracking link too?")
    writes(ana, ANA, 22, "Sorry, the new invoice still has the old VAT number.")
    replies(jane, SAM, 24, "Of course: https://track.example.com/5531")
    resolves(jane, SAM, 26)
    replies(kim, PRIYA, 40, "Hi Kim, the code works again, please try once more.")
    replies(ana, SAM, 41, "You're right, fixed for good this time. Apologies!")
    resolves(ana, SAM, 44)
    replies(omar, PRIYA, 50, "Sorry for the wait, Omar! Yes, I changed the address.")
    resolves(omar, PRIYA, 52)
    resolves(kim, PRIYA, 54)
    return {"jane": jane, "omar": omar, "lee": lee, "ana": ana, "max": max_conversation, "kim": kim}


def _office_time(day: date, hour: int, minute: int) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=OFFICE_ZONE)


def _local(moment: datetime, pattern: str) -> str:
    return moment.astimezone(OFFICE_ZONE).strftime(pattern)
