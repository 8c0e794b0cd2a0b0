#!/usr/bin/env python3
"""Generate the dates corpus: English date phrases -> ISO dates, a tiny translation task.

    python examples/make_dates.py            # writes examples/data/dates/{train,valid,test}.tsv

"the third of March, 2021" -> "2021-03-03". The phrases vary the way people write
dates: day as a number, an ordinal ("3rd") or words ("third", "twenty-first"); month
names in full, abbreviated or as numbers (US order: 03/04/2021 is March 4th);
day-first and month-first orders; optional weekday; upper, lower and title case.
A byte-level encoder-decoder learns it to high BLEU in minutes on a CPU, which makes
it the local profile's stand-in for en->de translation.

Deterministic: a fixed seed, dates from 1950-01-01 to 2049-12-31, and no source
phrase appears in two splits (or twice in one). Files are TSV with a
`source<TAB>target` header; stdlib only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
from pathlib import Path

SEED = 20240229
SIZES = {"train": 4000, "valid": 500, "test": 500}
FIRST, LAST = dt.date(1950, 1, 1), dt.date(2049, 12, 31)

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
ABBREV = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
UNITS = ["", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"]
TEENS = {10: "tenth", 11: "eleventh", 12: "twelfth", 13: "thirteenth", 14: "fourteenth", 15: "fifteenth",
         16: "sixteenth", 17: "seventeenth", 18: "eighteenth", 19: "nineteenth"}
TENS_ORD = {20: "twentieth", 30: "thirtieth"}
TENS = {20: "twenty", 30: "thirty"}


def ordinal_suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def ordinal_words(n: int) -> str:
    if n < 10:
        return UNITS[n]
    if n < 20:
        return TEENS[n]
    tens, unit = n - n % 10, n % 10
    return TENS_ORD[tens] if unit == 0 else f"{TENS[tens]}-{UNITS[unit]}"


def phrase(d: dt.date, rng: random.Random) -> str:
    month, mon = MONTHS[d.month - 1], ABBREV[d.month - 1]
    day, year = d.day, d.year
    forms = [
        f"the {ordinal_words(day)} of {month}, {year}",
        f"the {ordinal_words(day)} of {month} {year}",
        f"{month} {day}, {year}",
        f"{month} {ordinal_suffix(day)}, {year}",
        f"{day} {month} {year}",
        f"{ordinal_suffix(day)} {month} {year}",
        f"the {ordinal_suffix(day)} of {month} {year}",
        f"the {ordinal_suffix(day)} of {month}, {year}",
        f"{mon} {day}, {year}",
        f"{day} {mon} {year}",
        f"{d.month:02d}/{day:02d}/{year}",
        f"{d.month}/{day}/{year}",
        f"{WEEKDAYS[d.weekday()]}, {month} {day}, {year}",
        f"{WEEKDAYS[d.weekday()]} {day} {month} {year}",
        f"{month} the {ordinal_words(day)}, {year}",
    ]
    text = rng.choice(forms)
    case = rng.random()
    if case < 0.15:
        text = text.lower()
    elif case < 0.2:
        text = text.upper()
    return text


def generate(seed: int = SEED, sizes: dict = SIZES) -> dict[str, list[tuple[str, str]]]:
    rng = random.Random(seed)
    span = (LAST - FIRST).days
    seen: set[str] = set()
    out: dict[str, list[tuple[str, str]]] = {}
    for split, n in sizes.items():
        rows = []
        while len(rows) < n:
            d = FIRST + dt.timedelta(days=rng.randrange(span + 1))
            src = phrase(d, rng)
            if src in seen:
                continue
            seen.add(src)
            rows.append((src, d.isoformat()))
        out[split] = rows
    return out


def write(out_dir: Path, data: dict[str, list[tuple[str, str]]]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in data.items():
        with open(out_dir / f"{split}.tsv", "w", encoding="utf-8", newline="\n") as f:
            f.write("source\ttarget\n")
            for src, tgt in rows:
                f.write(f"{src}\t{tgt}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / "dates")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    data = generate(args.seed)
    write(args.out, data)
    print(", ".join(f"{split} {len(rows)}" for split, rows in data.items()), "->", args.out)


if __name__ == "__main__":
    main()
