"""Label-set scoring: the model's label for a case is the candidate it finds most likely.

Shared by inference (the app's label and probabilities) and training (the label that scheduled
sampling feeds back). One encoder pass per case; every candidate label is then teacher-forced
through the decoder in one batch, so the answer is always a valid label and comes with a
probability for every candidate, unlike free generation, which can emit any string.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

IGNORE_INDEX = -100  # positions the loss (and the scores) skip


@dataclass(frozen=True)
class LabelScores:
    """Scores of one case over its candidate labels."""

    labels: tuple[str, ...]
    log_likelihoods: tuple[float, ...]  # sum of token log-probs of each label, </s> included
    probabilities: tuple[float, ...]  # softmax over the candidates' log-likelihoods; sums to 1
    confidence: float  # geometric-mean token probability of the best label (R2D-C's confidence)

    @property
    def best(self) -> str:
        return self.labels[self.best_index]

    @property
    def best_index(self) -> int:
        return max(range(len(self.labels)), key=self.log_likelihoods.__getitem__)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off and no gradients for a moment, then the model's previous mode again."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def tokenize_inputs(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int,
                    device: torch.device | str) -> BatchEncoding:
    """Tokenise encoder inputs, padded to the longest and cut at max_tokens."""
    return tokenizer(list(texts), max_length=max_tokens, truncation=True, padding=True,
                     return_tensors="pt").to(device)


def tokenize_targets(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int) -> torch.Tensor:
    """Decoder targets (batch, T) with padding replaced by IGNORE_INDEX."""
    ids = tokenizer(text_target=list(texts), max_length=max_tokens, truncation=True, padding=True,
                    return_tensors="pt")["input_ids"]
    return ids.masked_fill(ids == tokenizer.pad_token_id, IGNORE_INDEX)


def score_candidates(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                     candidates: Sequence[Sequence[str]], max_input_tokens: int,
                     max_label_tokens: int) -> list[LabelScores]:
    """Score each prompt's own candidate list. Runs without gradients and in eval mode."""
    if len(prompts) != len(candidates):
        raise ValueError("one candidate list per prompt")
    if any(len(c) == 0 for c in candidates):
        raise ValueError("every prompt needs at least one candidate label")
    device = model.device
    with eval_mode(model):
        enc = tokenize_inputs(tokenizer, prompts, max_input_tokens, device)
        hidden = model.get_encoder()(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        # flatten (case, candidate) pairs so that all candidates run through the decoder at once
        owner = torch.tensor([i for i, c in enumerate(candidates) for _ in c], device=device)
        flat = [label for c in candidates for label in c]
        targets = tokenize_targets(tokenizer, flat, max_label_tokens).to(device)  # (pairs, T)
        out = model(encoder_outputs=(hidden.index_select(0, owner),),
                    attention_mask=enc["attention_mask"].index_select(0, owner), labels=targets)
        mask = targets != IGNORE_INDEX
        logp = torch.log_softmax(out.logits.float(), dim=-1)  # (pairs, T, vocab)
        token_logp = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        seq_logp = token_logp.sum(-1).tolist()
        mean_logp = (token_logp.sum(-1) / mask.sum(-1)).tolist()
    return _group(candidates, seq_logp, mean_logp)


def _group(candidates: Sequence[Sequence[str]], seq_logp: list[float], mean_logp: list[float]) -> list[LabelScores]:
    results, start = [], 0
    for cands in candidates:
        ll = torch.tensor(seq_logp[start:start + len(cands)])
        probs = torch.softmax(ll, dim=0).tolist()
        best = int(ll.argmax())
        results.append(LabelScores(labels=tuple(cands), log_likelihoods=tuple(ll.tolist()),
                                   probabilities=tuple(probs),
                                   confidence=float(torch.tensor(mean_logp[start + best]).exp())))
        start += len(cands)
    return results


def score_labels(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                 label_set: Sequence[str], max_input_tokens: int, max_label_tokens: int) -> list[LabelScores]:
    """Score every prompt against the same closed label set (KTAS levels, yes/no/maybe)."""
    return score_candidates(model, tokenizer, prompts, [list(label_set)] * len(prompts),
                            max_input_tokens, max_label_tokens)
