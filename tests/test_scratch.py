"""The from-scratch T5 matches its tokenizer and config."""
from __future__ import annotations

import torch

from conftest import TINY_ARCH
from training.scratch import new_t5


def test_shapes_follow_the_arch_and_the_tokenizer(tiny_tokenizer):
    model = new_t5(tiny_tokenizer, TINY_ARCH, seed=0)
    assert model.config.vocab_size == len(tiny_tokenizer)
    assert model.config.d_model == TINY_ARCH.d_model
    assert model.config.decoder_start_token_id == tiny_tokenizer.pad_token_id
    same = new_t5(tiny_tokenizer, TINY_ARCH, seed=0)
    other = new_t5(tiny_tokenizer, TINY_ARCH, seed=1)
    w = lambda m: m.shared.weight  # noqa: E731
    assert torch.equal(w(model), w(same)) and not torch.equal(w(model), w(other))


def test_one_training_step_lowers_the_loss(tiny_tokenizer):
    model = new_t5(tiny_tokenizer, TINY_ARCH, seed=0)
    batch = tiny_tokenizer(["predict: chest pain"], return_tensors="pt")
    labels = tiny_tokenizer(text_target=["2"], return_tensors="pt").input_ids
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = model(**batch, labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
