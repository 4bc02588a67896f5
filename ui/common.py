"""What every tab shares: the handler base (the state all tabs read), R2DError -> gr.Error, the reviewer's
name, the outputs a "show a case" event fills, and the event queues."""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from r2d.checks.consistency import load_calibration
from r2d.config import R2DConfig
from r2d.errors import R2DError, ReviewActionError
from r2d.review import session as rv
from r2d.review.active import DEFAULT_ORDER, ORDERS
from r2d.review.export import sweep_partial_exports
from r2d.review.jobs import ImproveRuns
from r2d.review.store import ReviewStore

logger = logging.getLogger("r2d.app")
ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
# what a "show a case" event may fill (see ReviewHandlers._render), and what a batch event fills besides
SHOWN_OUTPUTS = (
    "shown",
    "case",
    "case_md",
    "label_md",
    "plot",
    "rationale",
    "final_label",
    "rating",
    "comment",
    "diff",
    "facts",
    "fact_notes",
    "consistency",
    "status",
    "model_md",
)
QUEUE_OUTPUTS = ("queue", "batch_panel", "batch", "queue_md", "order")
# long model runs (predict, batches) queue one at a time; saves and checks only wait for the Predictor's own
# lock, i.e. for the model call in progress, not for a whole batch
MODEL_QUEUE = dict(concurrency_id="model", concurrency_limit=1)
# a single prediction has its own queue: behind a 1,000-case upload it waits for one chunk (the Predictor's
# fair lock), not for the whole batch
SINGLE_QUEUE = dict(concurrency_id="single", concurrency_limit=4)
QUIET = dict(api_name=False, show_progress="hidden")
# .input fires on typing only: text pasted with the mouse or dropped in arrives with the box's .blur (leaving it)
TYPED_OR_LEFT = ("input", "blur")


def _ui_error(name: str, e: Exception) -> gr.Error:
    """R2DError: its own message. Anything else: a generic message, the details logged under a short id."""
    if isinstance(e, R2DError):
        logger.warning("%s refused: %s", name, e)
        return gr.Error(str(e))
    log_id = os.urandom(4).hex()
    logger.error("%s failed [log id %s]", name, log_id, exc_info=e)
    # internals (paths, library messages) are never shown: they can carry case text or the DB location
    return gr.Error(
        f"Something went wrong in the app (log id {log_id}); what you typed is still on screen. "
        "Try again, and give the log id to whoever runs the app if it happens again."
    )


def ui_errors(fn: Callable) -> Callable:
    """Turn every exception into gr.Error (a readable modal), for plain and generator handlers alike."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as e:
                raise _ui_error(fn.__name__, e) from e

        return generator

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:
            raise _ui_error(fn.__name__, e) from e

    return call


def who(request: gr.Request | None, name: str | None) -> str:
    """The Gradio-auth username if there is one, else the name typed in the Reviewer box."""
    return ((getattr(request, "username", None) if request is not None else None) or name or "").strip()


def read_asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def picker(c: dict[str, Any]) -> Callable[..., list[Any]]:
    """outs("a", "b") -> [c["a"], c["b"]]: the components a wiring line names."""
    return lambda *names: [c[n] for n in names]


def known_order(order: Any) -> str:
    """A review order r2d.review.active knows, else the upload order (an old or forged browser value)."""
    return order if order in ORDERS else DEFAULT_ORDER


def queue_of(queue: Any) -> dict[str, Any]:
    """The saved queue position, or {} for anything that is not one (an old or forged browser value)."""
    if isinstance(queue, dict) and isinstance(queue.get("batch_id"), str) and queue["batch_id"]:
        position = queue.get("position", 0)
        return {
            "batch_id": queue["batch_id"],
            "position": position if isinstance(position, int) else 0,
            "order": known_order(queue.get("order")),
        }
    return {}


def load_app_predictor(cfg: R2DConfig) -> rv.PredictorLike:
    """Load the model named by cfg.model on the engine model.backend resolves to; the UI's only road to the
    model code (imported here, on first use, never at import). Raises ModelLoadError."""
    from r2d.model.load import load_predictor

    return load_predictor(cfg.model, cfg.generation, cfg.app.max_case_chars)


class HandlerBase:
    """The state every tab's handlers read: the predictor in use (Improve may switch it), the store, the
    config, and `c`, the components by name (filled in by build_app before the events are wired)."""

    def __init__(self, predictor: rv.PredictorLike, store: ReviewStore, cfg: R2DConfig) -> None:
        self.predictor, self.store, self.cfg = predictor, store, cfg
        self.c: dict[str, Any] = {}
        self._downloads: list[Path] = []  # temporary folders of download zips, oldest first
        # (reviewer, case id, showing) of each non-triage text whose one-key acceptance was asked to be confirmed
        self._guesses_warned: set[tuple[str, str, str]] = set()
        self.runs = ImproveRuns(cfg.app.runs_dir)
        sweep_partial_exports(cfg.app.export_dir)  # exports a killed app or CLI never finished
        self.model_dir = cfg.model.name_or_path  # what "Improve the model" starts from; changes on a switch
        self.calibration = load_calibration(self.model_dir)  # how far the consistency line can be trusted

    def _out(self, **values: Any) -> dict:
        return {self.c[name]: value for name, value in values.items()}

    def _reviewer(self, request: gr.Request | None, name: str | None) -> str:
        reviewer = who(request, name)
        if not reviewer:
            raise ReviewActionError("enter your name in the 'Reviewer' box first: every review records who made it")
        return reviewer

    def _model_line(self) -> str:
        p = self.predictor
        engine = {"ct2": "CTranslate2", "torch": "transformers"}.get(getattr(p, "backend", "torch"), "transformers")
        line = f"Model `{p.model_id}` · backend `{engine}` · quantization `{p.quantization}`"
        if self.model_dir != self.cfg.model.name_or_path:
            line += " · an improved model (Improve tab: 'Back to the starting model')"
        n = self.predictor.generation.fact_check_candidates
        if n > 1:
            line += (
                f" · rationale: of {n} candidates the model wrote, the one the fact check finds fewest problems "
                "in (what it still gets wrong is listed beside it)"
            )
        return line
