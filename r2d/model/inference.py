"""The Predictor: a case in, a label from the closed label set and a rationale for that label out.

The label is the best-scoring candidate of the label set under predict_prompt(case) (one encoder pass, all
candidates teacher-forced together, r2d.model.label_scores), so it is always valid and comes with a
probability for every label. The rationale is generated greedily from explain_given_label_prompt(case,
label); it can also be streamed, and the streamed text ends exactly where `explain` does. With
generation.fact_check_candidates = N > 1, beam search returns N candidates and the one the case
contradicts least (r2d.checks.factcheck) is the rationale; it is then shown whole, not streamed.
This module is engine-free (no torch): each engine's subclass writes the two model calls, _score and
_rationale_candidates: TorchPredictor (transformers, r2d.model.torch_predictor), ORTPredictor (ONNX Runtime,
r2d.model.ort) and CT2Predictor (CTranslate2, r2d.model.ct2). r2d.model.load.load_predictor picks the one
model.backend asks for.
The two prompts differ from their first token, so the bidirectional encoder cannot share states between
them: each prediction runs the encoder twice. All lengths come from GenerationConfig.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from r2d.checks.factcheck import least_contradicted
from r2d.config import GenerationConfig
from r2d.errors import ConfigError, InvalidCaseError, ModelLoadError
from r2d.limits import MAX_CASE_CHARS, check_case_text
from r2d.model.label_scores import LabelScores
from r2d.model.source import LoadedModel
from r2d.prompts import PROMPT_VERSION, explain_given_label_prompt, explain_prompt, predict_prompt

logger = logging.getLogger(__name__)

TIMING_KEYS = ("label", "first_token", "total")
# on_token(ids) gets one new token id per row after each decoding step; returning True stops the generation
OnToken = Callable[[list[int]], bool]


@dataclass(frozen=True)
class Prediction:
    """One case's label, its probabilities over the label set, the rationale, and what produced them."""

    case_text: str
    label: str
    probabilities: dict[str, float]  # every label of the label set, in label-set order, sums to 1
    rationale: str
    model_id: str
    quantization: str
    prompt_version: str
    timings: dict[str, float]  # seconds: "label", "first_token", "total" (a batch's times divided by its size)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the field names as keys."""
        return asdict(self)


