"""Built-in attention kernels: ``eager`` (plain math, the reference), ``sdpa``, ``flex`` and ``auto``.

Every kernel computes ``softmax(q @ k^T * scale + bias, masked) @ v``. ``bias`` carries the relative
position term of Transformer-XL attention; ``mask`` (True: may attend) carries the memory layout:
``[Q, K]`` for the whole batch, or ``[B, Q, K]`` per sample (padding).

``auto`` (the default) is the available kernel of highest priority, so a plugin kernel that outranks
the built-ins (xformers where it runs) wins; otherwise it is :func:`auto_attention`, which picks a
built-in per call. Why per call: with a dense bias, torch's SDPA on CPU has no fused kernel and runs its
math fallback, which upcasts bf16/fp16 inputs to fp32 (dtype copies of every ``[B, H, Q, K]`` tensor, and
fp32 matmuls). Measured on the perf benchmark's shapes (B 8, H 4, Q 148, K 148/276, d_head 64, layout
mask, 1 thread), time of sdpa / eager: bf16 train 1.5-2.1x, bf16 inference 1.8x; fp32 train 0.92-1.04x,
fp32 inference 0.91-0.97x. So ``auto`` runs eager for half precision on CPU and sdpa otherwise (fp32 and
fp64 on CPU, every dtype on GPU, where SDPA has fused kernels that take a bias).

``flex`` (``rmtzoo/_flex.py``) is registered below sdpa's priority, so ``auto`` never resolves to it, and
``auto``'s per-call choice leaves it out: on CPU it runs forward only, compiles for tens of seconds per
new shape, and its bf16 kernel was slower than eager here; on GPU it has not been measured
(``benchmarks/perf/reports/cpu-2026-12-02b-issue14.md``). Ask for it with ``attention.kind = "flex"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rmtzoo import _flex
from rmtzoo._components import AttentionSpec, NoParams
from rmtzoo._registry import hookimpl


def _heads(mask):
    """mask [Q, K] stays as is; a per-sample mask [B, Q, K] gets a head axis: [B, 1, Q, K]."""
    return mask[:, None] if mask is not None and mask.dim() == 3 else mask


def eager_attention(q, k, v, *, bias=None, mask=None, dropout_p=0.0, scale=None):
    """q [B, H, Q, Dh], k/v [B, H, K, Dh], bias [B|1, H|1, Q, K], mask [Q, K] or [B, Q, K] -> [B, H, Q, Dh]."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if scale != 1.0:
        q = q * scale  # [B, H, Q, Dh]: cheaper than scaling the scores
    scores = torch.matmul(q, k.transpose(-1, -2))  # [B, H, Q, K]
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    if mask is not None:
        scores = scores.masked_fill(~_heads(mask), float("-inf"))
    probs = torch.softmax(scores.to(_softmax_dtype(scores.dtype)), dim=-1).to(v.dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return torch.matmul(probs, v)  # [B, H, Q, Dh]


def _softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    """bf16 softmaxes in bf16: torch's softmax kernels accumulate in fp32 whatever the input dtype, and
    bf16 has fp32's exponent range, so nothing overflows and only the output is rounded (to bf16, as the
    following matmul reads it anyway). fp16 (5 exponent bits) is upcast to fp32; fp32/fp64 stay."""
    return torch.float32 if dtype == torch.float16 else dtype


def sdpa_attention(q, k, v, *, bias=None, mask=None, dropout_p=0.0, scale=None):
    """``torch.nn.functional.scaled_dot_product_attention`` with the bias and mask folded together."""
    mask = _heads(mask)
    attn_mask = None
    if bias is not None:
        attn_mask = bias.to(q.dtype)
        if mask is not None:
            attn_mask = attn_mask.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        attn_mask = mask
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)


HALF = (torch.bfloat16, torch.float16)


def auto_kernel_name(q: torch.Tensor, k: torch.Tensor) -> str:
    """The built-in kernel ``auto`` runs for ``q``, ``k`` (see the module docstring for the numbers).
    Half precision means either tensor in bf16/fp16 or CPU autocast to one (under autocast a query plus
    an fp32 bias, as Transformer-XL's ``q + r_w_bias``, is fp32 while the keys are bf16)."""
    if q.device.type != "cpu":
        return "sdpa"
    return "eager" if _cpu_autocast_dtype() in HALF or q.dtype in HALF or k.dtype in HALF else "sdpa"


def _cpu_autocast_dtype():
    """The CPU autocast dtype, or None while CPU autocast is off."""
    try:
        on, dtype = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
    except TypeError:  # torch < 2.4 has no device argument
        on, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    return dtype if on else None


def auto_attention(q, k, v, *, bias=None, mask=None, dropout_p=0.0, scale=None):
    """eager or sdpa, whichever is faster for these inputs (:func:`auto_kernel_name`)."""
    attend = eager_attention if auto_kernel_name(q, k) == "eager" else sdpa_attention
    return attend(q, k, v, bias=bias, mask=mask, dropout_p=dropout_p, scale=scale)


# A kernel with ``mask_in_bias`` takes the layout mask as -inf entries of ``bias`` (and ``mask=None``):
# backbones that build an additive bias anyway (Transformer-XL's position term) fold the mask into it
# once instead of the kernel masking every ``[B, H, Q, K]`` score tensor.
for _kernel in (eager_attention, sdpa_attention, auto_attention):
    _kernel.mask_in_bias = True


def resolve_attention(name: str, registry) -> AttentionSpec:
    """The kernel ``name`` stands for here. ``auto``: the available kernel of highest priority, or, where
    that is a built-in one, ``auto`` itself (:func:`auto_attention` picks eager or sdpa per call)."""
    if name != "auto":
        return registry.get("attention_backends", name)
    candidates = [s for s in registry.specs("attention_backends") if s.name != "auto" and s.available() is None]
    best = max(candidates, key=lambda s: (s.priority, s.name))
    if best.name in ("eager", "sdpa") and registry.provider("attention_backends", best.name) == __name__:
        return registry.get("attention_backends", "auto")
    return best


@hookimpl
def rmtzoo_register_attention_backends(register):
    register(
        AttentionSpec(
            name="eager",
            summary="plain matmul-softmax-matmul; the reference other kernels are tested against",
            build=lambda params: eager_attention,
            priority=0,
        )
    )
    register(
        AttentionSpec(
            name="sdpa",
            summary="torch scaled_dot_product_attention (fused kernels where torch has them)",
            build=lambda params: sdpa_attention,
            priority=10,
        )
    )
    register(
        AttentionSpec(
            name="flex",
            summary="torch FlexAttention: relative positions as a score mod, the memory layout as a block mask "
            "(fused under torch.compile; forward only on CPU)",
            build=lambda params: _flex.FlexAttention(params),
            available=_flex.available,
            params=_flex.FlexParams,
            test_params={"compile": False},
            # below sdpa: ``auto`` never resolves to it (see the module docstring for why not per call)
            priority=5,
            inference_only_on=("cpu",),
        )
    )
    register(
        AttentionSpec(
            name="auto",
            summary="the available kernel of highest priority; among the built-ins, eager for bf16/fp16 on CPU, else sdpa",
            build=lambda params: auto_attention,
            params=NoParams,
            priority=-1,
        )
    )
