"""R2DTrainer: transformers' Seq2SeqTrainer with the Reason2Decide losses, and nothing else of its own.

Everything a Trainer already does (accelerate / torchrun DDP, bf16, gradient accumulation, the linear
schedule, best-checkpoint bookkeeping) is left to it. This module adds one loss method per objective
(`stage1_loss`, `sft_loss`, `dss_loss`, `r2d_loss` with its equation, and R2D-C's `cycle_term`), picked by
`compute_loss` as distilling step-by-step's TaskPrefixTrainer keeps its whole objective in one place; an
evaluation step that scores the label set for macro-F1 (`prediction_step`),
extra training statistics in the log (`log`), two small callbacks and the one converter from the
frozen config to `Seq2SeqTrainingArguments`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
    TrainerCallback,
)

from r2d.config import GenerationConfig, OptimConfig, Stage2Config
from r2d.errors import ConfigError
from r2d.eval.metrics import accuracy, macro_f1
from r2d.model.scoring import IGNORE_INDEX, eval_mode, score_labels, tokenize_inputs
from r2d.prompts import predict_prompt
from training.method.features import MODES, explain_given_label_inputs, label_targets
from training.method.schedules import (
    ConfidenceThreshold,
    alpha_at,
    gated_probability,
    gumbel_temperature,
    mix_labels,
    sampling_probability,
    warmup_steps,
)

logger = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = "checkpoints"  # intermediate best-so-far checkpoints, removed when training ends


# --- the model's own label (scheduled sampling, evaluation) ---------------------------------------


def generate_labels(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], generation: GenerationConfig
) -> tuple[list[str], list[float]]:
    """Greedy labels for an open label set, with the geometric-mean token probability of each.

    Used only when the label set is too large to score (free-text answers). Runs in eval mode without
    gradients. The text may be any string, including an empty one: that is what the model said.
    """
    with eval_mode(model):
        enc = tokenize_inputs(tokenizer, prompts, generation.max_input_tokens, model.device)
        out = model.generate(
            **enc,
            max_new_tokens=generation.max_label_tokens,
            do_sample=False,
            num_beams=1,
            output_scores=True,
            return_dict_in_generate=True,
        )
        logp = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)  # (B, new)
        new_tokens = out.sequences[:, -logp.size(1) :]
        mask = new_tokens != tokenizer.pad_token_id  # finished rows are padded after </s>
        mean_logp = (logp.float() * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    labels = [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return labels, mean_logp.exp().tolist()


def own_labels(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    case_texts: Sequence[str],
    label_set: Sequence[str] | None,
    generation: GenerationConfig,
) -> tuple[list[str], list[float]]:
    """The model's label and confidence for each case: label-set scoring, or greedy text if label_set is None.

    Scoring always returns a member of the label set; both paths run without gradients.
    """
    prompts = [predict_prompt(c) for c in case_texts]
    if label_set is None:
        return generate_labels(model, tokenizer, prompts, generation)
    scores = score_labels(
        model, tokenizer, prompts, label_set, generation.max_input_tokens, generation.max_label_tokens
    )
    return [s.best for s in scores], [s.confidence for s in scores]


# --- losses ---------------------------------------------------------------------------------------


def seq2seq_loss(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Token-mean cross-entropy of `labels` given the encoder input (the model's own loss)."""
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss


