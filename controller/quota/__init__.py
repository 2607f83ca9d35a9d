"""The LabQuota kind: per-namespace limits on LabWorkers, enforced inside each worker's own
create transaction (docs/architecture.md, Quotas).

`KINDS`, `setup` and `admission` are what the composition root uses; importing the package
stays light (the model and kind). `admission(repositories)` installs the enforcement on a
RepositorySet (the controller's and `labctl`'s); `setup` builds the quota controller, which
reports use in status and heals the usage record when workers were written around it.
Their modules are `enforcement` and `wiring`: a submodule named `admission` or `setup` would
replace the function of that name on the package once imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.quota.kind import LABQUOTA

if TYPE_CHECKING:
    from controller.config import Settings
    from controller.runtime.manager import Manager
    from controller.runtime.repository import RepositorySet

KINDS: tuple[Any, ...] = (LABQUOTA,)


def admission(repositories: RepositorySet) -> None:
    """Check and charge every LabWorker create, instance-type change and delete made
    through `repositories` against the namespace's LabQuotas, in the write's transaction."""
    from controller.labworker.kind import LABWORKER
    from controller.quota.enforcement import QuotaAdmission

    repositories.admit(LABWORKER, QuotaAdmission(repositories.client, repositories.root))


def setup(manager: Manager, settings: Settings) -> None:
    from controller.quota.wiring import setup_quotas

    setup_quotas(manager, settings)
