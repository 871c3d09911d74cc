from __future__ import annotations

from crossrec.report.plots import plot_metric_comparison, plot_training_curves
from crossrec.report.summary import Stat

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plots_are_png_files(tmp_path):
    histories = {
        "LightGCN": [
            {"epoch": 1, "loss": 0.6, "recall@20": 0.05},
            {"epoch": 2, "loss": 0.4, "recall@20": 0.07},
        ],
        "MostPop": [],
    }
    curves = plot_training_curves(histories, "recall@20", tmp_path / "curves.png")
    summary = {"A": {"recall@20": Stat(0.1, 0.01, 2)}, "B": {"recall@20": Stat(0.2, 0.0, 1)}}
    bars = plot_metric_comparison(summary, ["recall@20"], tmp_path / "bars.png")
    for path in (curves, bars):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000


def test_no_curves_without_training(tmp_path):
    assert plot_training_curves({"MostPop": []}, "recall@20", tmp_path / "c.png") is None
    assert not (tmp_path / "c.png").exists()
