"""Padding, special tokens, and token-count batches of similar lengths."""

import torch

from nmt.batching import make_batch, token_batches
from nmt.tokenizer import BOS, EOS, PAD


def test_make_batch_adds_special_tokens_and_masks_padding() -> None:
    batch = make_batch([[5, 6, 7], [8]], [[9], [10, 11]])
    assert batch.src.tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD]]
    assert batch.src_mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert batch.trg_in.tolist() == [[BOS, 9, PAD], [BOS, 10, 11]]
    assert batch.trg_out.tolist() == [[9, EOS, PAD], [10, 11, EOS]]
    assert batch.n_target_tokens == 5
    assert make_batch([[]]).src.tolist() == [[EOS]]


def test_token_batches_cover_everything_within_budget() -> None:
    g = torch.Generator().manual_seed(0)
    src = torch.randint(1, 50, (500,), generator=g).tolist()
    trg = torch.randint(1, 50, (500,), generator=g).tolist()
    batches = token_batches(src, trg, max_tokens=400, shuffle=True, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        width = max(max(src[i], trg[i]) + 1 for i in b)
        assert width * len(b) <= 400 or len(b) == 1
    # length bucketing: a batch holds sentence pairs of similar (longest-side) length
    longest = [max(s, t) for s, t in zip(src, trg, strict=True)]
    spreads = [max(longest[i] for i in b) - min(longest[i] for i in b) for b in batches]
    assert sum(spreads) / len(spreads) < 3


def test_shuffling_is_seeded() -> None:
    lengths = list(range(1, 200))
    a = token_batches(lengths, lengths, 300, shuffle=True, seed=1)
    assert a == token_batches(lengths, lengths, 300, shuffle=True, seed=1)
    assert a != token_batches(lengths, lengths, 300, shuffle=True, seed=2)
    assert token_batches(lengths, None, 300) == token_batches(lengths, None, 300, shuffle=False, seed=9)
