"""The Improve tab: Stage 2 on the original data plus an export, in the background, compared before a switch."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gradio as gr

from r2d.checks.consistency import load_calibration
from r2d.config import R2DConfig, with_section
from r2d.errors import R2DError, TrainingRunError
from r2d.model.artifacts import model_source
from r2d.review import session as rv
from r2d.review.dashboard import comparison_figure
from r2d.review.export import is_complete_export
from r2d.review.jobs import COMPARED, MIN_COMPARED_CASES, MODEL_SUBDIR, comparison_table, plan_run, run_model_id
from ui.common import MODEL_QUEUE, QUIET, HandlerBase, load_app_predictor, logger, picker, read_asset, ui_errors


def progress_bar(percent: int) -> str:
    """An improvement run's progress as a bar that shows, never takes, a value (a slider invited dragging)."""
    percent = min(max(int(percent), 0), 100)
    return (
        f'<div class="r2d-progress"><progress max="100" value="{percent}" aria-label="Run progress">'
        f"</progress> <span>{percent}%</span></div>"
    )


def improve_tab(c: dict[str, Any], cfg: R2DConfig) -> None:
    gr.Markdown(read_asset("improve.md"))
    with gr.Row():
        c["im_export"] = gr.Dropdown(label="Reviewed export to learn from", choices=[], elem_id="r2d-im-export")
        c["im_data"] = gr.Textbox(
            label="Original training data (train/val/test.jsonl)", value=cfg.app.improve_data_dir, elem_id="r2d-im-data"
        )
        c["im_steps"] = gr.Number(
            label="Stage-2 steps", value=cfg.app.improve_steps, precision=0, elem_id="r2d-im-steps"
        )
        c["im_full"] = gr.Checkbox(label="Full fine-tune (default: LoRA)", elem_id="r2d-im-full")
    with gr.Row():
        c["im_start"] = gr.Button("Start improving", variant="primary", elem_id="r2d-im-start")
        c["im_refresh"] = gr.Button("Refresh lists", elem_id="r2d-im-refresh")
        c["im_run"] = gr.Dropdown(label="Run", choices=[], elem_id="r2d-im-run")
        c["im_cancel"] = gr.Button("Cancel run", variant="stop", elem_id="r2d-im-cancel")
    c["im_plan"] = gr.Markdown(elem_id="r2d-im-plan")
    c["im_status"] = gr.Markdown(elem_id="r2d-im-status")
    c["im_progress"] = gr.HTML(progress_bar(0), label="Progress", elem_id="r2d-im-progress")
    c["im_table"] = gr.Markdown(elem_id="r2d-im-table")
    c["im_plot"] = gr.Plot(show_label=False, elem_id="r2d-im-plot")
    with gr.Row():
        c["im_switch"] = gr.Button("Use the new model for suggestions", interactive=False, elem_id="r2d-im-switch")
        c["im_revert"] = gr.Button("Back to the starting model", elem_id="r2d-im-revert")
    c["im_log"] = gr.Textbox(label="Log (last lines)", lines=8, interactive=False, elem_id="r2d-im-log")
    c["im_timer"] = gr.Timer(2.0)


