"""training.method.trainer: the per-mode losses, scheduled sampling in compute_loss, R2D-C, evaluation, arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import EvalPrediction, TrainerControl, TrainerState

import training.method.trainer as trainer_module
from r2d.checks.rules import KTAS_LABEL_NAMES
from r2d.config import GenerationConfig, OptimConfig, Stage2Config
from r2d.errors import ConfigError
from r2d.eval.metrics import macro_f1
from r2d.model.scoring import IGNORE_INDEX
from training.method.features import ExampleDataset, R2DCollator, explain_given_label_inputs, label_targets
from training.method.trainer import (
    CHECKPOINT_SUBDIR,
    DelayedEarlyStopping,
    EvaluateAtEnd,
    R2DTrainer,
    cycle_loss,
    label_metrics,
    own_labels,
    to_training_arguments,
)

GEN = GenerationConfig(max_input_tokens=64, max_label_tokens=4, max_rationale_tokens=24)
OPTIM = OptimConfig(learning_rate=1e-2, batch_size=5, max_steps=100, eval_steps=10, seed=0)
ALWAYS = Stage2Config(sampling_start_fraction=0.0, sampling_end_fraction=0.0, sampling_cap=1.0)  # pi = 1
NEVER = Stage2Config(sampling_start_fraction=1.0, sampling_end_fraction=1.0)  # pi = 0 before the last step


def make_trainer(
    model, tokenizer, examples, tmp_path, mode="r2d", stage2=NEVER, label_set=tuple(KTAS_LABEL_NAMES), step=50, seed=0
):
    metric = "loss" if mode == "stage1" else "macro_f1"
    args = to_training_arguments(
        OptimConfig(**{**OPTIM.__dict__, "seed": seed}),
        tmp_path,
        metric_for_best_model=metric,
        greater_is_better=mode != "stage1",
    )
    trainer = R2DTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        data_collator=R2DCollator(tokenizer, GEN, mode),
        train_dataset=ExampleDataset(examples),
        eval_dataset=ExampleDataset(examples),
        mode=mode,
        generation=GEN,
        stage2=stage2,
        label_set=label_set,
    )
    trainer.state.global_step, trainer.state.max_steps = step, OPTIM.max_steps
    return trainer


@pytest.fixture()
def batch(tiny_tokenizer, tiny_examples):
    return {mode: R2DCollator(tiny_tokenizer, GEN, mode)(tiny_examples) for mode in ("stage1", "r2d", "sft", "dss")}


def record_forwards(model, monkeypatch):
    calls = []
    original = model.forward

    def forward(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward)
    return calls


# --- losses -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, stage2", [("stage1", NEVER), ("sft", NEVER), ("dss", NEVER), ("r2d", NEVER), ("r2d", ALWAYS)]
)
def test_compute_loss_is_a_finite_scalar_with_gradient(
    tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, mode, stage2
):
    trainer = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode=mode, stage2=stage2)
    tiny_t5.train()
    loss = trainer.compute_loss(tiny_t5, batch[mode])
    assert loss.dim() == 0 and math.isfinite(loss.item()) and loss.requires_grad
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_t5.parameters())


def test_loss_decreases_over_a_few_optimiser_steps(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch):
    trainer = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="r2d")
    optimiser = torch.optim.AdamW(tiny_t5.parameters(), lr=1e-2)
    tiny_t5.train()
    losses = []
    for _ in range(8):
        loss = trainer.compute_loss(tiny_t5, batch["r2d"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]


def test_sft_reads_only_the_predict_task(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, monkeypatch):
    trainer = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="sft")
    calls = record_forwards(tiny_t5, monkeypatch)
    trainer.compute_loss(tiny_t5, batch["sft"])
    assert len(calls) == 1
    assert torch.equal(calls[0]["input_ids"], batch["sft"]["predict_input_ids"])
    assert torch.equal(calls[0]["labels"], batch["sft"]["predict_labels"])


def test_dss_reads_predict_and_label_free_explain(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, monkeypatch):
    trainer = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="dss")
    monkeypatch.setattr(trainer_module, "explain_given_label_inputs", lambda *a, **k: pytest.fail("DSS used a label"))
    monkeypatch.setattr(trainer, "model_labels", lambda *a, **k: pytest.fail("DSS sampled a label"))
    calls = record_forwards(tiny_t5, monkeypatch)
    trainer.compute_loss(tiny_t5, batch["dss"])
    assert [c["input_ids"].data_ptr() for c in calls] == [
        batch["dss"]["predict_input_ids"].data_ptr(),
        batch["dss"]["explain_input_ids"].data_ptr(),
    ]
    assert torch.equal(calls[1]["labels"], batch["dss"]["explain_labels"])


def test_r2d_conditions_on_gold_labels_before_sampling_starts(
    tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, monkeypatch
):
    trainer = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="r2d", stage2=NEVER)
    monkeypatch.setattr(trainer, "model_labels", lambda *a, **k: pytest.fail("sampled while pi = 0"))
    calls = record_forwards(tiny_t5, monkeypatch)
    trainer.compute_loss(tiny_t5, batch["r2d"])
    gold = [e.label for e in tiny_examples]
    expected = explain_given_label_inputs(tiny_tokenizer, [e.case_text for e in tiny_examples], gold, GEN, "cpu")
    assert torch.equal(calls[0]["input_ids"], batch["r2d"]["predict_input_ids"])
    assert torch.equal(calls[1]["input_ids"], expected["input_ids"])


def _spy_explain_labels(monkeypatch):
    seen = []
    original = trainer_module.explain_given_label_inputs

    def spy(tokenizer, cases, labels, *args, **kwargs):
        seen.append(list(labels))
        return original(tokenizer, cases, labels, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "explain_given_label_inputs", spy)
    return seen


def test_sampled_labels_replace_gold_in_the_explain_input(
    tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, monkeypatch
):
    trainer = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="r2d", stage2=ALWAYS)
    n = len(tiny_examples)
    monkeypatch.setattr(trainer, "model_labels", lambda model, cases: (["5"] * len(cases), [0.9] * len(cases)))
    seen = _spy_explain_labels(monkeypatch)
    tiny_t5.train()
    trainer.compute_loss(tiny_t5, batch["r2d"])
    assert seen == [["5"] * n]
    trainer.log({"loss": 1.0})
    entry = trainer.state.log_history[-1]
    assert entry["sampling_probability"] == 1.0 and entry["used_predicted_fraction"] == 1.0
    assert entry["alpha"] == pytest.approx(0.7)
    assert {"predict_loss", "explain_loss"} <= set(entry)


def test_label_scoring_runs_in_eval_mode_without_gradient(
    tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, monkeypatch, ktas_labels
):
    trainer = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="r2d", stage2=ALWAYS)
    states = []
    original = tiny_t5.get_encoder

    def encoder():  # only label scoring calls get_encoder; the loss forwards go through forward()
        states.append((torch.is_grad_enabled(), tiny_t5.training))
        return original()

    monkeypatch.setattr(tiny_t5, "get_encoder", encoder)
    labels_seen = _spy_explain_labels(monkeypatch)
    tiny_t5.train()
    loss = trainer.compute_loss(tiny_t5, batch["r2d"])
    assert states and set(states) == {(False, False)}  # each scoring chunk: no gradient, dropout off
    assert tiny_t5.training and loss.requires_grad
    # the labels fed back are plain strings from the label set: nothing to differentiate through
    assert all(isinstance(y, str) and y in ktas_labels for y in labels_seen[0])


def test_own_labels_closed_set_are_valid_and_gradient_free(
    tiny_t5, tiny_tokenizer, tiny_examples, monkeypatch, ktas_labels
):
    states = []
    original = tiny_t5.get_encoder

    def encoder():
        states.append((torch.is_grad_enabled(), tiny_t5.training))
        return original()

    monkeypatch.setattr(tiny_t5, "get_encoder", encoder)
    tiny_t5.train()
    labels, confidences = own_labels(tiny_t5, tiny_tokenizer, [e.case_text for e in tiny_examples], ktas_labels, GEN)
    assert states and set(states) == {(False, False)}
    assert tiny_t5.training
    assert len(labels) == len(tiny_examples) and set(labels) <= set(ktas_labels)
    assert all(0.0 < c <= 1.0 for c in confidences)


def test_own_labels_open_set_generates_text(tiny_t5, tiny_tokenizer, tiny_examples, monkeypatch):
    generated = []
    original = tiny_t5.generate

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        generated.append((kwargs["max_new_tokens"], out.sequences.shape[1] - 1))  # minus the decoder start token
        return out

    monkeypatch.setattr(tiny_t5, "generate", spy)
    tiny_t5.train()
    labels, confidences = own_labels(tiny_t5, tiny_tokenizer, [e.case_text for e in tiny_examples], None, GEN)
    assert tiny_t5.training
    assert len(labels) == len(confidences) == len(tiny_examples)
    assert all(isinstance(y, str) for y in labels)
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert generated and all(n <= limit == GEN.max_label_tokens for limit, n in generated)


# --- R2D-C --------------------------------------------------------------------------------------------


def test_cycle_loss_is_finite_and_differentiable(tiny_t5, tiny_tokenizer, tiny_examples, batch):
    b = batch["r2d"]
    gold = b["gold_labels"]
    enc = explain_given_label_inputs(tiny_tokenizer, b["case_texts"], gold, GEN, "cpu")
    out = tiny_t5(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=b["explain_labels"])
    logits = out.logits
    logits.retain_grad()
    loss = cycle_loss(
        tiny_t5,
        tiny_tokenizer,
        logits,
        gold,
        GEN,
        0.5,
        torch.Generator().manual_seed(0),
        tiny_t5.get_input_embeddings().weight,
    )
    assert loss.dim() == 0 and math.isfinite(loss.item())
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # the rationale is pushed to carry its label
    assert tiny_t5.get_input_embeddings().weight.grad.abs().sum() > 0


def _cycle_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, step):
    s = Stage2Config(cycle_loss_weight=0.1, sampling_start_fraction=1.0, sampling_end_fraction=1.0)
    return make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="r2d", stage2=s, step=step)


def test_cycle_loss_runs_after_the_warmup_at_the_authors_temperature(
    tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch
):
    trainer = _cycle_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, step=50)  # T = 100, W = 5
    tiny_t5.train()
    loss = trainer.compute_loss(tiny_t5, batch["r2d"])
    assert math.isfinite(loss.item())
    trainer.log({"loss": loss.item()})
    entry = trainer.state.log_history[-1]
    assert math.isfinite(entry["cycle_loss"])
    assert entry["gumbel_temperature"] == pytest.approx(1 / math.sqrt(2))  # exp(-ln2 * 50/100)


@pytest.mark.parametrize("step", [0, 3, 5])
def test_no_cycle_loss_during_the_warmup(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, monkeypatch, step):
    trainer = _cycle_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, step=step)
    monkeypatch.setattr(trainer_module, "cycle_loss", lambda *a, **k: pytest.fail(f"cycle loss at step {step} <= W"))
    tiny_t5.train()
    trainer.compute_loss(tiny_t5, batch["r2d"])
    trainer.log({"loss": 0.0})
    assert "cycle_loss" not in trainer.state.log_history[-1]


def test_confidence_gating_calibrates_on_the_warmup(
    tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, monkeypatch
):
    s = Stage2Config(
        sampling_start_fraction=0.0,
        sampling_end_fraction=0.0,
        sampling_cap=1.0,
        confidence_gated=True,
        confidence_sharpness=1000.0,
    )  # pi = 1 from step 0; W = 5
    trainer = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="r2d", stage2=s, step=0)
    confidences = iter([[0.1, 0.9, 0.1, 0.9, 0.1], [0.3, 0.7, 0.3, 0.7, 0.3], [0.2, 0.6, 0.4, 0.6, 0.2]])
    monkeypatch.setattr(trainer, "model_labels", lambda model, cases: (["P"] * len(cases), next(confidences)))
    seen = _spy_explain_labels(monkeypatch)
    gold = [e.label for e in tiny_examples]
    tiny_t5.train()
    trainer.compute_loss(tiny_t5, batch["r2d"])  # step 0 < W: confidences collected, threshold 1.0
    assert seen[-1] == gold
    trainer.state.global_step = 5  # W: the threshold becomes the mean of the warm-up's 10 confidences, 0.44
    trainer.compute_loss(tiny_t5, batch["r2d"])
    assert trainer.confidence.threshold == pytest.approx(0.44)
    trainer.state.global_step = 6  # gated with 0.44: only the 0.6s pass a very sharp gate
    trainer.compute_loss(tiny_t5, batch["r2d"])
    assert seen[-1] == [("P" if c > 0.44 else g) for c, g in zip([0.2, 0.6, 0.4, 0.6, 0.2], gold)]
    trainer.log({"loss": 0.0})
    assert trainer.state.log_history[-1]["confidence_threshold"] == pytest.approx((1.0 + 0.44 + 0.44) / 3)
    # the logged confidence: each batch's mean (0.42, 0.46, 0.40), averaged over the logging window
    assert trainer.state.log_history[-1]["confidence"] == pytest.approx((0.42 + 0.46 + 0.40) / 3)


# --- the objective, computed by hand ------------------------------------------------------------------
# Every expected value below comes from its own forward pass, fed decoder inputs (never labels=, so the
# model's own loss is not reused), with the prompts written as METHOD.md documents them and the weights
# from the formula: alpha(t) = 0.7 * min(1, t / W), W = 5% of T. A swapped alpha / (1 - alpha), a
# warm-up removed or a gold label where y~ belongs each changes a number here.

T_STEPS = 200  # W = 10: steps 0, W/2 = 5, W = 10 and the end (200) are all whole steps
PAPER_ALPHA, PAPER_WARMUP, CYCLE_WEIGHT = 0.7, 0.05, 0.1
TOL = 1e-5  # float32 agreement of two computations of a loss near 5; every term pair below differs by > 100 TOL
STEPS = {"t=0": 0, "t=W/2": 5, "t=W": 10, "t=end": T_STEPS}
PI_ONE = Stage2Config(
    alpha=PAPER_ALPHA,
    alpha_warmup_fraction=PAPER_WARMUP,
    sampling_start_fraction=0.0,
    sampling_end_fraction=0.0,
    sampling_cap=1.0,
)  # pi(t) = 1: y~ is the model's label


@pytest.fixture()
def sharp_t5(tiny_t5):
    """sharp_t5 with its weights redrawn from N(0, 1): at T5's small initial scale the prompt barely moves the
    rationale loss (gold vs rotated y~: 3e-4); here the terms differ by 1e-2 or more."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in tiny_t5.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    return tiny_t5


