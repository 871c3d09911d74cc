"""LightGCN with user features (embedded profiles): the feature reaches the scores and survives saving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossrec.errors import ConfigError
from crossrec.eval.ranking import evaluator_for
from crossrec.models import MODELS, build_model
from crossrec.models.base import Recommender


def _features(n_users: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n_users, 24)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _fit(split, features, **params):
    params = {"embedding_dim": 16, "n_layers": 2, "lr": 0.01, "epochs": 4, "seed": 0, **params}
    return build_model("lightgcn-profile", **params).fit(split.train, user_features=features)


def test_only_the_profiled_model_declares_user_features():
    assert {n for n, cls in MODELS.items() if cls.uses_user_features} == {"lightgcn-profile"}


def test_scores_follow_the_user_features(tiktok_slice):
    features = _features(tiktok_slice.n_users)
    model = _fit(tiktok_slice, features, profile_weight=1.0, align_weight=0.0)
    users = np.arange(5)
    before = model.score(users).clone()
    changed = features.copy()
    changed[0] = _features(1, seed=7)[0]
    model.set_user_features(changed)
    after = model.score(users)
    assert not torch.allclose(after[0], before[0], atol=1e-6)  # the changed profile moved its user
    model.set_user_features(features)
    torch.testing.assert_close(model.score(users), before)
    # A weight of 0 ignores the profile: the same user scores whatever its row says.
    off = _fit(tiktok_slice, features, profile_weight=0.0, align_weight=0.0)
    first = off.score(users).clone()
    off.set_user_features(changed)
    torch.testing.assert_close(off.score(users), first)


def test_profile_vectors_are_the_embedding_of_a_user_without_interactions(tiktok_slice):
    split = tiktok_slice
    features = _features(split.n_users)
    model = _fit(split, features)
    user = 3
    without = split.train.select(split.train.user != user)
    lonely = build_model(
        "lightgcn-profile", embedding_dim=16, n_layers=2, lr=0.01, epochs=4, seed=0, profile_weight=1.0
    )
    lonely.fit(without, user_features=features)
    ids = lonely._ids().user.detach()[user] / 3  # its id vector is never trained: only the init is there
    expected = lonely.profile_vectors(features[user : user + 1])[0] + ids.numpy()
    np.testing.assert_allclose(lonely.user_vectors()[user], expected, atol=1e-5)
    aligned = model.profile_vectors(features[:4])  # aligned only: the alignment's projection
    assert aligned.shape == (4, 16) and np.isfinite(aligned).all()
    np.testing.assert_allclose(
        np.linalg.norm(aligned, axis=1), np.median(np.linalg.norm(model.user_vectors(), axis=1)), rtol=1e-3
    )


def test_alignment_pulls_users_towards_their_own_profiles(tiktok_slice):
    """With the InfoNCE term, a user's final vector is closer (cosine, through the alignment's
    projection) to its own profile than to the other users' profiles; without it, not."""
    features = _features(tiktok_slice.n_users)

    def own_minus_others(model) -> float:
        users = torch.nn.functional.normalize(torch.as_tensor(model.user_vectors()), dim=1)
        said = torch.nn.functional.normalize(torch.as_tensor(model.profile_vectors(features)), dim=1)
        sims = users @ said.T
        return float(sims.diagonal().mean() - sims.mean())

    aligned = _fit(tiktok_slice, features, align_weight=0.5, epochs=6)
    plain = _fit(tiktok_slice, features, align_weight=0.0, epochs=6)
    plain.align_weight = 0.5  # read its (untrained) alignment projection the same way
    assert own_minus_others(aligned) > 0.3 and abs(own_minus_others(plain)) < 0.05


def test_fits_save_and_load_with_the_features(tiktok_slice, tmp_path):
    split = tiktok_slice
    features = _features(split.n_users)
    model = _fit(split, features)
    loaded = Recommender.load(model.save(tmp_path / "m.pt"))
    torch.testing.assert_close(loaded.score(np.arange(10)), model.score(np.arange(10)))
    loaded.restore(split.train)
    torch.testing.assert_close(loaded.score(np.arange(10)), model.score(np.arange(10)))
    test = evaluator_for(split.test, split.train, split.valid)
    assert test.evaluate(model).metrics["recall@20"] > 0
    with pytest.raises(ConfigError, match="needs user_features"):
        build_model("lightgcn-profile").fit(split.train)
    with pytest.raises(ConfigError, match="must have 24 columns"):
        model.set_user_features(features[:, :10])