class ImproveHandlers(HandlerBase):
    """Plan, start, follow and cancel an improvement run; switch to its model or back."""

    def _export_folders(self) -> list[str]:
        root = Path(self.cfg.app.export_dir)
        # finished exports only: a killed export leaves a .partial folder with train.jsonl but no meta
        found = [p for p in root.iterdir() if is_complete_export(p)] if root.is_dir() else []
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]

    @ui_errors
    def improve_refresh(self) -> dict:
        """The exports to learn from and the runs so far (newest first)."""
        runs = [r.run_id for r in self.runs.runs()]
        exports = self._export_folders()
        return self._out(
            im_export=gr.update(choices=exports, value=exports[0] if exports else None),
            im_run=gr.update(choices=runs, value=runs[0] if runs else None),
        )

    def _plan(self, export: str | None, steps: Any) -> str:
        """Before a run: what its comparison will score and how long it should take (Markdown)."""
        a = self.cfg.app
        if not export or export not in self._export_folders():
            return "Choose an export to see how long a run takes."
        try:
            steps = max(int(steps or 0), 0)
        except (TypeError, ValueError):  # a half-typed number: the estimate waits for a whole one
            steps = 0
        plan = plan_run(
            Path(a.export_dir) / export,
            a.improve_data_dir,
            steps,
            a.improve_test_cases,
            a.improve_step_s,
            a.improve_case_s,
        )
        text = (
            f"**About {max(1, round(plan.seconds / 60))} min** on one core: {steps} training steps, "
            f"then both models score {plan.held_out} held-out reviewed case(s) and {plan.test_cases} public "
            "test cases."
        )
        if plan.held_out < MIN_COMPARED_CASES:
            text += (
                f"\n\n⚠ **Only {plan.held_out} reviewed case(s) are held out** in this export: with fewer "
                f"than {MIN_COMPARED_CASES}, the comparison on them cannot tell the models apart. Review and "
                "export more cases (or a larger validation share) first if you want that comparison."
            )
        return text

    @ui_errors
    def improve_plan(self, export: str | None, steps: Any) -> dict:
        """The estimate and the held-out warning, shown before Start is pressed."""
        return self._out(im_plan=self._plan(export, steps))

    def _check_data_dir(self, data_dir: str) -> str:
        """The configured original data folder, prepared from app.improve_source when it lacks its splits;
        a note saying so ("" when it was there). Raises TrainingRunError for any other folder."""
        from training.corpus.splits import prepare_missing  # no torch: r2d.data and r2d.sources only

        configured = self.cfg.app.improve_data_dir
        # only the data folder the app was started with: any other server folder, and errors naming its path
        # (whether it exists), are not the reviewer's to choose
        if not data_dir or not configured or Path(data_dir).resolve() != Path(configured).resolve():
            raise TrainingRunError(
                "the original training data must be the folder this app was started with "
                "(app.improve_data_dir); ask whoever runs the app to configure another"
            )
        manifest = prepare_missing(configured, self.cfg.app.improve_source)
        if manifest is None:
            return ""
        sizes = ", ".join(f"{split} {manifest['counts'][split]['total']}" for split in ("train", "val", "test"))
        return f"Prepared the original training data first, from the public KTAS data ({sizes} cases)."

    @ui_errors
    def improve_start(
        self, export: str | None, data_dir: str, steps: Any, full: bool, name: str, request: gr.Request
    ) -> dict:
        """Start Stage 2 on the original data plus the chosen export, from the model in use, in the background
        (preparing the original data first when it is missing)."""
        reviewer = self._reviewer(request, name)
        if not export or export not in self._export_folders():  # only the app's own export folders
            raise TrainingRunError("choose an export first (make one in the Export tab)")
        steps = int(steps or 0)
        if not 1 <= steps <= 100_000:
            raise TrainingRunError("steps must be between 1 and 100,000")
        prepared = self._check_data_dir(data_dir)
        run_id = self.runs.start(
            self.model_dir,
            Path(self.cfg.app.export_dir) / export,
            data_dir,
            steps,
            lora=not full,
            test_cases=self.cfg.app.improve_test_cases,
        )
        logger.info("%s started improvement run %s from %s on export %s", reviewer, run_id, self.model_dir, export)
        polled = self.improve_poll(run_id)
        plan = self._plan(export, steps)
        return {
            **polled,
            **self._out(
                im_run=gr.update(choices=[r.run_id for r in self.runs.runs()], value=run_id),
                im_plan=" ".join(filter(None, [prepared, plan])),
            ),
        }

    @ui_errors
    def improve_poll(self, run_id: str | None) -> dict:
        """Where the chosen run stands: progress, log, and once done the comparison (table and plot)."""
        if not run_id:
            return self._out(im_status="No run yet.", im_progress=progress_bar(0))
        st = self.runs.status(run_id)
        doing = (
            f"scoring cases for the comparison, {st.scored} of {st.to_score}"
            if st.phase == "evaluate"
            else f"{st.phase}, step {st.step} of {st.max_steps or '?'}"
        )
        words = {
            "running": f"⏳ Running: {doing}",
            "done": "✓ Done: compare below, then switch if the new model is better",
            "failed": f"✗ Failed: {rv.plain(st.error or '')}",
            "cancelled": "Cancelled: the app is unchanged",
            "lost": f"✗ The worker stopped without a result: {rv.plain(st.error or '')}",
        }
        done = st.state == "done" and st.comparison is not None
        in_use = done and Path(self.model_dir) == st.out_dir / MODEL_SUBDIR
        if in_use:
            words["done"] = f"✓ In use: suggestions come from `{self.predictor.model_id}`"
        return self._out(
            im_status=f"**{words[st.state]}** · run `{run_id}`",
            im_progress=progress_bar(round(100 * st.fraction)),
            im_log=st.log_tail,
            im_table=comparison_table(st.comparison) if done else "",
            im_plot=comparison_figure(st.comparison or {}, COMPARED),
            im_switch=gr.update(interactive=done and not in_use),
        )

    @ui_errors
    def improve_cancel(self, run_id: str | None, name: str, request: gr.Request) -> dict:
        """Cancel a run: needs a reviewer's name, and is logged with it."""
        reviewer = self._reviewer(request, name)
        if not run_id:
            raise TrainingRunError("no run chosen")
        self.runs.cancel(run_id)
        logger.info("%s cancelled improvement run %s", reviewer, run_id)
        return self.improve_poll(run_id)

    def use_run(self, run_id: str) -> None:
        """Load a finished run's model for every later suggestion and remember it across restarts.
        Raises TrainingRunError (no such finished run) or ModelLoadError."""
        new_dir = self.runs.new_model_dir(run_id)
        base, adapter = model_source(new_dir)
        cfg = with_section(self.cfg, model=dataclasses.replace(self.cfg.model, name_or_path=base, adapter_path=adapter))
        predictor = load_app_predictor(cfg)
        predictor.model_id = run_model_id(predictor.model_id, run_id)
        self.predictor, self.model_dir = predictor, str(new_dir)
        self.calibration = load_calibration(new_dir)  # a new model's consistency check is not the old one's
        self.runs.remember(run_id)

    def restore_model(self) -> None:
        """At start: the improved model in use before the restart, if any (else the configured one stays)."""
        run_id = self.runs.remembered()
        if run_id:
            try:
                self.use_run(run_id)
                logger.info("using the improved model of run %s, as before the restart", run_id)
            except R2DError as e:
                logger.warning("not using the remembered run %s: %s", run_id, e)
                self.runs.forget()

    @ui_errors
    def improve_switch(self, run_id: str | None, name: str, request: gr.Request) -> dict:
        """Use a finished run's model for every later suggestion (reviews record its id), also after a restart."""
        reviewer = self._reviewer(request, name)
        self.use_run(run_id or "")
        logger.info("%s switched suggestions to %s (%s)", reviewer, self.predictor.model_id, self.model_dir)
        return self._out(
            model_md=self._model_line(),
            im_status=(
                f"✓ Suggestions now come from `{self.predictor.model_id}`; every later review records it, also after "
                "a restart. Reviews already saved keep the model that made them."
            ),
        )

    @ui_errors
    def improve_revert(self, name: str, request: gr.Request) -> dict:
        """Back to the model the app was started with (the embedded one by default), now and after a restart."""
        reviewer = self._reviewer(request, name)
        if self.model_dir == self.cfg.model.name_or_path:
            raise TrainingRunError("the app already uses the model it was started with")
        self.predictor = load_app_predictor(self.cfg)
        self.model_dir = self.cfg.model.name_or_path
        self.calibration = load_calibration(self.model_dir)
        self.runs.forget()
        logger.info("%s switched suggestions back to %s", reviewer, self.predictor.model_id)
        return self._out(
            model_md=self._model_line(),
            im_status=(f"✓ Suggestions come from `{self.predictor.model_id}` again, also after a restart."),
        )