def paper_alpha(step):
    return PAPER_ALPHA * min(1.0, step / (PAPER_WARMUP * T_STEPS))


def hand_encode(tokenizer, texts):
    enc = tokenizer(list(texts), padding=True, return_tensors="pt")
    assert enc["input_ids"].shape[1] <= GEN.max_input_tokens  # nothing is cut: the prompts are whole
    return enc


def hand_targets(tokenizer, texts, max_tokens):
    ids = tokenizer(text_target=list(texts), max_length=max_tokens, truncation=True, padding=True, return_tensors="pt")[
        "input_ids"
    ]
    return ids.masked_fill(ids == tokenizer.pad_token_id, -100)


def hand_forward(model, targets, **encoder):
    """Teacher-forced logits (B, T, V): decoder input = <pad> (T5's start) + targets shifted right."""
    start = torch.full((targets.size(0), 1), model.config.decoder_start_token_id)
    decoder_input_ids = torch.cat([start, targets[:, :-1]], dim=1)
    decoder_input_ids = decoder_input_ids.masked_fill(decoder_input_ids == -100, model.config.pad_token_id)
    return model(decoder_input_ids=decoder_input_ids, **encoder).logits


def hand_ce(logits, targets):
    """Mean over the non-padding target tokens of -log softmax(logits)[target]."""
    keep = targets != -100
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (nll * keep).sum() / keep.sum()


