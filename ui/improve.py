"""The Improve tab: a training.improve run in a background process (r2d.review.jobs), its progress, and the
comparison of the new model with the one in use before a switch; switching back is one press too."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from r2d.config import R2DConfig
from r2d.errors import R2DError, TrainingRunError
from r2d.review import session as rv
from r2d.review.dashboard import comparison_figure
from r2d.review.export import complete_exports
from r2d.review.jobs import COMPARED, MIN_COMPARED_CASES, ImproveRuns, comparison_table, plan_run
from ui.common import MODEL_QUEUE, QUIET, Tab, joined, read_asset, reviewer, ui_errors
from ui.model import ModelInUse

logger = logging.getLogger("r2d.app")


@dataclass
class ImproveUI:
    tab: gr.Tab
    export: gr.Dropdown
    data: gr.Textbox
    steps: gr.Number
    full: gr.Checkbox
    start: gr.Button
    refresh: gr.Button
    run: gr.Dropdown
    cancel: gr.Button
    plan: gr.Markdown
    status: gr.Markdown
    progress: gr.HTML
    table: gr.Markdown
    plot: gr.Plot
    switch: gr.Button
    revert: gr.Button
    log: gr.Textbox
    timer: gr.Timer


def progress_bar(percent: int) -> str:
    """An improvement run's progress as a bar that shows, never takes, a value (a slider invited dragging)."""
    percent = min(max(int(percent), 0), 100)
    return (
        f'<div class="r2d-progress"><progress max="100" value="{percent}" aria-label="Run progress">'
        f"</progress> <span>{percent}%</span></div>"
    )


