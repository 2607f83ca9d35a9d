"""ObjectKey: the identity of a namespaced object — parsed and formatted here and nowhere else.

Caches, work queues, logs and the CLI all name an object `<namespace>/<name>`; the etcd key
is `<prefix>/<kind segment>/<namespace>/<name>`. Names and namespaces cannot contain `/`
(DNS-1123), so the split is unambiguous.
"""

from __future__ import annotations

from typing import NamedTuple

from controller.resources.meta import DEFAULT_NAMESPACE


class ObjectKey(NamedTuple):
    """A NamedTuple: hashable, cheap (a work queue holds 100k of them) and ordered."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str, default_namespace: str = DEFAULT_NAMESPACE) -> ObjectKey:
        """`ns/name`, or a bare `name` in `default_namespace`. Raises ValueError otherwise."""
        namespace, sep, name = text.rpartition("/")
        if not name or "/" in namespace or (sep and not namespace):
            raise ValueError(f"{text!r} is not <namespace>/<name> or <name>")
        return cls(namespace if sep else default_namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"
