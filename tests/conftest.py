"""Shared fixtures: a tiny T5 and tokenizer built here, offline, and the shared public data."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

# before any gradio/transformers import: nothing in the test session may reach a network
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _fast_temp_root() -> None:
    """tmp_path on tmpfs when there is room: the review store fsyncs every commit (synchronous=FULL), 0.2 s a new
    store on this project's disk against 0.004 s on /dev/shm. What the tests check does not depend on the disk."""
    import shutil

    shm = Path("/dev/shm")
    if "PYTEST_DEBUG_TEMPROOT" in os.environ or not (shm.is_dir() and os.access(shm, os.W_OK)):
        return
    if shutil.disk_usage(shm).free > 2 * 1024**3:  # a session writes ~30 MB; docker's default 64 MB shm is too small
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(shm)


_fast_temp_root()

import pytest  # noqa: E402

from r2d.config import ArchConfig, GenerationConfig  # noqa: E402
from r2d.data import Example  # noqa: E402
from r2d.sources import KTAS_LABEL_NAMES, KTAS_LABELS, ktas_meta  # noqa: E402

# Test modules take these through the fixtures below (root, tiny_arch, ktas_labels, ...), not by importing conftest
ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("R2D_SHARED_DATA", ROOT.parent / "shared" / "data"))
EXAMPLES_FILE = ROOT / "examples" / "triage_cases.jsonl"
TINY_ARCH = ArchConfig(
    vocab_size=300, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2, dropout_rate=0.0
)
KTAS_NAMES = dict(KTAS_LABEL_NAMES)
TINY_CONFIG = ROOT / "training" / "configs" / "tiny_cpu.json"
REVIEW_CASE = "chest pain, BP 88/50, HR 124"


def pytest_collection_modifyitems(config, items):
    # shared/ is beside the project root on developers' machines and in CI; say so when it is not
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"public data not found at {SHARED_DATA} (set R2D_SHARED_DATA)")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def root() -> Path:
    """The project root (the checkout)."""
    return ROOT


@pytest.fixture(scope="session")
def examples_file() -> Path:
    """The example cases the app offers (examples/triage_cases.jsonl)."""
    return EXAMPLES_FILE


@pytest.fixture(scope="session")
def tiny_arch() -> ArchConfig:
    """The 1-layer T5 shape of tiny_t5 (and of training/configs/tiny_cpu.json)."""
    return TINY_ARCH


@pytest.fixture(scope="session")
def ktas_labels() -> list[str]:
    """The five KTAS levels, "1" (most urgent) to "5"."""
    return list(KTAS_LABELS)


@pytest.fixture(scope="session")
def ktas_names() -> dict[str, str]:
    """KTAS level -> name ("1" -> "Resuscitation", ...)."""
    return dict(KTAS_NAMES)


@pytest.fixture(scope="session")
def ktas_examples(shared_data) -> list[Example]:
    """Every row of the public KTAS file as Examples (tests using it are marked shared_data)."""
    from r2d.sources import load_ktas

    return load_ktas(shared_data / "ktas" / "data.csv")


def _corpus_examples() -> list[Example]:
    cases = [
        Example(
            "72-year-old man, crushing chest pain, sweating, BP 88/50, HR 124",
            "2",
            "Hypotension with tachycardia and chest pain suggests shock; emergent care.",
            "nurse",
        ),
        Example(
            "30-year-old woman, sore throat two days, vitals normal, walked in",
            "5",
            "Stable vitals and a minor complaint: non-urgent.",
            "nurse",
        ),
        Example(
            "unresponsive adult, RR 6, SpO2 80 percent, arrived by ambulance",
            "1",
            "Unresponsive with respiratory failure: resuscitation now.",
            "nurse",
        ),
        Example(
            "45-year-old with abdominal pain, pain score 6, HR 102, temperature 38.4",
            "3",
            "Moderate pain with fever and mild tachycardia: urgent.",
            "nurse",
        ),
        Example(
            "ankle sprain while running, can bear weight, pain 3 of 10",
            "4",
            "Minor injury with mild pain and normal vitals: less urgent.",
            "nurse",
        ),
    ]
    return cases


