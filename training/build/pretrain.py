"""Stage 1 for a T5 trained from scratch: the explain task on a streamed synthetic corpus, under a time budget.

A from-scratch T5 can learn the rationale *template* while its decoder ignores the encoder; what
makes it read the case is data (the synthetic corpus of training.corpus.synthetic, fresh cases every batch,
no epochs), learning-rate warm-up, and optionally T5's own span-corruption objective on case texts
(`span_fraction` of each batch; it is what teaches a T5 decoder to read its encoder). The task and
loss are training.stage1's (explain_prompt(case) -> rationale, token cross-entropy); this loop exists
because it streams, stops on a wall-clock budget and logs a fidelity figure (r2d.checks.factcheck on a few
dozen validation cases) beside the loss, so a run is judged by what it writes, not only its loss.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from r2d.data import Example
from r2d.model.scoring import IGNORE_INDEX, eval_mode, tokenize_inputs
from r2d.prompts import explain_prompt

logger = logging.getLogger(__name__)

SENTINELS = tuple(f"<extra_id_{i}>" for i in range(16))


@dataclass(frozen=True)
class PretrainConfig:
    max_steps: int = 100_000  # an upper bound; the budget usually ends the run first
    budget_s: float | None = None  # wall-clock seconds for the whole loop, evaluations included
    batch_size: int = 32
    learning_rate: float = 5e-4  # 2e-3 without warm-up plateaued in the probe; 5e-4 kept improving
    warmup_steps: int = 300
    weight_decay: float = 0.01
    span_fraction: float = 0.0  # share of each batch that is span corruption of a case text
    real_fraction: float = 0.2  # share of explain items drawn from the KTAS training split
    eval_every: int = 250
    max_input_tokens: int = 256
    max_target_tokens: int = 160
    seed: int = 0
    device: str = "cpu"  # "cpu" or "cuda": where the model trains
    bf16: bool = False  # bfloat16 autocast (GPUs; CPUs with AVX512-BF16/AMX, where it pays)
    num_workers: int = 0  # processes that generate and tokenize batches (0: the training process)
    compile: bool = False  # torch.compile the model's forward (dynamic shapes)
    pad_multiple: int = 1  # pad batch widths to a multiple of this (8 suits tensor cores)


def add_sentinels(tokenizer: PreTrainedTokenizerBase) -> None:
    """T5's span-corruption sentinels as special tokens (dropped when decoding with skip_special_tokens)."""
    tokenizer.add_tokens(list(SENTINELS), special_tokens=True)


def span_corrupt(
    ids: Sequence[int], rng: random.Random, sentinel_ids: Sequence[int], density: float = 0.15, mean_span: float = 3.0
) -> tuple[list[int], list[int]]:
    """T5 span corruption of token ids (no eos): (input with sentinels, target of sentinel + dropped span)."""
    n = len(ids)
    masked = [False] * n
    spans = min(len(sentinel_ids), max(1, round(n * density / mean_span)))
    for _ in range(spans):
        start, length = rng.randrange(n), max(1, round(rng.expovariate(1 / mean_span)))
        for i in range(start, min(n, start + length)):
            masked[i] = True
    inputs, targets, s = [], [], 0
    for i, token in enumerate(ids):
        if not masked[i]:
            inputs.append(token)
            continue
        if i == 0 or not masked[i - 1]:
            if s == len(sentinel_ids):  # more merged runs than sentinels: keep the rest unmasked
                inputs.append(token)
                masked[i] = False
                continue
            inputs.append(sentinel_ids[s])
            targets.append(sentinel_ids[s])
            s += 1
        targets.append(token)
    return inputs, targets


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then linear decay to 0.1 at `total` (and 0.1 after it)."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.1, 1.0 - 0.9 * (step - warmup) / max(1, total - warmup))


def _pad(rows: list[list[int]], value: int, multiple: int = 1) -> torch.Tensor:
    width = -(-max(len(r) for r in rows) // multiple) * multiple
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


class Batches:
    """Endless batches of explain pairs (synthetic stream + real training cases) and span-corruption pairs."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        synthetic: Iterator[Example],
        real: Sequence[Example],
        cfg: PretrainConfig,
    ) -> None:
        self.tok, self.synthetic, self.real, self.cfg = tokenizer, synthetic, list(real), cfg
        self.rng = random.Random(cfg.seed)
        self.sentinel_ids = tokenizer.convert_tokens_to_ids(list(SENTINELS))

    def _explain_item(self) -> Example:
        if self.real and self.rng.random() < self.cfg.real_fraction:
            return self.rng.choice(self.real)
        return next(self.synthetic)

    def __next__(self) -> dict[str, torch.Tensor]:
        c, tok = self.cfg, self.tok
        n_span = sum(self.rng.random() < c.span_fraction for _ in range(c.batch_size))
        items = [self._explain_item() for _ in range(c.batch_size - n_span)]
        inputs = (
            tok(
                [explain_prompt(e.case_text) for e in items],
                add_special_tokens=True,
                truncation=True,
                max_length=c.max_input_tokens,
            )["input_ids"]
            if items
            else []
        )
        targets = (
            tok(text_target=[e.rationale for e in items], truncation=True, max_length=c.max_target_tokens)["input_ids"]
            if items
            else []
        )
        for _ in range(n_span):
            text = self._explain_item().case_text
            ids = tok(text, add_special_tokens=False, truncation=True, max_length=c.max_input_tokens - 1)["input_ids"]
            inp, tgt = span_corrupt(ids, self.rng, self.sentinel_ids)
            inputs.append(inp + [tok.eos_token_id])
            targets.append(tgt + [tok.eos_token_id])
        input_ids = _pad(inputs, tok.pad_token_id, c.pad_multiple)
        return {
            "input_ids": input_ids,
            "attention_mask": (input_ids != tok.pad_token_id).long(),
            "labels": _pad(targets, IGNORE_INDEX, c.pad_multiple),
        }


class StreamedBatches(torch.utils.data.IterableDataset):
    """Batches made in DataLoader worker processes: each worker draws its own synthetic stream.

    `stream(seed)` returns an endless iterator of explain examples; worker w uses seed cfg.seed + 7919 * (w + 1),
    so workers never repeat each other's cases and a run is reproducible for a fixed number of workers.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        stream: Callable[[int], Iterator[Example]],
        real: Sequence[Example],
        cfg: PretrainConfig,
    ) -> None:
        self.tok, self.stream, self.real, self.cfg = tokenizer, stream, list(real), cfg

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        seed = self.cfg.seed + (0 if info is None else 7919 * (info.id + 1))
        batches = Batches(self.tok, self.stream(seed), self.real, replace(self.cfg, seed=seed))
        while True:
            yield next(batches)