class HandLosses:
    """The predict and explain cross-entropies of tiny_examples, each from its own forward pass."""

    def __init__(self, model, tokenizer, examples):
        self.model, self.tokenizer = model, tokenizer
        self.cases = [e.case_text for e in examples]
        self.gold = [e.label for e in examples]
        self.rationales = hand_targets(tokenizer, [e.rationale for e in examples], GEN.max_rationale_tokens)

    def predict(self):
        labels = hand_targets(self.tokenizer, self.gold, GEN.max_label_tokens)
        enc = hand_encode(self.tokenizer, [f"predict: {c}" for c in self.cases])
        return hand_ce(hand_forward(self.model, labels, **enc), labels).item()

    def explain(self):  # Stage 1 and DSS: no label in the input
        enc = hand_encode(self.tokenizer, [f"explain: {c}" for c in self.cases])
        return hand_ce(hand_forward(self.model, self.rationales, **enc), self.rationales).item()

    def explain_given(self, labels):  # Reason2Decide: conditioned on y~
        logits = self.explain_given_logits(labels)
        return hand_ce(logits, self.rationales).item()

    def explain_given_logits(self, labels):
        enc = hand_encode(self.tokenizer, [f"given label: {y}, explain: {c}" for y, c in zip(labels, self.cases)])
        return hand_forward(self.model, self.rationales, **enc)

    def cycle(self, labels, noise, temperature):
        """R2D-C: rationale logits + Gumbel noise -> softmax at the temperature -> soft embeddings after the
        embedded `predict:` prefix -> CE of the conditioning labels y~."""
        embedding = self.model.get_input_embeddings().weight
        soft = torch.softmax((self.explain_given_logits(labels) + noise) / temperature, dim=-1) @ embedding
        prefix = embedding[self.tokenizer("predict:", add_special_tokens=False)["input_ids"]]
        inputs_embeds = torch.cat([prefix.expand(soft.size(0), -1, -1), soft], dim=1)
        targets = hand_targets(self.tokenizer, labels, GEN.max_label_tokens)
        return hand_ce(hand_forward(self.model, targets, inputs_embeds=inputs_embeds), targets).item()


