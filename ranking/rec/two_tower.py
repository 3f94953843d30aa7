"""Recall route of the recommendation funnel: a two-tower model whose user vector is matched against
every item vector by one dot product, so recall over the catalogue is a single matrix product (and an
ANN index later, for catalogues larger than MovieLens').

Towers:
- item tower: item-id embedding + a projection of the genre multi-hot + (optional) a projection of a
  fixed text embedding of the title (e.g. MiniLM, passed as an ``(n_items + 1, d)`` array). The content
  parts let rarely-seen items borrow from similar ones;
- user tower: attention pooling over the item-tower vectors of the history (recent items carry a
  learned recency embedding), queried by the user's features (age bucket, gender, occupation), then an
  MLP over [pooled history, user features].

Training: every prefix of a train sequence predicts its next item. InfoNCE over in-batch negatives
with the logQ correction (Yi et al., RecSys 2019): in-batch negatives are drawn in proportion to item
popularity, which would teach the model to push popular items down; subtracting log q_j (q_j = the
item's share of training targets) from the logits undoes that sampling bias. Same-item collisions in a
batch are masked, not counted as negatives.

Files: ``save`` writes a checkpoint folder through `training.save_checkpoint` (``model.safetensors``
with the weights and the fixed buffers: genre multi-hot, title embeddings, per-user feature codes, log q;
``config.json`` with kind ``"two_tower"``, the `TwoTowerConfig` and the feature vocabularies).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .metrics import recall_at_k
from .split import RecDataset, SplitView, rank_full
from .training import (FitReport, fit_epochs, left_pad, load_checkpoint, report_from, resolve_device,
                       save_checkpoint)

KIND = "two_tower"
AGE_BUCKETS = [18, 25, 35, 45, 50, 56]  # MovieLens-1M's age groups; bucket 0 = unknown


@dataclass(frozen=True)
class TwoTowerConfig:
    n_items: int
    n_genres: int
    n_users: int
    text_dim: int = 0               # 0 = no title embeddings
    dim: int = 64
    max_len: int = 50               # history items the user tower reads
    temperature: float = 0.07
    dropout: float = 0.1
    lr: float = 2e-3
    weight_decay: float = 1e-5
    batch_size: int = 512
    max_epochs: int = 12            # dev recall flattens after ~10 epochs on ML-100K
    patience: int = 3
    eval_every: int = 1
    eval_k: int = 100               # early stopping on dev Recall@eval_k: the route feeds a top-200
    time_budget_s: float | None = None
    seed: int = 0
    genders: list[str] = field(default_factory=list)      # vocabularies; code 0 = unknown
    occupations: list[str] = field(default_factory=list)


def age_bucket(age: np.ndarray) -> np.ndarray:
    """Ages -> bucket codes 1..7 (0 when unknown/nan)."""
    age = np.asarray(age, np.float64)
    return np.where(np.isnan(age), 0, np.searchsorted(AGE_BUCKETS, np.nan_to_num(age), side="right") + 1)


def user_codes(ds: RecDataset, genders: list[str], occupations: list[str]) -> np.ndarray:
    """(n_users, 3) int64 codes: age bucket, gender, occupation (0 = unknown or unseen value)."""
    g = {v: i + 1 for i, v in enumerate(genders)}
    o = {v: i + 1 for i, v in enumerate(occupations)}
    return np.stack([age_bucket(ds.user_age), [g.get(v, 0) for v in ds.user_gender],
                     [o.get(v, 0) for v in ds.user_occupation]], axis=1).astype(np.int64)


class TwoTowerModule(nn.Module):
    def __init__(self, cfg: TwoTowerConfig):
        super().__init__()
        d = cfg.dim
        self.item_id = nn.Embedding(cfg.n_items + 1, d, padding_idx=0)
        self.genre_proj = nn.Linear(max(cfg.n_genres, 1), d, bias=False)
        self.text_proj = nn.Linear(cfg.text_dim, d, bias=False) if cfg.text_dim else None
        self.item_ln = nn.LayerNorm(d)
        self.recency = nn.Embedding(cfg.max_len, d)
        self.age = nn.Embedding(len(AGE_BUCKETS) + 2, d)
        self.gender = nn.Embedding(len(cfg.genders) + 1, d)
        self.occupation = nn.Embedding(len(cfg.occupations) + 1, d)
        self.key = nn.Linear(d, d, bias=False)
        self.query = nn.Parameter(torch.zeros(d))
        self.user_mlp = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(cfg.dropout)
        self.temperature = cfg.temperature
        # fixed inputs, saved with the weights so a checkpoint is self-contained
        self.register_buffer("genres", torch.zeros(cfg.n_items + 1, max(cfg.n_genres, 1)))
        self.register_buffer("titles", torch.zeros(cfg.n_items + 1, cfg.text_dim) if cfg.text_dim else None)
        self.register_buffer("user_codes", torch.zeros(cfg.n_users, 3, dtype=torch.long))
        self.register_buffer("log_q", torch.zeros(cfg.n_items + 1))
        nn.init.normal_(self.item_id.weight, std=0.02)

    def items(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Item vectors, L2-normalised: (..., dim) for the given indices, or (n_items + 1, dim) for all."""
        if idx is None:
            idx = torch.arange(self.item_id.num_embeddings, device=self.genres.device)
        v = self.item_id(idx) + self.genre_proj(self.genres[idx])
        if self.text_proj is not None:
            v = v + self.text_proj(self.titles[idx])
        return F.normalize(self.item_ln(v), dim=-1)

    def users(self, hist: torch.Tensor, codes: torch.Tensor, item_table: torch.Tensor | None = None) -> torch.Tensor:
        """hist (batch, L) left-padded item indices, codes (batch, 3) -> (batch, dim) L2-normalised.

        item_table: `items()` computed once for the batch; gathering from it is far cheaper than running
        the item tower on batch x L history items."""
        b, l = hist.shape
        if item_table is None:
            item_table = self.items()
        h = self.drop(item_table[hist] + self.recency(torch.arange(l - 1, -1, -1, device=hist.device))[None])  # (b, L, d)
        feats = self.age(codes[:, 0]) + self.gender(codes[:, 1]) + self.occupation(codes[:, 2])               # (b, d)
        att = (self.key(h) @ (self.query + feats).unsqueeze(-1)).squeeze(-1) / h.shape[-1] ** 0.5           # (b, L)
        att = att.masked_fill(hist == 0, float("-inf"))
        w = torch.nan_to_num(att.softmax(dim=1))  # an empty history gives all -inf: weight 0, features only
        pooled = (w.unsqueeze(-1) * h).sum(1)                                                                # (b, d)
        return F.normalize(self.user_mlp(torch.cat([pooled, feats], dim=1)), dim=-1)


