"""The two graphs r2d.model.ort_export writes, as torch modules that run a T5's own weights through T5's
arithmetic (no position embeddings; a relative position bias computed from the past length; no attention
scaling): _Encoder (embedded prompt -> every decoder layer's cross-attention keys and values) and _Decoder (new
tokens + past self-attention keys/values + cross keys/values -> log-probs and the extended keys/values).
Only the export imports this module (and torch); running the graphs needs neither.
"""

from __future__ import annotations

from typing import Any

import torch


def encoder_spec(model: Any, name: str) -> tuple:
    """(file name, module, example inputs, (input names, output names), dynamic axes) of the encoder graph."""
    ids = torch.tensor([[5, 6, 7, 1], [5, 6, 1, 0]])
    n = model.config.num_decoder_layers
    outputs = [f"cross_{kv}_{i}" for i in range(n) for kv in "kv"]
    axes = {
        "inputs_embeds": {0: "batch", 1: "source"},
        "attention_mask": {0: "batch", 1: "source"},
        **{o: {0: "batch", 2: "source"} for o in outputs},
    }
    args = (model.get_input_embeddings()(ids), (ids != 0).long())
    return name, _Encoder(model), args, (["inputs_embeds", "attention_mask"], outputs), axes


def decoder_spec(model: Any, name: str) -> tuple:
    """(file name, module, example inputs, (input names, output names), dynamic axes) of the decoder graph."""
    cfg = model.config
    n, heads, d_kv = cfg.num_decoder_layers, cfg.num_heads, cfg.d_kv
    past = [torch.zeros(2, heads, 3, d_kv) for _ in range(2 * n)]
    cross = [torch.zeros(1, heads, 4, d_kv) for _ in range(2 * n)]
    past_names = [f"past_{kv}_{i}" for i in range(n) for kv in "kv"]
    cross_names = [f"cross_{kv}_{i}" for i in range(n) for kv in "kv"]
    present_names = [f"present_{kv}_{i}" for i in range(n) for kv in "kv"]
    inputs = ["inputs_embeds", "encoder_mask", *past_names, *cross_names]
    axes = {
        "inputs_embeds": {0: "rows", 1: "new"},
        "encoder_mask": {0: "cases", 1: "source"},
        **{p: {0: "rows", 2: "past"} for p in past_names},
        **{c: {0: "cases", 2: "source"} for c in cross_names},
        "log_probs": {0: "rows", 1: "new"},
        **{p: {0: "rows", 2: "total"} for p in present_names},
    }
    args = (
        model.get_input_embeddings()(torch.tensor([[4, 5], [6, 7]])),
        torch.ones(1, 4, dtype=torch.long),
        *past,
        *cross,
    )
    return name, _Decoder(model), args, (inputs, ["log_probs", *present_names]), axes


def _heads(x: Any, heads: int) -> Any:
    """(rows, T, heads*d_kv) -> (rows, heads, T, d_kv)."""
    return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def _attend(q: Any, k: Any, v: Any, bias: Any) -> Any:
    """T5 attention: no 1/sqrt(d) scaling; `bias` = relative position bias + masks. (rows, T, heads*d_kv)."""
    weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) + bias, dim=-1)
    out = torch.matmul(weights, v)  # (rows, heads, T, d_kv)
    return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)


def _position_bias(attention: Any, queries: Any, keys: Any, bidirectional: bool) -> Any:
    """(1, heads, T, K) bias of each query position against each key position (absolute positions given)."""
    bucket = attention._relative_position_bucket(
        keys[None, :] - queries[:, None],
        bidirectional=bidirectional,
        num_buckets=attention.relative_attention_num_buckets,
        max_distance=attention.relative_attention_max_distance,
    )
    return attention.relative_attention_bias(bucket).permute(2, 0, 1).unsqueeze(0)


_MASKED = -1e9  # added to the scores of positions a query must not see (softmax gives them 0)


class _Encoder(torch.nn.Module):
    """input_ids, attention_mask -> every decoder layer's cross-attention keys and values (rows, heads, S, d_kv)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.stack, self.decoder, self.heads = model.get_encoder(), model.get_decoder(), model.config.num_heads

    def forward(self, inputs_embeds: Any, attention_mask: Any) -> tuple:
        h = inputs_embeds
        pos = torch.arange(h.shape[1], device=h.device)
        first = self.stack.block[0].layer[0].SelfAttention
        bias = _position_bias(first, pos, pos, True) + (1.0 - attention_mask[:, None, None, :].float()) * _MASKED
        for block in self.stack.block:
            sa = block.layer[0].SelfAttention
            x = block.layer[0].layer_norm(h)
            h = h + sa.o(
                _attend(_heads(sa.q(x), self.heads), _heads(sa.k(x), self.heads), _heads(sa.v(x), self.heads), bias)
            )
            h = block.layer[-1](h)
        h = self.stack.final_layer_norm(h)
        out = []
        for block in self.decoder.block:
            ca = block.layer[1].EncDecAttention
            out += [_heads(ca.k(h), self.heads), _heads(ca.v(h), self.heads)]
        return tuple(out)


class _Decoder(torch.nn.Module):
    """New tokens + past self-attention keys/values + cross keys/values -> log-probs and the extended keys/values.
    Cross keys/values of one case (batch 1) serve every row: the rows of a case share its encoder pass."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.stack, self.lm_head, self.heads = model.get_decoder(), model.lm_head, model.config.num_heads
        self.scale = model.config.d_model**-0.5 if getattr(model.config, "scale_decoder_outputs", True) else 1.0

    def forward(self, inputs_embeds: Any, encoder_mask: Any, *kv: Any) -> tuple:
        n = len(self.stack.block)
        past, cross = kv[: 2 * n], kv[2 * n :]
        h = inputs_embeds
        offset = past[0].shape[2]
        queries = torch.arange(h.shape[1], device=h.device) + offset
        keys = torch.arange(offset + h.shape[1], device=h.device)
        first = self.stack.block[0].layer[0].SelfAttention
        causal = (keys[None, :] > queries[:, None]).float() * _MASKED
        self_bias = _position_bias(first, queries, keys, False) + causal
        cross_bias = (1.0 - encoder_mask[:, None, None, :].float()) * _MASKED
        presents = []
        for i, block in enumerate(self.stack.block):
            sa, ca = block.layer[0].SelfAttention, block.layer[1].EncDecAttention
            x = block.layer[0].layer_norm(h)
            k = torch.cat([past[2 * i], _heads(sa.k(x), self.heads)], dim=2)
            v = torch.cat([past[2 * i + 1], _heads(sa.v(x), self.heads)], dim=2)
            presents += [k, v]
            h = h + sa.o(_attend(_heads(sa.q(x), self.heads), k, v, self_bias))
            x = block.layer[1].layer_norm(h)
            h = h + ca.o(_attend(_heads(ca.q(x), self.heads), cross[2 * i], cross[2 * i + 1], cross_bias))
            h = block.layer[-1](h)
        h = self.stack.final_layer_norm(h) * self.scale
        return (torch.log_softmax(self.lm_head(h), dim=-1), *presents)