def _rotated(labels):
    return labels[1:] + labels[:1]  # a y~ that differs from gold in every example


def _trainer_at(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, mode, stage2, step, monkeypatch=None):
    trainer = make_trainer(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, mode=mode, stage2=stage2, step=step)
    trainer.state.max_steps = T_STEPS
    if monkeypatch is not None:  # the model's own labels, fixed: y~ = the gold labels rotated by one
        monkeypatch.setattr(
            trainer,
            "model_labels",
            lambda model, cases: (_rotated([e.label for e in tiny_examples]), [0.9] * len(cases)),
        )
    return trainer


def test_hand_losses_tell_the_terms_apart(sharp_t5, tiny_tokenizer, tiny_examples):
    # the tests below can only catch a swapped weight or a wrong label if the terms differ by far more than TOL
    hand = HandLosses(sharp_t5, tiny_tokenizer, tiny_examples)
    gold = [e.label for e in tiny_examples]
    assert abs(hand.predict() - hand.explain_given(gold)) > 100 * TOL
    assert abs(hand.predict() - hand.explain()) > 100 * TOL
    assert abs(hand.explain() - hand.explain_given(gold)) > 100 * TOL
    assert abs(hand.explain_given(_rotated(gold)) - hand.explain_given(gold)) > 100 * TOL


