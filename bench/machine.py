"""What a benchmark's numbers were measured on, written beside them in its results JSON."""

from __future__ import annotations

import os
import platform
from typing import Any


def machine_facts(load_avg_before: tuple[float, float, float]) -> dict[str, Any]:
    """CPU count, Python and torch versions, and the load average before and after the run: timings
    taken while other work shared the cores are only upper bounds."""
    import torch

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_avg_before": load_avg_before,
        "load_avg_after": os.getloadavg(),
    }
