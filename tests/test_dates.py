"""The generated date task: correct renderings, reproducible, unambiguous, disjoint splits."""

import datetime as dt
from pathlib import Path

from nmt import dates


def test_surface_forms_of_one_date() -> None:
    d = dt.date(2026, 11, 25)
    forms = {dates.render(d, i) for i in range(len(dates.FORMATS))}
    for expected in ["Wednesday, 25 November 2026", "25.11.26", "nov 25th, 2026", "the 25th of November 2026",
                     "11/25/2026", "25-Nov-2026", "20261125", "25 NOVEMBER 2026"]:
        assert expected in forms
    assert dates.iso(d) == "2026-11-25"


def test_ordinals() -> None:
    assert [dates.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]


def test_generation_is_reproducible_and_consistent() -> None:
    pairs = dates.generate(500, seed=7)
    assert pairs == dates.generate(500, seed=7)
    assert pairs != dates.generate(500, seed=8)
    assert len({s for s, _ in pairs}) == 500
    for src, trg in pairs:
        date = dt.date.fromisoformat(trg)
        assert dates.FIRST_DATE <= date <= dates.LAST_DATE
        assert src in {dates.render(date, i) for i in range(len(dates.FORMATS))}


def test_every_surface_form_identifies_one_date() -> None:
    """No string is the rendering of two different dates (two-digit years and field orders are unambiguous)."""
    seen: dict[str, dt.date] = {}
    day = dt.date(1950, 1, 1)
    while day <= dt.date(2049, 12, 31):
        for i in range(len(dates.FORMATS)):
            text = dates.render(day, i)
            assert seen.setdefault(text, day) == day, text
        day += dt.timedelta(days=3)


def test_splits_are_disjoint(tmp_path: Path) -> None:
    dates.write_splits(tmp_path, {"train": 300, "dev": 50, "test": 50}, seed=1)
    sources = {s: set((tmp_path / f"{s}.txt").read_text().splitlines()) for s in ("train", "dev", "test")}
    assert [len(v) for v in sources.values()] == [300, 50, 50]
    assert not sources["train"] & sources["test"] and not sources["train"] & sources["dev"]
    assert len((tmp_path / "test.iso").read_text().splitlines()) == 50
