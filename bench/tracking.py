"""Optional experiment tracking: a run's curves (running loss, ID-val score) and its summary also go to TensorBoard,
Weights & Biases or MLflow (`bench run --track NAME`). Off by default; none of them is a dependency: the chosen one
must be installed, which is checked before the run starts."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from bench.errors import BenchError

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


class Tracker:
    def __init__(self, kind: str, name: str, logdir: Path, config: dict):
        self.kind = kind
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(logdir / name))
            self.writer.add_text("config", str(config))
        elif kind == "wandb":
            import wandb

            self.run = wandb.init(project="bench", name=name, config=config, dir=str(logdir), reinit=True)
        else:
            import mlflow

            self.run = mlflow.start_run(run_name=name)
            mlflow.log_params({k: str(v)[:250] for k, v in config.items()})

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.kind == "tensorboard":
            self.writer.add_scalar(tag, value, step)
        elif self.kind == "wandb":
            self.run.log({tag: value}, step=step)
        else:
            import mlflow

            mlflow.log_metric(tag.replace("/", "_"), value, step=step)

    def summary(self, record: dict) -> None:
        values = {"summary/id": record["summary"]["id"], "summary/ood_avg": record["summary"]["ood_avg"]}
        values.update({f"test/{split}": m[record["metric"]] for split, m in record["metrics"].items()})
        steps = record["timing"].get("train_steps") or 0
        for tag, value in values.items():
            self.scalar(tag, float(value), steps)

    def close(self) -> None:
        if self.kind == "tensorboard":
            self.writer.close()
        elif self.kind == "wandb":
            self.run.finish()
        else:
            import mlflow

            mlflow.end_run()


def check_tracker(kind: str | None) -> None:
    if kind is None:
        return
    package = PACKAGES.get(kind)
    if package is None:
        raise BenchError(f"unknown tracker {kind!r}; use one of: {', '.join(PACKAGES)}")
    if importlib.util.find_spec(package) is None:
        raise BenchError(f"--track {kind} needs the {package} package: pip install {package}")


class TrackingReporter:
    """Forwards the trainer's progress to a tracker, and to the console reporter when there is one."""

    def __init__(self, tracker: Tracker, inner=None):
        self.tracker, self.inner = tracker, inner
        if inner is not None and hasattr(inner, "trial"):
            self.trial = inner.trial

    def start(self, total: int, done: int) -> None:
        if self.inner:
            self.inner.start(total, done)

    def step(self, step: int, loss: float) -> None:
        self.tracker.scalar("train/loss", loss, step)
        if self.inner:
            self.inner.step(step, loss)

    def evaluated(self, step: int, score: float) -> None:
        self.tracker.scalar("id_val/score", score, step)
        if self.inner:
            self.inner.evaluated(step, score)

    def stop(self) -> None:
        if self.inner:
            self.inner.stop()