@pytest.mark.parametrize("step", STEPS.values(), ids=STEPS.keys())
def test_stage1_and_sft_losses_by_hand(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, step):
    hand = HandLosses(sharp_t5, tiny_tokenizer, tiny_examples)
    sharp_t5.train()
    for mode, expected in (("stage1", hand.explain()), ("sft", hand.predict())):
        trainer = _trainer_at(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, mode, PI_ONE, step)
        assert trainer.compute_loss(sharp_t5, batch[mode]).item() == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("step", STEPS.values(), ids=STEPS.keys())
def test_dss_loss_by_hand_constant_alpha(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, step):
    # distilling step-by-step: alpha * CE(predict: x -> y) + (1 - alpha) * CE(explain: x -> r), no warm-up
    hand = HandLosses(sharp_t5, tiny_tokenizer, tiny_examples)
    trainer = _trainer_at(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, "dss", PI_ONE, step)
    sharp_t5.train()
    expected = PAPER_ALPHA * hand.predict() + (1 - PAPER_ALPHA) * hand.explain()
    assert trainer.compute_loss(sharp_t5, batch["dss"]).item() == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("step", STEPS.values(), ids=STEPS.keys())
def test_r2d_loss_by_hand_with_y_tilde_fixed(
    sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, monkeypatch, step
):
    # L(t) = alpha(t) * CE(predict: x -> y) + (1 - alpha(t)) * CE(given label: y~, explain: x -> r)
    hand = HandLosses(sharp_t5, tiny_tokenizer, tiny_examples)
    trainer = _trainer_at(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, "r2d", PI_ONE, step, monkeypatch)
    sharp_t5.train()
    y_tilde = _rotated([e.label for e in tiny_examples])
    alpha = paper_alpha(step)
    expected = alpha * hand.predict() + (1 - alpha) * hand.explain_given(y_tilde)
    assert trainer.compute_loss(sharp_t5, batch["r2d"]).item() == pytest.approx(expected, abs=TOL)
    trainer.log({"loss": 0.0})
    entry = trainer.state.log_history[-1]
    assert entry["alpha"] == pytest.approx(alpha)
    assert entry["predict_loss"] == pytest.approx(hand.predict(), abs=TOL)
    assert entry["explain_loss"] == pytest.approx(hand.explain_given(y_tilde), abs=TOL)


def test_r2d_explain_input_carries_y_tilde_per_example(
    sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, monkeypatch
):
    # pi = 1/2 with the trainer's seeded generator: some examples keep gold, the others get the model's label
    s = Stage2Config(sampling_start_fraction=0.0, sampling_end_fraction=0.0, sampling_cap=0.5)
    trainer = _trainer_at(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, "r2d", s, T_STEPS, monkeypatch)
    draws = torch.rand(len(tiny_examples), generator=torch.Generator().manual_seed(OPTIM.seed)).tolist()
    gold = [e.label for e in tiny_examples]
    y_tilde = [own if u < 0.5 else g for u, own, g in zip(draws, _rotated(gold), gold)]
    assert y_tilde != gold and y_tilde != _rotated(gold)  # this seed mixes both kinds
    hand = HandLosses(sharp_t5, tiny_tokenizer, tiny_examples)
    sharp_t5.train()
    expected = PAPER_ALPHA * hand.predict() + (1 - PAPER_ALPHA) * hand.explain_given(y_tilde)
    assert trainer.compute_loss(sharp_t5, batch["r2d"]).item() == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("step", STEPS.values(), ids=STEPS.keys())
