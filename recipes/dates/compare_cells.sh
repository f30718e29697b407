#!/usr/bin/env bash
# Cells side by side: the vanilla RNN, the LSTM and the GRU, each with Bahdanau attention and without (a fixed
# context, Cho et al.), trained with the same sizes, data and budget on the date task, then drawn together:
# dev exact match against updates and against seconds (cells.png), and the gradient flow through time over 50
# dev pairs of each design with fresh weights (gradients-init.png: the decay the gates and attention remedy) and
# trained (gradients.png: what the trained models carry).
#
#   recipes/dates/compare_cells.sh [OUT_DIR] [TRAIN OVERRIDES...]     (default OUT_DIR: runs/cells)
#   recipes/dates/compare_cells.sh runs/cells train.max_epochs=8
#
# Every run reads the source forward (model.direction=forward), so that the recurrent path from a source word to
# the output is as long as the sentence after it; 10,000 training dates, 4 epochs, validation every 25 updates.
# Two runs train at a time, one thread each (at these sizes one thread is as fast per run as two). Running it
# again skips the runs already trained (train.resume=true).
set -euo pipefail
out=${1:-runs/cells}
shift || true
mkdir -p "$out"

train() {  # CELL ATTENTION
  nmt train hydra.run.dir="$out/$1-$2" train.resume=true model.name="$1-$2" model.cell="$1" model.attention="$2" \
    model.direction=forward data.sizes.train=10000 train.max_epochs=4 train.validate_every=25 train.patience=0 \
    train.threads=1 train.test=false "${@:3}" > "$out/$1-$2.log" 2>&1
}

runs=()
for attention in bahdanau none; do
  for cell in rnn lstm gru; do
    train "$cell" "$attention" "$@" &
    runs+=("$out/$cell-$attention")
    if (( ${#runs[@]} % 2 == 0 )); then wait; fi
  done
done
wait

models=()
for run in "${runs[@]}"; do models+=(-m "$run"); done
nmt plot-metrics "${models[@]}" --metric exact --against step --against elapsed -o "$out/cells.png"
nmt plot-gradients "${models[@]}" --pairs 50 --threads 2 --init -o "$out/gradients-init.png"
nmt plot-gradients "${models[@]}" --pairs 50 --threads 2 -o "$out/gradients.png"
for run in "${runs[@]}"; do
  printf '%s\t%s\n' "$(basename "$run")" "$(grep -o '"exact": [0-9.]*' "$run/metrics.jsonl" | tail -1)"
done
