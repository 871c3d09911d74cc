"""The experiment stage: a run as units of work on an executor, its protocol, summary and bundle."""

from crossrec.experiment.bundle import Bundle, BundleError, load_bundle
from crossrec.experiment.executor import Executor, LocalExecutor
from crossrec.experiment.runner import ExperimentResult, encode_items, resume_experiment, run_experiment

__all__ = [
    "Bundle",
    "BundleError",
    "Executor",
    "ExperimentResult",
    "LocalExecutor",
    "encode_items",
    "load_bundle",
    "resume_experiment",
    "run_experiment",
]
