"""Tokenisation and collation shared by Stage 1, Stage 2 and the baselines.

Every prompt comes from `r2d.prompts` and every length from `GenerationConfig`. A batch carries
tokenised tensors for the parts that never change (the predict task, the rationale targets, the
label-free explain task) and the raw case texts and gold labels, because the Stage-2 explain input
depends on a label that is only chosen inside the training step (scheduled sampling).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase

from r2d.config import METHODS, GenerationConfig
from r2d.data import Example
from r2d.model.scoring import tokenize_inputs, tokenize_targets
from r2d.prompts import explain_given_label_prompt, explain_prompt, predict_prompt

# stage1 = the label-free explain task (case -> rationale), then Stage 2's methods (r2d.config.METHODS):
# r2d = predict + explain given a (sampled) label; sft = predict only; dss = predict + label-free explain
# (distilling step-by-step)
MODES = ("stage1", *METHODS)
# which parts a batch needs per mode
_NEEDS_PREDICT = {"r2d", "sft", "dss"}
_NEEDS_EXPLAIN_INPUT = {"stage1", "dss"}
_NEEDS_RATIONALE = {"stage1", "r2d", "dss"}


class ExampleDataset(torch.utils.data.Dataset):
    """A list of Examples as a map-style dataset; R2DCollator turns a list of them into a batch."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]


def needs_rationales(mode: str) -> bool:
    """Whether a mode trains on rationales (every mode but the SFT baseline)."""
    return mode in _NEEDS_RATIONALE


def explain_given_label_inputs(
    tokenizer: PreTrainedTokenizerBase,
    case_texts: Sequence[str],
    labels: Sequence[str],
    generation: GenerationConfig,
    device: torch.device | str,
) -> BatchEncoding:
    """Encoder inputs of explain_given_label_prompt(case, label), cut at max_input_tokens."""
    prompts = [explain_given_label_prompt(c, y) for c, y in zip(case_texts, labels, strict=True)]
    return tokenize_inputs(tokenizer, prompts, generation.max_input_tokens, device)


def label_targets(
    tokenizer: PreTrainedTokenizerBase, labels: Sequence[str], generation: GenerationConfig
) -> torch.Tensor:
    """Decoder targets (batch, T) of label strings, padding = IGNORE_INDEX, cut at max_label_tokens."""
    return tokenize_targets(tokenizer, labels, generation.max_label_tokens)


def tokenizer_corpus(examples: Sequence[Example]) -> list[str]:
    """Every text a model trained on these examples reads or writes, for fitting a new tokenizer."""
    texts: list[str] = []
    for e in examples:
        texts += [
            predict_prompt(e.case_text),
            explain_prompt(e.case_text),
            explain_given_label_prompt(e.case_text, e.label),
            e.label,
        ]
        if e.rationale:
            texts.append(e.rationale)
    return texts


@dataclass(frozen=True)
class R2DCollator:
    """Turn a list of Examples into the batch dict R2DTrainer.compute_loss reads for `mode`.

    Keys (tensors first, so the Trainer finds the batch size): predict_input_ids/attention_mask/labels,
    explain_input_ids/attention_mask (label-free explain prompt), explain_labels (gold rationale),
    then case_texts and gold_labels (lists of str). Raises ValueError for an unknown mode.
    """

    tokenizer: PreTrainedTokenizerBase
    generation: GenerationConfig
    mode: str

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    def __call__(self, examples: Sequence[Example]) -> dict[str, Any]:
        g, tok = self.generation, self.tokenizer
        cases = [e.case_text for e in examples]
        batch: dict[str, Any] = {}
        if self.mode in _NEEDS_PREDICT:
            enc = tokenize_inputs(tok, [predict_prompt(c) for c in cases], g.max_input_tokens, "cpu")
            batch["predict_input_ids"] = enc["input_ids"]
            batch["predict_attention_mask"] = enc["attention_mask"]
            batch["predict_labels"] = label_targets(tok, [e.label for e in examples], g)
        if self.mode in _NEEDS_EXPLAIN_INPUT:
            enc = tokenize_inputs(tok, [explain_prompt(c) for c in cases], g.max_input_tokens, "cpu")
            batch["explain_input_ids"] = enc["input_ids"]
            batch["explain_attention_mask"] = enc["attention_mask"]
        if self.mode in _NEEDS_RATIONALE:
            batch["explain_labels"] = tokenize_targets(tok, [e.rationale for e in examples], g.max_rationale_tokens)
        batch["case_texts"] = cases
        batch["gold_labels"] = [e.label for e in examples]
        return batch
