"""MERL model zoo: 1-D ECG encoders, the text tower, projection heads, the dual encoder."""

from merl.training.model.merl import MERLModel
from merl.training.model.registry import ECG_ENCODERS, build_model

__all__ = ["MERLModel", "build_model", "ECG_ENCODERS"]
