"""Kubernetes label selectors (`labctl get -l`, informer index queries).

Grammar and matching follow k8s.io/apimachinery/pkg/labels: `=`/`==`, `!=`, `in`,
`notin`, `key` (exists), `!key` (does not exist), comma-separated, all required to match.
`!=` and `notin` also match objects that lack the key, as in Kubernetes. Selectors are
normalised (sorted, de-duplicated, `==` read as `=`) so equal meaning gives equal objects
and `str()` is a canonical form that parses back to an equal selector.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from controller.resources.names import label_key_error, label_value_error


class SelectorError(ValueError):
    pass


class Operator(StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


_SINGLE_VALUE = frozenset({Operator.EQUALS, Operator.NOT_EQUALS})
_VALUE_SET = frozenset({Operator.IN, Operator.NOT_IN})


@dataclass(frozen=True, order=True)
class Requirement:
    key: str
    operator: Operator
    values: tuple[str, ...] = ()
    _value_set: frozenset[str] = field(
        init=False, repr=False, compare=False, hash=False, default=frozenset()
    )

    def __post_init__(self) -> None:
        key_error = label_key_error(self.key)
        if key_error is not None:
            raise SelectorError(key_error)
        values = tuple(sorted(set(self.values)))
        if self.operator in _SINGLE_VALUE and len(values) != 1:
            raise SelectorError(
                f"'{self.key}{self.operator}' needs exactly one value, got {len(values)}"
            )
        if self.operator in _VALUE_SET and not values:
            raise SelectorError(f"'{self.key} {self.operator} ()' needs at least one value")
        if self.operator not in _SINGLE_VALUE | _VALUE_SET and values:
            raise SelectorError(f"an existence test on '{self.key}' takes no values")
        for value in values:
            value_error = label_value_error(value)
            if value_error is not None:
                raise SelectorError(f"in requirement on '{self.key}': {value_error}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "_value_set", frozenset(values))

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        match self.operator:
            case Operator.EQUALS | Operator.IN:
                return value is not None and value in self._value_set
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return value is None or value not in self._value_set
            case Operator.EXISTS:
                return self.key in labels
            case Operator.DOES_NOT_EXIST:
                return self.key not in labels

    def __str__(self) -> str:
        match self.operator:
            case Operator.EQUALS | Operator.NOT_EQUALS:
                return f"{self.key}{self.operator}{self.values[0]}"
            case Operator.IN | Operator.NOT_IN:
                # A lone empty value needs a comma: "()" would read as an empty set.
                listed = ",".join(self.values) or ","
                return f"{self.key} {self.operator} ({listed})"
            case Operator.EXISTS:
                return self.key
            case Operator.DOES_NOT_EXIST:
                return f"!{self.key}"


@dataclass(frozen=True)
class Selector:
    """All requirements must match; no requirements matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "requirements", tuple(sorted(set(self.requirements))))

    @classmethod
    def of(cls, requirements: Iterable[Requirement]) -> Selector:
        return cls(tuple(requirements))

    @property
    def is_empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


# --- parsing -----------------------------------------------------------------------------

_PUNCTUATION = frozenset("!=,()")
_UNSUPPORTED = frozenset("<>")
_WHITESPACE = frozenset(" \t\r\n")


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    position: int
    is_word: bool


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char in _WHITESPACE:
            index += 1
        elif char in _UNSUPPORTED:
            raise SelectorError(
                f"invalid label selector {text!r}: operator '{char}' at position {index} "
                "is not supported (use =, ==, !=, in, notin, key or !key)"
            )
        elif text.startswith(("==", "!="), index):
            tokens.append(_Token(text[index : index + 2], index, is_word=False))
            index += 2
        elif char in _PUNCTUATION:
            tokens.append(_Token(char, index, is_word=False))
            index += 1
        else:
            start = index
            while (
                index < len(text)
                and text[index] not in _PUNCTUATION
                and text[index] not in _WHITESPACE
                and text[index] not in _UNSUPPORTED
            ):
                index += 1
            tokens.append(_Token(text[start:index], start, is_word=True))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self._text = text
        self._tokens = _tokenize(text)
        self._index = 0

    def parse(self) -> Selector:
        requirements: list[Requirement] = []
        if not self._tokens:
            return Selector()
        while True:
            requirements.append(self._requirement())
            token = self._next()
            if token is None:
                return Selector.of(requirements)
            if token.text != ",":
                raise self._error(token, "expected ',' between requirements")

    def _peek(self) -> _Token | None:
        return self._tokens[self._index] if self._index < len(self._tokens) else None

    def _next(self) -> _Token | None:
        token = self._peek()
        if token is not None:
            self._index += 1
        return token

    def _error(self, token: _Token | None, problem: str) -> SelectorError:
        where = f"at {token.text!r} (position {token.position})" if token else "at the end"
        return SelectorError(f"invalid label selector {self._text!r} {where}: {problem}")

    def _requirement(self) -> Requirement:
        token = self._next()
        if token is not None and token.text == "!":
            key = self._key()
            return self._build(key, Operator.DOES_NOT_EXIST, ())
        if token is None or not token.is_word:
            raise self._error(token, "expected a label key")
        key = token
        operator = self._peek()
        if operator is None or operator.text == ",":
            return self._build(key, Operator.EXISTS, ())
        self._index += 1
        if operator.text in ("=", "==", "!="):
            kind = Operator.NOT_EQUALS if operator.text == "!=" else Operator.EQUALS
            return self._build(key, kind, (self._single_value(),))
        if operator.is_word and operator.text in ("in", "notin"):
            kind = Operator.IN if operator.text == "in" else Operator.NOT_IN
            return self._build(key, kind, self._value_set(key))
        raise self._error(operator, f"expected =, ==, !=, in or notin after the key {key.text!r}")

    def _key(self) -> _Token:
        token = self._next()
        if token is None or not token.is_word:
            raise self._error(token, "expected a label key after '!'")
        return token

    def _single_value(self) -> str:
        token = self._peek()
        if token is None or token.text == ",":
            return ""  # "tier=" selects an empty value, as in Kubernetes
        if not token.is_word:
            raise self._error(token, "expected a label value")
        self._index += 1
        return token.text

    def _value_set(self, key: _Token) -> tuple[str, ...]:
        opening = self._next()
        if opening is None or opening.text != "(":
            raise self._error(opening, f"expected '(' to start the values of {key.text!r}")
        values: list[str] = []
        expect_value = True
        while True:
            token = self._next()
            if token is None:
                raise self._error(None, f"missing ')' after the values of {key.text!r}")
            if token.text == ")":
                if expect_value and values:  # "(a,)" ends with an empty value
                    values.append("")
                break
            if token.text == ",":
                if expect_value:  # "(,a)" or "(a,,b)" hold empty values
                    values.append("")
                expect_value = True
            elif token.is_word and expect_value:
                values.append(token.text)
                expect_value = False
            else:
                raise self._error(token, f"expected a value or ',' in the values of {key.text!r}")
        if not values:
            raise self._error(opening, f"the values of {key.text!r} must not be empty")
        return tuple(values)

    def _build(self, key: _Token, operator: Operator, values: tuple[str, ...]) -> Requirement:
        try:
            return Requirement(key.text, operator, values)
        except SelectorError as exc:
            raise SelectorError(
                f"invalid label selector {self._text!r} at position {key.position}: {exc}"
            ) from exc


def parse_selector(text: str) -> Selector:
    """Parse `labctl -l` syntax; raises SelectorError naming the offending part."""
    return _Parser(text).parse()
