"""A T5 built from scratch: the embedded default model and the test models start here.

Pretrained T5 weights cannot be installed on these machines, so the project trains its own small T5.
A hub id or local checkpoint (google/flan-t5-base) takes the other path, `from_pretrained`, unchanged.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration

from r2d.config import ArchConfig


def new_t5(tokenizer: PreTrainedTokenizerBase, arch: ArchConfig, seed: int = 0) -> T5ForConditionalGeneration:
    """A randomly initialised T5 whose vocabulary is the tokenizer's. Deterministic per seed."""
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=arch.d_model,
        d_kv=arch.d_kv,
        d_ff=arch.d_ff,
        num_layers=arch.num_layers,
        num_decoder_layers=arch.num_decoder_layers,
        num_heads=arch.num_heads,
        dropout_rate=arch.dropout_rate,
        feed_forward_proj="gated-gelu",  # Flan-T5's (T5 v1.1) MLP
        # transformers 5 always ties T5's lm_head to the embedding table; with tied weights the original T5
        # scales decoder outputs by d_model**-0.5 (this flag turns that on), else the first logits are huge
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,  # T5 starts decoding from <pad>
    )
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config)
