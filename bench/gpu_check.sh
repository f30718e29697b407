#!/usr/bin/env bash
# GPU check: with the torch already installed (a CUDA build) and downloading nothing, in a few minutes:
#   1. train the Multi30k GRU (experiment=multi30k_gru) and the Transformer (experiment=multi30k_transformer)
#      for UPDATES updates on the GPU (train.device=auto, precision auto: bf16 on compute capability 8.0+),
#   2. decode test_2016_flickr with each at beam 5 on the GPU and score it,
#   3. run the GRU under torchrun --nproc_per_node=1 (nccl) for 50 updates and resume it for 10 more (the
#      CUDA random state is kept in last.pt),
# then print a table: training target tokens/s, decoding sentences/s, peak GPU memory, BLEU.
#
#   bench/gpu_check.sh [OUT_DIR] [UPDATES]        (defaults: runs/gpu_check, 300)
#   NMT_MULTI30K=/data/multi30k bench/gpu_check.sh
set -euo pipefail
out=${1:-runs/gpu_check}
updates=${2:-300}
data=${NMT_MULTI30K:-../shared/data/multi30k}
export NMT_MULTI30K=$data
python - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: no CUDA GPU visible to torch {torch.__version__}: nothing to check")
from nmt.hardware import machine
print(f"machine: {machine().describe()}")
EOF
mkdir -p "$out"
common=(train.max_steps="$updates" train.validate_every="$updates" train.log_every=50 train.test=false
        train.plot_attention=0 train.device=auto train.start_over=true)
for design in gru transformer; do
  run=$out/$design
  nmt train experiment="multi30k_$design" "${common[@]}" hydra.run.dir="$run" 2> "$run.train.log"
  nmt translate -m "$run" -i "$data/test_2016_flickr.de" -o "$run/test.hyp" --beam 5 --device cuda \
    2> "$run.translate.log"
  nmt evaluate -r "$data/test_2016_flickr.en" -h "$run/test.hyp" > "$run.bleu"
done
ddp=$out/ddp
torchrun --nproc_per_node=1 -m nmt train experiment=multi30k_gru train.max_steps=50 train.validate_every=50 \
  train.test=false train.plot_attention=0 train.start_over=true hydra.run.dir="$ddp" 2> "$ddp.train.log"
torchrun --nproc_per_node=1 -m nmt train experiment=multi30k_gru train.max_steps=60 train.validate_every=50 \
  train.test=false train.plot_attention=0 train.resume=true hydra.run.dir="$ddp" 2> "$ddp.resume.log"
python - "$out" <<'EOF'
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
print("\n| run | updates | trg tok/s (last 50) | peak GPU MiB (train) | decode sent/s | peak GPU MiB (decode) | BLEU |")
print("|---|---|---|---|---|---|---|")
for name in ("gru", "transformer", "ddp"):
    records = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    decode = bleu = mem = "-"
    log = out / f"{name}.translate.log"
    if log.exists():
        m = re.search(r"translated \d+ lines in [\d.]+ s \(([\d.]+) sentences/s\); peak GPU memory (\d+) MiB",
                      log.read_text())
        decode, mem = (m.group(1), m.group(2)) if m else ("?", "?")
        bleu = (out / f"{name}.bleu").read_text().split()[1]
    print(f"| {name} | {train[-1]['step']} | {train[-1]['tokens_per_s']:.0f} | "
          f"{train[-1].get('gpu_memory_mib', float('nan')):.0f} | {decode} | {mem} | {bleu} |")
resumed = (out / "ddp.resume.log").read_text()
print("\ntorchrun (nccl): resumed from step 50:", "resuming from" in resumed and "step 50" in resumed)
EOF
