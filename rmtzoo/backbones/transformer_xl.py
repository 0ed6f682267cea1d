"""The paper's backbone: a Transformer-XL decoder (Dai et al. 2019), and its bidirectional encoder twin.

Relative attention as in Transformer-XL (attn_type 0): sinusoidal relative encodings, global content
and position biases shared by all layers, post-LayerNorm by default, ``d_head`` independent of
``d_model / n_head``. The position term ``(q + r_r_bias) . R[i - j]`` enters the attention kernel as an
additive bias, so any kernel that takes a bias (SDPA, xformers, eager) computes the same attention.
Everything on the attention path runs in the compute dtype (the autocast dtype under autocast): the two
biases are cast to it, the softmax scale is folded into the query, and the layout mask becomes one
additive 0 / -inf tensor per forward, added to the position bias for kernels that declare
``mask_in_bias`` (the built-ins do), so no ``[B, H, S, K]`` tensor is cast or ``masked_fill``-ed in
forward or backward (``tests/test_compute_dtype.py``).

Relative distances (``relative_distances``). ``signed`` (default, a deviation from LM-RMT on purpose):
a key at distance ``d < 0`` (to the *right* of its query) gets the sinusoid of ``d``. The position term
is computed with a skew (:func:`rel_shift`, views only, no gather), over distances ``C+S-1 .. -A`` where
A is the furthest any query may look to its right under the mask (A = 1 for a plain causal segment,
``m - 1`` for RMT's memory blocks; at least 1). ``lm_rmt``: the released code's distances ``K-1 .. 0``
and its zero-pad ``_rel_shift`` (:func:`lm_rmt_rel_shift`), which for a key right of its query hands
over a wrapped-around value: 0 for the key just right of it, and further right the term of the *next*
query row at another distance. The two agree on every key at or left of its query; they differ exactly
on the query/key pairs with the key to the right: read memory reading the read-memory slots after it,
write memory reading the write-memory slots after it (and, with the ``shared`` placement, memory reading
later memory slots), every right-hand key of the bidirectional encoder. Plain causal segments and the
Tr-XL cache never have one, so the two options give the same logits without memory tokens.
"""

from __future__ import annotations

import weakref
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator
from torch import nn

from rmtzoo._components import BackboneCapabilities, BackboneOutput, BackboneSpec, Params
from rmtzoo._registry import hookimpl
from rmtzoo.backbones._adaptive import AdaptiveSoftmaxHead
from rmtzoo.placements import self_keys


class TransformerXLParams(Params):
    """Sizes default to the paper's copy/reverse model (4 layers, 4 heads, d_model 128, d_head 64)."""

    vocab_size: PositiveInt
    n_layer: PositiveInt = 4
    n_head: PositiveInt = 4
    d_model: PositiveInt = 128
    d_head: PositiveInt = 64
    d_inner: PositiveInt = 256
    dropout: NonNegativeFloat = Field(0.1, lt=1)
    dropatt: NonNegativeFloat = Field(0.0, lt=1)
    pre_lnorm: bool = False
    tie_weights: bool = True
    init_std: NonNegativeFloat = 0.02
    adaptive_cutoffs: tuple[PositiveInt, ...] = ()
    # signed: rmtzoo's distances; lm_rmt: the released code's wrapped-around _rel_shift (module docstring).
    # Left out of the dumped config (and the hash) at its default.
    relative_distances: Literal["signed", "lm_rmt"] = Field("signed", exclude_if=lambda v: v == "signed")

    @model_validator(mode="after")
    def _cutoffs(self):
        c = self.adaptive_cutoffs
        if c and (list(c) != sorted(set(c)) or c[-1] >= self.vocab_size):
            raise ValueError(
                f"adaptive_cutoffs must increase strictly and stay below vocab_size {self.vocab_size}, got {list(c)}"
            )
        if c and not self.tie_weights:
            raise ValueError("adaptive_cutoffs needs tie_weights = true (the tails reuse the input embedding)")
        return self


