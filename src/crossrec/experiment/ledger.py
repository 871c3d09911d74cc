"""The run folder's record of finished units, so an interrupted run resumes where it stopped.

Each finished unit is one JSON file under `units/` (plus the trained model and per-user values for a
fit), written atomically and last: a unit whose JSON exists is complete, and one killed mid-way left
nothing that counts. A fresh run clears the folder; `resume` keeps it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from crossrec.experiment.tuning import TrialRecord
from crossrec.experiment.units import FitResult, FitUnit, TrialUnit
from crossrec.io import atomic_path, write_json_atomic


class Ledger:
    def __init__(self, run_dir: Path, *, resume: bool) -> None:
        self.dir = Path(run_dir) / "units"
        if not resume and self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- tuning trials ------------------------------------------------------------------------
    def trials(self, unit: TrialUnit) -> list[TrialRecord]:
        """The finished trials of `unit`'s model, in order, up to the first missing one."""
        out: list[TrialRecord] = []
        while (
            path := self.dir / f"{TrialUnit(unit.label, unit.model, {}, unit.seed, len(out)).id}.json"
        ).exists():
            out.append(TrialRecord(**json.loads(path.read_text(encoding="utf-8"))))
        return out

    def record_trial(self, unit: TrialUnit, record: TrialRecord) -> None:
        write_json_atomic(self.dir / f"{unit.id}.json", record.__dict__)

    # -- fits ---------------------------------------------------------------------------------
    def fit(self, unit: FitUnit) -> FitResult | None:
        meta = self.dir / f"{unit.id}.json"
        if not meta.exists():
            return None
        record = json.loads(meta.read_text(encoding="utf-8"))
        with np.load(self.dir / f"{unit.id}.npz", allow_pickle=False) as z:
            per_user = {k: z[k] for k in z.files}
        model_bytes = (self.dir / f"{unit.id}.pt").read_bytes()
        return FitResult(unit.label, unit.seed, test_per_user=per_user, model_bytes=model_bytes, **record)

    def record_fit(self, unit: FitUnit, result: FitResult) -> None:
        with atomic_path(self.dir / f"{unit.id}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **result.test_per_user)
        with atomic_path(self.dir / f"{unit.id}.pt") as tmp:
            tmp.write_bytes(result.model_bytes)
        meta = {k: getattr(result, k) for k in ("valid", "test", "fit_seconds", "history")}
        write_json_atomic(self.dir / f"{unit.id}.json", meta)  # last: the unit now counts as done
