"""Is the associative-retrieval plateau rmtzoo's or the task's? A plain PyTorch causal transformer
(2 pre-LN layers, d_model 64, learned absolute positions) on the same generated data (50k samples).
Run from the repo root: OMP_NUM_THREADS=1 python benchmarks/reports/small/ar_vanilla_check.py [LR]
Measured 2026-11-27: validation accuracy 0.24-0.28 at every 1,000 steps through 8,000 (chance 0.1; 0.25
is "one of the 4 values in the context")."""

import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import rmtzoo
from rmtzoo.train import build_task

torch.manual_seed(0)
torch.set_num_threads(1)
config = rmtzoo.load_config({
    "task": {"kind": "associative_retrieval", "segmenting": "lm_rmt_chunk", "train_size": 50000,
             "valid_size": 1000, "test_size": 1000},
    "backbone": {"kind": "transformer_xl", "vocab_size": 37},
    "segment": {"length": 10},
})
task = build_task(config, rmtzoo.Registry())
X, Y = task.tensors("train")
Xv, Yv = task.tensors("valid")
print(X.shape, X[0].tolist(), Y[0].tolist())


class Plain(nn.Module):
    """Token + learned absolute position embeddings, a causal pre-LN nn.TransformerEncoder, a linear head."""

    def __init__(self, vocab=37, d=64, layers=2, length=10):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(length, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, 4, 128, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(d, vocab)
        self.register_buffer("mask", torch.triu(torch.full((length, length), float("-inf")), 1))

    def forward(self, x):  # x [B, T] -> logits [B, T, V]
        return self.out(self.enc(self.emb(x) + self.pos[: x.shape[1]], mask=self.mask))


model = Plain()
opt = torch.optim.Adam(model.parameters(), lr=float(sys.argv[1]) if len(sys.argv) > 1 else 1e-3)
for step in range(1, 8001):
    idx = torch.randint(0, len(X), (64,))
    loss = F.cross_entropy(model(X[idx]).flatten(0, 1), Y[idx].flatten(), ignore_index=-100)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 1000 == 0:
        with torch.no_grad():
            pred, answer = model(Xv).argmax(-1), Yv != -100
            print(step, round(loss.item(), 3), round((pred[answer] == Yv[answer]).float().mean().item(), 3), flush=True)
