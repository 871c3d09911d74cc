from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from crossrec.data.loaders import load_dataset, load_mmrec
from crossrec.errors import DataError

LABELS = {"train": 0, "valid": 1, "test": 2}


@pytest.fixture
def mmrec_dir(tmp_path: Path, tiktok_parts: dict[str, sp.csr_matrix], shared_data: Path) -> Path:
    """An MMRec folder made from the first tiktok users: tiktok.inter plus image and audio features."""
    folder = tmp_path / "tiktok"
    folder.mkdir()
    rows = []
    for part, mat in tiktok_parts.items():
        coo = mat.tocoo()
        rows.append(pd.DataFrame({"userID": coo.row, "itemID": coo.col, "x_label": LABELS[part]}))
    inter = pd.concat(rows).sample(frac=1.0, random_state=0)  # MMRec files are not sorted by split
    inter["timestamp"] = 1_600_000_000 + np.arange(len(inter))
    inter.to_csv(folder / "tiktok.inter", sep="\t", index=False)
    for name in ("image_feat.npy", "audio_feat.npy"):
        shutil.copy(shared_data / "diffmm" / "tiktok" / name, folder / name)
    return folder


def test_round_trip(mmrec_dir: Path, tiktok_parts: dict[str, sp.csr_matrix], shared_data: Path) -> None:
    data = load_mmrec(mmrec_dir)
    assert data.name == "tiktok" and data.split is not None and data.split.name == "shipped"
    assert data.n_items == 6_710 and np.array_equal(data.item_ids, np.arange(6_710))
    users_seen = np.unique(np.concatenate([m.tocoo().row for m in tiktok_parts.values()]))
    assert np.array_equal(data.user_ids, users_seen)
    for part, mat in tiktok_parts.items():
        inter = getattr(data.split, part)
        assert len(inter) == mat.nnz
        rebuilt = sp.csr_matrix(
            (np.ones(len(inter)), (data.user_ids[inter.user], inter.item)), shape=(mat.shape[0], 6_710)
        )
        assert (rebuilt != mat).nnz == 0
    image = np.load(shared_data / "diffmm" / "tiktok" / "image_feat.npy")
    assert data.content.features["image"].dtype == np.float32
    assert np.array_equal(data.content.features["image"], image.astype(np.float32))
    assert data.interactions.timestamp is not None and np.all(data.interactions.value == 1.0)


def test_rating_column_and_no_features(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "tiny.inter").write_text("userID\titemID\trating\tx_label\nu1\t0\t4.5\t0\nu2\t3\t2\t2\n")
    data = load_mmrec(folder)
    assert data.n_items == 4 and list(data.user_ids) == ["u1", "u2"]
    assert list(data.interactions.value) == [4.5, 2.0]
    assert (len(data.split.train), len(data.split.valid), len(data.split.test)) == (1, 0, 1)


def test_choosing_the_inter_file(mmrec_dir: Path) -> None:
    renamed = mmrec_dir / "other.inter"
    (mmrec_dir / "tiktok.inter").rename(renamed)
    assert load_mmrec(mmrec_dir).name == "other"  # the only .inter file
    shutil.copy(renamed, mmrec_dir / "third.inter")
    with pytest.raises(
        DataError, match=r"several \.inter files \(other\.inter, third\.inter\).*dataset_name"
    ):
        load_mmrec(mmrec_dir)
    assert load_mmrec(mmrec_dir, dataset_name="third").name == "third"
    with pytest.raises(DataError, match=r"missing\.inter.*does not exist"):
        load_mmrec(mmrec_dir, dataset_name="missing")
    for path in mmrec_dir.glob("*.inter"):
        path.unlink()
    with pytest.raises(DataError, match=r"no <name>\.inter file"):
        load_mmrec(mmrec_dir)


def test_item_beyond_the_feature_rows(mmrec_dir: Path, edit_cell) -> None:
    edit_cell(mmrec_dir / "tiktok.inter", 9, "itemID", "6710")
    with pytest.raises(DataError) as err:
        load_mmrec(mmrec_dir)
    assert err.value.file.endswith("tiktok.inter") and (err.value.row, err.value.field) == (9, "itemID")
    assert "item '6710' has no row in audio_feat.npy (6710 rows)" in str(err.value)


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [("x_label", "3", "'3' is not 0 (train), 1 (valid), 2 (test)"), ("itemID", "-1", "'-1' is below 0")],
)
def test_bad_cells(mmrec_dir: Path, edit_cell, column: str, value: str, problem: str) -> None:
    edit_cell(mmrec_dir / "tiktok.inter", 12, column, value)
    with pytest.raises(DataError) as err:
        load_mmrec(mmrec_dir)
    assert f"tiktok.inter, row 12, field '{column}': {problem}" in str(err.value)


def test_missing_column_and_disagreeing_features(mmrec_dir: Path) -> None:
    np.save(mmrec_dir / "text_feat.npy", np.ones((10, 4), dtype=np.float16))
    with pytest.raises(DataError, match=r"text_feat\.npy, field 'text'.*10 rows but the dataset has 6710"):
        load_mmrec(mmrec_dir)
    inter = pd.read_csv(mmrec_dir / "tiktok.inter", sep="\t").drop(columns="x_label")
    inter.to_csv(mmrec_dir / "tiktok.inter", sep="\t", index=False)
    with pytest.raises(
        DataError, match=r"missing column 'x_label' \(columns found: userID, itemID, timestamp\)"
    ):
        load_mmrec(mmrec_dir)


def test_feature_files_named_after_their_encoder(mmrec_dir: Path, shared_data: Path) -> None:
    (mmrec_dir / "audio_feat.npy").rename(mmrec_dir / "vggish.npy")
    with pytest.warns(UserWarning, match=r"not reading vggish\.npy .*feature_files: \{vggish: vggish\.npy\}"):
        assert sorted(load_mmrec(mmrec_dir).content.features) == ["image"]

    chosen = {"image": "image_feat.npy", "audio": "vggish.npy"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every .npy is used: nothing to warn about
        data = load_dataset("mmrec", mmrec_dir, feature_files=chosen)
    audio = np.load(shared_data / "diffmm" / "tiktok" / "audio_feat.npy").astype(np.float32)
    assert np.array_equal(data.content.features["audio"], audio)
    assert data.n_items == 6_710

    with pytest.warns(UserWarning, match=r"not reading image_feat\.npy \(not in the feature_files option\)"):
        data = load_mmrec(mmrec_dir, feature_files={"audio": "vggish.npy"})
    assert sorted(data.content.features) == ["audio"]
    with pytest.raises(DataError, match=r"clip\.npy.*'text' feature matrix.*does not exist"):
        load_mmrec(mmrec_dir, feature_files={**chosen, "text": "clip.npy"})
