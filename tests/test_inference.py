"""r2d.model.inference: the Predictor on the tiny random model (contracts, not model outputs)."""

from __future__ import annotations

import json
import math
import threading
import time

import pytest
import torch

from r2d.config import GenerationConfig, ModelConfig
from r2d.errors import ConfigError, InvalidCaseError
from r2d.model.inference import TIMING_KEYS, Prediction
from r2d.model.modeling import bitsandbytes_available, load_model_and_tokenizer
from r2d.model.scoring import LabelScores
from r2d.model.torch_predictor import TorchPredictor
from r2d.prompts import PROMPT_VERSION, explain_given_label_prompt, predict_prompt
from r2d.sources import KTAS_LABELS

# short rationales keep the tiny model's greedy loops quick; the contracts do not depend on the length
GEN = GenerationConfig(max_input_tokens=96, max_rationale_tokens=12)
CASES = [
    "chest pain",
    "72-year-old man, crushing chest pain, sweating, BP 88/50, HR 124, arrived by ambulance",
    "sore throat two days, vitals normal",
    "unresponsive adult, RR 6, SpO2 80 percent, pupils pinpoint, found at home by family, no pulse deficit",
]
QUANTIZATIONS = ["none"] + (["4bit", "int8"] if bitsandbytes_available() else [])


@pytest.fixture(scope="module")
def loaded_by_quantization(tiny_model_dir):
    # one thread: a 4k-parameter model gains nothing from two, and on a machine whose other core is busy
    # two OpenMP threads spin-wait (a tiny-model predict took 50x longer); restored for the other tests
    threads, cache = torch.get_num_threads(), {}

    def get(quantization: str):
        if quantization not in cache:
            model_cfg = ModelConfig(
                name_or_path=str(tiny_model_dir), quantization=quantization, device="cpu", num_threads=1
            )
            cache[quantization] = load_model_and_tokenizer(model_cfg)
        return cache[quantization]

    yield get
    torch.set_num_threads(threads)


@pytest.fixture()
def predictor(loaded_by_quantization) -> TorchPredictor:
    return TorchPredictor(loaded_by_quantization("none"), GEN)


def check_prediction(p: Prediction, predictor: TorchPredictor, case: str) -> None:
    assert p.case_text == case.strip()
    assert p.label in predictor.label_set
    assert list(p.probabilities) == list(predictor.label_set)
    assert math.isclose(sum(p.probabilities.values()), 1.0, abs_tol=1e-5)
    assert all(0.0 <= v <= 1.0 for v in p.probabilities.values())
    assert p.probabilities[p.label] == max(p.probabilities.values())
    assert isinstance(p.rationale, str)
    expected = (predictor.model_id, predictor.quantization, PROMPT_VERSION)
    assert (p.model_id, p.quantization, p.prompt_version) == expected
    assert set(p.timings) == set(TIMING_KEYS)
    assert 0.0 <= p.timings["label"] <= p.timings["first_token"] <= p.timings["total"]


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_predict_gives_a_valid_label_and_probabilities(loaded_by_quantization, quantization):
    predictor = TorchPredictor(loaded_by_quantization(quantization), GEN)
    assert predictor.quantization == quantization
    for case in CASES[:2]:
        check_prediction(predictor.predict(case), predictor, case)


def test_predictor_exposes_the_model_metadata(predictor, tiny_model_dir):
    assert predictor.label_set == tuple(KTAS_LABELS)
    assert predictor.label_names["1"] == "Resuscitation" and predictor.ordinal is True
    assert predictor.model_id == tiny_model_dir.name


def test_predict_label_scores_the_predict_prompt(predictor, monkeypatch):
    import r2d.model.torch_predictor as inference

    seen = []
    real = inference.score_labels

    def spy(model, tokenizer, prompts, label_set, max_input_tokens, max_label_tokens):
        seen.append((list(prompts), tuple(label_set), max_input_tokens, max_label_tokens))
        return real(model, tokenizer, prompts, label_set, max_input_tokens, max_label_tokens)

    monkeypatch.setattr(inference, "score_labels", spy)
    scores = predictor.predict_label("  chest pain ")
    assert isinstance(scores, LabelScores) and scores.labels == predictor.label_set
    assert seen == [([predict_prompt("chest pain")], predictor.label_set, GEN.max_input_tokens, GEN.max_label_tokens)]


