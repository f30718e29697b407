#!/usr/bin/env bash
# A Multi30k recipe, end to end: train one design, average its last validation checkpoints, pick the single model
# that dev prefers (best.pt or the averaged weights, by beam-5 BLEU on val), translate test_2016_flickr with it
# once (beam 5), score it with sacrebleu (BLEU, chrF, TER, and BLEU on lowercased text), and draw the attention of
# one test sentence (designs with attention).
#
#   recipes/multi30k/run.sh [DESIGN] [PAIR] [RUN_DIR] [TRAIN OVERRIDES...]
#     DESIGN   gru (Bahdanau attention, the default) | cho (no attention) | sutskever (reversed LSTM) | transformer
#              | char (gru at character level)
#     PAIR     de-en (default) | en-de | fr-en
#     RUN_DIR  default runs/multi30k_PAIR_DESIGN
#   recipes/multi30k/run.sh gru de-en
#   recipes/multi30k/run.sh transformer en-de runs/tf-ende seed=2
#   NMT_MULTI30K=/data/multi30k recipes/multi30k/run.sh      (the data folder; default ~/.cache/nmt/data/multi30k)
#
# The data: `nmt data multi30k` downloads it into that folder.
#
# Running it again continues (or skips) the training in RUN_DIR: train.resume=true. Training itself does not read
# the test set (train.test=false): settings are chosen on dev.
set -euo pipefail
design=${1:-gru}
pair=${2:-de-en}
src=${pair%-*}
trg=${pair#*-}
run=${3:-runs/multi30k_${src}${trg}_${design}}
shift $(( $# < 3 ? $# : 3 ))
data=${NMT_MULTI30K:-$HOME/.cache/nmt/data/multi30k}
test=test_2016_flickr
for file in "train.$src" "train.$trg" "val.$src" "val.$trg" "$test.$src" "$test.$trg"; do
  if [ ! -f "$data/$file" ]; then
    echo "run.sh: Multi30k not found in $data (no $file): download it with 'nmt data multi30k'" \
         "(or set NMT_MULTI30K)" >&2
    exit 1
  fi
done

nmt train experiment="multi30k_$design" data="multi30k_$src$trg" hydra.run.dir="$run" train.resume=true \
  train.test=false "$@"
nmt average -m "$run" --last 5
chosen=best dev=-1
for weights in best averaged; do
  nmt translate -m "$run" --checkpoint "$weights.pt" -i "$data/val.$src" -o "$run/val.$weights.hyp" --beam 5
  bleu=$(nmt evaluate -r "$data/val.$trg" --hypothesis "$run/val.$weights.hyp" | awk '/^BLEU/ {print $2; exit}')
  echo "$weights.pt, beam 5, dev (val.$src-$trg): BLEU $bleu"
  if awk -v a="$bleu" -v b="$dev" 'BEGIN {exit !(a > b)}'; then chosen=$weights dev=$bleu; fi
done
echo "$chosen.pt has the better dev BLEU ($dev): it translates $test.$src"
nmt translate -m "$run" --checkpoint "$chosen.pt" -i "$data/$test.$src" -o "$run/$test.hyp" --beam 5
nmt evaluate -r "$data/$test.$trg" --hypothesis "$run/$test.hyp" --lowercase
if ! grep -q '^  attention: none$' "$run/config.yaml"; then  # a fixed-context model has no attention to draw
  nmt plot-attention -m "$run" --checkpoint "$chosen.pt" -i "$data/$test.$src" --line 7 -o "$run/attention.png"
fi
