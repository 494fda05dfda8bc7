"""Built-in calibration profiles, shipped as package data (one JSON file per profile)."""
