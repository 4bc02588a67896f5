"""Label-set scoring: the model's label for a case is the candidate it finds most likely.

Shared by inference (the app's label and probabilities) and training (the label that scheduled
sampling feeds back). One encoder pass per case; every candidate label is then teacher-forced
through the decoder, so the answer is always a valid label and comes with a probability for every
candidate, unlike free generation, which can emit any string.

The scores, and why:
- a label's score is its sequence log-likelihood, the sum of its token log-probabilities with `</s>`
  included: log P(label | case) under the model, the quantity greedy decoding approximates;
- `probabilities` are the softmax of those sums over the candidates: P(label | case, the label is one of
  the set). They rank and are compared within one case; the best label is the one with the largest sum;
- `confidence` is the geometric-mean token probability of the best label, exp(mean token log-prob),
  R2D-C's confidence (the authors' `exp(mean(token log-probs))` of the greedy label). It is the one figure
  comparable across labels of different lengths: a sum falls with every extra token, a mean does not.

(case, candidate) pairs go through the decoder in calls of at most `max_pairs` pairs, so memory stays
bounded whatever the batch and label-set sizes (the logits are per pair). Inside a call, each case's
candidates are packed into one decoder sequence, so the encoder output and the cross-attention keys and
values are computed once per case. This is the one home of that chunking: callers pass whole batches.
The normalisation above is written once, in r2d.model.label_scores (no torch): the engines that compute the
token log-probs another way (ONNX Runtime, CTranslate2) turn them into LabelScores with the same function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from r2d.model.label_scores import LabelScores, group_scores

IGNORE_INDEX = -100  # positions the loss (and the scores) skip
# (case, candidate) pairs per decoder call: 8 cases x 5 labels in one call added 280 MB of peak memory at
# t5-base shape (benchmarks/bench_inference.py); see benchmarks/bench_label_scoring.py for training batches
SCORING_PAIRS = 16


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


def tokenize_inputs(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int, device: torch.device | str
) -> BatchEncoding:
    """Tokenise encoder inputs, padded to the longest and cut at max_tokens."""
    return tokenizer(list(texts), max_length=max_tokens, truncation=True, padding=True, return_tensors="pt").to(device)


def tokenize_targets(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int) -> torch.Tensor:
    """Decoder targets (batch, T) with padding replaced by IGNORE_INDEX; cut at max_tokens unless it is 0."""
    cut = max_tokens > 0
    ids = tokenizer(
        text_target=list(texts),
        max_length=max_tokens if cut else None,
        truncation=cut,
        padding=True,
        return_tensors="pt",
    )["input_ids"]
    return ids.masked_fill(ids == tokenizer.pad_token_id, IGNORE_INDEX)


def score_candidates(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    candidates: Sequence[Sequence[str]],
    max_input_tokens: int,
    max_label_tokens: int,
    max_pairs: int = SCORING_PAIRS,
) -> list[LabelScores]:
    """Score each prompt's own candidate list. One encoder pass for all prompts, then the decoder over the
    (case, candidate) pairs in calls of at most `max_pairs`. Runs without gradients and in eval mode.
    max_label_tokens 0 = labels are never cut."""
    if len(prompts) != len(candidates):
        raise ValueError("one candidate list per prompt")
    if any(len(c) == 0 for c in candidates):
        raise ValueError("every prompt needs at least one candidate label")
    device = model.device
    owner = torch.tensor([i for i, c in enumerate(candidates) for _ in c], device=device)
    flat = [label for c in candidates for label in c]
    seq_logp: list[float] = []
    mean_logp: list[float] = []
    with eval_mode(model):
        enc = tokenize_inputs(tokenizer, prompts, max_input_tokens, device)
        hidden = model.get_encoder()(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        for start in range(0, len(flat), max_pairs):
            rows = owner[start : start + max_pairs]
            targets = tokenize_targets(tokenizer, flat[start : start + max_pairs], max_label_tokens).to(device)
            logits = _decode_packed(model, hidden, enc["attention_mask"], rows, targets)
            mask = targets != IGNORE_INDEX
            logp = torch.log_softmax(logits.float(), dim=-1)  # (pairs, T, vocab)
            token_logp = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
            seq_logp += token_logp.sum(-1).tolist()
            mean_logp += (token_logp.sum(-1) / mask.sum(-1)).tolist()
    return group_scores(candidates, seq_logp, mean_logp)


def _decode_packed(
    model: PreTrainedModel,
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
) -> torch.Tensor:
    """Teacher-forced logits (pairs, T, vocab) of `targets`, pair i being a candidate of case rows[i].

    The pairs of one case are packed one after another into a single decoder row, so the decoder's
    cross-attention keys and values are computed once per case, not once per (case, candidate) pair.
    Packing is exact for T5: its decoder knows positions only through the relative position bias, the
    same inside a block wherever the block starts, and _block_causal_mask keeps blocks from seeing each other.
    """
    cases, counts = torch.unique_consecutive(rows, return_counts=True)  # pairs come grouped by case
    n_blocks, width = int(counts.max()), targets.shape[1]
    present = torch.arange(n_blocks, device=rows.device)[None, :] < counts[:, None]  # (cases, blocks)
    packed = torch.full((len(cases), n_blocks, width), IGNORE_INDEX, dtype=targets.dtype, device=targets.device)
    packed[present] = targets
    start = torch.full(
        (len(cases), n_blocks, 1), model.config.decoder_start_token_id, dtype=targets.dtype, device=targets.device
    )
    inputs = torch.cat([start, packed[..., :-1]], dim=-1)  # each block: its target shifted right
    inputs = inputs.masked_fill(inputs == IGNORE_INDEX, model.config.pad_token_id)
    out = model(
        encoder_outputs=(hidden.index_select(0, cases),),
        attention_mask=attention_mask.index_select(0, cases),
        decoder_input_ids=inputs.reshape(len(cases), n_blocks * width),
        use_cache=False,
        decoder_attention_mask=_block_causal_mask(n_blocks, width, hidden.dtype, hidden.device),
    )
    return out.logits.reshape(len(cases), n_blocks, width, -1)[present]


def _block_causal_mask(n_blocks: int, width: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Additive decoder self-attention mask (1, 1, B*T, B*T): a position sees the earlier positions of its own block."""
    pos = torch.arange(n_blocks * width, device=device)
    allowed = (pos[:, None] // width == pos[None, :] // width) & (pos[None, :] <= pos[:, None])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def score_labels(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    label_set: Sequence[str],
    max_input_tokens: int,
    max_label_tokens: int,
    max_pairs: int = SCORING_PAIRS,
) -> list[LabelScores]:
    """Score every prompt against the same closed label set (KTAS levels, yes/no/maybe)."""
    return score_candidates(
        model, tokenizer, prompts, [list(label_set)] * len(prompts), max_input_tokens, max_label_tokens, max_pairs
    )
