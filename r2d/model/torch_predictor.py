"""The Predictor on transformers (model.backend=torch): full precision, bitsandbytes 4-bit or int8, CPU or CUDA.

Labels through r2d.model.scoring (one encoder pass per case, every candidate teacher-forced together);
rationales through transformers' generate (greedy, or beam search for fact-checked candidates), streamed by a
streamer hook, and the number guard (generation.constrain_numbers, r2d.model.number_guard) as a logits processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.generation.logits_process import LogitsProcessorList
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from r2d.model.inference import OnToken, Predictor
from r2d.model.label_scores import LabelScores
from r2d.model.number_guard import NumberGuardProcessor
from r2d.model.scoring import eval_mode, score_labels, tokenize_inputs


class _TokenHook(BaseStreamer):
    """Hands each step's new token ids to an OnToken callback (the first put() is the decoder start token)."""

    def __init__(self, on_token: OnToken) -> None:
        self.on_token, self.started, self.stop = on_token, False, False

    def put(self, value: torch.Tensor) -> None:
        if not self.started:
            self.started = True
            return
        self.stop = bool(self.on_token(value.reshape(-1).tolist())) or self.stop

    def end(self) -> None:
        return None


class _StopWhenAsked(StoppingCriteria):
    """Stops generation once the token hook's callback asked for it (the stream's consumer went away)."""

    def __init__(self, hook: _TokenHook) -> None:
        self.hook = hook

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.hook.stop, dtype=torch.bool, device=input_ids.device)


class TorchPredictor(Predictor):
    """r2d.model.inference.Predictor on a transformers model (LoadedModel.backend == "torch")."""

    backend = "torch"

    def _score(self, prompts: Sequence[str]) -> list[LabelScores]:
        g = self.generation  # r2d.model.scoring bounds the decoder's memory (pairs per call); one home for that
        return score_labels(self.model, self.tokenizer, prompts, self.label_set, g.max_input_tokens, g.max_label_tokens)

    def _rationale_candidates(
        self, prompts: Sequence[str], on_token: OnToken | None = None, cases: Sequence[str] = ()
    ) -> list[list[str]]:
        extra: dict[str, Any] = {}
        if on_token is not None:
            hook = _TokenHook(on_token)
            extra = {"streamer": hook, "stopping_criteria": StoppingCriteriaList([_StopWhenAsked(hook)])}
        if self.generation.constrain_numbers:
            rows = self._generate_kwargs()["num_beams"]  # beams (and returned candidates) of a case come in a row
            extra["logits_processor"] = LogitsProcessorList([NumberGuardProcessor(self.tokenizer, cases, rows)])
        with eval_mode(self.model):
            enc = tokenize_inputs(self.tokenizer, prompts, self.generation.max_input_tokens, self.model.device)
            out = self.model.generate(**enc, **self._generate_kwargs(), **extra)
        texts = [self._decode(ids) for ids in out.tolist()]
        k = max(1, self._candidates)  # each prompt's candidates come in a row, best beam first
        return [texts[i * k : (i + 1) * k] for i in range(len(prompts))]

    def _generate_kwargs(self) -> dict[str, Any]:
        g = self.generation
        # greedy (do_sample=False), so the same case gives the same rationale streamed or not, alone or in a batch
        # <pad> is T5's decoder start, never text: a model that echoes it would "write" an empty rationale
        kwargs = {
            "max_new_tokens": g.max_rationale_tokens,
            "num_beams": g.num_beams,
            "do_sample": False,
            "no_repeat_ngram_size": g.no_repeat_ngram_size,
            "suppress_tokens": [self.tokenizer.pad_token_id],
        }
        if self._candidates > 1:
            kwargs |= {"num_beams": max(g.num_beams, self._candidates), "num_return_sequences": self._candidates}
        return kwargs
