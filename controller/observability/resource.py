"""The OTel Resource (who is emitting) shared by traces and metrics."""

from __future__ import annotations

from opentelemetry.sdk.resources import SERVICE_NAME, Resource

DEFAULT_SERVICE_NAME = "lab-resource-controller"


def build_resource(service_name: str | None = None) -> Resource:
    """Resource from ``OTEL_RESOURCE_ATTRIBUTES``/``OTEL_SERVICE_NAME`` and ``service_name``.

    An explicit ``service_name`` wins; otherwise the standard variables decide, and only
    when neither names the service do we fall back to our name instead of the SDK's
    anonymous ``unknown_service``, which would make traces impossible to find.
    """
    attributes = {SERVICE_NAME: service_name} if service_name else {}
    resource = Resource.create(attributes)
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource
