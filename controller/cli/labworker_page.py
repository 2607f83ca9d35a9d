"""`labctl describe labworker`: the hand-laid LabWorker page operators already know.

Every other kind gets controller.cli.printers.describe_generic; a LabWorker keeps the layout it
had before labctl served several kinds (instance and host on one line each, the last error
with its count), registered in controller.cli.printers.DESCRIBERS.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controller.cli.printers import DESCRIBERS, condition_lines, describe_metadata
from controller.labworker.model import LabWorker
from controller.resources import Kind


def describe_labworker(kind: Kind[Any], worker: LabWorker, now: datetime) -> list[str]:
    spec, st = worker.spec, worker.status
    lines = describe_metadata(worker, now)
    lines += [
        "Spec:",
        f"  Lab Track:        {spec.lab_track}",
        f"  Desired Phase:    {spec.desired_phase.value}",
        f"  Instance:         type={spec.instance.type} image={spec.instance.image or '<default>'} "
        f"volume={spec.instance.volume_size_gb}GB",
        f"  Host:             autoLicense={spec.host.auto_license} "
        f"maxConcurrentLabs={spec.host.max_concurrent_labs}",
        "Status:",
        f"  Phase:            {st.phase.value if st.phase else '<none>'}",
        f"  Observed Gen:     {st.observed_generation}",
        f"  Instance:         {st.instance_id or '<none>'}",
        f"  Address:          {st.address or '<none>'}",
        f"  Host Version:     {st.host_version or '<none>'}",
        f"  Licensed:         {st.licensed}",
        f"  Hosted Labs:      {st.hosted_labs}",
    ]
    if st.error_message:
        lines.append(f"  Last Error:       {st.error_message} (errors: {st.error_count})")
    lines.append("Conditions:")
    lines += condition_lines([c.model_dump(mode="json", by_alias=True) for c in st.conditions], 2)
    return lines


DESCRIBERS["LabWorker"] = describe_labworker
