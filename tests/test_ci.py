"""The test suite cannot pass in CI by skipping: missing inputs fail there, hard dependencies are imported."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

TESTS = Path(__file__).parent
OPTIONAL = {"librosa", "llama_cpp"}  # a mel-filter cross-check; the optional LLM extra (docs/llm.md)


def test_missing_input_skips_locally_and_fails_under_ci(
    missing_input: Callable[[str], NoReturn], monkeypatch: pytest.MonkeyPatch
) -> None:
    for unset in (None, "", "0", "false"):
        if unset is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", unset)
        with pytest.raises(pytest.skip.Exception, match="no recordings"):
            missing_input("no recordings")
    for value in ("1", "true"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.fail.Exception, match=r"no recordings.*CI is set"):
            missing_input("no recordings")


def _test_sources() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in sorted(TESTS.rglob("*.py"))}


def test_no_test_hard_codes_an_absolute_data_path() -> None:
    """Data is found through the shared_data fixture (../shared/data beside the repository)."""
    absolute = "/" + "work/"  # spelled apart so that this file does not match itself
    assert [str(path) for path, text in _test_sources().items() if absolute in text] == []


def test_only_optional_packages_are_importorskipped() -> None:
    """A hard dependency (pyproject's dependencies, the dev extra, aisfx) that fails to import must fail
    its tests, not skip them."""
    skipped = {
        (path.name, name)
        for path, text in _test_sources().items()
        for name in re.findall(r"importorskip\(\s*['\"]([\w.]+)", text)
    }
    assert {(file, name) for file, name in skipped if name.split(".")[0] not in OPTIONAL} == set()


def test_ci_script_sets_ci_and_stops_without_the_recordings() -> None:
    script = (TESTS.parent / ".ci" / "run").read_text(encoding="utf-8")
    tests_start = script.index("python -m pytest")
    assert "export CI=1" in script[:tests_start]
    installer = script[script.index("need_deb() {") : script.index("\n}\n", script.index("need_deb() {"))]
    assert "exit 1" in installer and "will skip" not in script
    for package in ("sound-theme-freedesktop", "chromium"):
        assert f"need_deb {package} " in script[:tests_start], package


def test_no_bench_module_shadows_a_test_helper() -> None:
    """Tests that run bench scripts put bench/ first on sys.path; a bench module named like a helper in
    tests/ (e.g. servers.py) would then be imported in its place by later tests."""
    helpers = {path.stem for path in TESTS.glob("*.py")}
    bench = {path.stem for path in (TESTS.parent / "bench").glob("*.py")}
    assert helpers & bench == set()
