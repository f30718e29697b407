"""``nmt export``: a run's model written for another inference engine (CTranslate2)."""

from __future__ import annotations

import argparse

from nmt.cli.options import add_command, add_output, add_runs

DESCRIPTION = """\
Write a Transformer run as a CTranslate2 model folder (default RUN/ctranslate2): its weights in
float32 (CTranslate2 quantizes at load time: --quantize int8), the vocabularies, the run's
sentencepiece models and decoding settings. `nmt translate --engine ctranslate2 -m RUN` then
translates with it; so does CTranslate2's own Python API (pieces in, pieces out). Recurrent
runs are refused: CTranslate2 has no such models. Needs pip install 'nmt-attention[ctranslate2]'.
An existing folder is replaced only with --force, and only once the new one is complete."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "export", "write a Transformer run for CTranslate2 (for translate --engine ctranslate2)",
                    DESCRIPTION, [
                        "nmt export --format ctranslate2 -m runs/m30k_tf",
                        "nmt export --format ctranslate2 -m runs/m30k_tf --checkpoint averaged.pt -o m30k_tf_ct2",
                        "nmt translate -m runs/m30k_tf --engine ctranslate2 --beam 5 -i test.de -o test.hyp",
                        "nmt translate -m m30k_tf_ct2 --engine ctranslate2 --quantize int8 -i test.de"], run)
    p.add_argument("--format", required=True, choices=["ctranslate2"], help="the engine to write for")
    add_runs(p, several=False)
    p.add_argument("--checkpoint", default="best.pt", metavar="NAME",
                   help="checkpoint file in RUN (default: best.pt)")
    add_output(p, "the model folder to write (default RUN/ctranslate2)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")


def run(args: argparse.Namespace) -> None:
    from nmt.export import EXPORT_FOLDER, export_ctranslate2

    out = export_ctranslate2(args.model, args.output or args.model / EXPORT_FOLDER, args.checkpoint, args.force)
    print(f"exported {args.model / args.checkpoint} -> {out}")
