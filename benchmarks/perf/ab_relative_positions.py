"""A/B of the relative-position term in one process: the gather over every signed distance that
rmtzoo used before 2026-11-27 against the skew (``rel_shift``) over only the distances the mask uses.

    python benchmarks/perf/ab_relative_positions.py --threads 2 --segments 4 --steps 5

Same model and batch as the ``cpu`` preset's ``rmtzoo/rmt`` case; the two layer forwards are swapped in
per step, interleaved (A, B, A, B, ...), with the attention kernel fixed to sdpa (``--attention``) so
only the position term differs; medians of train steps (forward + backward + Adam), fp32 and bf16.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_perf  # noqa: E402

from rmtzoo.backbones import transformer_xl as txl  # noqa: E402


def gather_forward(self, x, *, cache, pos_emb, r_w_bias, r_r_bias, mask, **_):
    """RelativeAttentionLayer.forward as it was: distances C+S-1 .. -(S-1), then a gather."""
    b, s, _ = x.shape
    h, dh = self.n_head, self.d_head
    keys_in = x if cache is None else torch.cat([cache, x], dim=1)  # [B, K, D]
    if self.pre_lnorm:
        keys_in = self.attn_norm(keys_in)
    q, k, v = self.qkv_net(keys_in).view(b, -1, 3, h, dh).unbind(2)  # 3 x [B, K, H, Dh]
    q, k, v = q[:, -s:].transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, S|K, Dh]
    c, d = k.shape[2] - s, x.shape[-1]
    inv_freq = 1.0 / (10000 ** (torch.arange(0.0, d, 2.0) / d))
    angles = torch.arange(c + s - 1, -s, -1.0)[:, None] * inv_freq[None]  # [C+2S-1, D/2]
    table = torch.cat([angles.sin(), angles.cos()], dim=-1).to(x.dtype)  # [P, D]
    r = self.r_net(table).view(-1, h, dh)  # [P, H, Dh]
    scale = dh**-0.5
    position = torch.einsum("bhqd,phd->bhqp", q + r_r_bias[:, None], r)  # [B, H, S, P]
    index = (s - 1 - torch.arange(s)[:, None] + torch.arange(c + s)[None])[None, None]  # [1, 1, S, K]
    bias = position.gather(-1, index.expand(b, h, -1, -1)) * scale  # [B, H, S, K]
    dropout_p = self.dropatt if self.training else 0.0
    out = self.attention(q + r_w_bias[:, None], k, v, bias=bias, mask=mask, dropout_p=dropout_p, scale=scale)
    out = self.drop(self.o_net(out.transpose(1, 2).reshape(b, s, h * dh)))  # [B, S, D]
    if self.pre_lnorm:
        x = x + out
        return x + self.ff(self.ff_norm(x))
    x = self.attn_norm(x + out)
    return self.ff_norm(x + self.ff(x))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--attention", default="sdpa")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    skew_forward = txl.RelativeAttentionLayer.forward
    forwards = {"gather": gather_forward, "skew": skew_forward}
    for prec in ("fp32", "bf16"):
        case = replace(
            run_perf.Case(impl="rmtzoo", segments=args.segments), precision=prec, attention=args.attention
        )
        runners = {name: run_perf.Runner(case) for name in forwards}
        times: dict[str, list[float]] = {name: [] for name in forwards}
        for rep in range(args.steps + 1):  # the first round is warm-up
            for name, forward in forwards.items():
                txl.RelativeAttentionLayer.forward = forward
                dt = runners[name].train_step()
                if rep:
                    times[name].append(dt)
        txl.RelativeAttentionLayer.forward = skew_forward
        med = {name: statistics.median(t) for name, t in times.items()}
        print(
            f"{prec} [{args.attention}]: gather {case.tokens / med['gather']:.0f} tok/s, skew "
            f"{case.tokens / med['skew']:.0f} tok/s, skew / gather {med['gather'] / med['skew']:.2f}x",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