def prefix_examples(sequences: list[np.ndarray], users: np.ndarray, max_len: int):
    """Every (user, history prefix, next item) of the sequences -> (user idx (n,), histories (n, max_len)
    left-padded, targets (n,))."""
    us, hs, ts = [], [], []
    for u, s in zip(users, sequences):
        for t in range(1, len(s)):
            us.append(u)
            hs.append(s[max(0, t - max_len):t])
            ts.append(s[t])
    return np.array(us, np.int64), left_pad(hs, max_len), np.array(ts, np.int64)


class TwoTower:
    """Train, score and save the two-tower recall model."""

    def __init__(self, config: TwoTowerConfig, device: str = "auto"):
        self.config = config
        self.device = resolve_device(device)
        torch.manual_seed(config.seed)
        self.module = TwoTowerModule(config).to(self.device)
        self.report: FitReport | None = None

    @classmethod
    def from_dataset(cls, ds: RecDataset, title_embeddings: np.ndarray | None = None, device: str = "auto",
                     **overrides) -> "TwoTower":
        """Build an untrained model whose fixed inputs (genres, titles, user features) come from ``ds``.

        title_embeddings: optional (n_items + 1, d) float array aligned with ``ds.item_ids`` (row 0 padding)."""
        if title_embeddings is not None and title_embeddings.shape[0] != ds.n_items + 1:
            raise ValueError(f"title_embeddings has {title_embeddings.shape[0]} rows, expected n_items + 1 = "
                             f"{ds.n_items + 1} (row 0 is padding, rows follow ds.item_ids)")
        genders = sorted({g for g in ds.user_gender if g})
        occupations = sorted({o for o in ds.user_occupation if o})
        cfg = TwoTowerConfig(n_items=ds.n_items, n_genres=len(ds.genre_names), n_users=ds.n_users,
                             text_dim=0 if title_embeddings is None else int(title_embeddings.shape[1]),
                             genders=genders, occupations=occupations, **overrides)
        model = cls(cfg, device=device)
        m = model.module
        with torch.no_grad():
            if ds.item_genres.shape[1]:
                m.genres.copy_(torch.as_tensor(ds.item_genres, dtype=torch.float32))
            if title_embeddings is not None:
                m.titles.copy_(torch.as_tensor(np.asarray(title_embeddings, np.float32)))
            m.user_codes.copy_(torch.as_tensor(user_codes(ds, genders, occupations)))
        return model

    def fit(self, sequences: list[np.ndarray], dev: SplitView | None = None,
            max_epochs: int | None = None) -> FitReport:
        """Train on every prefix of ``sequences`` (one per user, index = user index), early-stopping on
        dev Recall@eval_k (full ranking); without ``dev``, run ``max_epochs`` epochs."""
        cfg, m = self.config, self.module
        users, hist, targets = prefix_examples(sequences, np.arange(len(sequences)), cfg.max_len)
        if len(targets) == 0:
            raise ValueError("TwoTower.fit: no sequence has 2 or more items to learn from")
        q = np.bincount(targets, minlength=cfg.n_items + 1).astype(np.float64) + 1.0
        with torch.no_grad():
            m.log_q.copy_(torch.as_tensor(np.log(q / q.sum()), dtype=torch.float32))
        u_all, h_all, t_all = (torch.from_numpy(a) for a in (users, hist, targets))
        opt = torch.optim.AdamW(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)

        def train_epoch(epoch: int) -> float:
            order = torch.randperm(len(t_all), generator=gen)
            total, n = 0.0, 0
            for s in range(0, len(order), cfg.batch_size):
                idx = order[s:s + cfg.batch_size]
                u, h, t = u_all[idx].to(self.device), h_all[idx].to(self.device), t_all[idx].to(self.device)
                table = m.items()                                             # (n_items + 1, d)
                uv = m.users(h, m.user_codes[u], table)                       # (b, d)
                iv = table[t]                                                 # (b, d)
                logits = uv @ iv.T / m.temperature - m.log_q[t][None, :]      # (b, b) logQ-corrected
                clash = (t[:, None] == t[None, :]) & ~torch.eye(len(t), dtype=torch.bool, device=t.device)
                loss = F.cross_entropy(logits.masked_fill(clash, float("-inf")),
                                       torch.arange(len(t), device=t.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(t)
                n += len(t)
            return total / n

        def dev_recall() -> float:
            topk = rank_full(self.score(dev.histories, dev.users), dev.histories, cfg.eval_k)
            return recall_at_k(topk, dev.targets, cfg.eval_k)

        self.report = fit_epochs(m, train_epoch, dev_recall if dev is not None else None, max_epochs or cfg.max_epochs, patience=cfg.patience,
                                 eval_every=cfg.eval_every, time_budget_s=cfg.time_budget_s)
        return self.report

    @torch.inference_mode()
    def user_vectors(self, histories: list[np.ndarray], users: np.ndarray | None = None) -> torch.Tensor:
        """(n, dim); ``users`` are dataset user indices (their features), None = features unknown; an index
        of -1 (a cold-start user the fit never saw) reads as unknown features too."""
        self.module.eval()
        hist = torch.from_numpy(left_pad(histories, self.config.max_len)).to(self.device)
        codes = torch.zeros(len(histories), 3, dtype=torch.long, device=self.device)  # code 0 = unknown
        if users is not None:
            u = torch.as_tensor(np.asarray(users, np.int64), device=self.device)
            known = u >= 0
            codes[known] = self.module.user_codes[u[known]]
        table = self.module.items()
        return torch.cat([self.module.users(hist[s:s + 1024], codes[s:s + 1024], table)
                          for s in range(0, len(hist), 1024)]) if len(hist) else torch.zeros(0, self.config.dim, device=self.device)

    @torch.inference_mode()
    def item_vectors(self) -> np.ndarray:
        """(n_items + 1, dim) float32: what an ANN index of the catalogue would hold."""
        self.module.eval()
        return self.module.items().float().cpu().numpy()

    @torch.inference_mode()
    def score(self, histories: list[np.ndarray], users: np.ndarray | None = None) -> np.ndarray:
        """(n, n_items + 1) float32 cosine scores of every item (column 0 padding)."""
        return (self.user_vectors(histories, users) @ self.module.items().T).float().cpu().numpy()

    def save(self, out_dir: str | Path) -> Path:
        return save_checkpoint(out_dir, self.module, KIND, asdict(self.config), self.report)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "TwoTower":
        state, meta = load_checkpoint(path, KIND)
        model = cls(TwoTowerConfig(**meta["config"]), device=device)
        model.module.load_state_dict(state)
        model.module.eval()
        model.report = report_from(meta)
        return model