def test_evaluation_uses_the_final_alpha_and_gold_labels(
    sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, monkeypatch, step
):
    stage2 = Stage2Config(**{**PI_ONE.__dict__, "cycle_loss_weight": CYCLE_WEIGHT})
    hand = HandLosses(sharp_t5, tiny_tokenizer, tiny_examples)
    trainer = _trainer_at(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, "r2d", stage2, step, monkeypatch)
    sharp_t5.eval()
    gold = [e.label for e in tiny_examples]
    expected = PAPER_ALPHA * hand.predict() + (1 - PAPER_ALPHA) * hand.explain_given(gold)  # no cycle term
    with torch.no_grad():
        assert trainer.compute_loss(sharp_t5, batch["r2d"]).item() == pytest.approx(expected, abs=TOL)
    loss, _, _ = trainer.prediction_step(sharp_t5, batch["r2d"], prediction_loss_only=True)
    assert loss.item() == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("step", [*STEPS.values(), T_STEPS // 2], ids=[*STEPS.keys(), "t=T/2"])
def test_r2dc_cycle_term_by_hand(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, monkeypatch, step):
    # R2D-C: L(t) + lambda * L_cycle(t) for t > W, at temperature max(0.5, exp(-ln2 * t / T)), target y~
    stage2 = Stage2Config(**{**PI_ONE.__dict__, "cycle_loss_weight": CYCLE_WEIGHT})
    trainer = _trainer_at(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, "r2d", stage2, step, monkeypatch)
    noises = []

    def fixed_noise(shape, generator, device):  # the same Gumbel draw for the trainer and the hand computation
        noises.append(-torch.log(-torch.log(torch.rand(shape, generator=torch.Generator().manual_seed(7)))))
        return noises[-1]

    monkeypatch.setattr(trainer_module, "gumbel_noise", fixed_noise)
    hand = HandLosses(sharp_t5, tiny_tokenizer, tiny_examples)
    sharp_t5.train()
    y_tilde = _rotated([e.label for e in tiny_examples])
    alpha = paper_alpha(step)
    expected = alpha * hand.predict() + (1 - alpha) * hand.explain_given(y_tilde)
    loss = trainer.compute_loss(sharp_t5, batch["r2d"]).item()
    if step <= PAPER_WARMUP * T_STEPS:
        assert not noises  # no cycle term up to and including W
    else:
        temperature = max(0.5, math.exp(-math.log(2) * step / T_STEPS))
        cycle = hand.cycle(y_tilde, noises[0], temperature)
        assert abs(cycle - hand.cycle([e.label for e in tiny_examples], noises[0], temperature)) > 100 * TOL
        expected += CYCLE_WEIGHT * cycle
    assert loss == pytest.approx(expected, abs=TOL)


def test_gumbel_noise_is_minus_log_minus_log_uniform():
    u = torch.rand(3, 4, generator=torch.Generator().manual_seed(5))
    noise = trainer_module.gumbel_noise(torch.Size([3, 4]), torch.Generator().manual_seed(5), torch.device("cpu"))
    torch.testing.assert_close(noise, -torch.log(-torch.log(u)))


def test_loss_statistics_are_logged_under_their_names(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, batch):
    hand = HandLosses(sharp_t5, tiny_tokenizer, tiny_examples)
    sharp_t5.train()
    for mode, expected in (
        ("stage1", {"explain_loss": hand.explain()}),
        ("dss", {"predict_loss": hand.predict(), "explain_loss": hand.explain()}),
        ("r2d", {"used_predicted_fraction": 0.0, "sampling_probability": 0.0}),
    ):  # NEVER
        trainer = _trainer_at(sharp_t5, tiny_tokenizer, tiny_examples, tmp_path, mode, NEVER, 50)
        loss, outputs = trainer.compute_loss(sharp_t5, batch[mode], return_outputs=True)  # the Trainer's API
        assert outputs == {} and loss.dim() == 0
        trainer.log({"loss": 0.0})
        entry = trainer.state.log_history[-1]
        assert {k: entry[k] for k in expected} == pytest.approx(expected, abs=TOL)


def test_no_cycle_term_when_its_weight_is_zero(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, monkeypatch):
    trainer = _trainer_at(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, "r2d", NEVER, T_STEPS // 2)
    monkeypatch.setattr(trainer_module, "cycle_loss", lambda *a, **k: pytest.fail("cycle loss with weight 0"))
    tiny_t5.train()
    trainer.compute_loss(tiny_t5, batch["r2d"])


def test_cycle_noise_comes_from_the_trainers_seed_not_the_global_rng(
    tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch
):
    stage2 = Stage2Config(cycle_loss_weight=CYCLE_WEIGHT, sampling_start_fraction=1.0, sampling_end_fraction=1.0)
    tiny_t5.train()
    losses = []
    for seed, global_seed in ((0, 1), (0, 2), (1, 1)):
        trainer = make_trainer(
            tiny_t5, tiny_tokenizer, tiny_examples, tmp_path / str(seed), mode="r2d", stage2=stage2, step=50, seed=seed
        )
        torch.manual_seed(global_seed)
        trainer.compute_loss(tiny_t5, batch["r2d"])
        trainer.log({"loss": 0.0})
        losses.append(trainer.state.log_history[-1]["cycle_loss"])
    assert losses[0] == losses[1] != losses[2]


def test_cycle_loss_rejects_logits_of_another_vocabulary(tiny_t5, tiny_tokenizer, batch):
    embedding = tiny_t5.get_input_embeddings().weight
    rows = embedding.size(0)
    logits = torch.zeros(2, 3, rows + 1)
    with pytest.raises(ValueError, match=f"have {rows + 1} classes but the embedding matrix has {rows} rows"):
        cycle_loss(tiny_t5, tiny_tokenizer, logits, ["1", "2"], GEN, 1.0, torch.Generator(), embedding)


# --- evaluation, logging, arguments --------------------------------------------------------------


def test_prediction_step_returns_label_ids_outside_stage1(
    tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch, ktas_labels
):
    trainer = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="r2d")
    tiny_t5.eval()
    loss, predicted, gold = trainer.prediction_step(tiny_t5, batch["r2d"], prediction_loss_only=False)
    assert math.isfinite(loss.item()) and not loss.requires_grad
    assert predicted.shape[0] == gold.shape[0] == len(tiny_examples)
    decoded = [
        tiny_tokenizer.decode([t for t in row.tolist() if t != IGNORE_INDEX], skip_special_tokens=True)
        for row in predicted
    ]
    assert set(decoded) <= set(ktas_labels)
    stage1 = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="stage1")
    loss, predicted, gold = stage1.prediction_step(tiny_t5, batch["stage1"], prediction_loss_only=False)
    assert predicted is None and gold is None and math.isfinite(loss.item())


def test_evaluate_scores_labels_and_keeps_gather_for_metrics(
    tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, monkeypatch
):
    trainer = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="r2d")
    trainer.compute_metrics = label_metrics(tiny_tokenizer)
    gathers = []
    original = trainer.prediction_step

    def spy(*args, **kwargs):
        gathers.append(trainer.gather_function)
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "prediction_step", spy)
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_macro_f1"] <= 1.0 and 0.0 <= metrics["eval_accuracy"] <= 1.0
    # Seq2SeqTrainer.evaluate would swap in accelerator.gather, which keeps DDP's padding duplicates
    assert gathers and all(g != trainer.accelerator.gather for g in gathers)


