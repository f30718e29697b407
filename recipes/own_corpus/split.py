#!/usr/bin/env python3
"""Split one parallel corpus into train, dev and test files in the layout of data/my_corpus.yaml (format: text).

    python recipes/own_corpus/split.py corpus.de corpus.en --out DIR               # two line-aligned files
    python recipes/own_corpus/split.py corpus.tsv --src de --trg en --out DIR      # one file, source<TAB>target
    python recipes/own_corpus/split.py corpus.de corpus.en --out DIR --dev 500 --test 500 --seed 2

writes DIR/train.SRC, DIR/train.TRG, DIR/dev.SRC, DIR/dev.TRG, DIR/test.SRC and DIR/test.TRG. The pairs are
stripped of surrounding whitespace; pairs with an empty side and repeated pairs are dropped; the rest is shuffled
with --seed and dev and test are drawn from it; training pairs whose source sentence is also in dev or test are
dropped, so that neither held-out split scores sentences the model has seen. Existing files are never replaced.
Standard library only: it runs with any Python 3.10 or newer.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path


def read_pairs(inputs: list[Path]) -> list[tuple[str, str]]:
    """(source, target) pairs from two line-aligned files, or from one file of source<TAB>target lines."""
    if len(inputs) == 2:
        src, trg = (path.read_text(encoding="utf-8").splitlines() for path in inputs)
        if len(src) != len(trg):
            sys.exit(f"split.py: error: {inputs[0]} has {len(src)} lines and {inputs[1]} {len(trg)}: "
                     f"line N of one must translate line N of the other")
        return list(zip(src, trg, strict=True))
    pairs = []
    for number, line in enumerate(inputs[0].read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 2:
            sys.exit(f"split.py: error: {inputs[0]}:{number}: expected source<TAB>target, found {len(fields)} "
                     f"column(s)")
        pairs.append((fields[0], fields[1]))
    return pairs


def split(pairs: list[tuple[str, str]], dev: int, test: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """Clean, shuffle and split the pairs; dev and test share no source sentence with train."""
    clean = [(" ".join(s.split()), " ".join(t.split())) for s, t in pairs]
    unique = list(dict.fromkeys(p for p in clean if p[0] and p[1]))
    if dev + test > len(unique) // 2:
        sys.exit(f"split.py: error: {len(unique)} distinct pairs are too few for --dev {dev} and --test {test}: "
                 f"keep at least half of them for training")
    random.Random(seed).shuffle(unique)
    held = {"dev": unique[:dev], "test": unique[dev:dev + test]}
    seen = {s for part in held.values() for s, _ in part}
    train = [p for p in unique[dev + test:] if p[0] not in seen]
    print(f"{len(pairs)} pairs read; {len(pairs) - len(unique)} empty or repeated dropped; "
          f"{len(unique) - dev - test - len(train)} training pairs dropped for a source sentence in dev or test",
          file=sys.stderr)
    return {"train": train, **held}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="split.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="SRC_FILE TRG_FILE, or one TSV file")
    parser.add_argument("--out", required=True, type=Path, help="the folder to write (data.dir)")
    parser.add_argument("--src", help="source language: the files' suffix (default: SRC_FILE's suffix)")
    parser.add_argument("--trg", help="target language (default: TRG_FILE's suffix)")
    parser.add_argument("--dev", type=int, default=1000, help="pairs held out for dev (default 1000)")
    parser.add_argument("--test", type=int, default=1000, help="pairs held out for test (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="the shuffle's seed (default 1)")
    args = parser.parse_args(argv)
    if len(args.inputs) not in (1, 2):
        parser.error("give two line-aligned files (SRC_FILE TRG_FILE) or one TSV file")
    src = args.src or (args.inputs[0].suffix.lstrip(".") if len(args.inputs) == 2 else "")
    trg = args.trg or (args.inputs[1].suffix.lstrip(".") if len(args.inputs) == 2 else "")
    if not src or not trg or src == trg:
        parser.error("name two different languages with --src and --trg (the suffixes of the files written)")
    if args.dev < 1 or args.test < 1:
        parser.error("--dev and --test must be at least 1")
    for path in args.inputs:
        if not path.is_file():
            parser.error(f"no such file: {path}")
    names = [f"{part}.{lang}" for part in ("train", "dev", "test") for lang in (src, trg)]
    existing = [name for name in names if (args.out / name).exists()]
    if existing:
        parser.error(f"{args.out / existing[0]} exists: choose another --out (nothing was written)")
    parts = split(read_pairs(args.inputs), args.dev, args.test, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for part, pairs in parts.items():
        for side, lang in enumerate((src, trg)):
            (args.out / f"{part}.{lang}").write_text("".join(p[side] + "\n" for p in pairs), encoding="utf-8")
        print(f"{args.out / part}.{{{src},{trg}}}: {len(pairs)} pairs")


if __name__ == "__main__":
    main()
