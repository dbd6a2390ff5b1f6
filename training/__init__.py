"""Fine-tuning, evaluation, calibration, ensembling and safe installation of lesion models (no Qt)."""
