"""The composition root: every kind package wires in, and can be wired twice in one process.

`package.setup` must stay the package's function: a submodule named `setup` would replace
it on the package after its first import, and a second `build_app` in the same process (a
test, an embedding) would then call a module.
"""

from __future__ import annotations

from controller import config
from controller.app import KIND_PACKAGES, build_app, kind_registry


def _settings() -> config.Settings:
    # Nothing is contacted while wiring: the client connects on first use.
    return config.load(
        None,
        environ={
            "ETCD_ENDPOINTS": "127.0.0.1:1",
            "LAB_SIM_DELAY": "0",
            "METRICS_PORT": "0",
            "HEALTH_PORT": "0",
        },
    )


def test_build_app_twice_in_one_process() -> None:
    for _ in range(2):
        app = build_app(_settings())
        assert app.controller("labworker").name == "labworker"
        app.client.close()
    for package in KIND_PACKAGES:
        assert callable(package.setup), f"{package.__name__}.setup was shadowed by a submodule"


def test_every_kind_has_its_own_names_and_segment() -> None:
    kinds = list(kind_registry())
    assert {k.kind for k in kinds} >= {"LabWorker"}
    assert len({k.segment for k in kinds}) == len(kinds)
    assert kind_registry().lookup("lw").kind == "LabWorker"