class RelativeAttentionLayer(nn.Module):
    """One Transformer-XL layer: relative multi-head attention and a position-wise feed-forward block."""

    def __init__(self, p: TransformerXLParams, attention) -> None:
        super().__init__()
        h, dh, d = p.n_head, p.d_head, p.d_model
        self.n_head, self.d_head, self.pre_lnorm = h, dh, p.pre_lnorm
        self.attention, self.dropatt = attention, p.dropatt
        self.lm_rmt_distances = p.relative_distances == "lm_rmt"
        self.qkv_net = nn.Linear(d, 3 * h * dh, bias=False)
        self.r_net = nn.Linear(d, h * dh, bias=False)
        self.o_net = nn.Linear(h * dh, d, bias=False)
        self.attn_norm = nn.LayerNorm(d)
        self.ff = nn.Sequential(
            nn.Linear(d, p.d_inner), nn.ReLU(), nn.Dropout(p.dropout), nn.Linear(p.d_inner, d), nn.Dropout(p.dropout)
        )
        self.ff_norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(p.dropout)

    def forward(self, x, *, cache, pos_emb, r_w_bias, r_r_bias, mask, additive=None):
        """mask: bool ``[S, K]`` / ``[B, S, K]`` (True: may attend) or None; additive: the same mask as
        0 / -inf in the compute dtype (``[S, K]`` / ``[B, 1, S, K]``), folded into the position bias for
        kernels that declare ``mask_in_bias`` (no ``masked_fill`` on the ``[B, H, S, K]`` scores)."""
        return self.forward_kv(x, cache=cache, pos_emb=pos_emb, r_w_bias=r_w_bias, r_r_bias=r_r_bias, mask=mask,
                               additive=additive)[0]

    def _position_keys(self, pos_emb, scale: float) -> torch.Tensor:
        """``r_net(pos_emb)`` ``[P, H, Dh]``, scaled here (the smallest tensor). Without a gradient it is
        kept per relative table (the backbone builds one per layout and reuses it) and weight version:
        a stream of equal segments projects the same table every segment otherwise."""
        if torch.is_grad_enabled() or _compiling():
            return self.r_net(pos_emb).view(-1, self.n_head, self.d_head) * scale
        table, rows = pos_emb, slice(None)
        base = pos_emb._base
        if base is not None and base.dim() == 2 and base.stride() == pos_emb.stride() and base.shape[1] == pos_emb.shape[1]:
            start = (pos_emb.storage_offset() - base.storage_offset()) // base.stride(0)
            table, rows = base, slice(start, start + pos_emb.shape[0])  # a row range of a larger table
        w = self.r_net.weight
        stamp = (table._version, compute_dtype(table), id(w), w._version, scale)
        memo = self.__dict__.setdefault("_position_memo", [])  # (weakref to a table, stamp, r), newest last
        for ref, old, r in memo:
            if ref() is table and old == stamp:
                return r[rows]
        r = self.r_net(table).view(-1, self.n_head, self.d_head) * scale
        memo[:] = [*memo[-7:], (weakref.ref(table), stamp, r)]
        return r[rows]

    def forward_kv(self, x, *, cache, pos_emb, r_w_bias, r_r_bias, mask, additive=None, past=None):
        """``forward``, also returning the keys and values ``(k, v)`` ``[B, H, K, Dh]`` it attended to.
        ``past``: keys and values already projected (an open segment's earlier positions, the cache's),
        taken instead of ``cache``; the queries ``x`` follow them."""
        b, s, _ = x.shape
        h, dh = self.n_head, self.d_head
        keys_in = x if cache is None or past is not None else torch.cat([cache, x], dim=1)  # [B, K, D]
        if self.pre_lnorm:
            keys_in = self.attn_norm(keys_in)
        q, k, v = self.qkv_net(keys_in).view(b, -1, 3, h, dh).unbind(2)  # 3 x [B, K, H, Dh]
        q, k, v = q[:, -s:].transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, S|K, Dh]
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # [B, H, P+S, Dh]
        dtype, scale = q.dtype, dh**-0.5
        # biases in the compute dtype: an fp32 parameter added to a bf16 query would promote it to fp32
        r = self._position_keys(pos_emb, scale)  # [P, H, Dh]
        position = torch.matmul(q + r_r_bias.to(dtype)[:, None], r.permute(1, 2, 0).to(dtype))  # [B, H, S, P]
        q_content = (q + r_w_bias.to(dtype)[:, None]) * scale  # [B, H, S, Dh]: the scale folded into q
        dropout_p = self.dropatt if self.training else 0.0
        if getattr(self.attention, "takes_position", False) and not self.lm_rmt_distances:
            # the kernel skews the term itself (a FlexAttention score mod): no [B, H, S, K] bias at all
            out = self.attention(q_content, k, v, position=position, mask=mask, dropout_p=dropout_p, scale=1.0)
        else:
            shift = lm_rmt_rel_shift if self.lm_rmt_distances else rel_shift
            bias = shift(position, k.shape[2])  # [B, H, S, K]
            if additive is not None and getattr(self.attention, "mask_in_bias", False):
                bias, mask = bias + additive.to(dtype), None  # [B, H, S, K]: the one masking op
            out = self.attention(q_content, k, v, bias=bias, mask=mask, dropout_p=dropout_p, scale=1.0)
        out = self.drop(self.o_net(out.transpose(1, 2).reshape(b, s, h * dh)))  # [B, S, D]
        if self.pre_lnorm:
            x = x + out
            return x + self.ff(self.ff_norm(x)), (k, v)
        x = self.attn_norm(x + out)
        return self.ff_norm(x + self.ff(x)), (k, v)


class TransformerXL(nn.Module):
    """Backbone protocol (see :class:`rmtzoo.BackboneSpec`) over relative-attention layers."""

    def __init__(self, p: TransformerXLParams, *, attention, causal: bool = True) -> None:
        super().__init__()
        self.vocab_size, self.d_model, self.n_layer, self.causal = p.vocab_size, p.d_model, p.n_layer, causal
        self.lm_rmt_distances = p.relative_distances == "lm_rmt"
        self.word_emb = nn.Embedding(p.vocab_size, p.d_model)
        self.emb_scale = p.d_model**0.5
        self.drop = nn.Dropout(p.dropout)
        self.layers = nn.ModuleList(RelativeAttentionLayer(p, attention) for _ in range(p.n_layer))
        self.r_w_bias = nn.Parameter(torch.zeros(p.n_head, p.d_head))
        self.r_r_bias = nn.Parameter(torch.zeros(p.n_head, p.d_head))
        self.register_buffer(
            "inv_freq", 1.0 / (10000 ** (torch.arange(0.0, p.d_model, 2.0) / p.d_model)), persistent=False
        )
        if p.adaptive_cutoffs:
            self.adaptive = AdaptiveSoftmaxHead(p.vocab_size, p.d_model, p.adaptive_cutoffs)
            self.out = None
        else:
            self.adaptive = None
            self.out = nn.Linear(p.d_model, p.vocab_size)
            if p.tie_weights:
                self.out.weight = self.word_emb.weight
        self._tables: dict[tuple, torch.Tensor] = {}
        self._init(p.init_std)

    def _init(self, std: float) -> None:
        for name, param in self.named_parameters():
            if "norm" in name:
                continue
            if name.endswith("bias") and param.dim() == 1:
                nn.init.zeros_(param)
            else:
                nn.init.normal_(param, 0.0, std)

    # -- backbone protocol ------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.word_emb(ids) * self.emb_scale  # [B, T, D]

    reuses_cache_keys = True  # forward takes ``cache_keys`` (the model's ``RecurrentState.cache_keys``)

    def forward(self, x: torch.Tensor, *, mask=None, cache=None, cache_keys=None) -> BackboneOutput:
        """x [B, S, D], mask [S, C+S] or per sample [B, S, C+S] bool or None, cache: n_layer x [B, C, D]
        -> hidden [B, S, D]. ``cache_keys`` (without gradient only): ``(stamp, n_layer x (k, v))``, the
        keys and values of ``cache`` as this backbone projected them, used instead of projecting the
        cache again while the stamp matches its weights; the output's ``keys`` are then those of
        ``[cache | x]``, ``(stamp, n_layer x (k, v) [B, H, C+S, Dh])``."""
        mask, pos_emb, additive = self.attention_inputs(x, mask, cache)
        hidden = self.drop(x)
        layer_inputs = []
        if torch.is_grad_enabled() or _compiling():
            for i in range(self.n_layer):
                layer_inputs.append(hidden)
                hidden = self.run_layer(i, hidden, cache=cache, pos_emb=pos_emb, mask=mask, additive=additive)
            return BackboneOutput(self.drop(hidden), layer_inputs)
        stamp = self._kv_stamp(compute_dtype(x))
        reuse = cache_keys is not None and cache_keys[0] == stamp and cache is not None and (
            cache_keys[1][0][0].shape[2] == cache[0].shape[1] and cache_keys[1][0][0].shape[0] == x.shape[0])
        empty = cache is None or cache[0].shape[1] == 0
        keys = []
        for i, layer in enumerate(self.layers):
            layer_inputs.append(hidden)
            hidden, kv = layer.forward_kv(
                hidden, cache=None if empty else cache[i], pos_emb=pos_emb, r_w_bias=self.r_w_bias,
                r_r_bias=self.r_r_bias, mask=mask, additive=additive, past=cache_keys[1][i] if reuse else None,
            )
            keys.append(kv)
        out = BackboneOutput(self.drop(hidden), layer_inputs)
        out.keys = (stamp, tuple(keys))
        return out

    def _kv_stamp(self, dtype) -> tuple:
        """What a layer's keys and values depend on besides its input: the weights projecting them (by
        identity and in-place version, which an optimizer step bumps) and the compute dtype."""
        parts = [dtype]
        for layer in self.layers:
            for p in (layer.qkv_net.weight, *((layer.attn_norm.weight, layer.attn_norm.bias) if layer.pre_lnorm else ())):
                parts.append((id(p), p._version))
        return tuple(parts)

    @property
    def incremental(self) -> bool:
        """Whether :meth:`extend` gives what ``forward`` gives: causal, and the signed distances (the
        ``lm_rmt`` wrapped-around values depend on the total key count, which grows)."""
        return self.causal and not self.lm_rmt_distances

    def extend(self, x: torch.Tensor, *, mask: torch.Tensor, cache=None, past=None):
        """Incremental forward (generation): the next positions ``x [B, n, D]`` after the ``P`` whose
        per-layer keys and values ``past`` holds (``n_layer`` x ``(k, v)`` ``[B, H, P, Dh]``; None: none
        yet, and the Tr-XL ``cache`` (``n_layer`` x ``[B, C, D]``) is projected now and counts as past).
        mask ``[n, P+n]`` bool: these rows of the layout over every key. Returns hidden ``[B, n, D]`` and
        the per-layer keys and values over all ``P+n`` keys, for the next call."""
        if past is None and cache is not None and cache[0].shape[1] == 0:
            cache = None
        n, n_before = x.shape[1], mask.shape[1] - x.shape[1]
        ahead = _lookahead(mask, n, n_before)
        # rows of one table over distances reach .. -ahead, reach rounded up: the layers project that
        # table once (no gradient) and slice it, instead of a new table of one more row every token
        reach = -(-(n_before + n) // 512) * 512
        table = self._relative_table(1, reach, ahead, x.device, x.dtype)  # [reach+1+ahead, D]
        pos_emb = self.drop(table[reach - (n_before + n - 1) :])  # distances n_before+n-1 .. -ahead
        folds = getattr(self.layers[0].attention, "mask_in_bias", False)
        additive = additive_mask(mask, compute_dtype(x)) if folds else None
        hidden, keys_values = self.drop(x), []
        for i, layer in enumerate(self.layers):
            hidden, kv = layer.forward_kv(
                hidden, cache=None if cache is None else cache[i], pos_emb=pos_emb, r_w_bias=self.r_w_bias,
                r_r_bias=self.r_r_bias, mask=mask, additive=additive, past=None if past is None else past[i],
            )
            keys_values.append(kv)
        return self.drop(hidden), tuple(keys_values)

    def attention_inputs(self, x: torch.Tensor, mask, cache):
        """The mask every layer uses (the natural one when None), the dropped-out relative table and the
        mask as an additive bias."""
        s = x.shape[1]
        c = 0 if cache is None else cache[0].shape[1]
        if mask is None and self.causal:
            mask = torch.ones(s, c + s, dtype=torch.bool, device=x.device).tril(c)
        elif mask is not None and mask.dim() == 3:
            # a query always sees itself, so a fully padded row never softmaxes over no key (NaN)
            mask = mask | self_keys(s, c, device=x.device)  # [B, S, C+S]
        ahead = 0 if self.lm_rmt_distances else _lookahead(mask, s, c)  # lm_rmt: distances K-1 .. 0
        pos_emb = self.drop(self._relative_table(s, c, ahead, x.device, x.dtype))
        folds = getattr(self.layers[0].attention, "mask_in_bias", False)
        additive = additive_mask(mask, compute_dtype(x)) if folds and mask is not None else None  # [S, K] / [B, 1, S, K]
        return mask, pos_emb, additive

    def run_layer(self, i: int, hidden: torch.Tensor, *, cache, pos_emb, mask, additive) -> torch.Tensor:
        """Layer ``i`` on hidden ``[B, S, D]`` with its slice of the cache."""
        empty = cache is None or cache[0].shape[1] == 0
        return self.layers[i](
            hidden, cache=None if empty else cache[i], pos_emb=pos_emb, r_w_bias=self.r_w_bias,
            r_r_bias=self.r_r_bias, mask=mask, additive=additive,
        )

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B, T, D] -> [B, T, V] (log-probabilities when the head is adaptive)."""
        if self.adaptive is not None:
            b, t, d = hidden.shape
            return self.adaptive.log_probs(hidden.reshape(b * t, d), self.word_emb.weight).view(b, t, -1)
        return self.out(hidden)

    def nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """hidden [B, T, D], targets [B, T] -> per-token negative log-likelihood [B, T] (float32)."""
        b, t, d = hidden.shape
        if self.adaptive is not None:
            flat = self.adaptive.nll(hidden.reshape(b * t, d), targets.reshape(-1), self.word_emb.weight)
        else:
            flat = F.cross_entropy(self.out(hidden).float().view(b * t, -1), targets.reshape(-1), reduction="none")
        return flat.view(b, t)

    # -- relative positions -----------------------------------------------------------------------
    def _relative_table(self, s: int, c: int, ahead: int, device, dtype) -> torch.Tensor:
        """Sinusoids ``[P, D]`` for the signed distances C+S-1 .. -ahead (P = C+S+ahead), the layout
        :func:`rel_shift` reads. Built once per (S, C, ahead) and reused; query i sits at absolute
        position C+i, key j at j."""
        key = (s, c, ahead, str(device), dtype)
        table = self._tables.get(key)
        if table is None:
            distances = torch.arange(c + s - 1, -ahead - 1, -1.0, device=device)  # [P]
            angles = distances[:, None] * self.inv_freq.to(device)[None]  # [P, D/2]
            table = self._tables[key] = torch.cat([angles.sin(), angles.cos()], dim=-1).to(dtype)  # [P, D]
        return table


def _compiling() -> bool:
    return getattr(torch.compiler, "is_compiling", lambda: False)()


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls run in: the autocast dtype while autocast is on for ``x``'s device, else x's."""
    kind = x.device.type
    try:
        if torch.is_autocast_enabled(kind):
            return torch.get_autocast_dtype(kind)
    except TypeError:  # torch < 2.4 has no device argument
        if kind == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
    return x.dtype


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool mask ``[S, K]`` or per sample ``[B, S, K]`` (True: may attend) -> 0 / -inf in ``dtype``,
    ``[S, K]`` or ``[B, 1, S, K]`` (broadcast over heads). Built once per forward, shared by the layers."""
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    out = torch.where(mask, zero, torch.tensor(float("-inf"), dtype=dtype, device=mask.device))
    return out[:, None] if out.dim() == 3 else out


def rel_shift(position: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Transformer-XL's skew, exact for every key a query may attend to.

    position ``[..., S, P]`` holds, for query i, the term of distances C+S-1 .. C+S-P (column p is
    distance C+S-1-p); the result ``[..., S, K]`` holds at (i, j) the term of distance C+i-j, i.e.
    column S-1-i+j, which sits at flat offset ``S-1 + i*(P-1) + j`` of the ``[S, P]`` block: a slice and
    two views, so backward is one zero-filled copy instead of a gather's scatter-add. Needs K < P. A key
    further right of its query than the table's furthest negative distance (C+S-P) reads a neighbouring
    row's value: such keys must be masked, which :func:`_lookahead` guarantees.
    """
    *lead, s, p = position.shape
    flat = position.reshape(*lead, s * p)  # [..., S*P]
    return flat[..., s - 1 : s - 1 + s * (p - 1)].view(*lead, s, p - 1)[..., :n_keys]  # [..., S, K]


