#!/usr/bin/env bash
# The default recipe, end to end: train a bidirectional GRU with Bahdanau attention on the generated date task,
# translate its held-out test set with beam search, score it, and draw the attention of one sentence.
#
#   recipes/dates/run.sh [RUN_DIR] [TRAIN OVERRIDES...]     (default RUN_DIR: runs/dates)
#   recipes/dates/run.sh runs/dates-lstm model.cell=lstm
#
# Running it again continues (or skips) the training in RUN_DIR: train.resume=true.
set -euo pipefail
run=${1:-runs/dates}
shift || true

nmt train hydra.run.dir="$run" train.resume=true "$@"
nmt translate -m "$run" -i "$run/data/test.txt" -o "$run/test.beam5.hyp" --beam 5 --alignments "$run/test.align"
nmt evaluate -r "$run/data/test.iso" --hypothesis "$run/test.beam5.hyp"
nmt plot-attention -m "$run" --text "Wednesday, 25 November 2026" -o "$run/attention.png"
