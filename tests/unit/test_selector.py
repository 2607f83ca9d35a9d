"""Label selectors: Kubernetes syntax and semantics, canonical rendering, clear errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.resources.selector import (
    Operator,
    Requirement,
    Selector,
    SelectorError,
    parse_selector,
)

LABELS = {"tier": "premium", "region": "eu-west-1", "example.com/track": "ccna", "canary": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tier=premium", True),
        ("tier==premium", True),
        ("tier=standard", False),
        ("missing=x", False),
        ("tier!=standard", True),
        ("tier!=premium", False),
        ("missing!=x", True),  # != also matches objects without the key
        ("region in (eu-west-1, us-east-1)", True),
        ("region in (us-east-1)", False),
        ("missing in (x)", False),
        ("region notin (us-east-1)", True),
        ("region notin (eu-west-1,us-east-1)", False),
        ("missing notin (x)", True),
        ("tier", True),
        ("missing", False),
        ("!missing", True),
        ("!tier", False),
        ("example.com/track=ccna", True),
        ("canary=", True),
        ("canary!=", False),
        ("tier=", False),
        ("canary in (,x)", True),
        ("tier=premium,region in (eu-west-1),!missing", True),
        ("tier=premium,region=us-east-1", False),
        ("", True),
        ("   ", True),
    ],
)
def test_operator_semantics(text: str, expected: bool) -> None:
    assert parse_selector(text).matches(LABELS) is expected


def test_whitespace_is_tolerated() -> None:
    spaced = parse_selector("  tier = premium ,region  in(eu-west-1 , us-east-1),  ! missing ")
    tight = parse_selector("tier=premium,region in (eu-west-1,us-east-1),!missing")
    assert spaced == tight


def test_double_equals_means_equals() -> None:
    assert parse_selector("tier==premium") == parse_selector("tier=premium")


def test_canonical_form_sorts_and_deduplicates() -> None:
    selector = parse_selector("tier, region in (b, a, b), !gone, tier, a!=x")
    assert str(selector) == "a!=x,!gone,region in (a,b),tier"
    assert parse_selector(str(selector)) == selector


def test_empty_selector_matches_everything() -> None:
    selector = parse_selector("")
    assert selector.is_empty
    assert str(selector) == ""
    assert selector.matches({})
    assert selector == Selector()


def test_requirements_can_be_built_in_code() -> None:
    selector = Selector.of(
        [
            Requirement("tier", Operator.IN, ("premium", "standard")),
            Requirement("x", Operator.EXISTS),
        ]
    )
    assert str(selector) == "tier in (premium,standard),x"
    assert not selector.matches({"tier": "premium"})


def test_a_lone_empty_value_in_a_set_renders_unambiguously() -> None:
    selector = Selector.of([Requirement("canary", Operator.IN, ("",))])
    assert parse_selector(str(selector)) == selector
    assert selector.matches({"canary": ""})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("tier=premium,", "at the end: expected a label key"),
        (",tier", "at ',' (position 0): expected a label key"),
        ("tier in (a", "missing ')' after the values of 'tier'"),
        ("tier in a", "expected '(' to start the values of 'tier'"),
        ("tier in ()", "the values of 'tier' must not be empty"),
        ("tier in (a b)", "expected a value or ',' in the values of 'tier'"),
        ("tier premium", "expected =, ==, !=, in or notin after the key 'tier'"),
        ("tier=a=b", "at '=' (position 6): expected ',' between requirements"),
        ("!tier=premium", "expected ',' between requirements"),
        ("!", "expected a label key after '!'"),
        ("tier>3", "operator '>' at position 4 is not supported"),
        ("Bad Key=1", "expected =, ==, !=, in or notin after the key 'Bad'"),
        ("bad_/key=1", "label key 'bad_/key' has an invalid prefix"),
        ("tier=not/ok", "label value 'not/ok' is invalid"),
        ("tier in (ok, -bad)", "label value '-bad' is invalid"),
        ("tier=" + "v" * 64, "at most 63"),
        ("=premium", "expected a label key"),
    ],
)
def test_invalid_selectors_name_the_offending_part(text: str, fragment: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("key", "operator", "values"),
    [
        ("tier", Operator.EQUALS, ()),
        ("tier", Operator.EQUALS, ("a", "b")),
        ("tier", Operator.IN, ()),
        ("tier", Operator.EXISTS, ("a",)),
        ("Not A Key", Operator.EXISTS, ()),
    ],
)
def test_invalid_requirements_are_refused_when_built(
    key: str, operator: Operator, values: tuple[str, ...]
) -> None:
    with pytest.raises(SelectorError):
        Requirement(key, operator, values)


# --- properties ----------------------------------------------------------------------------

_LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_ALNUM = _LOWER_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _edged(edge: str, middle: str) -> st.SearchStrategy[str]:
    """Strings that start and end with a character of `edge`: the k8s name shape."""
    ends = st.sampled_from(edge)
    longer = st.tuples(ends, st.text(middle, max_size=8), ends).map("".join)
    return st.one_of(ends, longer)


_dns_label = _edged(_LOWER_ALNUM, _LOWER_ALNUM + "-")
_prefix = st.lists(_dns_label, min_size=1, max_size=3).map(".".join)
_name = _edged(_ALNUM, _ALNUM + "-_.")
_key = st.one_of(_name, st.tuples(_prefix, _name).map("/".join))
_value = st.one_of(st.just(""), _name)

RawRequirement = tuple[str, Operator, tuple[str, ...]]


@st.composite
def _raw_requirement(draw: st.DrawFn, keys: st.SearchStrategy[str]) -> RawRequirement:
    key = draw(keys)
    operator = draw(st.sampled_from(list(Operator)))
    if operator in (Operator.EQUALS, Operator.NOT_EQUALS):
        values: tuple[str, ...] = (draw(_value),)
    elif operator in (Operator.IN, Operator.NOT_IN):
        values = tuple(draw(st.lists(_value, min_size=1, max_size=4)))
    else:
        values = ()
    return key, operator, values


def _spell(draw: Callable[[st.SearchStrategy[str]], str], raw: RawRequirement) -> str:
    """Write a requirement the way a person might: any legal spacing and spelling."""
    key, operator, values = raw
    space = st.sampled_from(["", " ", "  ", "\t"])

    def pad() -> str:
        return draw(space)

    match operator:
        case Operator.EQUALS:
            symbol = draw(st.sampled_from(["=", "=="]))
            return f"{pad()}{key}{pad()}{symbol}{pad()}{values[0]}{pad()}"
        case Operator.NOT_EQUALS:
            return f"{pad()}{key}{pad()}!={pad()}{values[0]}{pad()}"
        case Operator.IN | Operator.NOT_IN:
            listed = ",".join(f"{pad()}{value}{pad()}" for value in values)
            if values == ("",):
                listed = ","
            return f"{pad()}{key} {operator}{pad()}({listed}){pad()}"
        case Operator.EXISTS:
            return f"{pad()}{key}{pad()}"
        case Operator.DOES_NOT_EXIST:
            return f"{pad()}!{pad()}{key}{pad()}"


def _build(raws: list[RawRequirement]) -> Selector:
    return Selector.of(Requirement(key, operator, values) for key, operator, values in raws)


def _reference_match(raws: list[RawRequirement], labels: Mapping[str, str]) -> bool:
    for key, operator, values in raws:
        present = key in labels
        if operator == Operator.EQUALS and not (present and labels[key] == values[0]):
            return False
        if operator == Operator.NOT_EQUALS and present and labels[key] == values[0]:
            return False
        if operator == Operator.IN and not (present and labels[key] in values):
            return False
        if operator == Operator.NOT_IN and present and labels[key] in values:
            return False
        if operator == Operator.EXISTS and not present:
            return False
        if operator == Operator.DOES_NOT_EXIST and present:
            return False
    return True


@given(st.lists(_raw_requirement(_key), max_size=5))
def test_canonical_form_parses_back_to_an_equal_selector(raws: list[RawRequirement]) -> None:
    selector = _build(raws)
    assert parse_selector(str(selector)) == selector
    assert str(parse_selector(str(selector))) == str(selector)


@given(st.data())
def test_any_legal_spelling_parses_to_the_same_selector(data: st.DataObject) -> None:
    raws = data.draw(st.lists(_raw_requirement(_key), min_size=1, max_size=5))
    text = ",".join(_spell(data.draw, raw) for raw in raws)
    assert parse_selector(text) == _build(raws)


@given(st.data())
def test_matches_agrees_with_a_reference_evaluation(data: st.DataObject) -> None:
    # A small pool of keys and values makes hits and misses both likely.
    keys = data.draw(st.lists(_key, min_size=1, max_size=4, unique=True))
    values = data.draw(st.lists(_value, min_size=1, max_size=3, unique=True))
    raws = data.draw(st.lists(_raw_requirement(st.sampled_from(keys)), max_size=4))
    labels = data.draw(st.dictionaries(st.sampled_from(keys), st.sampled_from(values)))
    selector = _build(raws)
    assert selector.matches(labels) == _reference_match(raws, labels)
    assert parse_selector(str(selector)).matches(labels) == _reference_match(raws, labels)
