"""training.prepare_data: stratified, deterministic splits whose union is the whole set, and a truthful manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from r2d.data import load_examples
from training.corpus.splits import SPLITS, file_sha256, shuffle_split, split_fractions
from training.prepare_data import main


def run(*argv: str) -> Path:
    assert main(list(argv)) == 0
    return Path(argv[argv.index("--out") + 1])


def read_splits(out: Path) -> dict[str, list]:
    return {s: load_examples(out / f"{s}.jsonl") for s in SPLITS}


def ids(examples) -> list[str]:
    return [e.example_id for e in examples]


@pytest.fixture(scope="module")
def ktas_out(shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ktas")
    return run("ktas", "--source", str(shared_data / "ktas" / "data.csv"), "--out", str(out))


@pytest.mark.shared_data
def test_ktas_splits_partition_the_set(ktas_out):
    splits = read_splits(ktas_out)
    all_ids = [i for s in SPLITS for i in ids(splits[s])]
    assert len(all_ids) == len(set(all_ids)) == 1267
    assert set(all_ids) == {f"ktas-{i}" for i in range(1, 1268)}


@pytest.mark.shared_data
def test_ktas_splits_are_stratified(ktas_out):
    manifest = json.loads((ktas_out / "manifest.json").read_text())
    total = {label: sum(manifest["counts"][s]["labels"].get(label, 0) for s in SPLITS) for label in "12345"}
    assert total == {"1": 26, "2": 220, "3": 487, "4": 459, "5": 75}
    for split, fraction in (("val", 0.1), ("test", 0.2)):
        for label, n in total.items():
            # rounding gives +-1; a duplicated visit (a group of two, split as one item) can add one more
            assert abs(manifest["counts"][split]["labels"][label] - fraction * n) <= 2


@pytest.mark.shared_data
def test_ktas_manifest(ktas_out, shared_data):
    manifest = json.loads((ktas_out / "manifest.json").read_text())
    source = shared_data / "ktas" / "data.csv"
    assert manifest["source_files"] == {str(source): hashlib.sha256(source.read_bytes()).hexdigest()}
    assert (manifest["dataset"], manifest["seed"], manifest["val"], manifest["test"]) == ("ktas", 42, 0.1, 0.2)
    assert manifest["label_set"] == ["1", "2", "3", "4", "5"] and manifest["ordinal"] is True
    assert manifest["command"].startswith("python -m training.prepare_data ktas --source")
    for split in SPLITS:
        assert manifest["counts"][split]["total"] == len(load_examples(ktas_out / f"{split}.jsonl"))


@pytest.mark.shared_data
def test_ktas_split_is_deterministic_per_seed(ktas_out, shared_data, tmp_path):
    source = str(shared_data / "ktas" / "data.csv")
    again = run("ktas", "--source", source, "--out", str(tmp_path / "again"))
    for split in SPLITS:
        assert (again / f"{split}.jsonl").read_bytes() == (ktas_out / f"{split}.jsonl").read_bytes()
    other = run("ktas", "--source", source, "--out", str(tmp_path / "other"), "--seed", "7")
    assert ids(load_examples(other / "test.jsonl")) != ids(load_examples(ktas_out / "test.jsonl"))


@pytest.mark.shared_data
def test_pubmedqa_keeps_the_official_test_split(shared_data, tmp_path):
    out = run("pubmedqa", "--source", str(shared_data / "pubmedqa"), "--out", str(tmp_path / "p"))
    splits = read_splits(out)
    truth = json.loads((shared_data / "pubmedqa" / "test_ground_truth.json").read_text())
    assert set(ids(splits["test"])) == set(truth)
    assert (len(splits["train"]), len(splits["val"])) == (450, 50)
    assert not set(ids(splits["train"])) & set(ids(splits["val"]))
    assert len(set(ids(splits["train"]) + ids(splits["val"])) | set(truth)) == 1000


@pytest.mark.shared_data
def test_medreason_and_medmcqa(shared_data, tmp_path):
    out = run("medreason", "--source", str(shared_data / "medreason_r2dc"), "--out", str(tmp_path / "r"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert {s: manifest["counts"][s]["total"] for s in SPLITS} == {"train": 1354, "val": 150, "test": 1504}
    assert manifest["label_set"] is None and "distinct_labels" in manifest["counts"]["test"]
    out = run("medmcqa", "--source", str(shared_data / "medmcqa" / "dev.json"), "--out", str(tmp_path / "m"))
    splits = read_splits(out)
    all_ids = [i for s in SPLITS for i in ids(splits[s])]
    assert len(all_ids) == len(set(all_ids))
    assert len(splits["val"]) > 0 and len(splits["test"]) > len(splits["val"])


def test_shuffle_split_partitions_and_is_seeded(tiny_examples):
    examples = tiny_examples * 4
    parts = shuffle_split(examples, [0.5, 0.25, 0.25], seed=1)
    assert [len(p) for p in parts] == [10, 5, 5]
    assert sorted(map(id, sum(parts, []))) == sorted(map(id, examples))
    assert parts == shuffle_split(examples, [0.5, 0.25, 0.25], seed=1)


@pytest.mark.parametrize("val, test", [(0.5, 0.5), (-0.1, 0.2), (0.9, 0.2)])
def test_split_fractions_rejects_impossible_values(val, test):
    from r2d.errors import ConfigError

    with pytest.raises(ConfigError, match="sum to less than 1"):
        split_fractions(val, test)


def test_cli_errors_exit_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="^error: KTAS file .*missing.csv does not exist"):
        main(["ktas", "--source", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="^error: --val 0.6 and --test 0.6"):
        main(
            [
                "ktas",
                "--source",
                str(tmp_path / "missing.csv"),
                "--out",
                str(tmp_path / "o"),
                "--val",
                "0.6",
                "--test",
                "0.6",
            ]
        )
    assert not (tmp_path / "o").exists()


@pytest.mark.shared_data
def test_ktas_duplicate_visits_stay_in_one_split(ktas_out):
    splits = read_splits(ktas_out)
    split_of: dict[str, set[str]] = {}
    for split, examples in splits.items():
        for e in examples:
            split_of.setdefault(e.case_text, set()).add(split)
    repeated = [text for text in split_of if sum(e.case_text == text for s in SPLITS for e in splits[s]) > 1]
    assert len(repeated) == 5  # the 5 visits the file holds twice
    assert all(len(split_of[text]) == 1 for text in repeated)


def test_grouped_split_keeps_groups_together_and_is_seeded():
    from r2d.data import Example
    from training.corpus.splits import grouped_stratified_split

    examples = [Example(f"case {i % 40}", str(i % 40 % 3 + 1), example_id=f"x{i}") for i in range(80)]
    parts = grouped_stratified_split(examples, [0.6, 0.2, 0.2], seed=3)
    assert sorted(e.example_id for p in parts for e in p) == sorted(e.example_id for e in examples)
    where = {e.case_text: i for i, p in enumerate(parts) for e in p}
    assert all(where[e.case_text] == i for i, p in enumerate(parts) for e in p)
    assert all(len(p) % 2 == 0 for p in parts)  # whole pairs only
    assert parts == grouped_stratified_split(examples, [0.6, 0.2, 0.2], seed=3)
    assert parts != grouped_stratified_split(examples, [0.6, 0.2, 0.2], seed=4)


def test_file_sha256(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc" * (1 << 19))  # 1.5 MB: more than one read block
    assert file_sha256(path) == file_sha256(str(path)) == hashlib.sha256(b"abc" * (1 << 19)).hexdigest()


@pytest.mark.shared_data
def test_prepare_missing_makes_the_folder_once_as_the_cli_would(ktas_out, shared_data, tmp_path):
    """The app's Improve tab prepares the original data itself when it is missing (no terminal needed)."""
    from training.corpus.splits import prepare_missing

    source = shared_data / "ktas" / "data.csv"
    manifest = prepare_missing(tmp_path / "ktas", source)
    assert manifest["command"] == f"python -m training.prepare_data ktas --source {source} --out {tmp_path / 'ktas'}"
    for split in SPLITS:  # the same split as the CLI's defaults
        assert (tmp_path / "ktas" / f"{split}.jsonl").read_bytes() == (ktas_out / f"{split}.jsonl").read_bytes()
    assert prepare_missing(tmp_path / "ktas", tmp_path / "no-such.csv") is None  # already there: left alone


def test_prepare_missing_names_a_missing_source(tmp_path):
    from r2d.errors import DatasetSchemaError
    from training.corpus.splits import prepare_missing

    with pytest.raises(DatasetSchemaError, match="source .*no-such.csv.* is missing.*app.improve_source"):
        prepare_missing(tmp_path / "ktas", tmp_path / "no-such.csv")
    assert not (tmp_path / "ktas").exists()
