"""Condition types and Event reasons of quotas (CamelCase, Kubernetes style).

They are API: `labctl wait --for=condition=Full=false`, dashboards and alerts match on them.
"""

from __future__ import annotations

from typing import Final

# Condition types of a LabQuota
FULL: Final = "Full"
"""True while some limit is reached: creates of that resource are refused."""

# Full's reasons
WITHIN_LIMITS: Final = "WithinLimits"  # Full=False
LIMIT_REACHED: Final = "LimitReached"  # Full=True: used == hard somewhere
LIMIT_EXCEEDED: Final = "LimitExceeded"  # Full=True: used > hard (the limit was lowered)

# Events
QUOTA_EXCEEDED: Final = "QuotaExceeded"
"""Recorded by a writer (a pool controller) on its own object when a create is refused."""
USAGE_CORRECTED: Final = "UsageCorrected"
"""Recorded on a LabQuota when the quota controller rewrote its namespace's usage record."""
