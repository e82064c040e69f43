"""Numbers from predictions: metrics, patient-level bootstrap, significance against a reference."""
