"""The run engine: planning a run, the data guard, the method's view, batching, the training step and loop,
evaluation and the run itself. Above datasets and models; below methods (which it drives through their hooks,
without importing them) and the CLI."""
