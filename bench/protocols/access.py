"""The protocol's data guard: methods get data only through it, so OOD test data cannot leak into training.

During training, search and model selection a method may read the ID train and ID validation splits, plus the OOD
validation split if it declares that it searches on it (AutoFT). Test splits open only for the final evaluation,
after the model is fixed. Every read is logged with its phase and stored in the run record.
"""
from __future__ import annotations

from bench.errors import BenchError


class ProtocolViolation(BenchError):
    pass


class DataAccess:
    def __init__(self, dataset, protocol, extra: frozenset[str] = frozenset()):
        self.dataset = dataset
        self.protocol = protocol
        self.phase = "train"
        unknown = set(extra) - {"ood_val"}
        if unknown:
            raise ProtocolViolation(f"protocol {protocol.id} grants no extra data {sorted(unknown)}; only 'ood_val' may be requested")
        self.allowed = {protocol.train_split, protocol.id_val_split}
        if "ood_val" in extra:
            self.allowed.add(protocol.ood_val_split)
        self.reads: list[tuple[str, str]] = []

    def role(self, role: str):
        """Read a split by role: 'train', 'id_val' or 'ood_val'."""
        names = {"train": self.protocol.train_split, "id_val": self.protocol.id_val_split,
                 "ood_val": self.protocol.ood_val_split}
        if role not in names:
            raise ProtocolViolation(f"unknown split role {role!r}; methods may read train, id_val and (if granted) ood_val")
        return self.get(names[role])

    def get(self, split: str):
        if split not in self.allowed:
            raise ProtocolViolation(
                f"split {split!r} may not be read during {self.phase} under protocol {self.protocol.id}; "
                f"allowed now: {', '.join(sorted(self.allowed))}"
            )
        if (self.phase, split) not in self.reads:
            self.reads.append((self.phase, split))
        return self.dataset.split(split)

    def open_for_final_evaluation(self) -> None:
        self.phase = "final_eval"
        p = self.protocol
        self.allowed |= {p.id_val_split, p.ood_val_split, *p.test_splits}

    def log(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for phase, split in self.reads:
            out.setdefault(phase, []).append(split)
        return {phase: sorted(splits) for phase, splits in out.items()}
