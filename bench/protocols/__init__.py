"""Protocols: versioned per-dataset rules, the trainer that enforces them, the data guard and evaluation."""