@pytest.fixture(scope="session")
def tiny_examples() -> list[Example]:
    """Five hand-written cases, one per KTAS level, with rationales."""
    return _corpus_examples()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from r2d.model.tokenizer import train_tokenizer
    from r2d.prompts import explain_given_label_prompt, explain_prompt, predict_prompt

    texts = []
    for e in _corpus_examples():
        texts += [
            predict_prompt(e.case_text),
            explain_prompt(e.case_text),
            explain_given_label_prompt(e.case_text, e.label),
            e.rationale,
        ]
    texts += list(KTAS_LABELS) + ["yes", "no", "maybe"]
    return train_tokenizer(texts * 3, vocab_size=TINY_ARCH.vocab_size)


@pytest.fixture()
def tiny_t5(tiny_tokenizer):
    """A fresh random 1-layer T5 (a few thousand parameters) per test: tests may train it."""
    from training.build.scratch import new_t5

    return new_t5(tiny_tokenizer, TINY_ARCH, seed=0)


@pytest.fixture(scope="session")
def ort_model_dir(tmp_path_factory, tiny_tokenizer, tiny_arch, ktas_labels):
    """The tiny T5 at width 64 (tiny_model_dir is 16 wide, under one 4-bit block of 32 weights): the ONNX
    engine's tests (test_ort, test_ort_export)."""
    from r2d.model.artifacts import ModelMeta, save_model_dir
    from r2d.sources import ktas_meta
    from training.build.scratch import new_t5

    out = tmp_path_factory.mktemp("ort_model")
    arch = dataclasses.replace(tiny_arch, d_model=64, d_kv=16, d_ff=128, num_heads=4)
    save_model_dir(
        new_t5(tiny_tokenizer, arch, seed=0),
        tiny_tokenizer,
        out,
        ModelMeta(label_set=tuple(ktas_labels), **ktas_meta()),
    )
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A saved Reason2Decide model directory (random weights) with its r2d_model.json."""
    from r2d.model.artifacts import ModelMeta, save_model_dir
    from training.build.scratch import new_t5

    out = tmp_path_factory.mktemp("tiny_model")
    meta = ModelMeta(label_set=KTAS_LABELS, **ktas_meta())
    save_model_dir(new_t5(tiny_tokenizer, TINY_ARCH, seed=0), tiny_tokenizer, out, meta)
    return out


# --- the review store and its records (r2d.review.store) ------------------------------------------------------


@pytest.fixture()
def store(tmp_path):
    """An empty ReviewStore at tmp_path/reviews.sqlite3 (where test_app's cfg points app.db_path)."""
    from r2d.review.store import ReviewStore

    return ReviewStore(tmp_path / "reviews.sqlite3")


@pytest.fixture(scope="session")
def make_review():
    """Builds a ReviewRecord with every audit field set: make_review(i or submission_id, **overrides).

    An int i gives submission_id "s-{i}". The case defaults to REVIEW_CASE; a case_text override without a
    case_id gets case_id_for(case_text). The comment has a newline and a tab: multi-line fields allow both.
    """
    from r2d.review.store import ReviewRecord, case_id_for

    def build(i: int | str = 1, **overrides) -> ReviewRecord:
        case = overrides.pop("case_text", REVIEW_CASE)
        values = dict(
            submission_id=i if isinstance(i, str) else f"s-{i}",
            reviewer="Nurse A",
            case_id=case_id_for(case),
            case_text=case,
            model_id="fake-r2d",
            quantization="none",
            prompt_version="r2d-prompts-1",
            action="edited",
            model_label="2",
            model_rationale="Shock signs.",
            model_probabilities={"1": 0.2, "2": 0.8},
            final_label="2",
            final_rationale="Hypotension and chest pain: emergency.",
            rating=4,
            comment="clearer\nsecond line\ttabbed",
            consistency_label="2",
            time_on_task_s=12.5,
        )
        values.update(overrides)
        return ReviewRecord(**values)

    build.case = REVIEW_CASE
    return build


# --- a fake predictor for the review app (r2d.review.session, app.py): the Predictor interface, no model ---------


class FakePredictor:
    """Implements r2d.model.inference.Predictor's interface deterministically and instantly.

    The label of a text is the first standalone digit 1-5 in it (else "3"), so tests steer labels and the
    consistency check by writing "level 2" into a case or a rationale. A case containing "unclear" gets a
    low top probability. Calls are counted in `calls` so tests can check what the app asked for.
    """

    label_set = KTAS_LABELS
    label_names = KTAS_NAMES
    ordinal = True
    model_id = "fake-r2d"
    quantization = "none"
    max_case_chars = 4000
    generation = GenerationConfig()

    def __init__(self) -> None:
        from collections import Counter

        self.calls: Counter = Counter()

    @staticmethod
    def _label_of(text: str) -> str:
        import re

        m = re.search(r"(?<!\d)([1-5])(?!\d)", text)
        return m.group(1) if m else "3"

    def _scores(self, text: str, low: bool = False):
        import math

        from r2d.model.scoring import LabelScores

        best = self._label_of(text)
        top = 0.3 if low else 0.6
        probs = tuple(top if label == best else (1 - top) / 4 for label in self.label_set)
        return LabelScores(self.label_set, tuple(math.log(p) for p in probs), probs, top)

    def check_case(self, case_text: str) -> str:
        from r2d.limits import check_case_text

        return check_case_text(case_text, self.max_case_chars)

    def predict_label(self, case_text: str):
        self.calls["predict_label"] += 1
        case_text = self.check_case(case_text)
        return self._scores(case_text, low="unclear" in case_text)

    def explain(self, case_text: str, label: str) -> str:
        return f"Findings fit triage level {label}: {case_text[:40]}"

    def stream_rationale(self, case_text: str, label: str):
        self.calls["stream_rationale"] += 1
        words = self.explain(self.check_case(case_text), label).split(" ")
        for i in range(1, len(words) + 1):
            yield " ".join(words[:i])

    def predict(self, case_text: str):
        from r2d.model.inference import Prediction
        from r2d.prompts import PROMPT_VERSION

        scores = self.predict_label(case_text)
        label = scores.best
        return Prediction(
            case_text.strip(),
            label,
            dict(zip(scores.labels, scores.probabilities)),
            self.explain(case_text.strip(), label),
            self.model_id,
            self.quantization,
            PROMPT_VERSION,
            {"label": 0.0, "first_token": 0.0, "total": 0.0},
        )

    def predict_batch(self, case_texts, batch_size=8, progress=None):
        self.calls["predict_batch"] += 1
        out = []
        for i, text in enumerate(case_texts, start=1):
            out.append(self.predict(text))
            if progress is not None:
                progress(i, len(case_texts))
        return out

    def predict_label_from_rationale(self, rationale: str):
        self.calls["predict_label_from_rationale"] += 1
        return self._scores(rationale)


@pytest.fixture()
def fake_predictor() -> FakePredictor:
    return FakePredictor()


@pytest.fixture()
def launched_app(tmp_path, monkeypatch, fake_predictor, store):
    """The review app (app.py) launched on loopback with the fake predictor, its store and exports in tmp_path.

    Every outgoing TCP connection to a non-loopback address is blocked and recorded in `.external`,
    so a test can assert that the app makes no external requests. Shared by test_ui_*, test_webguard and
    test_browser.
    """
    import socket
    import types

    external: list = []
    real_connect = socket.socket.connect

    def loopback_only(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            external.append(address)
            raise OSError(f"test blocked an external connection to {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    from r2d.config import load_config
    from ui import blocks, server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = load_config(None, [f"app.port={port}", f"app.db_path={store.path}", f"app.export_dir={tmp_path / 'exports'}"])
    demo = blocks.build_app(fake_predictor, store, cfg, examples=["level 2: chest pain, BP 88/50, HR 124"]).demo
    demo.launch(**server.launch_kwargs(cfg), prevent_thread_lock=True, quiet=True)
    try:
        yield types.SimpleNamespace(
            url=f"http://127.0.0.1:{port}/",
            store=store,
            cfg=cfg,
            demo=demo,
            predictor=fake_predictor,
            external=external,
            tmp_path=tmp_path,
        )
    finally:
        demo.close()


# --- the review app's UI built but not served (tests/test_ui_*.py; their helpers are in ui_kit.py) ----------


@pytest.fixture()
def gradio_temp(tmp_path, monkeypatch):
    """Gradio's cache (uploads, download copies) in tmp_path/gradio."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))


@pytest.fixture()
def cfg(tmp_path):
    """The app's config with the database where the shared `store` fixture keeps it, and exports in tmp_path."""
    from r2d.config import load_config

    return load_config(None, [f"app.db_path={tmp_path / 'reviews.sqlite3'}", f"app.export_dir={tmp_path / 'exports'}"])


@pytest.fixture()
def unserved(monkeypatch):
    """For tests that build the app and call its handlers but never serve it: gradio's FastAPI app (built three
    times per build_app, 70% of its CPU time) is not built. test_build_app_*, test_main_*, the handlers on a real
    model and the launched round trips build the real one."""
    import gradio as gr

    monkeypatch.setattr(gr.routes.App, "create_app", staticmethod(lambda *args, **kwargs: None))


@pytest.fixture()
def h(fake_predictor, store, cfg, unserved):
    """The app built (not served) on the fake predictor, its consistency check measured: a ui.blocks.App, each
    tab's handlers holding their components."""
    from ui_kit import CASE, FAKE_GOLD

    from r2d.checks.consistency import calibrate
    from ui.blocks import build_app

    app = build_app(fake_predictor, store, cfg, examples=[CASE])
    app.model.calibration = calibrate(fake_predictor, FAKE_GOLD, fake_predictor.model_id, "FAKE_GOLD")
    assert app.model.calibration.warn_min_probability == 0.5
    return app


# --- tiny training runs (test_stage1, test_stage2) -------------------------------------------------


@pytest.fixture()
def data_files(tmp_path, tiny_examples):
    """(train, val) JSONL files of the five tiny examples (train repeated 4x)."""
    from r2d.data import write_examples

    train = write_examples(tmp_path / "data" / "train.jsonl", tiny_examples * 4)
    val = write_examples(tmp_path / "data" / "val.jsonl", tiny_examples)
    return train, val


@pytest.fixture(scope="session")
def tiny_config_file() -> Path:
    """training/configs/tiny_cpu.json: a few steps on tiny_t5's shape."""
    return TINY_CONFIG


@pytest.fixture(scope="session")
def tiny_config():
    """tiny_config(train, val, *overrides): tiny_cpu.json on the given train/val files, plus `section.key=value`."""
    import json

    from r2d.config import load_config

    def build(train, val, *overrides):
        return load_config(
            TINY_CONFIG,
            [f"data.train_files={json.dumps([str(train)])}", f"data.val_files={json.dumps([str(val)])}", *overrides],
        )

    return build


# --- a deployed model, its original data and a reviewed export (training.improve, r2d.review.jobs) -------


@pytest.fixture()
def current_model(tmp_path, tiny_tokenizer):
    """A saved model with its own config (tiny_cpu.json), as a deployed model directory would be."""
    from r2d.config import load_config
    from r2d.model.artifacts import ModelMeta, save_model_dir
    from training.build.scratch import new_t5

    cfg = load_config(TINY_CONFIG)
    meta = ModelMeta(label_set=KTAS_LABELS, **ktas_meta())
    return save_model_dir(new_t5(tiny_tokenizer, cfg.arch, seed=0), tiny_tokenizer, tmp_path / "current", meta, cfg)


@pytest.fixture()
def original_data(tmp_path, tiny_examples):
    """A prepare_data-style folder: train/val/test.jsonl of the tiny examples."""
    from r2d.data import write_examples

    d = tmp_path / "data"
    for split, rows in (("train", tiny_examples * 4), ("val", tiny_examples), ("test", tiny_examples)):
        write_examples(d / f"{split}.jsonl", rows)
    return d


@pytest.fixture()
def reviewed_export(tmp_path, tiny_examples):
    """An export folder as the app writes it: train.jsonl, val.jsonl (held out) and export_meta.json."""
    import json

    from r2d.data import write_examples

    d = tmp_path / "export-1"
    write_examples(d / "train.jsonl", tiny_examples[:4])
    write_examples(d / "val.jsonl", tiny_examples[4:])
    (d / "export_meta.json").write_text(json.dumps({"export_id": "export-1", "counts": {"train": 4, "val": 1}}))
    return d
