"""``python -m nmt ...`` is ``nmt ...`` (also what ``torchrun -m nmt train`` runs)."""

from nmt.cli import main

main()
