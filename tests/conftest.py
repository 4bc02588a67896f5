"""Shared fixtures: a tiny T5 and tokenizer built here, offline, and the shared public data."""
from __future__ import annotations

import os
from pathlib import Path

# before any gradio/transformers import: nothing in the test session may reach a network
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402

from r2d.config import ArchConfig  # noqa: E402
from r2d.data import Example, load_examples  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("R2D_SHARED_DATA", ROOT.parent / "shared" / "data"))
EXAMPLES_FILE = ROOT / "examples" / "triage_cases.jsonl"
TINY_ARCH = ArchConfig(vocab_size=300, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_decoder_layers=1,
                       num_heads=2, dropout_rate=0.0)
KTAS_LABELS = ["1", "2", "3", "4", "5"]


def pytest_collection_modifyitems(config, items):
    # shared/ is beside the project root on developers' machines and in CI; say so when it is not
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"public data not found at {SHARED_DATA} (set R2D_SHARED_DATA)")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


def _corpus_examples() -> list[Example]:
    from r2d.prompts import explain_given_label_prompt, explain_prompt, predict_prompt
    cases = [
        Example("72-year-old man, crushing chest pain, sweating, BP 88/50, HR 124", "2",
                "Hypotension with tachycardia and chest pain suggests shock; emergent care.", "nurse"),
        Example("30-year-old woman, sore throat two days, vitals normal, walked in", "5",
                "Stable vitals and a minor complaint: non-urgent.", "nurse"),
        Example("unresponsive adult, RR 6, SpO2 80 percent, arrived by ambulance", "1",
                "Unresponsive with respiratory failure: resuscitation now.", "nurse"),
        Example("45-year-old with abdominal pain, pain score 6, HR 102, temperature 38.4", "3",
                "Moderate pain with fever and mild tachycardia: urgent.", "nurse"),
        Example("ankle sprain while running, can bear weight, pain 3 of 10", "4",
                "Minor injury with mild pain and normal vitals: less urgent.", "nurse"),
    ]
    return cases


@pytest.fixture(scope="session")
def tiny_examples() -> list[Example]:
    """Five hand-written cases, one per KTAS level, with rationales."""
    return _corpus_examples()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from r2d.prompts import explain_given_label_prompt, explain_prompt, predict_prompt
    from r2d.tokenizer import train_tokenizer
    texts = []
    for e in _corpus_examples():
        texts += [predict_prompt(e.case_text), explain_prompt(e.case_text),
                  explain_given_label_prompt(e.case_text, e.label), e.rationale]
    texts += KTAS_LABELS + ["yes", "no", "maybe"]
    return train_tokenizer(texts * 3, vocab_size=TINY_ARCH.vocab_size)


@pytest.fixture()
def tiny_t5(tiny_tokenizer):
    """A fresh random 1-layer T5 (a few thousand parameters) per test: tests may train it."""
    from training.scratch import new_t5
    return new_t5(tiny_tokenizer, TINY_ARCH, seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A saved Reason2Decide model directory (random weights) with its r2d_model.json."""
    from r2d.artifacts import ModelMeta, save_model_dir
    from training.scratch import new_t5
    out = tmp_path_factory.mktemp("tiny_model")
    meta = ModelMeta(label_set=tuple(KTAS_LABELS), ordinal=True, task="ktas-triage",
                     label_names={"1": "Resuscitation", "2": "Emergency", "3": "Urgent", "4": "Less urgent", "5": "Non-urgent"})
    save_model_dir(new_t5(tiny_tokenizer, TINY_ARCH, seed=0), tiny_tokenizer, out, meta)
    return out
