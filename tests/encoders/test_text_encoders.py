"""Text encoders on real sentences and movie titles; item text assembly from fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wordllama as wordllama_package  # a hard dependency: imported, never skipped

from crossrec.data.schema import ItemContent
from crossrec.encoders.base import BadInput
from crossrec.encoders.text import MiniLMEncoder, WordLlamaEncoder, item_texts, load_sentence_transformer
from crossrec.errors import ConfigError

HORROR, SCARY, MUSICAL = "a frightening horror film", "a scary horror movie", "a cheerful musical comedy"


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_minilm_puts_paraphrases_closer_than_other_genres(minilm: MiniLMEncoder) -> None:
    horror, scary, musical = minilm.encode([HORROR, SCARY, MUSICAL])
    assert minilm.dim == 384
    assert _cos(horror, scary) > _cos(horror, musical) + 0.3
    assert np.allclose(np.linalg.norm([horror, scary, musical], axis=1), 1.0, atol=1e-5)


def test_wordllama_matches_the_package_and_ranks_the_same(wordllama: WordLlamaEncoder) -> None:
    vectors = wordllama.encode([HORROR, SCARY, MUSICAL])
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2])
    reference = wordllama_package.WordLlama.load(
        cache_dir=Path(wordllama_package.__file__).parent, disable_download=True
    )
    assert np.allclose(vectors, reference.embed([HORROR, SCARY, MUSICAL], norm=True), atol=1e-6)


def test_real_titles_encode_batched_and_alone_alike(minilm: MiniLMEncoder, shared_data: Path) -> None:
    import pandas as pd

    titles = (
        pd.read_csv(shared_data / "movielens-small" / "ml-latest-small" / "movies.csv").title[:8].tolist()
    )
    together = minilm.encode(titles)
    alone = minilm.encode(titles[:1])
    assert together.shape == (8, 384) and np.isfinite(together).all()
    assert np.allclose(together[0], alone[0], atol=1e-5)


def test_minilm_micro_batches_match_sentence_transformers_encode(
    minilm: MiniLMEncoder, shared_data: Path
) -> None:
    """The torch path sorts by length into micro-batches and restores the order: the vectors must be
    sentence-transformers' own, row for row, on texts of mixed lengths spanning several micro-batches."""
    import pandas as pd

    titles = (
        pd.read_csv(shared_data / "movielens-small" / "ml-latest-small" / "movies.csv").title[:40].tolist()
    )
    texts = [" ".join([title] * (i * 7 % 5 + 1)) for i, title in enumerate(titles)]
    reference = load_sentence_transformer(minilm.model).encode(
        texts, batch_size=64, normalize_embeddings=True
    )
    np.testing.assert_allclose(minilm.encode(texts), reference, atol=1e-5)


def test_fingerprint_names_model_and_weights(minilm: MiniLMEncoder, wordllama: WordLlamaEncoder) -> None:
    assert minilm.fingerprint.startswith("all-MiniLM-L6-v2-53aa51172d142c89-")
    assert wordllama.fingerprint.startswith("wordllama-l2-supercat-256-64b47a2dc493cb8e-")


def test_empty_text_is_bad_input(minilm: MiniLMEncoder) -> None:
    for empty in ["", "   \n\t", None]:
        with pytest.raises(BadInput, match="empty text"):
            minilm.load(empty)
    with pytest.raises(BadInput, match=r"input 1 \(''\): empty text"):
        minilm.encode(["fine", ""])


def test_item_texts_join_configured_fields() -> None:
    content = ItemContent(
        text={
            "title": ["Alien (1979)", None, "  "],
            "genres": ["Horror, Sci-Fi", None, None],
            "overview": ["In space\nno one\x00hears.", None, "   "],
        }
    )
    texts = item_texts(content, ["title", "genres", "overview"])
    assert texts == [
        "title: Alien (1979). genres: Horror, Sci-Fi. overview: In space no one hears.",
        None,
        None,
    ]
    assert item_texts(content, ["genres"]) == ["genres: Horror, Sci-Fi", None, None]
    with pytest.raises(
        ConfigError, match=r"\['tags'\] are not in the dataset \(it has: genres, overview, title\)"
    ):
        item_texts(content, ["title", "tags"])