def test_explain_generates_greedily_from_the_explain_prompt(predictor, monkeypatch):
    import r2d.model.torch_predictor as inference

    prompts, kwargs = [], []
    real_tokenize, real_generate = inference.tokenize_inputs, predictor.model.generate
    monkeypatch.setattr(
        inference,
        "tokenize_inputs",
        lambda tok, texts, *a: prompts.append(list(texts)) or real_tokenize(tok, texts, *a),
    )
    monkeypatch.setattr(predictor.model, "generate", lambda **kw: kwargs.append(kw) or real_generate(**kw))
    predictor.explain("chest pain", "2")
    assert prompts == [[explain_given_label_prompt("chest pain", "2")]]
    assert kwargs[0]["max_new_tokens"] == GEN.max_rationale_tokens and kwargs[0]["do_sample"] is False
    assert kwargs[0]["num_beams"] == GEN.num_beams and "temperature" not in kwargs[0]


@pytest.mark.parametrize("label", KTAS_LABELS)
def test_streaming_yields_the_same_text_as_explain(predictor, label):
    streamed = list(predictor.stream_rationale(CASES[1], label))
    assert streamed and all(isinstance(s, str) for s in streamed)
    assert streamed[-1] == predictor.explain(CASES[1], label)
    assert len(set(streamed)) == len(streamed)  # a new item only when the text changed


def test_streaming_with_beam_search_yields_the_whole_text(loaded_by_quantization):
    predictor = TorchPredictor(loaded_by_quantization("none"), GenerationConfig(max_rationale_tokens=8, num_beams=2))
    assert list(predictor.stream_rationale(CASES[0], "3")) == [predictor.explain(CASES[0], "3")]


def test_fact_checked_decoding_shows_the_candidate_the_case_contradicts_least(loaded_by_quantization):
    from r2d.checks.factcheck import least_contradicted
    from r2d.model.scoring import tokenize_inputs

    gen = GenerationConfig(max_input_tokens=96, max_rationale_tokens=8, fact_check_candidates=3)
    predictor = TorchPredictor(loaded_by_quantization("none"), gen)
    case = CASES[1]
    enc = tokenize_inputs(predictor.tokenizer, [explain_given_label_prompt(case, "2")], 96, "cpu")
    with torch.no_grad():  # the candidates, decoded independently: beam search of width 3, all three returned
        out = predictor.model.generate(
            **enc,
            max_new_tokens=8,
            num_beams=3,
            num_return_sequences=3,
            do_sample=False,
            suppress_tokens=[predictor.tokenizer.pad_token_id],
        )
    candidates = [predictor.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in out.tolist()]
    assert predictor.explain(case, "2") == candidates[least_contradicted(case, candidates, "2")]
    assert list(predictor.stream_rationale(case, "2")) == [predictor.explain(case, "2")]  # whole, not streamed
    batch = predictor.predict_batch([case, CASES[0]], batch_size=2)  # a batch picks per case, in order
    assert batch[0].rationale == predictor.explain(case, batch[0].label)
    assert batch[1].rationale == predictor.explain(CASES[0], batch[1].label)


def test_closing_a_stream_early_stops_its_thread(predictor):
    stream = predictor.stream_rationale(CASES[1], "1")
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "r2d-rationale-stream"]
    assert predictor.predict(CASES[0]).label in predictor.label_set  # the lock was released


def test_stream_checks_its_inputs_before_yielding(predictor):
    with pytest.raises(InvalidCaseError, match="not one of this model's labels"):
        predictor.stream_rationale(CASES[0], "9")
    with pytest.raises(InvalidCaseError, match="empty"):
        predictor.stream_rationale("  ", "1")


