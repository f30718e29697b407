#!/usr/bin/env bash
# A Multi30k recipe, end to end: train one design (at most 60 minutes on the CPU), average its last validation
# checkpoints, translate test_2016_flickr with beam 5 from the best and from the averaged weights, score both
# with sacrebleu (BLEU, chrF, TER), and draw the attention of one test sentence (designs with attention).
#
#   recipes/multi30k/run.sh [DESIGN] [PAIR] [RUN_DIR] [TRAIN OVERRIDES...]
#     DESIGN   gru (Bahdanau attention, the default) | cho (no attention) | sutskever (reversed LSTM) | transformer
#     PAIR     de-en (default) | en-de | fr-en
#     RUN_DIR  default runs/multi30k_PAIR_DESIGN
#   recipes/multi30k/run.sh gru de-en
#   recipes/multi30k/run.sh transformer en-de runs/tf-ende train.max_minutes=30
#   NMT_MULTI30K=/data/multi30k recipes/multi30k/run.sh      (the data folder; default ../shared/data/multi30k)
#
# Running it again continues (or skips) the training in RUN_DIR: train.resume=true.
set -euo pipefail
design=${1:-gru}
pair=${2:-de-en}
src=${pair%-*}
trg=${pair#*-}
run=${3:-runs/multi30k_${src}${trg}_${design}}
shift $(( $# < 3 ? $# : 3 ))
data=${NMT_MULTI30K:-../shared/data/multi30k}
test=test_2016_flickr

nmt train experiment="multi30k_$design" data="multi30k_$src$trg" hydra.run.dir="$run" train.resume=true "$@"
nmt average "$run" --last 5
for weights in best averaged; do
  nmt translate -m "$run" --checkpoint "$weights.pt" -i "$data/$test.$src" -o "$run/$test.$weights.hyp" --beam 5
  echo "$weights.pt, beam 5, $test.$src-$trg:"
  nmt evaluate -r "$data/$test.$trg" -h "$run/$test.$weights.hyp"
done
if ! grep -q '^  attention: none$' "$run/config.yaml"; then  # a fixed-context model has no attention to draw
  nmt plot-attention -m "$run" -i "$data/$test.$src" --line 7 -o "$run/attention.png"
fi