def wire_improve(demo: gr.Blocks, h: Any, c: dict[str, Any]) -> None:
    """The improvement runs' events."""
    outs = picker(c)
    poll_out = outs("im_status", "im_progress", "im_log", "im_table", "im_plot", "im_switch")
    lists = outs("im_export", "im_run")
    for trigger in (c["im_refresh"].click, c["im_tab"].select):
        trigger(h.improve_refresh, None, lists, api_name=False).then(
            h.improve_poll, outs("im_run"), poll_out, api_name=False
        )
    c["im_start"].click(
        h.improve_start,
        outs("im_export", "im_data", "im_steps", "im_full", "reviewer"),
        poll_out + outs("im_run", "im_plan"),
        api_name="improve_start",
        trigger_mode="once",
    )
    for changed in (c["im_export"].change, c["im_steps"].change):  # the estimate before Start, not after
        changed(h.improve_plan, outs("im_export", "im_steps"), outs("im_plan"), **QUIET)
    c["im_run"].select(h.improve_poll, outs("im_run"), poll_out, api_name=False)
    c["im_timer"].tick(h.improve_poll, outs("im_run"), poll_out, api_name=False, show_progress="hidden")
    c["im_cancel"].click(h.improve_cancel, outs("im_run", "reviewer"), poll_out, api_name="improve_cancel")
    c["im_switch"].click(
        h.improve_switch,
        outs("im_run", "reviewer"),
        outs("model_md", "im_status"),
        api_name="improve_switch",
        **MODEL_QUEUE,
    )
    c["im_revert"].click(
        h.improve_revert, outs("reviewer"), outs("model_md", "im_status"), api_name="improve_revert", **MODEL_QUEUE
    )
    demo.load(h._model_line, None, outs("model_md"), api_name=False)  # a page opened after a switch says so
