"""Uniform negative sampling that never returns a user's training positive, vectorised over a batch."""

from __future__ import annotations

import numpy as np

from crossrec.data.schema import Interactions


class NegativeSampler:
    """Draws items uniformly and redraws the ones that are positives of their user.

    Positives are kept as sorted `user * n_items + item` keys, so membership is one `searchsorted`
    over the whole batch; only the (few) rejected draws are redrawn, never per user in Python.
    """

    def __init__(self, train: Interactions) -> None:
        self.n_items = train.n_items
        self._keys = np.unique(train.user * train.n_items + train.item)
        per_user = np.bincount(self._keys // train.n_items, minlength=train.n_users)
        self._full_users = np.flatnonzero(per_user >= train.n_items)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        pos = np.searchsorted(self._keys, keys)
        pos[pos == len(self._keys)] = 0
        return self._keys[pos] == keys if len(self._keys) else np.zeros(len(keys), dtype=bool)

    def sample(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One negative item per entry of `users`."""
        users = np.asarray(users, dtype=np.int64)
        if len(self._full_users) and np.isin(users, self._full_users).any():
            raise ValueError("cannot sample a negative for a user who interacted with every item")
        items = rng.integers(0, self.n_items, size=len(users))
        todo = np.arange(len(users))
        while len(todo):
            todo = todo[self.is_positive(users[todo], items[todo])]
            items[todo] = rng.integers(0, self.n_items, size=len(todo))
        return items
