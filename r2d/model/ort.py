"""ONNX Runtime engine: the Predictor on a 4-bit ONNX export of the model (the CPU default). No torch here.

r2d.model.ort_export writes the model once as two graphs (encoder -> every decoder layer's cross-attention
keys/values; decoder step with past keys/values) with quantized matrices, cached like the CTranslate2
conversion. This module runs them with numpy arrays and reads the tokenizer with the `tokenizers` library, so a
process on this engine imports neither torch nor transformers (the export itself, once per model, does).

ORTPredictor keeps every contract of r2d.model.inference.Predictor. Labels: one encoder pass per case, then one
decoder call that teacher-forces every candidate label of the case together (the candidates are the rows, the
case's cross keys/values are shared by broadcasting); the token log-probs become LabelScores through
r2d.model.label_scores, so the sums, softmax and confidence are every engine's. Rationales: greedy decoding with
past keys/values (streamed token by token), or, with fact_check_candidates > 1, beam search as transformers runs
it (length penalty 1, no early stop) and r2d.checks.factcheck.least_contradicted.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from r2d.config import GenerationConfig, ModelConfig
from r2d.errors import ModelLoadError
from r2d.limits import MAX_CASE_CHARS
from r2d.model.inference import OnToken, Predictor
from r2d.model.label_scores import LabelScores, scores_from_token_logprobs
from r2d.model.ort_export import DECODER, EMBEDDINGS, ENCODER, SETTINGS, export
from r2d.model.source import LoadedModel, _has_tokenizer, _meta_for, model_id_of, resolve_device

logger = logging.getLogger(__name__)

# model.quantization -> what the export holds (no int8 mode: config.validate refuses that pairing)
PRECISION_OF = {"auto": "int4", "4bit": "int4", "none": "float32"}


def ort_available() -> bool:
    """Whether onnxruntime and onnx can be imported (without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


class JsonTokenizer:
    """A model directory's tokenizer.json through the `tokenizers` library: the part of a transformers fast
    tokenizer the Predictor uses (call, decode, pad and eos ids), the same ids and text, without transformers."""

    def __init__(self, backend: Any, pad_token: str = "<pad>", eos_token: str = "</s>") -> None:
        self._tok = backend
        self._tok.no_padding()  # a saved tokenizer.json may carry the padding/truncation its last user set
        self._tok.no_truncation()
        self._special = self._tok.num_special_tokens_to_add(False)
        self.pad_token_id, self.eos_token_id = self._tok.token_to_id(pad_token), self._tok.token_to_id(eos_token)

    @classmethod
    def load(cls, directory: Path) -> JsonTokenizer:
        """The tokenizer of a model directory: its tokenizer.json, else (a SentencePiece model only) the one
        transformers converts it to. Raises ModelLoadError."""
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        tokens = {
            k: _token_text(config.get(k), default) for k, default in (("pad_token", "<pad>"), ("eos_token", "</s>"))
        }
        try:
            if (directory / "tokenizer.json").is_file():
                from tokenizers import Tokenizer

                return cls(Tokenizer.from_file(str(directory / "tokenizer.json")), **tokens)
            from transformers import AutoTokenizer

            return cls(AutoTokenizer.from_pretrained(str(directory)).backend_tokenizer, **tokens)
        except Exception as e:  # tokenizers raises its own Exception type for a broken file
            raise ModelLoadError(f"cannot read the tokenizer of {directory}: {e}") from e

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": self._tok.encode(text).ids}

    def encode(self, text: str, max_tokens: int = 0) -> list[int]:
        """The ids of `text` with `</s>`, cut to max_tokens (0: no cut) as transformers' truncation cuts them."""
        if max_tokens <= 0:
            return self._tok.encode(text).ids
        encoding = self._tok.encode(text, add_special_tokens=False)
        encoding.truncate(max(0, max_tokens - self._special))
        return self._tok.post_process(encoding).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)


