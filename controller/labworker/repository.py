"""LabWorker CRUD: the generic repository for the LabWorker kind, plus its finders."""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.labworker.phase import Phase
from controller.runtime.repository import Repository
from controller.storage import EtcdClient

DEFAULT_PREFIX = "/lab-resource-manager"


@dataclass
class LabWorkerRepository(Repository[LabWorker]):
    @classmethod
    def for_prefix(cls, client: EtcdClient, prefix: str = DEFAULT_PREFIX) -> LabWorkerRepository:
        return cls(client, LABWORKER, prefix)

    def find_by_phase(self, phase: Phase | str) -> builtins.list[LabWorker]:
        return [w for w in self.list() if w.status.phase == phase]

    def find_by_lab_track(self, lab_track: str) -> builtins.list[LabWorker]:
        return [w for w in self.list() if w.spec.lab_track == lab_track]
