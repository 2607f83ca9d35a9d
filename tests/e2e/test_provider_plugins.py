"""A third party's provider plug-in, installed next to ours without touching this repository.

The "installation" is what pip leaves behind: a module and a `*.dist-info` directory with
an `entry_points.txt` naming it under `labctl.providers`, on the interpreter's path. Then
`labctl providers` lists it with its settings, `labctl run` reconciles workers through it,
and a plug-in that fails to import is reported and skipped, never fatal.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.e2e.harness import REPO, ControllerProcess, all_in_phase, apply, labctl_cmd
from tests.e2e.harness import worker_manifest as manifest
from tests.etcdproc import EtcdProcess, wait_until

PLUGIN_SOURCE = """
from controller.labworker.plugins import ProviderPlugin, ProviderSetting
from controller.labworker.sim import SimProvider


def build(context):
    # A real third party would talk to its own cloud; it reuses the sim to stay local.
    delay = float(context.settings["MYCLOUD_DELAY"] or 0)
    return SimProvider(context.client, context.prefix + "/mycloud", step_delay=delay,
                       identity=context.identity)


PLUGIN = ProviderPlugin(
    name="mycloud",
    summary="a third-party cloud",
    build=build,
    settings=(ProviderSetting("MYCLOUD_DELAY", "0", "seconds per step"),),
)
"""


def _install(site: Path, dist: str, module: str, source: str) -> None:
    """Lay out what `pip install` of a one-module distribution leaves on the path."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[labctl.providers]\n{dist.removesuffix('-provider')} = {module}:PLUGIN\n"
    )


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "mycloud-provider", "mycloud_provider", PLUGIN_SOURCE)
    _install(site, "broken-provider", "broken_provider", "raise ImportError('no SDK here')\n")
    return site


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAB_", "ETCD_"))}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{site}"
    env.update(extra)
    return env


def test_an_installed_third_party_plugin_is_listed_and_a_broken_one_skipped(
    tmp_path: Path,
) -> None:
    res = subprocess.run(
        [*labctl_cmd(), "providers"],
        env=_env(_site(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "mycloud: a third-party cloud" in res.stdout
    assert "MYCLOUD_DELAY" in res.stdout
    assert "\nsim: " in res.stdout and "aws: " in res.stdout
    assert "broken" in res.stderr and "no SDK here" in res.stderr  # reported...
    assert "Traceback" not in res.stderr  # ...not a crash


def test_labctl_run_reconciles_through_a_third_party_plugin(
    etcd: EtcdProcess, tmp_path: Path
) -> None:
    site = _site(tmp_path)
    ctl = ControllerProcess(etcd, tmp_path, env_extra={"LAB_PROVIDER": "mycloud"})
    ctl.env_extra["PYTHONPATH"] = f"{REPO}{os.pathsep}{site}"
    try:
        apply(etcd, [manifest(f"third-{i}") for i in range(3)])
        ctl.start().wait_ready()
        wait_until(lambda: all_in_phase(etcd, "Ready", 3), timeout=60, what="3 Ready")
        # Its instances are where the plug-in put them: under its own prefix.
        assert etcd.etcdctl("get", "--prefix", "--keys-only", "/lab-resource-manager/mycloud")
    finally:
        ctl.kill()
