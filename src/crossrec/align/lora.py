"""LoRA fine-tuning of the MiniLM text encoder on the catalog's co-interaction pairs.

Frozen sentence vectors place items by what their text says; users place them by what they consume
together. A low-rank adapter (peft LoRA on the attention projections) pulls the texts of items consumed
by the same users together with a symmetric InfoNCE loss, so that items with no interactions at all
(cold items) land near the warm items their audience consumes: it aligns the text encoder with
behaviour. Only the adapter trains: the base weights stay frozen and pinned, and the adapter is a small
artifact (a few hundred KB, format in `crossrec.encoders.adapter`) that `MiniLMEncoder(..., adapter=dir)`
merges back into the network, with its digest in the encoder fingerprint so tuned and frozen vectors
never share a cache entry.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from crossrec.data.schema import Interactions
from crossrec.encoders.adapter import seal_adapter
from crossrec.encoders.registry import ResolvedModel, resolve
from crossrec.encoders.text import load_sentence_transformer
from crossrec.errors import ConfigError
from crossrec.training import EarlyStopping

_BLOCK_CELLS = 1 << 22  # dense co-occurrence cells per block (16 MB of float32)


class ItemPairs(NamedTuple):
    """Unordered item pairs (left < right) with their co-occurrence score, highest-scoring first."""

    left: np.ndarray
    right: np.ndarray
    score: np.ndarray


def co_interaction_pairs(
    train: Interactions,
    max_pairs: int = 4000,
    min_count: int = 2,
    per_item: int = 5,
    seed: int = 0,
    shrink: float = 10.0,
) -> ItemPairs:
    """Pairs of items consumed by the same users: each item's `per_item` best neighbours by shrunk cosine
    of their user sets, co-count / (sqrt(count_i * count_j) + shrink), keeping co-counts >= `min_count`.
    The cosine keeps blockbusters, which co-occur with everything, from taking every pair; the shrink
    keeps two obscure items rated by the same two users from outranking well-supported pairs. When more
    remain than `max_pairs`, a seeded uniform sample is kept, so the pairs cover the catalog rather than
    only its most-coupled corner.

    Pass training interactions only: pairs built on validation or test would leak the held-out items.
    The item x item matrix is built block by block (top-k per row), never as a dense N x N matrix.
    """
    if min_count < 1 or per_item < 1 or max_pairs < 1 or shrink < 0:
        raise ConfigError("min_count, per_item and max_pairs must be >= 1 and shrink >= 0")
    users_items = train.to_csr().tocsc()  # binary user x item
    items_users = users_items.T.tocsr()
    counts = np.asarray(users_items.sum(axis=0)).ravel()
    norms = np.sqrt(np.maximum(counts, 1.0))
    block = max(1, _BLOCK_CELLS // max(train.n_items, 1))
    k = min(per_item, train.n_items)
    lefts, rights, scores = [], [], []
    for start in range(0, train.n_items, block):
        rows = np.arange(start, min(start + block, train.n_items))
        co = np.asarray((items_users[rows] @ users_items).todense(), dtype=np.float32)
        co[np.arange(len(rows)), rows] = 0.0  # an item is not its own pair
        cosine = np.where(co >= min_count, co / (norms[rows, None] * norms[None, :] + shrink), 0.0)
        top = np.argpartition(-cosine, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(cosine, top, axis=1)
        keep = best > 0
        lefts.append(np.repeat(rows, keep.sum(axis=1)))
        rights.append(top[keep])
        scores.append(best[keep])
    left, right, score = (np.concatenate(parts) for parts in (lefts, rights, scores))
    low, high = np.minimum(left, right), np.maximum(left, right)
    # A pair found from both ends counts once (cosine is symmetric, so either copy's score will do).
    _, first = np.unique(low * train.n_items + high, return_index=True)
    left, right, score = low[first], high[first], score[first]
    if len(left) > max_pairs:
        chosen = np.random.default_rng(seed).choice(len(left), max_pairs, replace=False)
        left, right, score = left[chosen], right[chosen], score[chosen]
    order = np.lexsort((right, left, -score))
    return ItemPairs(left[order], right[order], score[order].astype(np.float32))


class LoraTextTuner:
    """Trains a LoRA adapter on MiniLM so that texts of co-consumed items embed close together.

    Vectors are computed as the frozen encoder computes them (mean pooling over word pieces, unit
    length); the loss is symmetric InfoNCE with the other pairs of a batch as negatives (a batch's
    duplicates of the same item are masked, not counted as negatives). Training truncates texts to
    `max_length` word pieces to stay cheap on a CPU; encoding later uses the encoder's own length.
    """

    def __init__(
        self,
        *,
        r: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.1,
        target_modules: Sequence[str] = ("query", "value"),
        lr: float = 5e-4,
        epochs: int = 1,
        batch_size: int = 32,
        temperature: float = 0.05,
        max_length: int = 128,
        seed: int = 0,
        model: ResolvedModel | None = None,
    ) -> None:
        from peft import LoraConfig, get_peft_model

        if batch_size < 2:
            raise ConfigError("batch_size must be >= 2: the other pairs of a batch are the negatives")
        self.params: dict[str, Any] = {
            "r": r,
            "alpha": alpha,
            "dropout": dropout,
            "target_modules": list(target_modules),
            "lr": lr,
            "epochs": epochs,
            "batch_size": batch_size,
            "temperature": temperature,
            "max_length": max_length,
            "seed": seed,
        }
        self.model = model or resolve("all-MiniLM-L6-v2")
        torch.manual_seed(seed)  # LoRA's A matrices are initialised randomly
        st = load_sentence_transformer(self.model)
        self.tokenizer = st.tokenizer
        config = LoraConfig(
            r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules), bias="none"
        )
        self.network = get_peft_model(st[0].auto_model, config)
        self.history: dict[str, list[float]] = {"step_loss": [], "epoch_loss": []}
        self.train_seconds = 0.0
        self.n_pairs = 0
        self.best_epoch: int | None = None

    def fit(
        self,
        texts: Sequence[str | None],
        pairs: ItemPairs,
        *,
        progress: bool = False,
        validate: Callable[[int, LoraTextTuner], float] | None = None,
        patience: int | None = None,
    ) -> dict[str, list[float]]:
        """Train on `pairs` of item indices into `texts` (pairs with an empty text are dropped).

        `validate(epoch, self)` scores the adapter after each epoch (higher is better; e.g. cold-item
        recall on validation): training stops after `patience` epochs without a better score (default:
        never before `epochs`) and the best epoch's adapter weights are restored (`best_epoch`)."""
        has_text = np.array([bool(t) for t in texts])
        keep = has_text[pairs.left] & has_text[pairs.right]
        left, right = pairs.left[keep], pairs.right[keep]
        if len(left) < 2:
            raise ConfigError(f"need at least 2 pairs with text to train on, got {len(left)}")
        self.n_pairs = len(left)
        size = self.params["batch_size"]
        optimiser = torch.optim.AdamW(
            [p for p in self.network.parameters() if p.requires_grad], self.params["lr"]
        )
        rng = np.random.default_rng(self.params["seed"])
        n_batches = -(-len(left) // size)
        trainable = {n: p for n, p in self.network.named_parameters() if p.requires_grad}
        stopping: EarlyStopping[dict[str, torch.Tensor]] = EarlyStopping(patience or self.params["epochs"])
        with _progress(progress) as bar:
            task = bar.add_task("LoRA", total=n_batches * self.params["epochs"]) if bar else None
            for epoch in range(1, self.params["epochs"] + 1):
                started = time.perf_counter()
                self.network.train()
                order = rng.permutation(len(left))
                losses = []
                for start in range(0, len(order), size):
                    rows = order[start : start + size]
                    if len(rows) < 2:
                        continue
                    a, b = left[rows], right[rows]
                    loss = self._loss([texts[i] for i in a], [texts[i] for i in b], a, b)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    losses.append(loss.item())
                    if bar is not None and task is not None:
                        bar.update(task, advance=1, description=f"LoRA epoch {epoch} loss {losses[-1]:.3f}")
                self.train_seconds += time.perf_counter() - started
                self.history["step_loss"].extend(losses)
                self.history["epoch_loss"].append(float(np.mean(losses)))
                if validate is not None:
                    score = validate(epoch, self)
                    self.history.setdefault("valid", []).append(score)
                    stopping.update(
                        score, epoch, lambda: {n: p.detach().clone() for n, p in trainable.items()}
                    )
                    if stopping.should_stop:
                        break
        if stopping.best_state is not None:
            with torch.no_grad():
                for name, value in stopping.best_state.items():
                    trainable[name].copy_(value)
        self.best_epoch = stopping.best_step
        self.network.eval()
        return self.history

    def _loss(
        self, a_texts: list[str], b_texts: list[str], a_items: np.ndarray, b_items: np.ndarray
    ) -> torch.Tensor:
        a, b = self._embed(a_texts), self._embed(b_texts)
        logits = a @ b.T / self.params["temperature"]
        a_ids, b_ids = torch.as_tensor(a_items), torch.as_tensor(b_items)
        off = ~torch.eye(len(a_ids), dtype=torch.bool)
        # Another pair's text that is the same item as this anchor's positive (or the anchor itself) is
        # not a negative.
        to_b = off & ((b_ids[None, :] == b_ids[:, None]) | (b_ids[None, :] == a_ids[:, None]))
        to_a = off & ((a_ids[None, :] == a_ids[:, None]) | (a_ids[None, :] == b_ids[:, None]))
        target = torch.arange(len(a_ids))
        forward = torch.nn.functional.cross_entropy(logits.masked_fill(to_b, -torch.inf), target)
        backward = torch.nn.functional.cross_entropy(logits.T.masked_fill(to_a, -torch.inf), target)
        return (forward + backward) / 2

    def _embed(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.params["max_length"], return_tensors="pt"
        )
        hidden = self.network(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        weights = batch["attention_mask"].unsqueeze(-1).to(hidden.last_hidden_state.dtype)
        pooled = (hidden.last_hidden_state * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=1)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Tuned vectors straight from the unmerged network, truncated at `max_length` (for checks;
        encode a catalog through `MiniLMEncoder(..., adapter=dir)`)."""
        self.network.eval()
        parts = [self._embed(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
        return torch.cat(parts).numpy().astype(np.float32)

    def save(self, directory: str | Path) -> Path:
        """Write the adapter and its manifest (training params, base model, file sha256s) into a temp
        folder beside `directory`, then rename it into place: a crash leaves the old adapter or none."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the adapter is a shareable artifact
        old = tmp.with_name(tmp.name.replace(".tmp", ".old"))
        try:
            self.network.save_pretrained(str(tmp))
            facts = {
                "params": self.params,
                "pairs": self.n_pairs,
                "epoch_loss": self.history["epoch_loss"],
                "train_seconds": round(self.train_seconds, 1),
            }
            seal_adapter(tmp, self.model, facts)
            if directory.exists():
                os.replace(directory, old)
            os.replace(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        return directory


def _progress(enabled: bool) -> Any:
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    )
