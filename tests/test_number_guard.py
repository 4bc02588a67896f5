"""r2d.model.number_guard: decoding that cannot invent a number, by the rule and through the Predictor."""

from __future__ import annotations

import re

import pytest
import torch

from r2d.checks.factcheck import value_slot
from r2d.config import GenerationConfig, ModelConfig
from r2d.errors import ModelLoadError
from r2d.model.load import load_predictor
from r2d.model.modeling import load_model_and_tokenizer
from r2d.model.number_guard import NumberGuard, NumberGuardProcessor, rule_numbers, slot_numbers
from r2d.model.torch_predictor import TorchPredictor

CASE = (
    "68-year-old man, arrived by public ambulance, not an injury. Chief complaint: unresponsive. Mental status: "
    "unresponsive. Pain score 6/10. Blood pressure 70/40 mmHg, heart rate 38/min, respiratory rate 6/min, "
    "temperature 36.2 °C, SpO2 78%."
)
DIGITS = frozenset("0123456789")


@pytest.fixture(scope="module")
def guard(tiny_tokenizer) -> NumberGuard:
    return NumberGuard(tiny_tokenizer, CASE)


def test_rule_numbers_are_the_limits_the_rules_print():
    assert {"92", "95", "90", "160", "180", "37.9", "38.0", "35.0", "120", "50"} <= rule_numbers()
    assert "78" not in rule_numbers()


def test_each_vital_allows_only_the_case_value():
    slots = slot_numbers(CASE)
    assert slots["spo2"] == {"78", "78.0"}
    assert slots["sbp"] >= {"70"} and slots["dbp"] >= {"40"}
    assert slots["temperature"] == {"36.2"}
    assert slots["pain"] >= {"6"}
    assert slots["gcs"] == frozenset()  # not recorded: no value may be written
    assert {"70", "40", "38", "36.2", "6", "68"} <= slots[None]


@pytest.mark.parametrize(
    "before, slot",
    [
        ("Systolic BP ", "sbp"),
        ("BP 70/", "dbp"),
        ("mild pain 3/", "pain_scale"),
        ("SpO2 ", "spo2"),
        ("heart rate ", "heart_rate"),
        ("RR ", "resp_rate"),
        ("(low, below ", "limit"),
        ("Chief complaint: ", None),
        ("HR 38, ", None),
        ("temperature ", "temperature"),
        ("GCS ", "gcs"),
    ],
)
def test_value_slot_reads_what_a_number_would_state(before, slot):
    assert value_slot(before) == slot


def test_after_a_vital_name_only_the_case_value_may_start_and_must_finish(guard):
    nexts, others = guard.next_allowed("Chief complaint: unresponsive. SpO2 ")
    assert nexts & DIGITS == {"7"} and others  # a word instead of a number stays allowed
    nexts, others = guard.next_allowed("Chief complaint: unresponsive. SpO2 7")
    assert nexts == {"8"} and not others  # "7" is no value of the case: it must become 78
    nexts, others = guard.next_allowed("Chief complaint: unresponsive. SpO2 78")
    assert nexts & DIGITS == set() and others


def test_a_decimal_continues_only_as_the_case_writes_it(guard):
    assert guard.next_allowed("temperature 36") == ({"."}, False)
    assert guard.next_allowed("temperature 36.") == ({"2"}, False)
    nexts, others = guard.next_allowed("temperature 36.2")
    assert others and not nexts & DIGITS


def test_a_limit_is_a_rule_limit_and_a_digit_glued_to_a_word_is_free(guard):
    nexts, _ = guard.next_allowed("SpO2 78% (hypoxaemia, below ")
    assert nexts & DIGITS == {s[0] for s in rule_numbers()}
    assert guard.next_allowed("Chief complaint: ")[0] >= {"0", "9"}  # any start the case or the rules allow
    assert guard.next_allowed("SpO")[0] == {"2", "."}  # a digit inside a word: SpO2 or a word of the case
    assert guard.next_allowed("ambul")[0] == {"."}


def test_the_processor_masks_a_forbidden_digit_for_each_case_of_a_batch(tiny_tokenizer):
    vocab = tiny_tokenizer.get_vocab()
    prefix = tiny_tokenizer("SpO2 7", add_special_tokens=False).input_ids
    ids = torch.tensor([[0] + prefix, [0] + prefix])
    scores = torch.zeros(2, len(vocab))
    scores[:, vocab["9"]] = 10.0
    out = NumberGuardProcessor(tiny_tokenizer, [CASE, "SpO2 79%"], rows_per_case=1)(ids, scores)
    assert out[0].argmax().item() == vocab["8"]  # case 1: 78 only
    assert out[1].argmax().item() == vocab["9"]  # case 2: 79 is its own value
    assert torch.isinf(out[0, vocab["9"]]) and not torch.isinf(out[1, vocab["9"]])


class _DigitHungryHead(torch.nn.Module):
    """The tiny model's output layer plus a large bonus for the digit 9: left alone it writes 9999."""

    def __init__(self, head: torch.nn.Module, nine: int) -> None:
        super().__init__()
        self.head, self.nine = head, nine

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.head(hidden)
        logits[..., self.nine] += 50.0
        return logits


def _numbers(text: str) -> list[str]:
    return re.findall(r"(?<![A-Za-z\d.])\d+(?:\.\d+)?", text)


@pytest.mark.parametrize("candidates", [0, 2])
def test_the_predictor_writes_no_number_the_case_lacks(tiny_model_dir, candidates):
    model_cfg = ModelConfig(name_or_path=str(tiny_model_dir), quantization="none", device="cpu", num_threads=1)
    loaded = load_model_and_tokenizer(model_cfg)
    loaded.model.lm_head = _DigitHungryHead(loaded.model.lm_head, loaded.tokenizer.get_vocab()["9"])
    base = GenerationConfig(max_input_tokens=256, max_rationale_tokens=10, fact_check_candidates=candidates)
    free = TorchPredictor(loaded, base).explain(CASE, "1")
    assert "9" in free  # the model alone invents a number
    guarded = TorchPredictor(loaded, GenerationConfig(**{**base.__dict__, "constrain_numbers": True})).explain(
        CASE, "1"
    )
    assert guarded and all(n in slot_numbers(CASE)[None] for n in _numbers(guarded))
    assert not re.search(r"[A-Za-z]\d", guarded.replace("SpO2", ""))  # nor hides one inside a word


def test_the_guard_runs_on_torch(tiny_model_dir):
    guarded = GenerationConfig(max_rationale_tokens=4, constrain_numbers=True)
    auto = ModelConfig(name_or_path=str(tiny_model_dir), quantization="none", device="cpu", backend="auto")
    assert load_predictor(auto, guarded).backend == "torch"
    pytest.importorskip("ctranslate2")
    ct2 = ModelConfig(name_or_path=str(tiny_model_dir), quantization="none", device="cpu", backend="ct2")
    with pytest.raises(ModelLoadError, match="constrain_numbers"):
        load_predictor(ct2, guarded)