def gumbel_noise(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise drawn from `generator` (never the global RNG)."""
    u = torch.rand(shape, generator=generator, device=device).clamp(min=1e-10)  # log(0) guard
    exponential = (-torch.log(u)).clamp(min=1e-10)  # u == 1 would give log(0) below
    return -torch.log(exponential)


def cycle_loss(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    explain_logits: torch.Tensor,
    condition_labels: Sequence[str],
    generation: GenerationConfig,
    temperature: float,
    generator: torch.Generator,
    embedding_weight: torch.Tensor,
) -> torch.Tensor:
    """R2D-C: recover the conditioning label from the rationale the model is being taught to write.

    Teacher-forced rationale logits (B, T, V) -> Gumbel-softmax at `temperature` -> soft one-hot @ the
    shared embedding matrix (V, d) -> encoder input `predict_prompt("")` + soft rationale -> CE against
    the conditioning label. As in the authors' code, every one of the T positions is read (no attention
    mask) and the prefix embeddings get no gradient; the soft rationale does, so the rationale is pushed
    to carry its label.
    """
    B, T, V = explain_logits.shape
    if V != embedding_weight.size(0):
        raise ValueError(
            f"rationale logits have {V} classes but the embedding matrix has {embedding_weight.size(0)} rows"
        )
    noise = gumbel_noise(explain_logits.shape, generator, explain_logits.device)
    soft = torch.softmax((explain_logits.float() + noise) / temperature, dim=-1)  # (B, T, V)
    soft_embeds = soft.to(embedding_weight.dtype) @ embedding_weight  # (B, T, d)
    # the predict prefix without its trailing space: that space belongs to the first rationale word's piece
    prefix = tokenizer(predict_prompt("").rstrip(), add_special_tokens=False, return_tensors="pt")["input_ids"]
    prefix_embeds = embedding_weight.detach()[prefix[0].to(embedding_weight.device)]  # (P, d)
    inputs_embeds = torch.cat([prefix_embeds.unsqueeze(0).expand(B, -1, -1), soft_embeds], dim=1)
    targets = label_targets(tokenizer, condition_labels, generation).to(explain_logits.device)
    return model(inputs_embeds=inputs_embeds, labels=targets).loss


class R2DTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer whose loss is the Stage 1, Reason2Decide (R2D-C), SFT or DSS objective (`mode`).

    One method per objective (`stage1_loss`, `sft_loss`, `dss_loss`, `r2d_loss`; R2D-C's extra term is
    `cycle_term`), each returning (loss, statistics). `label_set` is the closed set scored for sampling
    and evaluation; None means an open set (greedy generation, exact match). The statistics (alpha, pi,
    the share of predicted labels used, each loss) are averaged into every training log entry.
    """

    # compute_loss returns a per-micro-batch mean: the Trainer divides it by the accumulation steps
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args: Any,
        mode: str,
        generation: GenerationConfig,
        stage2: Stage2Config | None = None,
        label_set: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        super().__init__(*args, **kwargs)
        self.mode, self.generation = mode, generation
        self.stage2 = stage2 or Stage2Config()
        self.label_set = None if label_set is None else tuple(label_set)
        # each DDP rank draws its own, reproducible, sampling decisions
        self.rank_seed = self.args.seed + self.args.process_index
        self.sampling_generator = torch.Generator().manual_seed(self.rank_seed)
        self._noise_generators: dict[str, torch.Generator] = {}
        self.confidence = ConfidenceThreshold(
            warmup_steps(self.args.max_steps, self.stage2), self.stage2.confidence_refresh_steps
        )
        self._stats: dict[str, list[float]] = defaultdict(list)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        """The mode's loss on one batch from R2DCollator (see the module docstring of training.method.features)."""
        losses = {"stage1": self.stage1_loss, "sft": self.sft_loss, "dss": self.dss_loss, "r2d": self.r2d_loss}
        loss, stats = losses[self.mode](model, inputs)
        if model.training:
            for name, value in stats.items():
                self._stats[name].append(float(value.detach()) if torch.is_tensor(value) else float(value))
        return (loss, {}) if return_outputs else loss

    def stage1_loss(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Stage 1, rationale pre-training: L = CE(explain: x -> r)."""
        explain = seq2seq_loss(
            model, inputs["explain_input_ids"], inputs["explain_attention_mask"], inputs["explain_labels"]
        )
        return explain, {"explain_loss": explain}

    def sft_loss(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """SFT baseline: L = CE(predict: x -> y)."""
        predict = self._predict_loss(model, inputs)
        return predict, {"predict_loss": predict}

    def dss_loss(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Distilling step-by-step (Hsieh et al., 2023), as its TaskPrefixTrainer.compute_loss:
        L = alpha * CE(predict: x -> y) + (1 - alpha) * CE(explain: x -> r); alpha constant, no label in the
        explain task, no sampling."""
        predict = self._predict_loss(model, inputs)
        explain = seq2seq_loss(
            model, inputs["explain_input_ids"], inputs["explain_attention_mask"], inputs["explain_labels"]
        )
        a = self.stage2.alpha
        return a * predict + (1 - a) * explain, {"predict_loss": predict, "explain_loss": explain}

    def r2d_loss(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reason2Decide Stage 2 (R2D-C with stage2.confidence_gated and stage2.cycle_loss_weight):

            L(t)     = alpha(t) * CE(predict: x -> y) + (1 - alpha(t)) * CE(given label: y~, explain: x -> r)
                       [+ lambda * L_cycle(t)  for t > W, R2D-C only: see cycle_term]
            alpha(t) = 0.7 * min(1, t / W),   W = 5% of the optimiser steps T
            y~       = per example, the model's own label with probability pi(t), else the gold y
            pi(t)    = 0 for t < W, then min(0.9, (t - W) / (0.6 T))
                       [R2D-C: pi(t) * sigmoid(10 * (confidence - threshold))]

        r is always the gold rationale; no gradient flows through y~. Evaluation uses the final alpha and
        gold labels, so eval losses compare across steps.
        """
        s, step, max_steps = self.stage2, self.state.global_step, max(1, self.state.max_steps or 0)
        alpha = alpha_at(step, max_steps, s) if model.training else s.alpha
        predict = self._predict_loss(model, inputs)
        labels, stats = self.conditioning_labels(model, inputs["case_texts"], inputs["gold_labels"], step, max_steps)
        enc = explain_given_label_inputs(
            self.processing_class, inputs["case_texts"], labels, self.generation, inputs["explain_labels"].device
        )
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=inputs["explain_labels"])
        loss = alpha * predict + (1 - alpha) * out.loss
        stats.update(alpha=alpha, predict_loss=predict, explain_loss=out.loss)
        if s.cycle_loss_weight > 0 and model.training and step > warmup_steps(max_steps, s):
            cycle, cycle_stats = self.cycle_term(model, out.logits, labels, step, max_steps)
            loss = loss + s.cycle_loss_weight * cycle
            stats.update(cycle_stats)
        return loss, stats

    def cycle_term(
        self, model: Any, explain_logits: torch.Tensor, labels: Sequence[str], step: int, max_steps: int
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """R2D-C's L_cycle: CE of the conditioning label y~ re-predicted from the Gumbel-softmax rationale
        (see cycle_loss), temperature max(0.5, exp(-ln2 * t / T))."""
        s = self.stage2
        tau = gumbel_temperature(step, max_steps, s.gumbel_temperature_start, s.gumbel_temperature_end)
        embedding = self.accelerator.unwrap_model(model).get_input_embeddings().weight
        cycle = cycle_loss(
            model,
            self.processing_class,
            explain_logits,
            labels,
            self.generation,
            tau,
            self._noise_generator(explain_logits.device),
            embedding,
        )
        return cycle, {"cycle_loss": cycle, "gumbel_temperature": tau}

    def conditioning_labels(
        self, model: Any, cases: Sequence[str], gold: Sequence[str], step: int, max_steps: int
    ) -> tuple[list[str], dict[str, Any]]:
        """y~ for each case (scheduled sampling), and the statistics of the draw. Gold in evaluation.

        R2D-C scores the model's labels from step 0, so that the warm-up calibrates its threshold.
        """
        if not model.training:
            return list(gold), {}
        s = self.stage2
        pi = sampling_probability(step, max_steps, s)
        stats: dict[str, Any] = {"sampling_probability": pi}
        if pi == 0 and not s.confidence_gated:
            return list(gold), {**stats, "used_predicted_fraction": 0.0}
        predicted, confidences = self.model_labels(model, cases)
        probs: float | list[float] = pi
        if s.confidence_gated:
            threshold = self.confidence.update(step, confidences)
            stats.update(confidence=sum(confidences) / len(confidences), confidence_threshold=threshold)
            probs = [gated_probability(pi, c, threshold, s.confidence_sharpness) for c in confidences]
        labels, used = mix_labels(gold, predicted, probs, self.sampling_generator)
        return labels, {**stats, "used_predicted_fraction": sum(used) / len(used)}

    def _predict_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        return seq2seq_loss(
            model, inputs["predict_input_ids"], inputs["predict_attention_mask"], inputs["predict_labels"]
        )

    def _noise_generator(self, device: torch.device) -> torch.Generator:
        # a generator lives on one device; Gumbel noise is drawn where the logits are
        key = str(device)
        if key not in self._noise_generators:
            self._noise_generators[key] = torch.Generator(device=device).manual_seed(self.rank_seed + 1)
        return self._noise_generators[key]

    def model_labels(self, model: torch.nn.Module, case_texts: Sequence[str]) -> tuple[list[str], list[float]]:
        """The model's labels for these cases (no gradient; the unwrapped model, not the DDP wrapper)."""
        return own_labels(
            self.accelerator.unwrap_model(model), self.processing_class, case_texts, self.label_set, self.generation
        )

    # --- evaluation and logging ---------------------------------------------------------------------

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
        **gen_kwargs: Any,
    ) -> dict[str, float]:
        """Trainer.evaluate without Seq2SeqTrainer's version, which only sets generation kwargs (we never
        generate through it) and swaps in accelerator.gather: under DDP that keeps the samples the last
        batch is padded with, which would skew macro-F1. Trainer's gather_for_metrics drops them."""
        return Trainer.evaluate(self, eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[Any, Any, Any]:
        """Eval loss; plus, outside Stage 1, predicted and gold label token ids for label_metrics."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs).detach()
        if prediction_loss_only or self.mode == "stage1":
            return loss, None, None
        predicted, _ = self.model_labels(model, inputs["case_texts"])
        tok, g = self.processing_class, self.generation
        return (
            loss,
            label_targets(tok, predicted, g).to(loss.device),
            label_targets(tok, inputs["gold_labels"], g).to(loss.device),
        )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the means of this trainer's per-step statistics to each training log entry."""
        if "loss" in logs and self._stats:
            logs = {**logs, **{k: sum(v) / len(v) for k, v in self._stats.items()}}
            self._stats = defaultdict(list)
        super().log(logs, start_time)


def _decode_rows(tokenizer: PreTrainedTokenizerBase, ids: np.ndarray) -> list[str]:
    return [
        tokenizer.decode([int(t) for t in row if t != IGNORE_INDEX], skip_special_tokens=True).strip() for row in ids
    ]


def label_metrics(tokenizer: PreTrainedTokenizerBase) -> Callable[[EvalPrediction], dict[str, float]]:
    """compute_metrics for R2DTrainer: exact-match macro-F1 and accuracy of decoded label ids."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        predicted = _decode_rows(tokenizer, prediction.predictions)
        gold = _decode_rows(tokenizer, prediction.label_ids)
        return {"macro_f1": macro_f1(gold, predicted), "accuracy": accuracy(gold, predicted)}

    return compute


# --- callbacks and arguments -----------------------------------------------------------------------


class DelayedEarlyStopping(TrainerCallback):
    """Early stopping that starts at `after_fraction` of max_steps (paper: 65%), as the authors' callback.

    The first evaluation at or after that step is the baseline (what came before does not count); each
    later evaluation that does not beat the best since then adds one to a counter, an improvement resets
    it, and training stops when it reaches `patience`. The metric is the Trainer's metric_for_best_model.
    """

    def __init__(self, patience: int, after_fraction: float) -> None:
        self.patience, self.after_fraction = patience, after_fraction
        self.best: float | None = None
        self.bad_evaluations = 0

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float], **kwargs: Any) -> None:
        if state.global_step < self.after_fraction * state.max_steps:
            return
        name = args.metric_for_best_model
        value = metrics.get(name if name.startswith("eval_") else f"eval_{name}")
        if value is None:
            return
        improved = self.best is None or (value > self.best if args.greater_is_better else value < self.best)
        if improved:
            self.best, self.bad_evaluations = value, 0
        else:
            self.bad_evaluations += 1
        if self.bad_evaluations >= self.patience:
            logger.info(
                "early stopping at step %d: %d evaluations without beating %s = %s",
                state.global_step,
                self.bad_evaluations,
                name,
                self.best,
            )
            control.should_training_stop = True


class EvaluateAtEnd(TrainerCallback):
    """Evaluate after the last step too, so the final weights compete for best checkpoint."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= state.max_steps:
            control.should_evaluate = True


def to_training_arguments(
    optim: OptimConfig, out_dir: str | Path, *, metric_for_best_model: str, greater_is_better: bool
) -> Seq2SeqTrainingArguments:
    """The Trainer's arguments from the frozen config: keep only the best checkpoint, under out_dir/checkpoints.

    Raises ConfigError for bf16 without a GPU (bf16 on CPU would need use_cpu and is slow anyway).
    """
    if optim.bf16 and not torch.cuda.is_available():
        raise ConfigError("optim.bf16 needs a CUDA GPU; set optim.bf16=false to train on the CPU")
    return Seq2SeqTrainingArguments(
        output_dir=str(Path(out_dir) / CHECKPOINT_SUBDIR),
        max_steps=optim.max_steps,
        per_device_train_batch_size=optim.batch_size,
        per_device_eval_batch_size=optim.batch_size,
        gradient_accumulation_steps=optim.gradient_accumulation_steps,
        learning_rate=optim.learning_rate,
        weight_decay=optim.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=round(optim.lr_warmup_fraction * optim.max_steps),
        eval_strategy="steps",
        eval_steps=optim.eval_steps,
        # a checkpoint only when the metric improves, weights only: it exists to be reloaded at the end
        save_strategy="best",
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model=metric_for_best_model,
        greater_is_better=greater_is_better,
        # a few log entries per evaluation interval, each with the mean alpha/pi/losses since the last
        logging_steps=max(1, optim.eval_steps // 5),
        seed=optim.seed,
        data_seed=optim.seed,
        bf16=optim.bf16,
        # without CUDA say so explicitly: torchrun on CPUs then runs real DDP (gloo) instead of N separate runs
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=optim.num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        # batches carry raw case texts and labels beside the tensors
        remove_unused_columns=False,
        report_to="none",
        logging_nan_inf_filter=False,  # a NaN loss must show in the log, not be replaced
    )
