from __future__ import annotations

import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from crossrec.data.loaders import load_diffmm
from crossrec.errors import DataError


def test_tiktok(shared_data: Path) -> None:
    data = load_diffmm(shared_data / "diffmm" / "tiktok")
    assert (data.n_users, data.n_items) == (9_308, 6_710)
    split = data.split
    assert split is not None and split.name == "shipped"
    assert (len(split.train), len(split.valid), len(split.test)) == (59_541, 3_051, 6_130)
    assert len(data.interactions) == 59_541 + 3_051 + 6_130
    assert sorted(data.content.features) == ["audio", "image"]
    for mat in data.content.features.values():
        assert mat.shape == (6_710, 128) and mat.dtype == np.float32
    assert np.array_equal(data.item_ids, np.arange(6_710))


@pytest.mark.parametrize(
    ("name", "shape", "counts"),
    [
        ("baby", (19_445, 7_050), (118_551, 21_682, 20_559)),
        ("sports", (35_598, 18_357), (218_409, 40_029, 37_899)),
    ],
)
def test_amazon_counts(shared_data: Path, name: str, shape: tuple[int, int], counts: tuple[int, ...]) -> None:
    data = load_diffmm(shared_data / "diffmm" / name)
    assert (data.n_users, data.n_items) == shape
    assert (len(data.split.train), len(data.split.valid), len(data.split.test)) == counts
    assert data.content.features == {}


def test_small_copy_round_trips(mini_diffmm: Path, tiktok_parts: dict[str, sp.csr_matrix]) -> None:
    data = load_diffmm(mini_diffmm)
    assert data.name == "tiktok-mini"
    for part, mat in tiktok_parts.items():
        assert (getattr(data.split, part).to_csr() != mat).nnz == 0


def _dump(obj: object, path: Path) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def test_missing_folder_and_matrix(tmp_path: Path, mini_diffmm: Path) -> None:
    with pytest.raises(DataError, match=r"nope.*DiffMM dataset folder"):
        load_diffmm(tmp_path / "nope")
    (mini_diffmm / "valMat.pkl").unlink()
    with pytest.raises(DataError, match=r"valMat\.pkl.*valid matrix.*does not exist"):
        load_diffmm(mini_diffmm)


def test_shapes_must_agree(mini_diffmm: Path, tiktok_parts: dict[str, sp.csr_matrix]) -> None:
    _dump(sp.coo_matrix(tiktok_parts["test"][:, :100]), mini_diffmm / "tstMat.pkl")
    with pytest.raises(DataError, match=r"one shape.*trnMat\.pkl 300x6710.*tstMat\.pkl 300x100"):
        load_diffmm(mini_diffmm)


def test_train_test_overlap_is_an_error(mini_diffmm: Path, tiktok_parts: dict[str, sp.csr_matrix]) -> None:
    train, test = tiktok_parts["train"], tiktok_parts["test"]
    leaked = sp.vstack([train[:5], sp.csr_matrix((train.shape[0] - 5, train.shape[1]))])
    _dump(sp.coo_matrix(test + leaked), mini_diffmm / "tstMat.pkl")
    with pytest.raises(DataError) as err:
        load_diffmm(mini_diffmm)
    n_overlap = train[:5].nnz
    assert f"{n_overlap} (user, item) pairs are in both trnMat.pkl and tstMat.pkl" in str(err.value)
    assert err.value.file.endswith("tstMat.pkl")


def test_pickles_that_are_not_sparse_matrices(mini_diffmm: Path) -> None:
    _dump([1, 2, 3], mini_diffmm / "trnMat.pkl")
    with pytest.raises(DataError, match=r"trnMat\.pkl.*expected a 2-d scipy sparse matrix, found list"):
        load_diffmm(mini_diffmm)
    _dump(np.zeros((3, 3)), mini_diffmm / "trnMat.pkl")
    with pytest.raises(DataError, match="expected a 2-d scipy sparse matrix, found ndarray"):
        load_diffmm(mini_diffmm)
    (mini_diffmm / "trnMat.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot read as a pickled scipy sparse matrix"):
        load_diffmm(mini_diffmm)


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_pickles_cannot_run_code(mini_diffmm: Path) -> None:
    _dump(_Exploit(), mini_diffmm / "trnMat.pkl")
    with pytest.raises(DataError, match=r"refusing to load .*system"):
        load_diffmm(mini_diffmm)


def test_feature_matrix_rows_and_values(mini_diffmm: Path) -> None:
    image = np.load(mini_diffmm / "image_feat.npy")
    np.save(mini_diffmm / "image_feat.npy", image[:-1])
    with pytest.raises(DataError) as err:
        load_diffmm(mini_diffmm)
    assert err.value.file.endswith("image_feat.npy") and err.value.field == "image"
    assert "6709 rows but the dataset has 6710 items" in str(err.value)

    image[41, 3] = np.nan
    np.save(mini_diffmm / "image_feat.npy", image)
    with pytest.raises(DataError, match=r"image_feat\.npy, row 42, field 'image'.*NaN"):
        load_diffmm(mini_diffmm)

    np.save(mini_diffmm / "audio_feat.npy", np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"audio_feat\.npy.*numeric"):
        load_diffmm(mini_diffmm)


def test_feature_files_map_names_to_any_npy(mini_diffmm: Path, shared_data: Path) -> None:
    shutil.copy(shared_data / "diffmm" / "tiktok" / "audio_feat.npy", mini_diffmm / "vggish.npy")
    with pytest.warns(UserWarning, match=r"tiktok-mini: not reading vggish\.npy .*feature_files: \{vggish"):
        assert sorted(load_diffmm(mini_diffmm).content.features) == ["image"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_diffmm(mini_diffmm, feature_files={"image": "image_feat.npy", "audio": "vggish.npy"})
    assert sorted(data.content.features) == ["audio", "image"]
    assert data.content.features["audio"].shape == (6_710, 128)
