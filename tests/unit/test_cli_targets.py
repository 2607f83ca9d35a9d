"""How `labctl` reads TYPE, NAME and TYPE/NAME arguments and field selectors, for any kind."""

from __future__ import annotations

from typing import Any

import pytest

from controller.app import kind_registry
from controller.cli.errors import CliError, UsageError
from controller.cli.targets import (
    Target,
    field_matcher,
    known_types,
    parse_field_selector,
    qualified,
    resolve,
)
from controller.events.kind import EVENT
from controller.events.model import Event
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.resources import Kind

REGISTRY = kind_registry()


def worker(name: str, namespace: str = "default") -> LabWorker:
    return LabWorker.model_validate(
        {"metadata": {"name": name, "namespace": namespace}, "spec": {"labTrack": "ccna"}}
    )


def event(name: str, about: str, reason: str = "Ready", type_: str = "Normal") -> Event:
    return Event.model_validate(
        {
            "metadata": {"name": name},
            "involvedObject": {
                "apiVersion": "lab.neuroglia.io/v1",
                "kind": "LabWorker",
                "name": about,
                "namespace": "default",
                "uid": f"uid-{about}",
            },
            "reason": reason,
            "type": type_,
            "firstTimestamp": "2026-03-01T12:00:00Z",
            "lastTimestamp": "2026-03-01T12:00:00Z",
            "reportingController": "labworker-controller",
            "reportingInstance": "a",
        }
    )


@pytest.mark.parametrize("kind", list(REGISTRY), ids=lambda k: k.plural)
def test_every_name_of_every_registered_kind_resolves_to_it(kind: Kind[Any]) -> None:
    for name in [*kind.names(), kind.kind, kind.plural.upper()]:
        assert resolve(REGISTRY, [name]) == [Target(kind)]
        assert resolve(REGISTRY, [f"{name}/x"]) == [Target(kind, ("x",))]


def test_type_then_names_keeps_order_and_drops_repeats() -> None:
    assert resolve(REGISTRY, ["lw", "b", "a", "b"]) == [Target(LABWORKER, ("b", "a"))]


def test_type_slash_name_groups_by_kind_in_the_order_given() -> None:
    targets = resolve(REGISTRY, ["labworker/a", "ev/x", "lw/b", "labworkers.lab.neuroglia.io/c"])
    assert targets == [Target(LABWORKER, ("a", "b", "c")), Target(EVENT, ("x",))]


def test_comma_separated_types_list_each_kind() -> None:
    assert resolve(REGISTRY, ["lw,events,labworker"]) == [Target(LABWORKER), Target(EVENT)]
    assert resolve(REGISTRY, ["lw,ev", "x"]) == [
        Target(LABWORKER, ("x",)),
        Target(EVENT, ("x",)),
    ]


@pytest.mark.parametrize(
    "args",
    [[], ["lw/a", "b"], ["lw/"], ["/a"], ["lw/a/b"], ["lw,,ev"]],
    ids=["nothing", "mixed-forms", "no-name", "no-type", "two-slashes", "empty-type"],
)
def test_a_malformed_command_line_is_a_usage_error(args: list[str]) -> None:
    with pytest.raises(UsageError):
        resolve(REGISTRY, args)


def test_an_unknown_type_is_one_line_listing_every_known_type_and_short_name() -> None:
    for args in (["foo"], ["foo/x"], ["lw,foo"]):
        with pytest.raises(CliError) as info:
            resolve(REGISTRY, args)
        assert not isinstance(info.value, UsageError)  # exit 1, as kubectl and labctl before
        message = str(info.value)
        assert "doesn't have a resource type 'foo'" in message
        assert "labworkers (lw)" in message and "events (ev)" in message
        assert "\n" not in message
    with pytest.raises(CliError) as info:
        resolve(REGISTRY, ["x" * 100_000])
    assert len(str(info.value)) < 600


def test_known_types_lists_plural_with_short_names() -> None:
    listed = known_types(REGISTRY)
    for kind in REGISTRY:
        assert kind.plural in listed
        for short in kind.short_names:
            assert short in listed


def test_qualified_is_kubectl_singular_dot_group() -> None:
    assert qualified(LABWORKER) == "labworker.lab.neuroglia.io"
    assert qualified(EVENT) == "event.lab.neuroglia.io"


# -- field selectors ------------------------------------------------------------------------


def test_field_selector_grammar() -> None:
    parsed = parse_field_selector("involvedObject.name=a, reason!=Pulled,type==Warning,")
    assert [(r.key, r.equals, r.value) for r in parsed] == [
        ("involvedObject.name", True, "a"),
        ("reason", False, "Pulled"),
        ("type", True, "Warning"),
    ]
    assert parse_field_selector("metadata.name=")[0].value == ""


@pytest.mark.parametrize("text", ["involvedObject.name", "=a", "a=b,nope"])
def test_a_malformed_field_selector_is_one_error_line(text: str) -> None:
    with pytest.raises(CliError) as info:
        parse_field_selector(text)
    assert "invalid field selector" in str(info.value) and "\n" not in str(info.value)


def test_field_selector_matches_the_kinds_indexed_fields_and_metadata() -> None:
    events = [event("e1", "a"), event("e2", "a", reason="Pulled"), event("e3", "b")]

    def names(selector: str) -> list[str]:
        match = field_matcher(EVENT, parse_field_selector(selector))
        return [e.metadata.name for e in events if match(e)]

    assert names("involvedObject.name=a") == ["e1", "e2"]
    assert names("involvedObject.name=a,reason!=Pulled") == ["e1"]
    assert names("involvedObject.name!=a") == ["e3"]
    assert names("metadata.name=e3,metadata.namespace=default") == ["e3"]
    assert names("involvedObject.uid=uid-b") == ["e3"]
    workers = [worker("w1"), worker("w2", "emea")]
    match = field_matcher(LABWORKER, parse_field_selector("metadata.namespace=emea"))
    assert [w.metadata.name for w in workers if match(w)] == ["w2"]


def test_an_unsupported_field_is_one_line_naming_the_supported_ones() -> None:
    with pytest.raises(CliError) as info:
        field_matcher(EVENT, parse_field_selector("involvedObject.name=a,spec.foo=b"))
    message = str(info.value)
    assert "'spec.foo'" in message and "not supported for events" in message
    for key in ("involvedObject.name", "metadata.name", "metadata.namespace", *EVENT.field_indexes):
        assert key in message
    with pytest.raises(CliError, match=r"supported fields: labTrack, metadata\.name"):
        field_matcher(LABWORKER, parse_field_selector("involvedObject.name=a"))
