"""``nmt shortlist``: a run's lexical table for searching over a vocabulary shortlist (``--shortlist K``)."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from nmt import NmtError
from nmt.cli.options import add_command, add_runs

if TYPE_CHECKING:
    from datasets import Dataset

    from nmt.tokenizer import Tokenizer

log = logging.getLogger(__name__)

DESCRIPTION = """\
Build RUN/shortlist.pt from the run's training data: for each source subword its target subwords
ranked by the Dice coefficient of their co-occurrence in sentence pairs, and the target subwords
ranked by frequency. With it, `nmt translate --shortlist K` (and `nmt serve`, and the decode
setting decode.shortlist) searches each sentence over the K best target subwords of each of its
source subwords, the --frequent most frequent ones, EOS and the sentence's own subwords: the
output projection, the largest product of a decoding step, then runs over the batch's union of
these lists only, and each sentence is scored over its own list (renormalised). Prints the mean
list size over the dev set for a few K."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "shortlist", "build a run's lexical table for searching over a vocabulary shortlist",
                    DESCRIPTION, ["nmt shortlist -m runs/m30k",
                                  "nmt translate -m runs/m30k --beam 5 --shortlist 20 -i test.de -o test.hyp",
                                  "nmt shortlist -m runs/m30k --per-source 50 --frequent 100"], run)
    add_runs(p, several=False)
    p.add_argument("--per-source", type=int, default=100,
                   help="target subwords kept per source subword: the largest K --shortlist may use (default 100)")
    p.add_argument("--frequent", type=int, default=200,
                   help="the most frequent target subwords, in every list (default 200)")


def _ids(ds: Dataset, src_tok: Tokenizer, trg_tok: Tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    """Both sides of a split as subword ids, encoded batch by batch."""
    src: list[list[int]] = []
    trg: list[list[int]] = []
    for batch in ds.select_columns(["src", "trg"]).iter(batch_size=10_000):
        src += src_tok.encode([s or "" for s in batch["src"]])
        trg += trg_tok.encode([t or "" for t in batch["trg"]])
    return src, trg


def run(args: argparse.Namespace) -> None:
    if args.per_source < 1 or args.frequent < 0:
        raise NmtError("--per-source must be at least 1 and --frequent at least 0")
    from nmt import data
    from nmt.batching import make_batch
    from nmt.lexicon import build_lexicon
    from nmt.rundir import RunDir

    run_dir = RunDir(args.model)
    cfg = run_dir.config()
    src_tok, trg_tok = run_dir.tokenizers(cfg.tokenizer.joint)
    folder = data.prepare(cfg.data, run_dir.path)
    src, trg = _ids(data.load_split(cfg.data, folder, "train"), src_tok, trg_tok)
    lexicon = build_lexicon(src, trg, src_tok, trg_tok, args.per_source, args.frequent)
    out = run_dir.path / RunDir.SHORTLIST
    lexicon.save(out)
    print(f"{out}: {len(src):,} training pairs, {args.per_source} target subwords per source subword, "
          f"{len(lexicon.frequent)} frequent")
    dev, _ = _ids(data.load_split(cfg.data, folder, "dev"), src_tok, trg_tok)
    batch = make_batch([ids[: cfg.data.max_length] or [0] for ids in dev]).src
    for k in (5, 10, 20, 50, 100):
        if k <= args.per_source:
            sizes = lexicon.candidates(batch, k, len(trg_tok)).sum(1).float()
            print(f"--shortlist {k}: {float(sizes.mean()):.0f} of {len(trg_tok)} target subwords per dev sentence "
                  f"(median {float(sizes.median()):.0f})")