def test_label_metrics_decode_and_score(tiny_tokenizer):
    gold, pred = ["1", "2", "3", "3"], ["1", "2", "2", "3"]
    prediction = EvalPrediction(
        predictions=label_targets(tiny_tokenizer, pred, GEN).numpy(),
        label_ids=label_targets(tiny_tokenizer, gold, GEN).numpy(),
    )
    scores = label_metrics(tiny_tokenizer)(prediction)
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["macro_f1"] == pytest.approx(macro_f1(gold, pred))


def test_label_metrics_ignore_padding(tiny_tokenizer):
    ids = np.array([[label_targets(tiny_tokenizer, ["4"], GEN)[0, 0].item(), IGNORE_INDEX]])
    scores = label_metrics(tiny_tokenizer)(EvalPrediction(predictions=ids, label_ids=ids))
    assert scores == {"macro_f1": 1.0, "accuracy": 1.0}


def test_log_adds_means_once_and_resets(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch):
    trainer = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="sft")
    tiny_t5.train()
    losses = [trainer.compute_loss(tiny_t5, batch["sft"]).item() for _ in range(2)]
    trainer.log({"loss": 0.0})
    assert trainer.state.log_history[-1]["predict_loss"] == pytest.approx(sum(losses) / 2)
    trainer.log({"eval_loss": 0.0})
    assert "predict_loss" not in trainer.state.log_history[-1]


def test_eval_mode_losses_are_not_logged_as_training_statistics(
    tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, batch
):
    trainer = make_trainer(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path, mode="r2d", stage2=ALWAYS)
    tiny_t5.eval()
    with torch.no_grad():
        trainer.compute_loss(tiny_t5, batch["r2d"])
    assert not trainer._stats


def test_sampling_generator_is_seeded_per_run(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path):
    draws = [
        torch.rand(
            4,
            generator=make_trainer(
                tiny_t5, tiny_tokenizer, tiny_examples, tmp_path / str(seed), seed=seed
            ).sampling_generator,
        ).tolist()
        for seed in (3, 3, 4)
    ]
    assert draws[0] == draws[1] != draws[2]