@pytest.mark.parametrize("quantization", QUANTIZATIONS[:2])
def test_batch_equals_single(loaded_by_quantization, quantization):
    predictor = TorchPredictor(loaded_by_quantization(quantization), GEN)
    progress = []
    batch = predictor.predict_batch(CASES, batch_size=3, progress=lambda done, total: progress.append((done, total)))
    assert progress == [(3, 4), (4, 4)]
    for case, got in zip(CASES, batch):
        single = predictor.predict(case)
        check_prediction(got, predictor, case)
        assert (got.label, got.rationale) == (single.label, single.rationale)
        assert got.probabilities == pytest.approx(single.probabilities, abs=1e-5)


def test_batch_checks_every_case_first(predictor):
    with pytest.raises(InvalidCaseError, match="case 2: case text is empty"):
        predictor.predict_batch(["chest pain", "   ", "headache"])
    with pytest.raises(ConfigError, match="batch_size"):
        predictor.predict_batch(["chest pain"], batch_size=0)
    assert predictor.predict_batch([]) == []


@pytest.mark.parametrize(
    "bad, match",
    [
        ("", "empty"),
        (" \n\t ", "empty"),
        (None, "must be text, got NoneType"),
        (42, "must be text, got int"),
        ("x" * 4001, "4,001 characters; the limit is 4,000. Shorten it to the presentation"),
    ],
)
def test_check_case_refuses(predictor, bad, match):
    with pytest.raises(InvalidCaseError, match=match):
        predictor.check_case(bad)
    with pytest.raises(InvalidCaseError):
        predictor.predict(bad)


def test_check_case_refuses_more_tokens_than_the_model_reads(loaded_by_quantization):
    predictor = TorchPredictor(
        loaded_by_quantization("none"), GenerationConfig(max_input_tokens=32), max_case_chars=100_000
    )
    with pytest.raises(InvalidCaseError, match=r"is \d+ tokens long with its prompt; the model reads at most 32"):
        predictor.check_case("chest pain " * 40)
    assert predictor.check_case("  chest pain  ") == "chest pain"


def test_explain_refuses_a_label_outside_the_set(predictor):
    with pytest.raises(InvalidCaseError, match=r"'urgent' is not one of this model's labels \['1'"):
        predictor.explain(CASES[0], "urgent")


def test_predict_label_from_rationale(predictor):
    scores = predictor.predict_label_from_rationale("Hypotension and tachycardia suggest shock.")
    assert scores.labels == predictor.label_set and math.isclose(sum(scores.probabilities), 1.0, abs_tol=1e-5)
    with pytest.raises(InvalidCaseError, match="rationale is empty"):
        predictor.predict_label_from_rationale("  ")


