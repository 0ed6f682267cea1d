"""Tiny random configs (no download): what rmtzoo's contract and property suites build. Dropout 0."""

from __future__ import annotations

from typing import Any

TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "bert": {
        "vocab_size": 50,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 64,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "roberta": {
        "vocab_size": 50,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 64,
        "pad_token_id": 1,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "deberta-v2": {  # DeBERTa-v3 layout: relative attention, no absolute positions
        "vocab_size": 50,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 64,
        "relative_attention": True,
        "position_biased_input": False,
        "pos_att_type": ["p2c", "c2p"],
        "position_buckets": 8,
        "max_relative_positions": -1,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "gpt2": {
        "vocab_size": 50,
        "n_embd": 16,
        "n_layer": 2,
        "n_head": 2,
        "n_positions": 64,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 0,
    },
    "llama": {
        "vocab_size": 50,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 32,
        "max_position_embeddings": 64,
        "tie_word_embeddings": False,
    },
    "t5": {
        "vocab_size": 50,
        "d_model": 16,
        "d_kv": 8,
        "d_ff": 32,
        "num_layers": 2,
        "num_decoder_layers": 1,
        "num_heads": 2,
        "relative_attention_num_buckets": 8,
        "relative_attention_max_distance": 16,
        "dropout_rate": 0.0,
        "decoder_start_token_id": 0,
    },
}

# [CLS] / [SEP] ids for the tiny encoders (their configs name none; 0 and 1 are padding ids)
TINY_SPECIALS = {"cls_token_id": 2, "sep_token_id": 3}


def tiny_params(model_type: str) -> dict[str, Any]:
    """Backbone params for a tiny random ``model_type`` model (hidden 16, 2 layers, vocab 50)."""
    params = {
        "model_type": model_type,
        "random_init": True,
        "config_overrides": dict(TINY_OVERRIDES[model_type]),
    }
    if model_type in ("bert", "roberta", "deberta-v2"):
        params.update(TINY_SPECIALS)
    return params
