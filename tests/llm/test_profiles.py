"""User taste profiles: built from training interactions only, always answered, sources counted."""

from __future__ import annotations

import numpy as np
import pytest

from crossrec.data.schema import Split
from crossrec.llm.base import LLM, GenerationCache, Request
from crossrec.llm.profiles import SYSTEM, build_profiles, profile_prompt, user_histories


class Scripted(LLM):
    """Answers with `text` (or raises it), counting calls and keeping the prompts it saw."""

    def __init__(self, text: str | Exception) -> None:
        self.name, self.text, self.calls, self.requests = "scripted", text, 0, []

    def complete(self, request: Request) -> str:
        self.calls += 1
        self.requests.append(request)
        if isinstance(self.text, Exception):
            raise self.text
        return self.text


@pytest.fixture(scope="module")
def movielens(shared_data):
    from crossrec.data.loaders import load_dataset
    from crossrec.data.splits import make_split

    data = load_dataset("movielens", shared_data / "movielens-small")
    split = make_split(data, "temporal", holdout=0.2)
    # 40 users keep their whole split; the rest drop out of this test's training data.
    keep = split.train.user < 40
    return data, Split(split.train.select(keep), split.valid, split.test)


def test_prompts_hold_training_titles_only(movielens):
    """A held-out film's title never reaches a user's prompt unless that user also has it in training."""
    data, split = movielens
    titles = data.content.text["title"]
    histories = user_histories(split.train, data.content)
    for user in range(40):
        trained = {titles[i] for i in split.train.item[split.train.user == user]}
        held = {titles[i] for part in (split.valid, split.test) for i in part.item[part.user == user]}
        prompt = profile_prompt(histories[user])
        assert set(histories[user].titles) <= trained and len(histories[user].titles) == 15
        for title in held - trained:
            assert f"- {title}\n" not in prompt, (user, title)


def test_most_liked_titles_come_first(movielens):
    data, split = movielens
    history = user_histories(split.train, data.content)[3]
    rows = split.train.select(split.train.user == 3)
    by_title = {data.content.text["title"][i]: v for i, v in zip(rows.item, rows.value, strict=True)}
    values = [by_title[t] for t in history.titles]
    assert values == sorted(values, reverse=True) and values[0] == rows.value.max()


def test_without_a_model_every_user_gets_the_template_profile(movielens):
    data, split = movielens
    profiles = build_profiles(split.train, data.content, None)
    assert len(profiles.texts) == split.n_users and profiles.counts() == {"template": split.n_users}
    top_genre = user_histories(split.train, data.content)[0].genres[0]
    assert profiles.texts[0].startswith(f"likes {top_genre}")
    assert profiles.texts[100] == "new viewer with no films watched yet"  # no training rows here


def test_answers_are_cached_and_bad_ones_fall_back(movielens, tmp_path):
    data, split = movielens
    users = [0, 1, 2]
    llm = Scripted("Enjoys dark crime dramas and quirky comedies. And also")
    cache = GenerationCache(tmp_path / "profiles.sqlite")
    first = build_profiles(split.train, data.content, llm, cache, users=users)
    assert [first.sources[u] for u in users] == ["llm"] * 3 and llm.calls == 3
    assert first.texts[0] == "Enjoys dark crime dramas and quirky comedies."  # the cut sentence dropped
    assert llm.requests[0].system == SYSTEM and llm.requests[0].max_tokens == 60
    reopened = GenerationCache(tmp_path / "profiles.sqlite")
    again = build_profiles(split.train, data.content, llm, reopened, users=users)
    assert [again.sources[u] for u in users] == ["cache"] * 3 and llm.calls == 3
    assert again.texts[:3] == first.texts[:3]
    for bad in (RuntimeError("model exploded"), "ok"):
        out = build_profiles(split.train, data.content, Scripted(bad), users=[0])
        assert out.sources[0] == "template" and out.texts[0].startswith("likes ")
        assert out.reasons[0]
    assert np.isclose(first.share("llm"), 3 / split.n_users)
