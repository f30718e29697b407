#!/usr/bin/env bash
# BLEU by source sentence length (as in Bahdanau et al. 2015, Figure 2) for the Multi30k designs trained with
# run.sh: each run's beam-5 translations of test_2016_flickr (from the weights its dev BLEU chose) are scored
# in bins of source length
# (in words: <= 7, 8-9, 10-11, 12-13, 14-16, 17-20, > 20, which hold 26 to 234 of the 1,000 sentences); prints
# the table and draws one line per design.
#
#   recipes/multi30k/compare.sh [PAIR] [OUTPUT] [RUN_DIR...]
#     PAIR     de-en (default) | en-de | fr-en
#     OUTPUT   image file, default runs/multi30k_PAIR_bleu_by_length.png
#     RUN_DIR  default: those of runs/multi30k_PAIR_{gru,transformer,sutskever,cho} that have translations
#   recipes/multi30k/compare.sh de-en recipes/multi30k/bleu_by_length.png
#   NMT_MULTI30K=/data/multi30k recipes/multi30k/compare.sh  (the data folder; default ~/.cache/nmt/data/multi30k)
set -euo pipefail
pair=${1:-de-en}
src=${pair%-*}
trg=${pair#*-}
output=${2:-runs/multi30k_${src}${trg}_bleu_by_length.png}
shift $(( $# < 2 ? $# : 2 ))
data=${NMT_MULTI30K:-$HOME/.cache/nmt/data/multi30k}
test=test_2016_flickr
for file in "$test.$src" "$test.$trg"; do
  if [ ! -f "$data/$file" ]; then
    echo "compare.sh: Multi30k not found in $data (no $file): download it with 'nmt data multi30k'" \
         "(or set NMT_MULTI30K)" >&2
    exit 1
  fi
done

runs=("$@")
if [ ${#runs[@]} -eq 0 ]; then
  for design in gru transformer sutskever cho; do
    run="runs/multi30k_${src}${trg}_$design"
    if [ -f "$run/$test.hyp" ]; then runs+=("$run"); fi
  done
fi
if [ ${#runs[@]} -eq 0 ]; then
  echo "compare.sh: no run directories for $pair (train them with recipes/multi30k/run.sh DESIGN $pair)" >&2
  exit 1
fi
hyps=()
labels=()
for run in "${runs[@]}"; do
  hyps+=(--hypothesis "$run/$test.hyp")
  name=$(basename "$run")
  labels+=("${name#"multi30k_${src}${trg}_"}")
done
nmt plot-length -i "$data/$test.$src" -r "$data/$test.$trg" "${hyps[@]}" \
  --labels "$(IFS=,; echo "${labels[*]}")" --bins 7,9,11,13,16,20 -o "$output"
