"""Fine stage of the recommendation funnel: SASRec (Kang & McAuley, ICDM 2018), causal self-attention
over a user's item sequence, scoring the coarse stage's top candidates and, for evaluation, the whole
catalogue.

Why full softmax: the original SASRec trains with one sampled negative per position; trained instead
with cross-entropy over every item (Klenitskiy & Vasilev, RecSys 2023, "gSASRec"/"SASRec+" line of
work) it is much stronger, and with ML-100K's 1,682 items the full softmax is cheap on a CPU. Every
position of every train sequence is a training example (predict item t+1 from items 1..t). Input and
output item embeddings are shared, positions are learned, sequences are left-padded so the latest item
sits at the last position.

Files: ``save`` writes a checkpoint folder through `training.save_checkpoint` (``model.safetensors``
+ ``config.json`` with kind ``"sasrec"``, the `SASRecConfig` and the fit report).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .metrics import ndcg_at_k
from .split import SplitView, rank_full
from .training import (FitReport, fit_epochs, left_pad, load_checkpoint, report_from, resolve_device,
                       save_checkpoint)

KIND = "sasrec"


@dataclass(frozen=True)
class SASRecConfig:
    n_items: int
    max_len: int = 50           # longer users are cut into several windows (`training_windows`), so no
                                # item is lost; 50 keeps an epoch of ML-100K to seconds on 2 CPU cores
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 1
    dropout: float = 0.3        # ML-100K is small: without strong dropout SASRec overfits
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 100
    patience: int = 5           # evaluations without a better dev NDCG@10
    eval_every: int = 2
    time_budget_s: float | None = None
    seed: int = 0


class CausalBlock(nn.Module):
    """Pre-norm transformer block whose attention sees only earlier (and its own) positions."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)
        self.p_attn = dropout

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape                                   # (batch, seq, dim)
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (t.view(b, l, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.p_attn if self.training else 0.0)  # (b, heads, l, d/h)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, l, d)))
        return x + self.drop(self.ff(self.ln2(x)))


class SASRecModule(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(CausalBlock(cfg.dim, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers))
        self.ln = nn.LayerNorm(cfg.dim)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(batch, L) item indices, left-padded -> (batch, L, dim) states; state t predicts item t+1."""
        b, l = seq.shape
        pos = torch.arange(l, device=seq.device)
        x = self.item_emb(seq) * math.sqrt(self.item_emb.embedding_dim) + self.pos_emb(pos)[None]
        x = self.drop(x) * (seq > 0).unsqueeze(-1)
        causal = torch.ones(l, l, dtype=torch.bool, device=seq.device).tril()
        # keys must be real items; a position may always see itself, so no row is fully masked (NaN)
        allowed = (causal[None] & (seq > 0)[:, None, :]) | torch.eye(l, dtype=torch.bool, device=seq.device)[None]
        allowed = allowed[:, None]                          # (batch, 1, L, L)
        for blk in self.blocks:
            x = blk(x, allowed)
        return self.ln(x)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., n_items + 1) scores over the shared item embeddings."""
        return states @ self.item_emb.weight.T


def training_windows(sequences: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut each sequence into windows of max_len + 1 items from its end (stride max_len), so long users
    contribute all their items; -> (inputs, labels), both (n_windows, max_len) int64, left-padded,
    labels[t] = the item after inputs[t]."""
    inputs, labels = [], []
    for s in sequences:
        end = len(s)
        while end >= 2:
            w = s[max(0, end - max_len - 1):end]
            inputs.append(w[:-1])
            labels.append(w[1:])
            end -= max_len
    return left_pad(inputs, max_len), left_pad(labels, max_len)


class SASRec:
    """Train, score and save a SASRec model. ``device="auto"`` uses CUDA when present, else CPU."""

    def __init__(self, config: SASRecConfig, device: str = "auto"):
        self.config = config
        self.device = resolve_device(device)
        torch.manual_seed(config.seed)
        self.module = SASRecModule(config).to(self.device)
        self.report: FitReport | None = None

    def fit(self, sequences: list[np.ndarray], dev: SplitView | None = None,
            max_epochs: int | None = None) -> FitReport:
        """Train on every position of ``sequences`` (the train part of each user), early-stopping on
        NDCG@10 of ``dev`` (full ranking). Without ``dev``, run ``max_epochs`` (default: the config's)."""
        cfg = self.config
        inputs, labels = training_windows(sequences, cfg.max_len)
        if len(inputs) == 0:
            raise ValueError("SASRec.fit: no sequence has 2 or more items to learn from")
        x_all = torch.from_numpy(inputs)
        y_all = torch.from_numpy(labels)
        opt = torch.optim.AdamW(self.module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)

        def train_epoch(epoch: int) -> float:
            order = torch.randperm(len(x_all), generator=gen)
            total, n = 0.0, 0
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                x, y = x_all[idx].to(self.device), y_all[idx].to(self.device)
                states = self.module(x)                     # (b, L, dim)
                keep = y > 0
                logits = self.module.logits(states[keep])   # (n_labels, n_items + 1)
                logits[:, 0] = float("-inf")
                loss = F.cross_entropy(logits, y[keep])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * int(keep.sum())
                n += int(keep.sum())
            return total / max(n, 1)

        def dev_ndcg() -> float:
            topk = rank_full(self.score(dev.histories), dev.histories, 10)
            return ndcg_at_k(topk, dev.targets, 10)

        self.report = fit_epochs(self.module, train_epoch, dev_ndcg if dev is not None else None, max_epochs or cfg.max_epochs,
                                 patience=cfg.patience, eval_every=cfg.eval_every if dev is not None else 1,
                                 time_budget_s=cfg.time_budget_s)
        return self.report

    @torch.inference_mode()
    def user_states(self, histories: list[np.ndarray], batch_size: int = 256) -> torch.Tensor:
        """(n, dim) state after each history's last item."""
        self.module.eval()
        seq = torch.from_numpy(left_pad(histories, self.config.max_len))
        out = [self.module(seq[s:s + batch_size].to(self.device))[:, -1] for s in range(0, len(seq), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, self.config.dim, device=self.device)

    @torch.inference_mode()
    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        """(n, n_items + 1) float32 scores of every item (column 0 is padding; mask it and seen items)."""
        return self.module.logits(self.user_states(histories)).float().cpu().numpy()

    @torch.inference_mode()
    def score_candidates(self, histories: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
        """Scores of given items only: candidates (n, c) item indices -> (n, c) float32. This is the fine
        stage's call on the coarse top-k; it reads c embeddings per user instead of the catalogue."""
        states = self.user_states(histories)                             # (n, dim)
        cand = torch.as_tensor(np.asarray(candidates), device=self.device)
        emb = self.module.item_emb(cand)                                 # (n, c, dim)
        return torch.einsum("nd,ncd->nc", states, emb).float().cpu().numpy()

    def save(self, out_dir: str | Path) -> Path:
        return save_checkpoint(out_dir, self.module, KIND, asdict(self.config), self.report)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "SASRec":
        state, meta = load_checkpoint(path, KIND)
        model = cls(SASRecConfig(**meta["config"]), device=device)
        model.module.load_state_dict(state)
        model.module.eval()
        model.report = report_from(meta)
        return model
