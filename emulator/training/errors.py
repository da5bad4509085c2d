"""Errors of the local training runner (re-exported by :mod:`emulator.training.runner`)."""

from __future__ import annotations


class LocalTrainingError(Exception):
    """Base class of every error the local training runner raises."""


class InvalidTrainingJobError(LocalTrainingError, ValueError):
    """The job spec breaks one of SageMaker's CreateTrainingJob rules."""


class DuplicateTrainingJobError(LocalTrainingError):
    """A training job of that name already exists (SageMaker's ResourceInUse)."""


class ArtifactExistsError(LocalTrainingError):
    """An artifact already exists at the job's key: a new run never overwrites one."""


class TrainingJobNotFoundError(LocalTrainingError, LookupError):
    """No training job of that name is recorded."""
