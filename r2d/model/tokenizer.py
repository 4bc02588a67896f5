"""Train a T5-style subword tokenizer from text, offline.

No pretrained tokenizer can be downloaded here, so the embedded model (and the test models) use one
fitted to their own corpus, with T5's special tokens and `</s>` appended to every sequence as T5
expects. Three choices make a small model's copying task short and regular:

- Every digit is its own token (as in LLaMA's and PaLM's vocabularies): "120/80" is 1 2 0 / 8 0, so a
  model copies a number digit by digit from the case instead of having to know a piece for each value.
- Punctuation is its own token, so "pain," and "pain." are the word "pain" plus a mark, not three pieces.
- The model is BPE, not T5's Unigram: the `tokenizers` Unigram trainer left frequent capitalised words
  in letters ("▁ B l o o d", "▁Chi e f") and stopped far below the vocabulary asked for, while BPE makes
  every frequent word of the corpus one piece ("▁Blood", "▁Chief", "▁SpO").
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# T5 layout: pad=0 doubles as the decoder start token, eos=1, unk=2
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
DIGITS = tuple("0123456789")


def _pre_tokenizer(split_digits: bool) -> pre_tokenizers.PreTokenizer:
    steps = [pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation(behavior="isolated")]
    if split_digits:
        steps.append(pre_tokenizers.Digits(individual_digits=True))
    return pre_tokenizers.Sequence(steps)


def train_tokenizer(texts: Iterable[str], vocab_size: int, split_digits: bool = True) -> PreTrainedTokenizerFast:
    """Fit a BPE tokenizer with T5's special tokens and (unless split_digits is False, for the ablation)
    one token per digit. `vocab_size` is an upper bound: merges stop when the corpus has no pair left.
    Deterministic for the same texts."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("\n", " ")])
    tok.pre_tokenizer = _pre_tokenizer(split_digits)
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    # one line with every digit: none is ever <unk>, even if the corpus lacks it
    tok.train_from_iterator(itertools.chain(texts, [" ".join(DIGITS)]), trainer=trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=1024
    )