def batch_iterator(
    tokenizer: PreTrainedTokenizerBase,
    stream: Callable[[int], Iterator[Example]],
    real: Sequence[Example],
    cfg: PretrainConfig,
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless training batches: made in the training process (num_workers 0) or in cfg.num_workers processes."""
    if cfg.num_workers <= 0:
        return Batches(tokenizer, stream(cfg.seed), real, cfg)
    loader = torch.utils.data.DataLoader(
        StreamedBatches(tokenizer, stream, real, cfg),
        batch_size=None,
        num_workers=cfg.num_workers,
        prefetch_factor=8,
        pin_memory=cfg.device.startswith("cuda"),
    )
    return iter(loader)


def generate_rationales(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    case_texts: Sequence[str],
    max_input_tokens: int = 256,
    max_new_tokens: int = 160,
    batch_size: int = 16,
) -> list[str]:
    """Greedy explain_prompt(case) rationales, without the n-gram block (numbers repeat legitimately)."""
    out: list[str] = []
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(case_texts), batch_size):
            enc = tokenize_inputs(
                tokenizer, [explain_prompt(c) for c in case_texts[i : i + batch_size]], max_input_tokens, model.device
            )
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
            out += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return out


def rationale_quality(
    case_texts: Sequence[str], rationales: Sequence[str], references: Sequence[str]
) -> dict[str, float | None]:
    """exact (= the rule rationale), fidelity and critical findings named (r2d.checks.factcheck.fidelity_summary)."""
    from r2d.checks.factcheck import fidelity_summary

    summary = fidelity_summary(case_texts, rationales)
    exact = sum(r == ref for r, ref in zip(rationales, references)) / max(1, len(rationales))
    return {"exact": exact, "fidelity": summary["fidelity"], "critical_named": summary["critical_named"]}


def pretrain(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    batches: Iterator[dict[str, torch.Tensor]],
    cfg: PretrainConfig,
    probe: Sequence[Example] = (),
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train until max_steps or the budget; every eval_every steps log loss (+ quality on `probe`). Returns the log.

    The model moves to cfg.device and stays there. With a budget, the planned total (for the decay) is
    re-estimated every step from the measured seconds per step (log points included), so the schedule
    decays and ends close to the budget on any machine.
    """
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model.to(device)
    forward = torch.compile(model, dynamic=True) if cfg.compile else model
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=device.type == "cuda"
    )
    total, start, history, losses = cfg.max_steps, time.monotonic(), [], []
    model.train()
    step = 0
    while step < total:
        for group in opt.param_groups:
            group["lr"] = cfg.learning_rate * lr_factor(step, cfg.warmup_steps, total)
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = forward(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        step += 1
        if cfg.budget_s is not None and step >= 10:  # plan from the measured pace, from the 10th step on
            elapsed = time.monotonic() - start
            total = min(cfg.max_steps, max(step, math.floor(cfg.budget_s * step / max(elapsed, 1e-9))))
        if step % cfg.eval_every == 0 or step == total:
            entry = _log_entry(
                model,
                tokenizer,
                cfg,
                probe,
                step,
                float(torch.stack(losses).float().mean()),
                opt.param_groups[0]["lr"],
                time.monotonic() - start,
            )
            losses = []
            history.append(entry)
            logger.info(
                "stage 1 %s",
                ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items()),
            )
            if on_log:
                on_log(entry)
            if cfg.budget_s is not None and time.monotonic() - start >= cfg.budget_s:
                break
    return history


def _log_entry(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    cfg: PretrainConfig,
    probe: Sequence[Example],
    step: int,
    loss: float,
    lr: float,
    elapsed: float,
) -> dict[str, Any]:
    entry = {"step": step, "loss": loss, "lr": lr, "elapsed_s": round(elapsed, 1)}
    if probe:
        texts = generate_rationales(
            model, tokenizer, [e.case_text for e in probe], cfg.max_input_tokens, cfg.max_target_tokens
        )
        entry.update(rationale_quality([e.case_text for e in probe], texts, [e.rationale for e in probe]))
        model.train()
    return entry
