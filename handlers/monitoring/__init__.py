"""The drift monitor Lambda: captured traffic against the training baseline (PSI, KS, confidence);
on drift it starts retraining and alerts (docs/operations.md)."""
