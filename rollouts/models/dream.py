"""Dream (``model_type: Dream``): the Qwen2 layout with bidirectional attention.

``DreamModel`` is a transformers ``PreTrainedModel`` named like the published class, with ``DreamConfig``.

Parameter names follow Dream-v0-Instruct-7B: ``model.embed_tokens``,
``model.layers.N.self_attn.{q,k,v}_proj`` (with biases) and ``o_proj``, ``model.layers.N.mlp.{gate,up,down}_proj``,
``input_layernorm``, ``post_attention_layernorm``, ``model.norm`` and an untied ``lm_head``.
Dream predicts the token at position i from the output at position i-1; that shift is a family
convention handled by the adapter, so this module returns the raw, unshifted logits.
"""
from __future__ import annotations

from torch import nn

from .base import ArchConfig, BidirectionalLM, ModelConfigError, rope_theta, self_attention, swiglu
from .configuration import DreamConfig
from .layers import RMSNorm


def dream_arch(cfg: dict, source: str = "config.json") -> ArchConfig:
    """Read a Dream ``config.json`` dict; unsupported switches fail with the key and the fix."""
    if cfg.get("hidden_act", "silu") != "silu":
        raise ModelConfigError(f"{source}: hidden_act={cfg['hidden_act']!r} is not supported (only 'silu')")
    rope_type = (cfg.get("rope_parameters") or {}).get("rope_type", "default")  # transformers 5's rope_scaling
    if cfg.get("use_sliding_window") or cfg.get("use_mrope") or cfg.get("rope_scaling") or rope_type != "default":
        raise ModelConfigError(f"{source}: sliding-window attention, mRoPE and rope_scaling are not supported "
                               f"by the native Dream model; load it with trust_remote_code=True instead")
    try:
        heads = int(cfg["num_attention_heads"])
        arch = ArchConfig(
            hidden_size=int(cfg["hidden_size"]), n_heads=heads,
            n_kv_heads=int(cfg.get("num_key_value_heads") or heads), n_layers=int(cfg["num_hidden_layers"]),
            mlp_hidden_size=int(cfg["intermediate_size"]), vocab_size=int(cfg["vocab_size"]),
            rope_theta=rope_theta(cfg, 10000.0), norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            qkv_bias=True, tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            rope_full_precision=False)
    except KeyError as e:
        raise ModelConfigError(f"{source}: Dream config is missing {e.args[0]!r}") from None
    arch.check(source)
    return arch


class DreamAttention(nn.Module):
    def __init__(self, a: ArchConfig):
        super().__init__()
        kv = a.n_kv_heads * a.head_dim
        self.q_proj = nn.Linear(a.hidden_size, a.hidden_size, bias=True)
        self.k_proj = nn.Linear(a.hidden_size, kv, bias=True)
        self.v_proj = nn.Linear(a.hidden_size, kv, bias=True)
        self.o_proj = nn.Linear(a.hidden_size, a.hidden_size, bias=False)


class DreamMLP(nn.Module):
    def __init__(self, a: ArchConfig):
        super().__init__()
        self.gate_proj = nn.Linear(a.hidden_size, a.mlp_hidden_size, bias=False)
        self.up_proj = nn.Linear(a.hidden_size, a.mlp_hidden_size, bias=False)
        self.down_proj = nn.Linear(a.mlp_hidden_size, a.hidden_size, bias=False)


class DreamLayer(nn.Module):
    def __init__(self, a: ArchConfig):
        super().__init__()
        self.arch = a
        self.input_layernorm = RMSNorm(a.hidden_size, a.norm_eps)
        self.self_attn = DreamAttention(a)
        self.post_attention_layernorm = RMSNorm(a.hidden_size, a.norm_eps)
        self.mlp = DreamMLP(a)

    def forward(self, x, ctx, layer):
        at = self.self_attn
        h = self.input_layernorm(x)
        x = x + at.o_proj(self_attention(h, at.q_proj, at.k_proj, at.v_proj, self.arch, ctx, layer))
        m = self.mlp
        return x + swiglu(self.post_attention_layernorm(x), m.gate_proj, m.up_proj, m.down_proj)


class DreamModel(BidirectionalLM):
    family = "dream"
    config_class = DreamConfig
    _no_split_modules = ["DreamLayer"]
    read_arch = staticmethod(dream_arch)

    def __init__(self, config: DreamConfig):
        super().__init__(config)
        arch = self.arch
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(arch.vocab_size, arch.hidden_size)
        self.model.layers = nn.ModuleList(DreamLayer(arch) for _ in range(arch.n_layers))
        self.model.norm = RMSNorm(arch.hidden_size, arch.norm_eps)
        if not arch.tie_embeddings:
            self.lm_head = nn.Linear(arch.hidden_size, arch.vocab_size, bias=False)
        self.finish_init()

    def parts(self):
        m = self.model
        head = m.embed_tokens.weight if self.arch.tie_embeddings else self.lm_head.weight
        return m.embed_tokens, m.layers, m.norm, head


def tiny_dream_config(vocab_size: int = 512, hidden_size: int = 64, num_hidden_layers: int = 2,
                      num_attention_heads: int = 4, num_key_value_heads: int = 2, intermediate_size: int = 176,
                      mask_token_id: int = 500, eos_token_id: int = 501, pad_token_id: int | None = None,
                      bos_token_id: int = 502, rope_theta: float = 10000.0) -> dict:
    """A Dream-format config.json dict for a small random model (same keys as Dream-7B's)."""
    return {
        "architectures": ["DreamModel"], "model_type": "Dream", "hidden_act": "silu",
        "hidden_size": hidden_size, "intermediate_size": intermediate_size,
        "num_attention_heads": num_attention_heads, "num_key_value_heads": num_key_value_heads,
        "num_hidden_layers": num_hidden_layers, "vocab_size": vocab_size, "max_position_embeddings": 4096,
        "rope_theta": rope_theta, "rope_scaling": None, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
        "use_sliding_window": False, "sliding_window": None, "use_mrope": False,
        "mask_token_id": mask_token_id, "eos_token_id": eos_token_id, "bos_token_id": bos_token_id,
        "pad_token_id": eos_token_id if pad_token_id is None else pad_token_id,
        "torch_dtype": "float32", "use_cache": False,
    }
