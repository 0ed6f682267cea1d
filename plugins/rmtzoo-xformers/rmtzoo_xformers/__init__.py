"""rmtzoo-xformers: ``xformers.ops.memory_efficient_attention`` as the ``xformers`` attention kernel.

xformers is imported lazily, never at module import: the plugin is loaded by every ``rmtzoo.Registry``
through its entry point, and importing xformers is slow, logs a warning where its compiled kernels do not
match the installed torch, and may not be installed at all. ``available()`` says why the kernel cannot run.
"""

from __future__ import annotations

import functools
import importlib.util
from importlib import metadata

import rmtzoo
import torch
import torch.nn.functional as F

__version__ = "0.1.0"

# Above sdpa (10): where xformers' kernels run, ``attention.kind = "auto"`` prefers them.
PRIORITY = 20


def layout_bias(mask, bias=None, *, dtype=None):
    """What to hand xformers as ``attn_bias`` for a layout mask and an optional dense bias.

    mask: bool ``[Q, K]`` or per sample ``[B, Q, K]`` (True: may attend; a batch with padding) or None;
    bias: float ``[B|1, H|1, Q, K]`` or None.
    Returns one of
    - None: nothing is masked and there is no bias;
    - an xformers causal bias object: the mask is plain causal from the bottom right (a segment over its
      Transformer-XL cache, ``layout_mask(0, T, 0, C, causal=True, ...)``) and there is no dense bias;
      the kernel then computes the mask itself and skips fully masked blocks instead of reading a tensor;
    - a dense additive tensor, 0 where allowed and -inf where not, plus ``bias``: ``[Q, K]`` without a
      bias, else the bias's shape; stored with 8-aligned rows (see ``_aligned``).
    """
    dtype = dtype or (bias.dtype if bias is not None else torch.float32)
    if mask is None or bool(mask.all()):
        return None if bias is None else _aligned(bias.to(dtype))
    if mask.dim() == 3:  # per-sample (padding): one [Q, K] mask per batch row, broadcast over heads
        mask = mask[:, None]  # [B, 1, Q, K]
    elif bias is None and _is_bottom_right_causal(mask):
        from xformers.ops.fmha import attn_bias as xb  # lazy: see the module docstring

        if mask.shape[0] == mask.shape[1]:
            return xb.LowerTriangularMask()  # the classic top-left form: every xformers operator takes it
        return xb.LowerTriangularFromBottomRightMask()
    additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)  # [Q, K] or [B, 1, Q, K]
    additive = additive.masked_fill(~mask, float("-inf"))
    return _aligned(additive if bias is None else bias.to(dtype) + additive)  # [B|1, H|1, Q, K] or [Q, K]


def _is_bottom_right_causal(mask) -> bool:
    """mask [Q, K] with K >= Q: query i may attend to exactly the keys j <= i + K - Q."""
    q, k = mask.shape
    return k >= q and torch.equal(mask, torch.ones_like(mask).tril(k - q))


def _aligned(t):
    """t [..., Q, K] -> the same values stored with each row starting at a multiple of 8 elements.

    xformers' cutlass kernels read bias rows with 128-bit loads (8 fp16 or 4 fp32 values) and reject a
    bias whose row stride is not a multiple of that. Padding the storage to K8 = ceil(K / 8) * 8 columns and
    slicing back keeps the shape [..., Q, K] with row stride K8.
    """
    k = t.shape[-1]
    if k % 8 == 0:
        return t.contiguous()
    return F.pad(t, (0, 8 - k % 8))[..., :k]  # [..., Q, K8] storage viewed as [..., Q, K]


def xformers_attention(q, k, v, *, bias=None, mask=None, dropout_p=0.0, scale=None):
    """q [B, H, Q, Dh], k/v [B, H, K, Dh], bias [B|1, H|1, Q, K], mask [Q, K] or [B, Q, K] -> [B, H, Q, Dh]."""
    from xformers.ops import memory_efficient_attention  # lazy: see the module docstring

    b, h, nq, _ = q.shape
    full = (b, h, nq, k.shape[2])
    attn_bias = layout_bias(mask, bias, dtype=q.dtype)
    if isinstance(attn_bias, torch.Tensor):
        if attn_bias.requires_grad and attn_bias.shape != full:
            # xformers' backward writes a full [B, H, Q, K] bias gradient; it cannot sum over broadcast dims
            attn_bias = _aligned(attn_bias.expand(full))
        # xformers rejects broadcastable shapes but takes a stride-0 view of the exact shape
        attn_bias = attn_bias.expand(full)  # [B, H, Q, K]
    out = memory_efficient_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),  # xformers' layout: [B, Q|K, H, Dh]
        attn_bias=attn_bias, p=dropout_p, scale=scale,
    )  # [B, Q, H, Dh]
    return out.transpose(1, 2)  # [B, H, Q, Dh]


def available() -> str | None:
    """None where the kernel runs; else a one-line reason. Cheap after the first call; never raises."""
    try:
        if importlib.util.find_spec("xformers") is None:
            return "xformers is not installed (pip install 'rmtzoo-xformers[kernel]')"
        if not torch.cuda.is_available():
            return "no CUDA device (xformers' memory-efficient attention kernels are CUDA-only)"
        return _probe("cuda")
    except Exception as exc:  # a broken install must read as unavailable, not crash model building
        return f"xformers could not be checked: {_first_line(exc)}"


@functools.cache
def _probe(device: str) -> str | None:
    """Run the kernel once, forward and backward, on tiny fp32 tensors with a tensor bias (what a
    Transformer-XL layer hands it). Only running it tells: ``import xformers`` succeeds where its compiled
    kernels fail to load for this torch (it merely logs a warning), and dispatch fails only at call time."""
    try:
        # ones, not randn: availability checks must leave the random number generators untouched.
        q = torch.ones(1, 1, 8, 8, device=device, requires_grad=True)  # [B, H, Q, Dh]
        bias = torch.zeros(1, 1, 8, 8, device=device, requires_grad=True)  # [B, H, Q, K]
        xformers_attention(q, q, q, bias=bias, mask=None).sum().backward()
        return None
    except Exception as exc:
        return _kernel_failure(exc)


def _kernel_failure(exc: Exception) -> str:
    """One line on why a kernel call failed, naming the torch xformers was built for where it knows it."""
    version = metadata.version("xformers")
    try:
        from xformers import _cpp_lib  # private, so read defensively

        load_error = getattr(_cpp_lib, "_cpp_library_load_exception", None)
    except Exception:
        load_error = None
    info = getattr(load_error, "build_info", None)
    if info is not None:
        return (
            f"xformers {version}'s compiled kernels do not load: built for torch {info.torch_version}, "
            f"this is torch {torch.__version__}"
        )
    if load_error is not None:
        return f"xformers {version}'s compiled kernels do not load: {_first_line(load_error)}"
    return f"xformers {version} cannot run attention here: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@rmtzoo.hookimpl
def rmtzoo_register_attention_backends(register):
    register(
        rmtzoo.AttentionSpec(
            name="xformers",
            summary="xformers memory_efficient_attention (CUDA; needs an xformers build matching torch)",
            build=lambda params: xformers_attention,
            available=available,
            priority=PRIORITY,
        )
    )
