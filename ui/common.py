"""What every tab shares: R2DError -> gr.Error, the reviewer's name, the components outside the tabs and the
Tab base that names its own, the outputs a "show a case" event fills, and the event queues."""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from r2d.config import R2DConfig
from r2d.errors import R2DError, ReviewActionError
from r2d.review import session as rv
from r2d.review.active import DEFAULT_ORDER, ORDERS

logger = logging.getLogger("r2d.app")
ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
# what a "show a case" event may fill (see ui.review.ReviewTab.render), and what a batch event fills besides
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


def reviewer(request: gr.Request | None, name: str | None) -> str:
    """who(), required: raises ReviewActionError when there is no name."""
    found = who(request, name)
    if not found:
        raise ReviewActionError("enter your name in the 'Reviewer' box first: every review records who made it")
    return found


def joined(*parts: str) -> str:
    """The status parts that say something, in one line."""
    return " ".join(filter(None, parts))


@dataclass
class Shared:
    """The components outside the tabs: the model line, the reviewer's name and the name the browser keeps."""

    model_md: gr.Markdown
    reviewer: gr.Textbox
    saved_name: gr.BrowserState


class Tab:
    """A tab's (or panel's) handlers. `ui` holds its components, a dataclass its layout fills in; `shared` those
    outside every tab. Handlers return {component: value}, built by out() from the components' field names."""

    ui: Any = None
    shared: Shared | None = None

    def holders(self) -> tuple[Any, ...]:
        """Where out() looks a name up, in order."""
        return (self.ui, self.shared)

    def component(self, name: str) -> Any:
        for holder in self.holders():
            if hasattr(holder, name):
                return getattr(holder, name)
        raise KeyError(f"no component {name!r}")

    def out(self, **values: Any) -> dict:
        return {self.component(name): value for name, value in values.items()}
