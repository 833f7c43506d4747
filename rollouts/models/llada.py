"""LLaDA (``model_type: llada``): Llama-style blocks with bidirectional attention.

``LLaDAModelLM`` is a transformers ``PreTrainedModel`` named like the published class (config.json's
``architectures``), with ``LLaDAConfig``.

Parameter names follow the published LLaDA-8B checkpoints: ``model.transformer.wte``,
``model.transformer.blocks.N.{q_proj,k_proj,v_proj,attn_out,ff_proj,up_proj,ff_out,attn_norm,ff_norm}``,
``model.transformer.ln_f`` and ``model.transformer.ff_out`` (untied head unless ``weight_tying``).
The SwiGLU gate is ``ff_proj``; ``up_proj`` is the linear branch and ``ff_out`` the down projection.
"""
from __future__ import annotations

from torch import nn

from .base import ArchConfig, BidirectionalLM, ModelConfigError, rope_theta, self_attention, swiglu
from .configuration import LLaDAConfig
from .layers import RMSNorm

# config.json switches the native implementation supports, with the only value it accepts.
_REQUIRED = {"block_type": "llama", "activation_type": "silu", "layer_norm_type": "rms",
             "alibi": False, "rope": True, "attention_layer_norm": False, "input_emb_norm": False}


def llada_arch(cfg: dict, source: str = "config.json") -> ArchConfig:
    """Read a LLaDA ``config.json`` dict; unsupported switches fail with the key and the fix."""
    for key, want in _REQUIRED.items():
        if key in cfg and cfg[key] != want:
            raise ModelConfigError(f"{source}: {key}={cfg[key]!r} is not supported by the native LLaDA "
                                   f"model (only {want!r}); load it with trust_remote_code=True instead")
    try:
        d, heads = int(cfg["d_model"]), int(cfg["n_heads"])
        mlp = cfg.get("mlp_hidden_size") or int(cfg.get("mlp_ratio", 4)) * d
        arch = ArchConfig(
            hidden_size=d, n_heads=heads,
            n_kv_heads=1 if cfg.get("multi_query_attention") else int(cfg.get("n_kv_heads") or heads),
            n_layers=int(cfg["n_layers"]), mlp_hidden_size=int(mlp),
            vocab_size=int(cfg.get("embedding_size") or cfg["vocab_size"]),
            rope_theta=rope_theta(cfg, 10000.0), norm_eps=float(cfg.get("rms_norm_eps", 1e-5)),
            qkv_bias=bool(cfg.get("include_bias") or cfg.get("include_qkv_bias")),
            out_bias=bool(cfg.get("include_bias")), mlp_bias=bool(cfg.get("include_bias")),
            tie_embeddings=bool(cfg.get("weight_tying", False)), scale_logits=bool(cfg.get("scale_logits", False)),
            rope_full_precision=bool(cfg.get("rope_full_precision", True)))
    except KeyError as e:
        raise ModelConfigError(f"{source}: LLaDA config is missing {e.args[0]!r}") from None
    arch.check(source)
    return arch


class LLaDABlock(nn.Module):
    def __init__(self, a: ArchConfig):
        super().__init__()
        self.arch = a
        kv = a.n_kv_heads * a.head_dim
        self.attn_norm = RMSNorm(a.hidden_size, a.norm_eps)
        self.q_proj = nn.Linear(a.hidden_size, a.hidden_size, bias=a.qkv_bias)
        self.k_proj = nn.Linear(a.hidden_size, kv, bias=a.qkv_bias)
        self.v_proj = nn.Linear(a.hidden_size, kv, bias=a.qkv_bias)
        self.attn_out = nn.Linear(a.hidden_size, a.hidden_size, bias=a.out_bias)
        self.ff_norm = RMSNorm(a.hidden_size, a.norm_eps)
        self.ff_proj = nn.Linear(a.hidden_size, a.mlp_hidden_size, bias=a.mlp_bias)
        self.up_proj = nn.Linear(a.hidden_size, a.mlp_hidden_size, bias=a.mlp_bias)
        self.ff_out = nn.Linear(a.mlp_hidden_size, a.hidden_size, bias=a.mlp_bias)

    def forward(self, x, ctx, layer):
        h = self.attn_norm(x)
        x = x + self.attn_out(self_attention(h, self.q_proj, self.k_proj, self.v_proj, self.arch, ctx, layer))
        return x + swiglu(self.ff_norm(x), self.ff_proj, self.up_proj, self.ff_out)


class LLaDAModelLM(BidirectionalLM):
    family = "llada"
    config_class = LLaDAConfig
    _no_split_modules = ["LLaDABlock"]
    read_arch = staticmethod(llada_arch)

    def __init__(self, config: LLaDAConfig):
        super().__init__(config)
        arch = self.arch
        t = nn.ModuleDict({
            "wte": nn.Embedding(arch.vocab_size, arch.hidden_size),
            "blocks": nn.ModuleList(LLaDABlock(arch) for _ in range(arch.n_layers)),
            "ln_f": RMSNorm(arch.hidden_size, arch.norm_eps),
        })
        if not arch.tie_embeddings:
            t["ff_out"] = nn.Linear(arch.hidden_size, arch.vocab_size, bias=False)
        self.model = nn.Module()
        self.model.transformer = t
        self.finish_init()

    def parts(self):
        t = self.model.transformer
        head = t["wte"].weight if self.arch.tie_embeddings else t["ff_out"].weight
        return t["wte"], t["blocks"], t["ln_f"], head


def tiny_llada_config(vocab_size: int = 512, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                      n_kv_heads: int | None = None, mlp_hidden_size: int = 176, mask_token_id: int = 500,
                      eos_token_id: int = 501, pad_token_id: int | None = None,
                      rope_theta: float = 10000.0) -> dict:
    """A LLaDA-format config.json dict for a small random model (same keys as LLaDA-8B's)."""
    return {
        "architectures": ["LLaDAModelLM"], "model_type": "llada", "activation_type": "silu",
        "alibi": False, "block_type": "llama", "layer_norm_type": "rms", "rope": True,
        "rope_full_precision": True, "attention_layer_norm": False, "input_emb_norm": False,
        "include_bias": False, "include_qkv_bias": False, "weight_tying": False, "scale_logits": False,
        "d_model": d_model, "n_heads": n_heads, "n_kv_heads": n_kv_heads or n_heads, "n_layers": n_layers,
        "mlp_hidden_size": mlp_hidden_size, "mlp_ratio": 4, "vocab_size": vocab_size,
        "embedding_size": vocab_size, "max_sequence_length": 4096, "rope_theta": rope_theta,
        "rms_norm_eps": 1e-5, "mask_token_id": mask_token_id, "eos_token_id": eos_token_id,
        "pad_token_id": eos_token_id if pad_token_id is None else pad_token_id,
        "torch_dtype": "float32", "use_cache": False,
    }


