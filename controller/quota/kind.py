"""The LabQuota kind: where it is stored, what `labctl` calls and prints.

`labctl get quota` prints kubectl's ResourceQuota style: `labworkers: 3/5,
labworkers/m5zn.metal: 1/2` (used/hard; `?` until the controller has counted).
"""

from __future__ import annotations

from controller.quota.model import API_VERSION, KIND, LabQuota
from controller.resources import Kind, PrinterColumn


def _used(quota: LabQuota, key: str) -> str:
    used = quota.status.used.get(key)
    return "?" if used is None else str(used)


def hard_column(quota: LabQuota) -> str:
    """`labworkers: 3/5, labworkers/m5zn.metal: 1/2` — each limit with its use."""
    if not quota.spec.hard:
        return "<none>"
    return ", ".join(
        f"{key}: {_used(quota, key)}/{limit}" for key, limit in sorted(quota.spec.hard.items())
    )


def full_column(quota: LabQuota) -> str:
    """The resources whose limit is reached: creates of them are refused."""
    full = [
        key
        for key, limit in sorted(quota.spec.hard.items())
        if key in quota.status.used and quota.status.used[key] >= limit
    ]
    return ",".join(full) or "<none>"


LABQUOTA: Kind[LabQuota] = Kind(
    api_version=API_VERSION,
    kind=KIND,
    plural="labquotas",
    segment="lab-quotas",
    model=LabQuota,
    short_names=("quota",),
    schema_file="labquota.schema.json",
    columns=(
        PrinterColumn("HARD", hard_column),
        PrinterColumn("FULL", full_column, wide=True),
        PrinterColumn("GEN", lambda q: str(q.metadata.generation), wide=True),
        PrinterColumn("OBSERVED", lambda q: str(q.status.observed_generation), wide=True),
    ),
)