class _FairLock:
    """A lock granted in arrival order. threading.Lock is not: a batch that releases it between chunks
    and takes it again at once can keep a waiting single prediction out for many chunks."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next_ticket = self._serving = 0
        self._abandoned: set[int] = set()  # tickets whose waiter was interrupted: skipped, never deadlocked on

    def __enter__(self) -> _FairLock:
        with self._cond:
            ticket, self._next_ticket = self._next_ticket, self._next_ticket + 1
            try:
                self._cond.wait_for(lambda: self._serving == ticket)
            except BaseException:
                if self._serving == ticket:  # its turn came as it was interrupted: pass the turn on
                    self._advance()
                else:
                    self._abandoned.add(ticket)
                raise
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._cond:
            self._advance()

    def _advance(self) -> None:
        """Serve the next ticket that still has a waiter (the condition's lock is held)."""
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._cond.notify_all()

    def locked(self) -> bool:
        with self._cond:
            return self._serving != self._next_ticket


class Predictor:
    """Label + rationale for triage cases with one loaded model. Thread-safe: model calls take turns.

    Each engine's subclass (TorchPredictor, ORTPredictor, CT2Predictor) writes the two model calls (_score,
    _rationale_candidates); r2d.model.load.predictor_for picks the class.
    """

    backend = ""

    def __init__(self, loaded: LoadedModel, generation: GenerationConfig, max_case_chars: int = MAX_CASE_CHARS) -> None:
        if not loaded.meta.label_set:
            raise ModelLoadError(f"model {loaded.model_id} has an empty label set; re-export it with its labels")
        if loaded.backend != self.backend:
            raise ModelLoadError(
                f"a {loaded.backend} model needs r2d.model.load.predictor_for (this is the {self.backend} Predictor)"
            )
        self.model, self.tokenizer, self.generation = loaded.model, loaded.tokenizer, generation
        self.max_case_chars = max_case_chars
        self.label_set: tuple[str, ...] = tuple(loaded.meta.label_set)
        self.label_names: dict[str, str] = dict(loaded.meta.label_names)
        self.ordinal: bool = bool(loaded.meta.ordinal)
        self.task: str | None = loaded.meta.task
        self.model_id: str = loaded.model_id
        self.quantization: str = loaded.quantization
        self.device: str = loaded.device
        # Gradio calls from worker threads: one model call at a time, in arrival order (a single prediction
        # waits for the batch chunk in progress, not for the whole batch)
        self._lock = _FairLock()
        # a fast tokenizer's padding/truncation state is shared: a case check (run by saves, outside the model
        # lock, so a save never waits for a batch) tokenizes with its own copy, one check at a time
        self._check_tokenizer, self._check_lock = copy.deepcopy(self.tokenizer), threading.Lock()
        self._longest_label = max(self.label_set, key=len)
        # the training method, from r2d_model.json: it decides which prompt the rationale is decoded with
        self.method: str | None = loaded.meta.extra.get("method")
        if loaded.meta.prompt_version != PROMPT_VERSION:
            logger.warning(
                "model %s was trained with prompts %s, this code builds %s",
                self.model_id,
                loaded.meta.prompt_version,
                PROMPT_VERSION,
            )

    # --- input checks ---------------------------------------------------------------------

    def check_case(self, case_text: str) -> str:
        """The stripped case text.

        Raises InvalidCaseError when it is not text, empty, or longer than the model reads.
        """
        text = check_case_text(case_text, self.max_case_chars)
        # the explain prompt is the longer of the two; it must fit whole, or the model would read a cut case
        with self._check_lock:
            n_tokens = len(self._check_tokenizer(explain_given_label_prompt(text, self._longest_label))["input_ids"])
        if n_tokens > self.generation.max_input_tokens:
            raise InvalidCaseError(
                f"case text is {n_tokens} tokens long with its prompt; the model reads at most "
                f"{self.generation.max_input_tokens}. Shorten it"
            )
        return text

    def _check_label(self, label: str) -> str:
        if label not in self.label_set:
            raise InvalidCaseError(f"label {label!r} is not one of this model's labels {list(self.label_set)}")
        return label

    # --- the model calls (callers hold the lock); each engine's subclass writes these two ----------

    def _score(self, prompts: Sequence[str]) -> list[LabelScores]:
        """Each prompt's scores over the label set (r2d.model.label_scores)."""
        raise NotImplementedError(f"{type(self).__name__} is not an engine: use r2d.model.load.predictor_for")

    def _rationale_candidates(
        self, prompts: Sequence[str], on_token: OnToken | None = None, cases: Sequence[str] = ()
    ) -> list[list[str]]:
        """Each prompt's decoded rationales, best first: one, or fact_check_candidates beam hypotheses.
        on_token (greedy only) sees every step's new token ids and stops the generation by returning True.
        `cases` (the prompts' case texts) feed generation.constrain_numbers."""
        raise NotImplementedError(f"{type(self).__name__} is not an engine: use r2d.model.load.predictor_for")

    @property
    def _candidates(self) -> int:
        return self.generation.fact_check_candidates

    @property
    def _streams(self) -> bool:
        """Whether generation yields token by token (neither engine streams beam search)."""
        return self.generation.num_beams == 1 and self._candidates <= 1

    def _explain(self, cases: Sequence[str], labels: Sequence[str], on_token: OnToken | None = None) -> list[str]:
        prompts = [self.rationale_prompt(c, lab) for c, lab in zip(cases, labels)]
        candidates = self._rationale_candidates(prompts, on_token if self._streams else None, cases=cases)
        if self._candidates <= 1:
            return [c[0] for c in candidates]
        # fact-checked decoding: of each case's candidates, the one the case contradicts least
        return [cands[least_contradicted(case, cands, label)] for case, label, cands in zip(cases, labels, candidates)]

    def rationale_prompt(self, case: str, label: str) -> str:
        """The prompt the rationale is decoded from: the one this model's method trained its explain task on.

        Distilling step-by-step (method "dss") only ever learnt `explain: x`, so its rationale cannot be
        conditioned on the label; every other model explains `given label: y, explain: x`.
        """
        return explain_prompt(case) if self.method == "dss" else explain_given_label_prompt(case, label)

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    # --- public API -------------------------------------------------------------------------

    def predict_label(self, case_text: str) -> LabelScores:
        """Scores of every label for the case under predict_prompt. Raises InvalidCaseError."""
        case = self.check_case(case_text)
        with self._lock:
            return self._score([predict_prompt(case)])[0]

    def predict_label_from_rationale(self, rationale: str) -> LabelScores:
        """The label the model reads from a rationale alone (consistency check). Raises InvalidCaseError when empty."""
        if not isinstance(rationale, str) or not rationale.strip():
            raise InvalidCaseError("rationale is empty: there is nothing to check")
        with self._lock:
            return self._score([predict_prompt(rationale.strip())])[0]

    def explain(self, case_text: str, label: str) -> str:
        """The greedy rationale for `label` on the case. Raises InvalidCaseError (bad case, label outside the set)."""
        case, label = self.check_case(case_text), self._check_label(label)
        with self._lock:
            return self._explain([case], [label])[0]

    def stream_rationale(self, case_text: str, label: str) -> Iterator[str]:
        """Yield the rationale so far after each new token; the last item equals explain(case_text, label).

        Generation runs in a background thread and stops early when the consumer closes the generator.
        Raises InvalidCaseError before yielding anything for a bad case or label.
        """
        case, label = self.check_case(case_text), self._check_label(label)
        return self._stream(case, label)

    def _stream(self, case: str, label: str) -> Iterator[str]:
        if not self._streams:  # beam search or fact-checked candidates: the whole text at once
            with self._lock:
                yield self._explain([case], [label])[0]
            return
        tokens: queue.Queue[list[int] | None] = queue.Queue()
        cancel, failure = threading.Event(), []

        def on_token(ids: list[int]) -> bool:
            tokens.put(ids)
            return cancel.is_set()

        def run() -> None:
            try:
                with self._lock:
                    self._explain([case], [label], on_token=on_token)
            except Exception as e:  # re-raised in the consuming thread below
                failure.append(e)
            finally:
                tokens.put(None)

        worker = threading.Thread(target=run, name="r2d-rationale-stream", daemon=True)
        worker.start()
        ids: list[int] = []
        last = None
        try:
            while (step := tokens.get()) is not None:
                ids.extend(step)
                text = self._decode(ids)
                if text != last:
                    last = text
                    yield text
        finally:
            cancel.set()
            worker.join()
        if failure:
            raise failure[0]
        if last is None:
            yield self._decode(ids)  # an empty rationale still ends the stream with its (empty) text

    def predict(self, case_text: str) -> Prediction:
        """Label, probabilities and rationale for one case, with timings. Raises InvalidCaseError."""
        case = self.check_case(case_text)
        return self._predict_chunk([case])[0]

    def predict_batch(
        self, case_texts: Sequence[str], batch_size: int = 8, progress: Callable[[int, int], None] | None = None
    ) -> list[Prediction]:
        """predict() for many cases, `batch_size` per model call; progress(done, total) after each call.

        Every case is checked before any model call; InvalidCaseError names the first bad one (1-based).
        Results equal predict() case by case; timings are each batch's times divided by its size.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        cases = []
        for i, text in enumerate(case_texts, start=1):
            try:
                cases.append(self.check_case(text))
            except InvalidCaseError as e:
                raise InvalidCaseError(f"case {i}: {e}") from e
        results: list[Prediction] = []
        for start in range(0, len(cases), batch_size):
            results += self._predict_chunk(cases[start : start + batch_size])
            if progress is not None:
                progress(len(results), len(cases))
        return results

    def _predict_chunk(self, cases: list[str]) -> list[Prediction]:
        first_token_at: list[float] = []

        def clock(ids: list[int]) -> bool:
            if not first_token_at:
                first_token_at.append(time.perf_counter())
            return False

        with self._lock:
            t0 = time.perf_counter()
            scores = self._score([predict_prompt(c) for c in cases])
            t_label = time.perf_counter()
            labels = [s.best for s in scores]
            rationales = self._explain(cases, labels, on_token=clock)
            t_end = time.perf_counter()
        n = len(cases)
        timings = {
            "label": (t_label - t0) / n,
            "first_token": ((first_token_at or [t_end])[0] - t0) / n,
            "total": (t_end - t0) / n,
        }
        return [
            Prediction(
                case_text=c,
                label=lab,
                probabilities=dict(zip(s.labels, s.probabilities)),
                rationale=r,
                model_id=self.model_id,
                quantization=self.quantization,
                prompt_version=PROMPT_VERSION,
                timings=dict(timings),
            )
            for c, lab, s, r in zip(cases, labels, scores, rationales)
        ]
