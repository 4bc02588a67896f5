"""The from-scratch T5 matches its tokenizer and config (that it trains: test_trainer.py's loss test, on tiny_t5)."""

from __future__ import annotations

import torch

from training.build.scratch import new_t5


def test_shapes_follow_the_arch_and_the_tokenizer(tiny_tokenizer, tiny_arch):
    model = new_t5(tiny_tokenizer, tiny_arch, seed=0)
    assert model.config.vocab_size == len(tiny_tokenizer)
    assert model.config.d_model == tiny_arch.d_model
    assert model.config.decoder_start_token_id == tiny_tokenizer.pad_token_id
    same = new_t5(tiny_tokenizer, tiny_arch, seed=0)
    other = new_t5(tiny_tokenizer, tiny_arch, seed=1)
    w = lambda m: m.shared.weight  # noqa: E731
    assert torch.equal(w(model), w(same)) and not torch.equal(w(model), w(other))
