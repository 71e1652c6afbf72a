"""Protocols: frozen, versioned per-dataset rules (splits and roles, metric, model, schedule, budget, seeds,
selection). Data only: the engine that enforces them lives in `bench.engine`."""