def test_unknown_mode_is_rejected(tiny_t5, tiny_tokenizer, tiny_examples, tmp_path):
    args = to_training_arguments(OPTIM, tmp_path, metric_for_best_model="loss", greater_is_better=False)
    with pytest.raises(ConfigError, match="mode"):
        R2DTrainer(model=tiny_t5, args=args, processing_class=tiny_tokenizer, mode="rlhf", generation=GEN)


def test_to_training_arguments(tmp_path):
    optim = OptimConfig(
        max_steps=200, eval_steps=20, lr_warmup_fraction=0.1, batch_size=3, gradient_accumulation_steps=2
    )
    args = to_training_arguments(optim, tmp_path, metric_for_best_model="macro_f1", greater_is_better=True)
    assert args.output_dir == str(tmp_path / CHECKPOINT_SUBDIR)
    assert (args.max_steps, args.eval_steps, args.warmup_steps) == (200, 20, 20)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (3, 2)
    assert args.eval_strategy == "steps" and args.save_strategy == "best" and args.load_best_model_at_end
    assert args.metric_for_best_model == "macro_f1" and args.greater_is_better
    assert args.remove_unused_columns is False and args.report_to == []
    assert args.use_cpu is (not torch.cuda.is_available())  # CPU torchrun runs real (gloo) DDP


@pytest.mark.skipif(torch.cuda.is_available(), reason="bf16 is allowed on a GPU")
def test_bf16_without_gpu_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="bf16"):
        to_training_arguments(OptimConfig(bf16=True), tmp_path, metric_for_best_model="loss", greater_is_better=False)


def _evaluate(callback, args, state, control, scores):
    for step, f1 in scores:
        state.global_step = step
        callback.on_evaluate(args, state, control, metrics={"eval_macro_f1": f1})
        if control.should_training_stop:
            return step
    return None


def test_early_stopping_waits_for_its_fraction(tmp_path):
    args = to_training_arguments(OPTIM, tmp_path, metric_for_best_model="macro_f1", greater_is_better=True)
    callback = DelayedEarlyStopping(patience=2, after_fraction=0.65)
    state, control = TrainerState(max_steps=100, best_metric=0.8), TrainerControl()
    assert _evaluate(callback, args, state, control, [(s, 0.1) for s in (10, 20, 30, 40, 50, 60)]) is None
    # 70 is the baseline, 80 and 90 fail to beat it: stop at the second
    assert _evaluate(callback, args, state, control, [(70, 0.1), (80, 0.1), (90, 0.1)]) == 90


def test_early_stopping_baseline_resets_when_the_delay_ends(tmp_path):
    # the authors' callback forgets everything before 65%: a run that peaked early still continues
    # while it improves on its first post-delay score (the best-of-all rule would stop it at step 80)
    args = to_training_arguments(OPTIM, tmp_path, metric_for_best_model="macro_f1", greater_is_better=True)
    callback = DelayedEarlyStopping(patience=2, after_fraction=0.65)
    state, control = TrainerState(max_steps=100), TrainerControl()
    scores = [(30, 0.8), (60, 0.8), (70, 0.3), (80, 0.2), (90, 0.4), (100, 0.35)]
    assert _evaluate(callback, args, state, control, scores) is None
    assert callback.best == 0.4 and callback.bad_evaluations == 1
    assert _evaluate(callback, args, state, control, [(110, 0.39)]) == 110


def test_early_stopping_follows_the_metric_direction(tmp_path):
    args = to_training_arguments(OPTIM, tmp_path, metric_for_best_model="loss", greater_is_better=False)
    callback = DelayedEarlyStopping(patience=1, after_fraction=0.0)
    state, control = TrainerState(max_steps=100), TrainerControl()
    for step, loss in [(10, 2.0), (20, 1.0)]:  # lower is better: both improve
        state.global_step = step
        callback.on_evaluate(args, state, control, metrics={"eval_loss": loss})
    assert not control.should_training_stop
    state.global_step = 30
    callback.on_evaluate(args, state, control, metrics={"eval_loss": 1.5})
    assert control.should_training_stop


def test_evaluate_at_end_only_on_the_last_step(tmp_path):
    args = to_training_arguments(OPTIM, tmp_path, metric_for_best_model="loss", greater_is_better=False)
    state, control = TrainerState(max_steps=10), TrainerControl()
    state.global_step = 9
    EvaluateAtEnd().on_step_end(args, state, control)
    assert not control.should_evaluate
    state.global_step = 10
    EvaluateAtEnd().on_step_end(args, state, control)
    assert control.should_evaluate
