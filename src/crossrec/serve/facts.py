"""The facts behind one recommendation, as structured data: what an explanation may say, and the
only thing it may cite (serve/explanations.py, llm/explain.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from crossrec.data.schema import item_terms
from crossrec.serve.state import ServingState


def recommendation_facts(state: ServingState, user_id: str, item_id: str, liked: int = 3) -> dict[str, Any]:
    """The facts behind recommending `item_id` to `user_id`, as structured data (the explanation
    layer turns them into sentences): shared genres and tags with the user's history, the liked
    items nearest to it in each modality, how close it is per modality, and its popularity."""
    with state.lock:
        user, item = state.user(user_id), state.item(item_id)
        history = [i for i in state.trained(user) if i != item]
        row = state.items[item]
        shared: dict[str, list[str]] = {}
        for field_name in ("genres", "tags"):
            mine = item_terms(row.get(field_name))
            counts: dict[str, int] = {}
            for other in history:
                for term in mine & item_terms(state.items[other].get(field_name)):
                    counts[term] = counts.get(term, 0) + 1
            shared[field_name] = sorted(counts, key=lambda t: (-counts[t], t))
        nearest, closeness = {}, {}
        for name, feats in state.features.items():
            if not feats.present[item] or not history:
                continue
            rows = np.array([h for h in history if feats.present[h]], dtype=np.int64)
            if not len(rows):
                continue
            target = feats.matrix[item] / max(float(np.linalg.norm(feats.matrix[item])), 1e-12)
            others = feats.matrix[rows]
            sims = others @ target / np.maximum(np.linalg.norm(others, axis=1), 1e-12)
            order = np.argsort(-sims, kind="stable")[:liked]
            nearest[name] = [
                {
                    "item_id": state.item_ids[rows[j]],
                    "title": state.items[rows[j]].get("title"),
                    "similarity": float(sims[j]),
                }
                for j in order
            ]
            closeness[name] = float(sims[order[0]])
        # Rank by popularity, ties by index (a stable sort's order), without sorting every item.
        count = state.popularity[item]
        rank = int((state.popularity > count).sum() + (state.popularity[:item] == count).sum())
        return {
            "user_id": user_id,
            "item_id": item_id,
            "title": row.get("title"),
            "score": float(state.user_vectors[user] @ state.item_vectors[item]),
            "shared": shared,
            "nearest_liked": nearest,
            "closest_modality": max(closeness, key=closeness.get) if closeness else None,
            "popularity": {
                "interactions": int(state.popularity[item]),
                "rank": rank + 1,
                "of": len(state.item_ids),
            },
        }
