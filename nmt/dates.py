"""The embedded default task: translate human-readable dates into ISO 8601.

"Wednesday, 25 November 2026", "25.11.26", "nov 25th, 2026" and "the 25th of November 2026" all translate to
"2026-11-25". The task is generated with a fixed seed, needs no download, and shows attention at work: each
ISO field is produced while the model attends to the source words that give the day, the month or the year.

Every surface form is unambiguous: the separator tells the field order ("25.11.2026" is day.month.year,
"11/25/2026" is month/day/year), and a two-digit year ``yy`` means 19yy when yy >= 50, else 20yy (the
generated years run from 1950 to 2049).
"""

from __future__ import annotations

import datetime as dt
import random
import string
from collections.abc import Callable
from pathlib import Path

FIRST_DATE = dt.date(1950, 1, 1)
LAST_DATE = dt.date(2049, 12, 31)

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _fields(d: dt.date) -> dict[str, str]:
    month, weekday = MONTHS[d.month - 1], WEEKDAYS[d.weekday()]
    return {
        "d": str(d.day), "dd": f"{d.day:02d}", "dth": ordinal(d.day),
        "m": str(d.month), "mm": f"{d.month:02d}", "month": month, "mon": month[:3],
        "yyyy": str(d.year), "yy": f"{d.year % 100:02d}",
        "weekday": weekday, "wkd": weekday[:3],
    }


# Each surface form is a template over the fields above, with an optional case change.
FORMATS: list[tuple[str, Callable[[str], str]]] = [
    ("{weekday}, {d} {month} {yyyy}", str),
    ("{d} {month} {yyyy}", str),
    ("{d} {mon} {yyyy}", str),
    ("{month} {d}, {yyyy}", str),
    ("{mon} {d}, {yyyy}", str),
    ("{mon} {dth}, {yyyy}", str.lower),
    ("the {dth} of {month} {yyyy}", str),
    ("{weekday} the {dth} of {month}, {yyyy}", str),
    ("{dth} {month} {yyyy}", str),
    ("{wkd} {d} {mon} {yyyy}", str),
    ("{dd}.{mm}.{yy}", str),
    ("{d}.{m}.{yyyy}", str),
    ("{mm}/{dd}/{yyyy}", str),
    ("{m}/{d}/{yy}", str),
    ("{yyyy}/{mm}/{dd}", str),
    ("{d} {month} {yyyy}", str.upper),
    ("{weekday}, {month} {d}, {yyyy}", str.lower),
    ("{dd}-{mon}-{yyyy}", str),
    ("{yyyy}{mm}{dd}", str),
]


def render(date: dt.date, form: int) -> str:
    """The date in surface form number ``form`` of FORMATS."""
    template, case = FORMATS[form]
    return case(template.format(**_fields(date)))


# The ISO field each template field gives (the weekday gives none).
FIELD_OF = {"d": "day", "dd": "day", "dth": "day", "m": "month", "mm": "month", "month": "month", "mon": "month",
            "yyyy": "year", "yy": "year"}


def field_spans(date: dt.date, form: int) -> dict[str, tuple[int, int]]:
    """Where ``render(date, form)`` spells the day, the month and the year: {"day": (start, end), ...}, character
    offsets as in ``text[start:end]`` (an ordinal's suffix is part of the day: "25th")."""
    template, _ = FORMATS[form]
    fields, spans, offset = _fields(date), {}, 0
    for literal, name, _, _ in string.Formatter().parse(template):
        offset += len(literal)
        if name is not None:
            end = offset + len(fields[name])
            if name in FIELD_OF:
                spans[FIELD_OF[name]] = (offset, end)
            offset = end
    return spans


def form_of(text: str, date: dt.date) -> int:
    """The surface form (an index into FORMATS) in which ``text`` renders ``date``."""
    for form in range(len(FORMATS)):
        if render(date, form) == text:
            return form
    raise ValueError(f"{text!r} is no surface form of {date.isoformat()}")


def iso(date: dt.date) -> str:
    """The target side: ISO 8601, e.g. '2026-11-25'."""
    return date.isoformat()


def generate(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` distinct (surface form, ISO date) pairs drawn uniformly over dates and forms."""
    rng = random.Random(seed)
    span = (LAST_DATE - FIRST_DATE).days
    pairs: dict[str, str] = {}
    while len(pairs) < n:
        date = FIRST_DATE + dt.timedelta(days=rng.randint(0, span))
        pairs.setdefault(render(date, rng.randrange(len(FORMATS))), iso(date))
    return list(pairs.items())


def write_splits(out_dir: Path, sizes: dict[str, int], seed: int, src: str = "txt", trg: str = "iso") -> None:
    """Write disjoint splits as parallel files ``{split}.{src}`` / ``{split}.{trg}`` into ``out_dir``.

    The splits share no source sentence, so the test set is truly held out.
    """
    pairs = generate(sum(sizes.values()), seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, size in sizes.items():
        chunk = pairs[start:start + size]
        start += size
        (out_dir / f"{split}.{src}").write_text("".join(s + "\n" for s, _ in chunk), encoding="utf-8")
        (out_dir / f"{split}.{trg}").write_text("".join(t + "\n" for _, t in chunk), encoding="utf-8")
