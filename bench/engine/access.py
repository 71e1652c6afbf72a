"""The protocol's data guard. The engine reads every split through it; method code never holds it.

Phases: "train" (search, building the starting model, training and model selection) may read ID train and ID val,
plus OOD val when the method declared it and the protocol grants it; "sealed" (the method's code has finished, the
model is fixed) reads nothing; "final_eval" (the engine evaluates the saved model) reads every split, but only
through the engine: the model's forward is method code, and a read it makes then is refused. The log is
written here, from the reads the engine performs, and goes into the record as `data_access`.

The guard is also installed as a gate in the dataset adapter (and, for the testbed, in its renderer), so a read
that bypasses the method view is refused too. A refusal is remembered even when method code catches the
exception: the engine then fails the run instead of storing it.
"""
from __future__ import annotations

from contextlib import contextmanager

from bench.errors import BenchError

ROLES = ("train", "id_val", "ood_val")


class ProtocolViolation(BenchError):
    pass


class DataGuard:
    def __init__(self, protocol, granted: frozenset[str] = frozenset()):
        unknown = set(granted) - {"ood_val"}
        if unknown:
            raise ProtocolViolation(f"protocol {protocol.id} grants no extra data {sorted(unknown)}; only 'ood_val' may be requested")
        self._protocol = protocol
        self._phase = "train"
        self._roles = {"train": protocol.train_split, "id_val": protocol.id_val_split}
        if "ood_val" in granted:
            self._roles["ood_val"] = protocol.ood_val_split
        self._readable = set(self._roles.values())
        self._reads: list[tuple[str, str]] = []
        self._refusals: list[str] = []
        self._engine_reading = 0  # > 0 while the engine itself reads (the only reader in the final evaluation)

    @property
    def phase(self) -> str:
        return self._phase

    def split_name(self, role: str) -> str:
        """The protocol's split for a role the method may read now; anything else is refused."""
        if role not in ROLES:
            self._refuse(f"unknown split role {role!r}; methods may read train, id_val and (if granted) ood_val")
        if role not in self._roles:
            self._refuse(f"split role {role!r} is not granted to this method under protocol {self._protocol.id}; "
                         "declare it in the method's `requires` (only ood_val may be requested)")
        return self._roles[role]

    @contextmanager
    def engine_access(self):
        """Marks reads made by the engine itself (not by method code it calls)."""
        self._engine_reading += 1
        try:
            yield
        finally:
            self._engine_reading -= 1

    def check(self, split: str) -> None:
        """Called before any split is produced: by the engine's reads and by the dataset's gate."""
        if split not in self._readable:
            allowed = ", ".join(sorted(self._readable)) or "none (the model is fixed)"
            self._refuse(f"split {split!r} may not be read during {self._phase} under protocol {self._protocol.id}; "
                         f"allowed now: {allowed}")
        if self._phase == "final_eval" and not self._engine_reading:
            # the model's own code runs during the final evaluation; it must not read what it is scored on
            self._refuse(f"split {split!r} was requested by method code during the final evaluation; "
                         "only the engine reads data then")

    def record_read(self, split: str) -> None:
        self.check(split)
        if (self._phase, split) not in self._reads:
            self._reads.append((self._phase, split))

    def _refuse(self, message: str):
        self._refusals.append(message)
        raise ProtocolViolation(message)

    def seal(self) -> None:
        """The method's code has finished: nothing more is read until the final evaluation."""
        self._phase, self._readable = "sealed", set()

    def open_final_evaluation(self) -> None:
        if self._phase != "sealed":
            raise ProtocolViolation("the final evaluation opens only after the model is fixed")
        p = self._protocol
        self._phase = "final_eval"
        self._readable = {p.train_split, p.id_val_split, p.ood_val_split, *p.test_splits}

    @property
    def refusals(self) -> tuple[str, ...]:
        return tuple(self._refusals)

    def log(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for phase, split in self._reads:
            out.setdefault(phase, []).append(split)
        return {phase: sorted(splits) for phase, splits in out.items()}
