"""The Gradio UI: one module per tab (review with its batch panel, dashboard with its adjudication panel, export,
improve), each with its components, layout, handlers and wiring; ui.blocks puts them together, ui.server serves
them. Never imports torch."""

from ui.blocks import App, build_app
from ui.server import launch_kwargs, use_private_temp_dir

__all__ = ["App", "build_app", "launch_kwargs", "use_private_temp_dir"]