class ImproveTab(Tab):
    def __init__(self, model: ModelInUse, cfg: R2DConfig) -> None:
        self.model, self.cfg = model, cfg
        self.runs = ImproveRuns(cfg.app.runs_dir)

    def _exports(self) -> list[str]:
        return complete_exports(self.cfg.app.export_dir)

    @ui_errors
    def refresh(self) -> dict:
        """The exports to learn from and the runs so far (newest first)."""
        runs = [r.run_id for r in self.runs.runs()]
        exports = self._exports()
        return self.out(
            export=gr.update(choices=exports, value=exports[0] if exports else None),
            run=gr.update(choices=runs, value=runs[0] if runs else None),
        )

    def _plan(self, export: str | None, steps: Any) -> str:
        """Before a run: what its comparison will score and how long it should take (Markdown)."""
        a = self.cfg.app
        if not export or export not in self._exports():
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
    def plan(self, export: str | None, steps: Any) -> dict:
        """The estimate and the held-out warning, shown before Start is pressed."""
        return self.out(plan=self._plan(export, steps))

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
    def start(self, export: str | None, data_dir: str, steps: Any, full: bool, name: str, request: gr.Request) -> dict:
        """Start Stage 2 on the original data plus the chosen export, from the model in use, in the background
        (preparing the original data first when it is missing)."""
        started_by = reviewer(request, name)
        if not export or export not in self._exports():  # only the app's own export folders
            raise TrainingRunError("choose an export first (make one in the Export tab)")
        steps = int(steps or 0)
        if not 1 <= steps <= 100_000:
            raise TrainingRunError("steps must be between 1 and 100,000")
        prepared = self._check_data_dir(data_dir)
        model_dir = self.model.model_dir
        run_id = self.runs.start(
            model_dir,
            Path(self.cfg.app.export_dir) / export,
            data_dir,
            steps,
            lora=not full,
            test_cases=self.cfg.app.improve_test_cases,
        )
        logger.info("%s started improvement run %s from %s on export %s", started_by, run_id, model_dir, export)
        polled = self.poll(run_id)
        return {
            **polled,
            **self.out(
                run=gr.update(choices=[r.run_id for r in self.runs.runs()], value=run_id),
                plan=joined(prepared, self._plan(export, steps)),
            ),
        }

    @ui_errors
    def poll(self, run_id: str | None) -> dict:
        """Where the chosen run stands: progress, log, and once done the comparison (table and plot)."""
        if not run_id:
            return self.out(status="No run yet.", progress=progress_bar(0))
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
        in_use = done and self.model.in_run(st.out_dir)
        if in_use:
            words["done"] = f"✓ In use: suggestions come from `{self.model.predictor.model_id}`"
        return self.out(
            status=f"**{words[st.state]}** · run `{run_id}`",
            progress=progress_bar(round(100 * st.fraction)),
            log=st.log_tail,
            table=comparison_table(st.comparison) if done else "",
            plot=comparison_figure(st.comparison or {}, COMPARED),
            switch=gr.update(interactive=done and not in_use),
        )

    @ui_errors
    def cancel(self, run_id: str | None, name: str, request: gr.Request) -> dict:
        """Cancel a run: needs a reviewer's name, and is logged with it."""
        cancelled_by = reviewer(request, name)
        if not run_id:
            raise TrainingRunError("no run chosen")
        self.runs.cancel(run_id)
        logger.info("%s cancelled improvement run %s", cancelled_by, run_id)
        return self.poll(run_id)

    @ui_errors
    def switch(self, run_id: str | None, name: str, request: gr.Request) -> dict:
        """Use a finished run's model for every later suggestion (reviews record its id), also after a restart."""
        switched_by = reviewer(request, name)
        self.model.use_run(self.runs, run_id or "")
        p = self.model.predictor
        logger.info("%s switched suggestions to %s (%s)", switched_by, p.model_id, self.model.model_dir)
        return self.out(
            model_md=self.model.line(),
            status=(
                f"✓ Suggestions now come from `{p.model_id}`; every later review records it, also after "
                "a restart. Reviews already saved keep the model that made them."
            ),
        )

    @ui_errors
    def revert(self, name: str, request: gr.Request) -> dict:
        """Back to the model the app was started with (the embedded one by default), now and after a restart."""
        reverted_by = reviewer(request, name)
        if not self.model.improved:
            raise TrainingRunError("the app already uses the model it was started with")
        self.model.revert(self.runs)
        logger.info("%s switched suggestions back to %s", reverted_by, self.model.predictor.model_id)
        return self.out(
            model_md=self.model.line(),
            status=(f"✓ Suggestions come from `{self.model.predictor.model_id}` again, also after a restart."),
        )

    def restore_model(self) -> None:
        """At start: the improved model in use before the restart, if any (else the configured one stays)."""
        run_id = self.runs.remembered()
        if run_id:
            try:
                self.model.use_run(self.runs, run_id)
                logger.info("using the improved model of run %s, as before the restart", run_id)
            except R2DError as e:
                logger.warning("not using the remembered run %s: %s", run_id, e)
                self.runs.forget()

    def layout(self) -> ImproveUI:
        a = self.cfg.app
        with gr.Tab("Improve the model", elem_id="r2d-improve-tab") as tab:
            gr.Markdown(read_asset("improve.md"))
            with gr.Row():
                export = gr.Dropdown(label="Reviewed export to learn from", choices=[], elem_id="r2d-im-export")
                data = gr.Textbox(
                    label="Original training data (train/val/test.jsonl)",
                    value=a.improve_data_dir,
                    elem_id="r2d-im-data",
                )
                steps = gr.Number(label="Stage-2 steps", value=a.improve_steps, precision=0, elem_id="r2d-im-steps")
                full = gr.Checkbox(label="Full fine-tune (default: LoRA)", elem_id="r2d-im-full")
            with gr.Row():
                start = gr.Button("Start improving", variant="primary", elem_id="r2d-im-start")
                refresh = gr.Button("Refresh lists", elem_id="r2d-im-refresh")
                run = gr.Dropdown(label="Run", choices=[], elem_id="r2d-im-run")
                cancel = gr.Button("Cancel run", variant="stop", elem_id="r2d-im-cancel")
            shown = dict(
                plan=gr.Markdown(elem_id="r2d-im-plan"),
                status=gr.Markdown(elem_id="r2d-im-status"),
                progress=gr.HTML(progress_bar(0), label="Progress", elem_id="r2d-im-progress"),
                table=gr.Markdown(elem_id="r2d-im-table"),
                plot=gr.Plot(show_label=False, elem_id="r2d-im-plot"),
            )
            with gr.Row():
                switch = gr.Button("Use the new model for suggestions", interactive=False, elem_id="r2d-im-switch")
                revert = gr.Button("Back to the starting model", elem_id="r2d-im-revert")
            log = gr.Textbox(label="Log (last lines)", lines=8, interactive=False, elem_id="r2d-im-log")
            timer = gr.Timer(2.0)
        self.ui = ImproveUI(
            tab=tab,
            export=export,
            data=data,
            steps=steps,
            full=full,
            start=start,
            refresh=refresh,
            run=run,
            cancel=cancel,
            **shown,
            switch=switch,
            revert=revert,
            log=log,
            timer=timer,
        )
        return self.ui

    def wire(self) -> None:
        u, name = self.ui, self.shared.reviewer
        poll_out = [u.status, u.progress, u.log, u.table, u.plot, u.switch]
        for trigger in (u.refresh.click, u.tab.select):
            trigger(self.refresh, None, [u.export, u.run], api_name=False).then(
                self.poll, [u.run], poll_out, api_name=False
            )
        u.start.click(
            self.start,
            [u.export, u.data, u.steps, u.full, name],
            poll_out + [u.run, u.plan],
            api_name="improve_start",
            trigger_mode="once",
        )
        for changed in (u.export.change, u.steps.change):  # the estimate before Start, not after
            changed(self.plan, [u.export, u.steps], [u.plan], **QUIET)
        u.run.select(self.poll, [u.run], poll_out, api_name=False)
        u.timer.tick(self.poll, [u.run], poll_out, api_name=False, show_progress="hidden")
        u.cancel.click(self.cancel, [u.run, name], poll_out, api_name="improve_cancel")
        u.switch.click(
            self.switch, [u.run, name], [self.shared.model_md, u.status], api_name="improve_switch", **MODEL_QUEUE
        )
        u.revert.click(self.revert, [name], [self.shared.model_md, u.status], api_name="improve_revert", **MODEL_QUEUE)
