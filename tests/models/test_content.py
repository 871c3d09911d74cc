from __future__ import annotations

import numpy as np
import pytest

from crossrec.data.schema import Interactions
from crossrec.errors import ConfigError
from crossrec.models import ContentKNN, Recommender


def test_profile_is_the_mean_of_consumed_items_and_cold_items_are_ranked():
    features = np.array([[1, 0], [0, 1], [1, 0.1], [0, 0]], dtype=np.float32)
    # user 0 consumed item 0; item 2 was never consumed (cold) but looks like item 0.
    train = Interactions([0, 1], [0, 1], [1.0, 1.0], n_users=2, n_items=4)
    model = ContentKNN("image").fit(train, item_features={"image": features})
    scores = model.score(np.array([0, 1])).numpy()
    assert scores[0].argsort()[::-1][:2].tolist() == [0, 2]
    assert scores[1, 1] == pytest.approx(1.0)
    assert scores[0, 3] == 0.0  # no content, no made-up similarity
    np.testing.assert_allclose(scores, model.user_vectors() @ model.item_vectors().T, atol=1e-6)


def test_save_load_and_missing_feature(tmp_path):
    features = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    train = Interactions([0, 0, 1], [0, 1, 2], np.ones(3), n_users=2, n_items=5)
    model = ContentKNN("text").fit(train, item_features={"text": features})
    loaded = Recommender.load(model.save(tmp_path / "m.pt"))
    np.testing.assert_allclose(loaded.score(np.array([0, 1])), model.score(np.array([0, 1])))
    with pytest.raises(ConfigError, match=r"needs item feature 'audio'.*text"):
        ContentKNN("audio").fit(train, item_features={"text": features})
