"""Search: from a trained model and a batch of sources to output token sequences.

Works with every model through its ``encode`` / ``init_state`` / ``step`` interface (``nmt.models.protocol``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt import NmtError
from nmt.models.protocol import Tensors, select
from nmt.tokenizer import BOS, EOS


@dataclass
class Hypothesis:
    """One output: its tokens (EOS not included), log-probabilities, and attention [len(tokens)+1, S] (on the
    CPU, whatever device searched)."""

    tokens: list[int]
    score: float
    token_scores: list[float]
    attention: Tensor | None


STOPS = ("beams", "bound")  # when a sentence's beam search ends: see beam_search


def max_output_lengths(src_mask: Tensor, a: float, b: int) -> Tensor:
    """Per sentence, at most a * (source length) + b output tokens (EOS included)."""
    return (a * src_mask.sum(1).float() + b).long().clamp(min=1)


class NonFiniteScoresError(NmtError):
    """The model gave NaN log-probabilities: its weights are broken, and nothing it decodes means anything."""


Pick = Callable[[Tensor, int], Tensor]  # (log-probabilities [B, V] at step i, i) -> the tokens chosen [B]


@torch.no_grad()
def _with_shortlist(enc: Tensors, shortlist: Tensor | None) -> Tensors:
    """The encoder output with each sentence's candidate subwords, read by the model's output layer."""
    return enc if shortlist is None else {**enc, "shortlist": shortlist}


def greedy_search(model: nn.Module, src: Tensor, src_mask: Tensor, max_lengths: Tensor, min_length: int = 0,
                  no_repeat_ngram: int = 0, pick: Pick | None = None, shortlist: Tensor | None = None
                  ) -> list[Hypothesis]:
    """Pick the most probable token at every step (or the one ``pick`` chooses: see :func:`sampler`), all
    sentences of the batch at once; a token's score is the model's log-probability of it.

    EOS is forbidden before ``min_length`` tokens, and a token that would repeat an n-gram of size
    ``no_repeat_ngram`` is never picked. At a sentence's last allowed step only EOS may follow (the maximum
    length wins over ``min_length``), so every hypothesis ends with EOS. Each sentence is decoded as it would be
    alone. ``shortlist`` [B, V] limits each sentence to its candidate subwords (``nmt.models.output``). Raises
    :class:`NonFiniteScoresError` when the model gives NaN scores.
    """
    enc = _with_shortlist(model.encode(src, src_mask), shortlist)
    state = model.init_state(enc)
    batch = src.size(0)
    prev = torch.full((batch,), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(batch, dtype=torch.bool, device=src.device)
    history = torch.empty(batch, 0, dtype=torch.long, device=src.device)
    tokens, scores, weights = [], [], []
    for i in range(int(max_lengths.max())):
        log_probs, a, state = model.step(prev, enc, state)
        last = i + 1 >= max_lengths
        if i < min_length:
            log_probs[:, EOS].masked_fill_(~last, float("-inf"))
        block_repeated_ngrams(log_probs, history, no_repeat_ngram)
        only_eos(log_probs, last)
        if pick is None:
            score, prev = log_probs.max(-1)
        else:
            prev = pick(log_probs, i)
            score = log_probs.gather(1, prev.unsqueeze(1)).squeeze(1)
        tokens.append(prev)
        scores.append(score)
        weights.append(a)
        if no_repeat_ngram > 0:
            history = torch.cat([history, prev.unsqueeze(1)], 1)
        done |= prev == EOS
        if done.all():
            break
    scores_t = torch.stack(scores, 1)
    if scores_t.isnan().any():  # max() propagates NaN: one check after the search finds any step's
        raise NonFiniteScoresError("the model's scores are not finite (NaN)")
    return _collect(torch.stack(tokens, 1), scores_t, torch.stack(weights, 1) if weights[0] is not None else None,
                    src_mask)


def sampler(uniforms: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Pick:
    """A ``pick`` for :func:`greedy_search` that samples: at step i, row r draws from the model's distribution
    tempered by ``temperature`` (log-probabilities divided by it), cut to the ``top_k`` most probable tokens (0:
    all) and to the nucleus, the fewest most probable tokens whose probability reaches ``top_p``; the draw is the
    inverse of the distribution's cumulative sum at ``uniforms[r, i]`` (in [0, 1)), so that a row's tokens depend
    on its own uniforms only, never on the batch it is in. A token of probability zero is never drawn."""
    def pick(log_probs: Tensor, i: int) -> Tensor:
        logits = log_probs.float() / temperature
        if 0 < top_k < logits.size(-1):
            logits = logits.masked_fill(logits < logits.topk(top_k, -1).values[:, -1:], float("-inf"))
        probs = torch.softmax(logits, -1)
        if top_p < 1.0:
            ranked, order = probs.sort(-1, descending=True)
            ranked = ranked.masked_fill(ranked.cumsum(-1) - ranked >= top_p, 0.0)  # mass above reached p: out
            probs = torch.zeros_like(probs).scatter(-1, order, ranked)
        cdf = probs.cumsum(-1)
        u = uniforms[:, i : i + 1].to(cdf) * cdf[:, -1:]
        return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp(max=probs.size(-1) - 1)

    return pick


def _collect(tokens: Tensor, scores: Tensor, attention: Tensor | None, src_mask: Tensor) -> list[Hypothesis]:
    """Cut each row after its first EOS into a Hypothesis."""
    attention = attention.cpu() if attention is not None else None
    hyps = []
    for b, (row, row_scores) in enumerate(zip(tokens.tolist(), scores.tolist(), strict=True)):
        end = row.index(EOS) + 1
        src_len = int(src_mask[b].sum())
        hyps.append(Hypothesis(
            tokens=[t for t in row[:end] if t != EOS], score=float(sum(row_scores[:end])),
            token_scores=row_scores[:end],
            attention=attention[b, :end, :src_len] if attention is not None else None))
    return hyps


def only_eos(log_probs: Tensor, rows: Tensor) -> None:
    """Forbid (in place) every token but EOS in the ``rows`` [N] (bool) that reached their maximum length."""
    index = rows.nonzero().flatten()
    if index.numel():
        eos = log_probs[index, EOS]
        log_probs[index] = float("-inf")
        log_probs[index, EOS] = eos


def length_penalty(length: Tensor | int, alpha: float) -> Tensor | float:
    """GNMT length penalty lp(Y) = ((5 + |Y|) / 6)^alpha (Wu et al. 2016); alpha 0 means none."""
    return ((5.0 + length) / 6.0) ** alpha


def block_repeated_ngrams(log_probs: Tensor, history: Tensor, n: int) -> None:
    """Forbid (in place) any token that would repeat an n-gram already in ``history`` [N, t]."""
    if n <= 0 or history.size(1) < n:
        return
    windows = history.unfold(1, n, 1)  # [N, t-n+1, n]: every n-gram so far
    match = (windows[:, :, :-1] == history[:, -(n - 1):].unsqueeze(1)).all(-1) if n > 1 else \
        torch.ones(windows.shape[:2], dtype=torch.bool, device=history.device)
    banned = torch.zeros_like(log_probs).scatter_add_(1, windows[:, :, -1], match.to(log_probs.dtype)) > 0
    log_probs.masked_fill_(banned, float("-inf"))


@torch.no_grad()
def beam_search(model: nn.Module, src: Tensor, src_mask: Tensor, max_lengths: Tensor, beam_size: int,
                alpha: float = 0.0, nbest: int = 1, min_length: int = 0, no_repeat_ngram: int = 0,
                stop: str = "bound", shortlist: Tensor | None = None) -> list[list[Hypothesis]]:
    """Beam search over all sentences and beams of the batch at once.

    Hypotheses are ranked by score / lp(length) (GNMT length penalty ``alpha``; 0 ranks by log-probability).
    A sentence stops, and leaves the batch, as soon as its ``nbest`` best finished hypotheses cannot be beaten by
    a live beam (``stop="bound"``: no longer hypothesis can win), or with ``stop="beams"`` (fairseq's rule, faster,
    not always the same output) also once ``beam_size`` of its hypotheses have finished. The encoder output (with
    the attention keys it holds) is computed once and shared by the beams. EOS is forbidden before ``min_length``
    tokens (unless the maximum length is reached), and repeated n-grams of size ``no_repeat_ngram`` never. Returns
    the ``nbest`` best hypotheses per sentence, best first; ``score`` is the log-probability. Raises
    :class:`NonFiniteScoresError` when the model gives NaN scores.
    """
    if stop not in STOPS:
        raise ValueError(f"stop must be one of {', '.join(STOPS)}, got {stop!r}")
    batch, k, device = src.size(0), beam_size, src.device
    enc = _with_shortlist(model.encode(src, src_mask), shortlist)  # one row per sentence, shared by its beams
    state = model.init_state(enc)
    sentence = torch.arange(batch, device=device)  # the batch sentence of each group of rows still searching
    src_lengths = src_mask.sum(1).tolist()
    # Each sentence starts with one hypothesis (BOS), and has k from the first step on.
    scores = torch.zeros(batch, 1, device=device)
    prev = torch.full((batch,), BOS, dtype=torch.long, device=device)
    history = torch.empty(batch, 0, dtype=torch.long, device=device)
    token_scores = torch.empty(batch, 0, device=device)
    attention: Tensor | None = None
    finished: list[list[tuple[float, Hypothesis]]] = [[] for _ in range(batch)]
    kth_best = torch.full((batch,), float("-inf"), device=device)  # nbest-th finished score so far
    enough = k if stop == "beams" else float("inf")  # finished hypotheses that end a sentence's search
    reachable = length_penalty(max_lengths.float(), alpha)  # the largest length penalty a sentence can get
    nan = torch.zeros((), dtype=torch.bool, device=device)
    for i in range(int(max_lengths.max())):
        n, beams = scores.shape
        log_probs, a, state = model.step(prev, enc, state)
        vocab = log_probs.size(1)
        at_limit = (i + 1 >= max_lengths[sentence]).repeat_interleave(beams)
        if i < min_length:
            log_probs[:, EOS].masked_fill_(~at_limit, float("-inf"))
        block_repeated_ngrams(log_probs, history, no_repeat_ngram)
        only_eos(log_probs, at_limit)
        if a is not None:
            attention = a.unsqueeze(1) if attention is None else torch.cat([attention, a.unsqueeze(1)], 1)

        parent = scores.view(-1)
        candidates = log_probs.add_(parent.unsqueeze(1)).view(n, beams * vocab)  # s + log p(y), in place
        cand_scores, cand_index = candidates.topk(min(2 * k, beams * vocab), dim=1)
        nan |= cand_scores[:, 0].isnan().any()  # topk ranks NaN first: a sentence with any NaN shows it here
        cand_rows = torch.arange(n, device=device).unsqueeze(1) * beams + cand_index // vocab
        cand_token = cand_index % vocab
        valid = torch.isfinite(cand_scores)
        is_eos = valid & (cand_token == EOS)

        # Finished: an EOS among the k best candidates.
        for b, c in (is_eos[:, :k]).nonzero().tolist():
            row, score, s = int(cand_rows[b, c]), float(cand_scores[b, c]), int(sentence[b])
            hyp = Hypothesis(history[row].tolist(), score, [*token_scores[row].tolist(), score - float(parent[row])],
                             attention[row, :, : src_lengths[s]].cpu() if attention is not None else None)
            finished[s].append((score / length_penalty(history.size(1) + 1, alpha), hyp))
            if len(finished[s]) >= enough:  # stop="beams": no live beam may continue this sentence
                kth_best[s] = float("inf")
            elif len(finished[s]) >= nbest:
                kth_best[s] = sorted((f[0] for f in finished[s]), reverse=True)[nbest - 1]

        # Live: the k best candidates that are not EOS, in rank order.
        live = valid & ~is_eos
        pick = torch.sort((~live).to(torch.int8), dim=1, stable=True).indices[:, :k]
        scores = cand_scores.gather(1, pick).masked_fill(~live.gather(1, pick), float("-inf"))
        rows, prev = cand_rows.gather(1, pick).view(-1), cand_token.gather(1, pick).view(-1)

        # Log-probabilities only fall, so a live score s can at best become s / lp(max length): a sentence is
        # done when its nbest-th finished hypothesis is at least that good (stop="beams" makes it +inf once k
        # have finished). Done sentences leave the batch.
        searching = kth_best[sentence] < scores.max(1).values / reachable[sentence]
        if not searching.any():
            break
        if not searching.all():
            keep = searching.nonzero().flatten()
            rows = rows.view(n, -1)[keep].view(-1)
            prev, scores, sentence = prev.view(n, -1)[keep].view(-1), scores[keep], sentence[keep]
            enc = select(enc, keep)
        history = torch.cat([history[rows], prev.unsqueeze(1)], 1)
        token_scores = torch.cat([token_scores[rows], (scores.view(-1) - parent[rows]).unsqueeze(1)], 1)
        attention = attention[rows] if attention is not None else None
        state = select(state, rows)
    if nan:
        raise NonFiniteScoresError("the model's scores are not finite (NaN)")
    return [[h for _, h in sorted(f, key=lambda x: -x[0])[:nbest]] for f in finished]
