"""The Gradio UI: one module per tab (review and batch, dashboard, export, improve), each with its layout, its
handlers and its wiring; ui.blocks puts them together, ui.server serves them. Never imports torch."""

from ui.blocks import Handlers, build_app
from ui.server import launch_kwargs, use_private_temp_dir

__all__ = ["Handlers", "build_app", "launch_kwargs", "use_private_temp_dir"]
