"""Training: the embedded tiny LALM and AHAMask mask training."""
