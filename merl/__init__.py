"""merl-ray: MERL (zero-shot ECG classification from ECG-report pretraining) on Ray."""

__version__ = "0.1.0"
