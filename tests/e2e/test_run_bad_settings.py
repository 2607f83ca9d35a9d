"""`labctl run` with a bad setting: one `error:` line naming it, exit code 1, no traceback.

Exit code 1 is what `labctl run` gives every unusable setting (the port-in-use case is in
test_cli_hostile.py): the process never gets as far as contacting etcd.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

from tests.e2e.harness import REPO, labctl_cmd

BAD_VALUES = {
    "LOG_LEVEL": "verbose",
    "HISTORY_RETENTION": "forever",
    "LAB_SIM_DELAY": "soon",  # a provider plug-in's setting: checked when the provider is built
}
"""One of each way a value is read; every parser's messages are checked in-process by
tests/unit/test_config.py."""


def _run(variable: str, value: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LAB_", "ETCD_"))}
    env.update(
        PYTHONPATH=str(REPO),
        ETCD_ENDPOINTS="127.0.0.1:9",  # never contacted: the settings fail first
        METRICS_PORT="0",
        HEALTH_PORT="0",
        HTTP_HOST="127.0.0.1",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
    )
    env[variable] = value
    return subprocess.run(
        [*labctl_cmd(), "run"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
        cwd=REPO,
    )


def test_every_bad_value_is_one_error_line_naming_the_variable() -> None:
    with ThreadPoolExecutor(max_workers=len(BAD_VALUES)) as pool:
        results = dict(
            zip(BAD_VALUES, pool.map(_run, BAD_VALUES, BAD_VALUES.values()), strict=True)
        )
    for variable, res in results.items():
        output = res.stdout + res.stderr
        assert "Traceback" not in output, output
        assert res.returncode == 1, (variable, res.returncode, res.stderr)
        errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, (variable, res.stderr)
        assert variable in errors[0] and "unexpected" not in errors[0], errors[0]