def _token_text(value: Any, default: str) -> str:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict with its content."""
    if isinstance(value, dict):
        return str(value.get("content", default))
    return value if isinstance(value, str) else default


class OnnxT5:
    """The encoder and decoder sessions of an r2d.model.ort_export directory, called with numpy arrays."""

    def __init__(self, directory: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = max(0, threads), 1
        options.enable_cpu_mem_arena = False  # the arena keeps its largest blocks: the peak, for a small speed gain
        try:
            self.encoder = ort.InferenceSession(str(directory / ENCODER), options, providers=["CPUExecutionProvider"])
            self.decoder = ort.InferenceSession(str(directory / DECODER), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelLoadError(
                f"ONNX Runtime cannot load {directory}: {e}; delete that folder to export it again"
            ) from e
        self.layers = json.loads((directory / SETTINGS).read_text(encoding="utf-8"))["num_layers"]
        self.embeddings = np.load(directory / EMBEDDINGS, mmap_mode="r")  # (vocab, d_model); pages read on use
        past = self.decoder.get_inputs()[2].shape  # (rows, heads, past, d_kv)
        self.heads, self.d_kv = int(past[1]), int(past[3])
        self._past_names = [i.name for i in self.decoder.get_inputs()[2 : 2 + 2 * self.layers]]
        self._cross_names = [i.name for i in self.decoder.get_inputs()[2 + 2 * self.layers :]]

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
        """Every decoder layer's cross keys and values (cases, heads, S, d_kv), k then v per layer."""
        return self.encoder.run(None, {"inputs_embeds": self._embed(input_ids), "attention_mask": attention_mask})

    def _embed(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.embeddings[ids], dtype=np.float32)

    def empty_past(self, rows: int) -> list[np.ndarray]:
        return [np.zeros((rows, self.heads, 0, self.d_kv), np.float32) for _ in self._past_names]

    def decode(
        self, input_ids: np.ndarray, encoder_mask: np.ndarray, past: list[np.ndarray], cross: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Log-probs (rows, T, vocab) of the next token after each of input_ids (rows, T), and the extended past.
        cross/encoder_mask have one row per row of input_ids, or one row shared by all."""
        feed = {
            "inputs_embeds": self._embed(input_ids),
            "encoder_mask": encoder_mask,
            **dict(zip(self._past_names, past)),
            **dict(zip(self._cross_names, cross)),
        }
        log_probs, *present = self.decoder.run(None, feed)
        return log_probs, present


def load_ort(model_cfg: ModelConfig, label_set: Sequence[str] | None = None) -> LoadedModel:
    """model_cfg's model on ONNX Runtime (exported and cached on first use) with its tokenizer and r2d_model.json.
    model.num_threads sets ONNX Runtime's intra-op threads (0 = its default). Raises ModelLoadError."""
    if model_cfg.quantization not in PRECISION_OF:
        raise ModelLoadError(
            f"model.backend=onnx has no {model_cfg.quantization!r} mode: set model.quantization="
            "auto or 4bit (4-bit) or none (float32), or model.backend=ct2 for int8"
        )
    device = resolve_device(model_cfg.device)
    if device != "cpu":
        raise ModelLoadError(
            f"model.backend=onnx runs on the CPU, not {device}: set model.device=cpu, or "
            "model.backend=torch (4-bit bitsandbytes on CUDA)"
        )
    precision = PRECISION_OF[model_cfg.quantization]
    directory = export(model_cfg, precision)
    source = Path(model_cfg.name_or_path)
    adapter = Path(model_cfg.adapter_path) if model_cfg.adapter_path else None
    meta = _meta_for([d for d in (adapter, source) if d is not None], label_set, str(source))
    model = OnnxT5(directory, model_cfg.num_threads)
    tokenizer = JsonTokenizer.load(adapter if adapter is not None and _has_tokenizer(adapter) else source)
    model_id = model_id_of(meta, str(source), False, adapter)
    quantization = quantization_name(directory)
    logger.info("loaded %s (ONNX Runtime %s) on cpu", model_id, quantization)
    return LoadedModel(model, tokenizer, meta, model_id, quantization, "cpu", backend="onnx")


def quantization_name(directory: Path) -> str:
    """What an export holds, as predictions record it: "onnx-int4", "onnx-int4 (encoder int8)" or "onnx-float32"."""
    settings = json.loads((directory / SETTINGS).read_text(encoding="utf-8"))
    name = f"onnx-{settings['precision']}"
    return f"{name} (encoder int8)" if settings.get("encoder") == "int8" else name


class ORTPredictor(Predictor):
    """r2d.model.inference.Predictor on an OnnxT5 (LoadedModel.backend == "onnx"); same public API."""

    backend = "onnx"

    def __init__(self, loaded: LoadedModel, generation: GenerationConfig, max_case_chars: int = MAX_CASE_CHARS) -> None:
        if generation.constrain_numbers:
            raise ModelLoadError(
                "generation.constrain_numbers needs model.backend=torch or auto: ONNX Runtime takes no logits processor"
            )
        super().__init__(loaded, generation, max_case_chars)
        self.onnx: OnnxT5 = loaded.model
        self.start_id = self.tokenizer.pad_token_id  # T5's decoder start token
        self.min_new_tokens = 0  # the benchmark forces a length; 0 in the app
        targets = [self.tokenizer.encode(label, generation.max_label_tokens) for label in self.label_set]
        self._target_ids = targets  # each label's ids, `</s>` included unless cut (r2d.model.scoring's targets)
        width = max(len(t) for t in targets)
        # teacher forcing: row i reads start + its label's ids but the last, padded with the start token
        self._label_inputs = np.array(
            [[self.start_id, *t[:-1]] + [self.start_id] * (width - len(t)) for t in targets], dtype=np.int64
        )
        self._label_picks = np.array([t + [0] * (width - len(t)) for t in targets], dtype=np.int64)

    def _encode(self, prompts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """The prompts' encoder mask (cases, S) and cross keys/values, padded to the longest prompt.

        One encoder call per case: the int8 encoder quantizes its activations with one scale per call, so a
        batch would make a case's scores depend on the cases beside it (and the padding would cost work)."""
        ids = [self.tokenizer.encode(p, self.generation.max_input_tokens) for p in prompts]
        width = max(len(i) for i in ids)
        mask = np.array([[1] * len(i) + [0] * (width - len(i)) for i in ids], dtype=np.int64)
        per_case = [self.onnx.encode(np.array([i], dtype=np.int64), np.ones((1, len(i)), np.int64)) for i in ids]
        cross = [
            np.concatenate([np.pad(c[k], ((0, 0), (0, 0), (0, width - len(i)), (0, 0))) for c, i in zip(per_case, ids)])
            for k in range(len(per_case[0]))
        ]
        return mask, cross

    def _score(self, prompts: Sequence[str]) -> list[LabelScores]:
        mask, cross = self._encode(prompts)
        token_logps: list[list[float]] = []
        n = len(self.label_set)
        for i in range(len(prompts)):  # one decoder call per case: its candidates are the rows
            log_probs, _ = self.onnx.decode(
                self._label_inputs, mask[i : i + 1], self.onnx.empty_past(n), [c[i : i + 1] for c in cross]
            )
            picked = np.take_along_axis(log_probs, self._label_picks[..., None], axis=-1)[..., 0]
            token_logps += [row[: len(t)].tolist() for row, t in zip(picked, self._target_ids)]
        return scores_from_token_logprobs([self.label_set] * len(prompts), token_logps)

    def _rationale_candidates(
        self, prompts: Sequence[str], on_token: OnToken | None = None, cases: Sequence[str] = ()
    ) -> list[list[str]]:
        mask, cross = self._encode(prompts)
        width = max(self.generation.num_beams, self._candidates)
        if width <= 1:
            return [[self._decode(ids)] for ids in self._greedy(mask, cross, on_token)]
        return [
            [self._decode(ids) for ids in self._beam_search(mask[i : i + 1], [c[i : i + 1] for c in cross], width)]
            for i in range(len(prompts))
        ]

    def _next_log_probs(self, log_probs: np.ndarray, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """The last step's log-probs with what transformers' generate forbids: <pad> (the decoder start) always,
        `</s>` before min_new_tokens, and tokens that would repeat an n-gram (no_repeat_ngram_size)."""
        scores = log_probs[:, -1, :].copy()
        scores[:, self.start_id] = -np.inf
        if len(sequences[0]) - 1 < self.min_new_tokens:
            scores[:, self.tokenizer.eos_token_id] = -np.inf
        n = self.generation.no_repeat_ngram_size
        for row, seq in enumerate(sequences):
            scores[row, _banned(seq, n)] = -np.inf
        return scores

    def _greedy(self, mask: np.ndarray, cross: list[np.ndarray], on_token: OnToken | None) -> list[list[int]]:
        """Each case's greedy token ids (the start token excluded), `</s>` included when it came."""
        rows, eos = len(mask), self.tokenizer.eos_token_id
        sequences = [[self.start_id] for _ in range(rows)]
        done = np.zeros(rows, dtype=bool)
        past = self.onnx.empty_past(rows)
        for _ in range(self.generation.max_rationale_tokens):
            last = np.array([[s[-1]] for s in sequences], dtype=np.int64)
            log_probs, past = self.onnx.decode(last, mask, past, cross)
            chosen = np.where(done, self.start_id, self._next_log_probs(log_probs, sequences).argmax(-1))
            for seq, token in zip(sequences, chosen.tolist()):
                seq.append(token)
            done |= chosen == eos
            if (on_token is not None and on_token(chosen.tolist())) or done.all():
                break
        return [s[1:] for s in sequences]

    def _beam_search(self, mask: np.ndarray, cross: list[np.ndarray], width: int) -> list[list[int]]:
        """One case's best `fact_check_candidates` (at least 1) hypotheses of a beam search of `width` beams,
        best first: scores are sum log-prob / generated length (transformers' length penalty 1)."""
        eos, limit = self.tokenizer.eos_token_id, self.generation.max_rationale_tokens
        beams, scores = [[self.start_id]], np.zeros(1)
        past, finished = self.onnx.empty_past(1), []
        for step in range(1, limit + 1):
            last = np.array([[b[-1]] for b in beams], dtype=np.int64)
            log_probs, present = self.onnx.decode(last, mask, past, cross)
            total = scores[:, None] + self._next_log_probs(log_probs, beams)  # (beams, vocab)
            order = np.argsort(-total, axis=None, kind="stable")[: 2 * width]
            kept: list[tuple[int, int]] = []
            for rank, flat in enumerate(order.tolist()):
                row, token = divmod(flat, total.shape[1])
                if token == eos:
                    if rank < width:
                        finished.append((float(total[row, token]) / step, beams[row][1:] + [eos]))
                elif len(kept) < width:
                    kept.append((row, token))
            finished = sorted(finished, key=lambda f: -f[0])[:width]
            if len(finished) == width and finished[-1][0] >= float(total[kept[0]]) / step:
                break  # no running beam can beat the worst kept hypothesis any more
            rows = [r for r, _ in kept]
            beams = [beams[r] + [t] for r, t in kept]
            scores = np.array([float(total[r, t]) for r, t in kept])
            past = [p[rows] for p in present]
        else:
            finished += [(float(s) / limit, b[1:]) for s, b in zip(scores, beams)]
        finished.sort(key=lambda f: -f[0])
        return [ids for _, ids in finished[: max(1, self._candidates)]]


def _banned(sequence: Sequence[int], n: int) -> list[int]:
    """The tokens that would complete an n-gram already in `sequence` (transformers' no_repeat_ngram_size)."""
    if n <= 0 or len(sequence) < n:
        return []
    prefix = tuple(sequence[len(sequence) - n + 1 :])
    return [sequence[i + n - 1] for i in range(len(sequence) - n + 1) if tuple(sequence[i : i + n - 1]) == prefix]