def lm_rmt_rel_shift(position: torch.Tensor, n_keys: int) -> torch.Tensor:
    """LM-RMT's (Transformer-XL's released) ``_rel_shift``: position ``[..., S, K]`` over distances
    K-1 .. 0 (column p: distance K-1-p), zero-padded on the left and re-viewed. At (i, j) with j <= C+i
    it holds the term of distance C+i-j, as :func:`rel_shift` does; at j = C+i+1 it holds 0; further
    right, ``position[i+1, j-C-i-2]``: the next query's term at distance K+C+i+1-j."""
    *lead, s, k = position.shape
    padded = torch.cat([position.new_zeros(*lead, s, 1), position], dim=-1)  # [..., S, K+1]
    return padded.view(*lead, k + 1, s)[..., 1:, :].reshape(*lead, s, k)[..., :n_keys]  # [..., S, K]


def _lookahead(mask, s: int, c: int) -> int:
    """The furthest any query looks to the right of its own position under ``mask`` (``[..., S, C+S]``
    bool, True: may attend; None: every key), at least 1 so :func:`rel_shift` has its spare column.
    The full S-1 under ``torch.compile``, which would otherwise break the graph on ``.item()``."""
    compiling = getattr(torch.compiler, "is_compiling", lambda: False)()
    if mask is None or compiling:
        return max(s - 1, 1)
    allowed = mask.reshape(-1, *mask.shape[-2:]).any(0)  # [S, K]
    ahead = torch.arange(c + s, device=mask.device)[None] - torch.arange(s, device=mask.device)[:, None] - c
    return max(int(ahead.masked_fill(~allowed, 0).max()), 1)  # ahead[i, j] = j - (C+i)


@hookimpl
def rmtzoo_register_backbones(register):
    tiny = {"vocab_size": 13, "n_layer": 2, "n_head": 2, "d_model": 16, "d_head": 8, "d_inner": 32, "dropout": 0.0}
    register(
        BackboneSpec(
            name="transformer_xl",
            summary="the paper's Transformer-XL decoder (relative positions, tied embeddings, adaptive softmax option)",
            params=TransformerXLParams,
            build=lambda p, *, attention: TransformerXL(p, attention=attention, causal=True),
            capabilities=BackboneCapabilities(causal=True, accepts_cache=True, per_sample_mask=True),
            test_params=tiny,
        )
    )
    register(
        BackboneSpec(
            name="transformer_xl_encoder",
            summary="bidirectional Transformer-XL encoder (relative positions) for shared-memory experiments",
            params=TransformerXLParams,
            build=lambda p, *, attention: TransformerXL(p, attention=attention, causal=False),
            capabilities=BackboneCapabilities(causal=False, accepts_cache=False, per_sample_mask=True),
            test_params=tiny,
        )
    )


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