def test_concurrent_predictions_match_sequential_ones(predictor):
    expected = [predictor.predict(c) for c in CASES[:2]]
    results = [None, None]

    def run(i: int) -> None:
        results[i] = predictor.predict(CASES[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [(r.label, r.rationale) for r in results] == [(e.label, e.rationale) for e in expected]


def test_prediction_round_trips_through_json(predictor):
    # how a batch stores it (store.add_batch_predictions) and the queue reads it back (ShownCase.from_prediction)
    p = predictor.predict(CASES[0])
    stored = json.loads(json.dumps(p.to_dict()))
    assert stored == p.to_dict() and Prediction(**stored) == p


@pytest.mark.parametrize(
    "method, expected",
    [("dss", "explain: {case}"), ("r2d", "given label: 3, explain: {case}"), (None, "given label: 3, explain: {case}")],
)
def test_rationale_is_decoded_with_the_prompt_the_method_trained_on(
    loaded_by_quantization, monkeypatch, method, expected
):
    from dataclasses import replace

    from r2d.prompts import explain_prompt

    loaded = loaded_by_quantization("none")
    extra = {**loaded.meta.extra, "method": method} if method else {}
    predictor = TorchPredictor(replace(loaded, meta=replace(loaded.meta, extra=extra)), GEN)
    seen = []
    original = predictor.tokenizer.__class__.__call__

    def spy(tok, texts, *args, **kwargs):
        seen.append(texts)
        return original(tok, texts, *args, **kwargs)

    monkeypatch.setattr(predictor.tokenizer.__class__, "__call__", spy)
    predictor.explain("chest pain", "3")
    prompt = expected.format(case="chest pain")
    assert [prompt] in seen  # the encoder input of the rationale
    assert (prompt == explain_prompt("chest pain")) == (method == "dss")


# --- thread safety: the tokenizer race and the model lock between batch chunks ----------------------


class _LockCheckingTokenizer:
    """The shared tokenizer, recording whether the model lock was held at each encode (its state is shared)."""

    def __init__(self, tokenizer, lock) -> None:
        self._tokenizer, self._lock, self.unlocked_calls = tokenizer, lock, 0

    def __call__(self, *args, **kwargs):
        self.unlocked_calls += not self._lock.locked()
        return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def test_the_shared_tokenizer_is_only_used_under_the_model_lock(predictor):
    spy = _LockCheckingTokenizer(predictor.tokenizer, predictor._lock)
    predictor.tokenizer = spy
    predictor.check_case(CASES[1])
    predictor.predict(CASES[0])
    predictor.predict_batch(CASES, batch_size=2)
    list(predictor.stream_rationale(CASES[2], "3"))
    assert spy.unlocked_calls == 0


def test_case_checks_during_model_calls_never_fail(predictor):
    """Saves check cases while other reviewers' predictions run (1 of 833 saves failed before)."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def checking() -> None:
        try:
            while not stop.is_set():
                for case in CASES:
                    assert predictor.check_case(case) == case.strip()
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    checkers = [threading.Thread(target=checking) for _ in range(3)]
    for t in checkers:
        t.start()
    try:
        for _ in range(3):
            predictor.predict_batch(CASES, batch_size=2)
            predictor.predict_label_from_rationale(CASES[3])
    finally:
        stop.set()
        for t in checkers:
            t.join()
    assert errors == []


def test_a_single_prediction_waits_at_most_one_batch_chunk(predictor, monkeypatch):
    order: list[str] = []
    first_chunk_done, single_done = threading.Event(), threading.Event()
    score = predictor._score

    def slow_score(prompts):  # a chunk long enough for the single prediction to be waiting when it ends
        time.sleep(0.2)
        return score(prompts)

    monkeypatch.setattr(predictor, "_score", slow_score)

    def progress(done: int, total: int) -> None:
        order.append(f"chunk {done}")
        first_chunk_done.set()

    def single() -> None:
        first_chunk_done.wait()
        predictor.predict_label(CASES[0])
        order.append("single")
        single_done.set()

    waiter = threading.Thread(target=single)
    waiter.start()
    predictor.predict_batch(CASES, batch_size=1, progress=progress)
    waiter.join()
    # the single prediction asked while chunk 2 ran; the model is its turn before the batch's chunk 3
    assert order.index("single") <= order.index("chunk 3"), order


@pytest.mark.parametrize(
    "bad, match",
    [
        ("\x00\x01\x02", "NUL byte"),
        ("chest pain\x00", "NUL byte"),
        ("chest \x1b[2J pain", "control character"),
        ("chest pain \ud83d", "unpaired surrogate"),
    ],
)
def test_check_case_refuses_control_characters_and_lone_surrogates(predictor, bad, match):
    with pytest.raises(InvalidCaseError, match=match):
        predictor.check_case(bad)
    assert predictor.check_case("chest pain\n\tsince 2 h") == "chest pain\n\tsince 2 h"


def test_the_model_lock_serves_waiters_in_arrival_order(predictor):
    lock, order, threads = predictor._lock, [], []
    with lock:
        for i in range(5):
            threads.append(threading.Thread(target=lambda i=i: (lock.__enter__(), order.append(i), lock.__exit__())))
            threads[-1].start()
            while lock._next_ticket != i + 2:  # wait until thread i holds its ticket
                time.sleep(0.001)
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3, 4] and not lock.locked()
