"""Train a T5-style subword tokenizer from text, offline.

No pretrained tokenizer can be downloaded here, so the embedded model (and the test models) use one
fitted to their own corpus: a Unigram model (the algorithm of T5's SentencePiece vocabulary) from the
`tokenizers` library, with T5's special tokens, and `</s>` appended to every sequence as T5 expects.
Every digit is its own token (as in LLaMA's and PaLM's vocabularies): "120/80" is 1 2 0 / 8 0, so a
model copies a number digit by digit from the case instead of having to know a piece for each value.
"""
from __future__ import annotations

import itertools
import json
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# T5 layout: pad=0 doubles as the decoder start token, eos=1, unk=2
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
DIGITS = tuple("0123456789")


def train_tokenizer(texts: Iterable[str], vocab_size: int, split_digits: bool = True) -> PreTrainedTokenizerFast:
    """Fit a Unigram tokenizer with T5's special tokens and (unless split_digits is False, for the ablation)
    one token per digit. Deterministic for the same texts."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("\n", " ")])
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Metaspace(),
                                                  pre_tokenizers.Digits(individual_digits=True)])
                         if split_digits else pre_tokenizers.Metaspace())
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                      unk_token="<unk>", show_progress=False)
    # one line with every digit: none is ever <unk>, even if the corpus lacks it (the trainer's
    # initial_alphabet would give unseen characters scores in hash order, breaking determinism)
    tok.train_from_iterator(itertools.chain(texts, [" ".join(DIGITS)]), trainer=trainer)
    tok.model = _stable_unigram(tok)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=1024)


def _stable_unigram(tok: Tokenizer) -> models.Unigram:
    # The trainer orders pieces of equal score by hash-map iteration, which varies run to run;
    # sort them (specials first, then by score, then by text) so the same corpus gives the same ids.
    vocab = [(piece, score) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]
    specials = [(p, s) for p, s in vocab if p in SPECIAL_TOKENS]
    specials.sort(key=lambda ps: SPECIAL_TOKENS.index(ps[0]))
    rest = sorted((ps for ps in vocab if ps[0] not in SPECIAL_TOKENS), key=lambda ps: (-ps[1], ps[0]))
    return models.Unigram(specials + rest, unk_id=SPECIAL_TOKENS.index("<unk>"), byte_fallback=False)
