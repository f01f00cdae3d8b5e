"""Evaluation: task metrics and model evaluation under conditions (instruction, none, random mask, AHAMask)."""
