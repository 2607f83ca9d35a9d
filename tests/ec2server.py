"""A real EC2 API server on loopback for tests: moto in server mode, plus what tests need.

boto3 talks to it over HTTP (AWS_ENDPOINT_URL), so requests are signed, serialized, sent,
parsed and retried exactly as against AWS; nothing in the code under test is patched.

On top of moto's EC2, this server:

- counts requests by EC2 Action (`calls()`), for call budgets and "no duplicate" checks;
- carries out requests of one Action but withholds the answers (`hold()`/`release()`),
  so a client can be killed after EC2 acted and before it heard back;
- answers the next N requests (optionally of one Action) with EC2's own throttling error,
  `RequestLimitExceeded` as HTTP 503 in EC2's XML error shape (`throttle()`), so botocore's
  retry mode and our error classification meet the real thing;
- validates AMIs (moto's MOTO_ENABLE_AMI_VALIDATION), so an unknown AMI fails like on AWS;
- makes RunInstances idempotent per ClientToken, supports the `client-token` filter of
  DescribeInstances, and refuses to start or stop a terminated instance with
  `IncorrectInstanceState` — EC2 behaviours moto (5.x) lacks and the provider relies on.
  They are taught to moto's backend once per process (`_teach_moto`).

Moto keeps its state in process-wide backends; `reset()` empties them between tests.
"""

from __future__ import annotations

import collections
import io
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import boto3
import requests
from botocore.config import Config
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from controller.labworker.aws.ec2 import TAG_UID

REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIATESTTESTTESTTEST",
    "AWS_SECRET_ACCESS_KEY": "test-secret-access-key-not-real",
}

_THROTTLE_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
    b"<Message>Request limit exceeded.</Message></Error></Errors>"
    b"<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
)

INSPECTOR = "ec2-test-inspector"
"""User-agent marker of the test's own requests, which are neither counted nor throttled."""
_taught = False
_teach_lock = threading.Lock()
_run_lock = threading.Lock()

StartResponse = Callable[..., Any]


def _teach_moto() -> None:
    global _taught
    with _teach_lock:
        if _taught:
            return
        import moto.settings
        from moto.core.responses import ActionResult
        from moto.ec2 import utils
        from moto.ec2.responses.instances import InstanceResponse

        moto.settings.ENABLE_AMI_VALIDATION = True
        utils.filter_dict_attribute_mapping["client-token"] = "client_token"
        original = InstanceResponse.run_instances

        def run_instances(self: Any) -> Any:
            token = self._get_param("ClientToken")
            with _run_lock:  # the check and the launch as one step, as EC2 does
                if token:
                    for reservation in self.ec2_backend.reservations.values():
                        if any(i.client_token == token for i in reservation.instances):
                            return ActionResult(reservation)
                return original(self)

        InstanceResponse.run_instances = run_instances  # type: ignore[method-assign]

        from moto.ec2.exceptions import EC2ClientError
        from moto.ec2.models.instances import Instance

        def refusing(verb: str, original_call: Any) -> Any:
            def call(self: Any) -> Any:
                if self._state.name in ("shutting-down", "terminated"):
                    raise EC2ClientError(
                        "IncorrectInstanceState",
                        f"The instance '{self.id}' is not in a state from which it can be {verb}.",
                    )
                return original_call(self)

            return call

        Instance.start = refusing("started", Instance.start)  # type: ignore[method-assign]
        Instance.stop = refusing("stopped", Instance.stop)  # type: ignore[method-assign]
        _taught = True


class _Middleware:
    """Counts and throttles in front of moto's WSGI app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.throttle_left = 0
        self.throttle_action: str | None = None
        self.hold_action: str | None = None
        self.held = 0
        self.released = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        action = None
        inspecting = INSPECTOR in environ.get("HTTP_USER_AGENT", "")
        if (
            environ.get("REQUEST_METHOD") == "POST"
            and not inspecting
            and not environ.get("PATH_INFO", "").startswith("/moto-api")
        ):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            values = parse_qs(body.decode("utf-8", "replace")).get("Action")
            action = values[0] if values else None
        if action is not None:
            with self.lock:
                self.counts[action] += 1
                throttled = self.throttle_left > 0 and self.throttle_action in (None, action)
                if throttled:
                    self.throttle_left -= 1
                    self.counts[f"{action}:throttled"] += 1
            if throttled:
                start_response(
                    "503 Service Unavailable",
                    [("Content-Type", "text/xml"), ("Content-Length", str(len(_THROTTLE_BODY)))],
                )
                return [_THROTTLE_BODY]
        with self.lock:
            holding = action is not None and action == self.hold_action
        if holding:
            # Done in moto, answer withheld: the "response lost" case of a client killed now.
            body = b"".join(self.app(environ, start_response))
            with self.lock:
                self.held += 1
            self.released.wait(60)
            return [body]
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


class Ec2TestServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._middleware = _Middleware(DomainDispatcherApplication(create_backend_app))

    def start(self) -> Ec2TestServer:
        _teach_moto()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
        self._server = make_server(
            self.host, 0, self._middleware, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ec2-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Ec2TestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://{self.host}:{self._server.server_port}"

    def env(self) -> dict[str, str]:
        """What a process needs to talk to this server through boto3's standard chain."""
        return {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    # -- faults and counters ------------------------------------------------------------------

    def reset(self) -> None:
        """Empty moto's backends and the counters (between tests)."""
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()
        with self._middleware.lock:
            self._middleware.counts.clear()
            self._middleware.throttle_left = 0

    def calls(self) -> collections.Counter[str]:
        with self._middleware.lock:
            return collections.Counter(self._middleware.counts)

    def reset_calls(self) -> None:
        """Zero the counters; cancel throttling and holds."""
        self.release()
        with self._middleware.lock:
            self._middleware.counts.clear()
            self._middleware.throttle_left = 0

    def throttle(self, count: int, action: str | None = None) -> None:
        """Answer the next `count` requests (of `action`, if given) with RequestLimitExceeded."""
        with self._middleware.lock:
            self._middleware.throttle_left = count
            self._middleware.throttle_action = action

    def hold(self, action: str) -> None:
        """Carry out every `action` request but withhold its answer until `release()`."""
        with self._middleware.lock:
            self._middleware.released.clear()
            self._middleware.hold_action = action
            self._middleware.held = 0

    def held(self) -> int:
        """How many requests have been carried out with their answer withheld."""
        with self._middleware.lock:
            return self._middleware.held

    def release(self) -> None:
        with self._middleware.lock:
            self._middleware.hold_action = None
        self._middleware.released.set()

    def throttled_left(self) -> int:
        with self._middleware.lock:
            return self._middleware.throttle_left

    # -- looking at moto's state (through the API, like an operator would) ----------------------

    def client(self, service: str = "ec2") -> Any:
        """A client for the test's own look-ups: neither counted nor throttled."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(user_agent_extra=INSPECTOR),
        )

    def instances(self) -> list[dict[str, Any]]:
        """Every instance moto holds (terminated ones included)."""
        pages = self.client().get_paginator("describe_instances").paginate()
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def instances_by_uid(self) -> dict[str, list[dict[str, Any]]]:
        by_uid: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for instance in self.instances():
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            if TAG_UID in tags:
                by_uid[tags[TAG_UID]].append(instance)
        return dict(by_uid)

    def some_image(self) -> str:
        """An AMI id that moto ships (its copy of real-world AMIs)."""
        images = self.client().describe_images(Owners=["amazon"])["Images"]
        return str(sorted(i["ImageId"] for i in images)[0])

    def network(self) -> dict[str, str]:
        """A VPC, subnet, security group, key pair and instance profile; their ids.

        Names are unique per call: moto's state is process-wide, shared by every server.
        """
        ec2 = self.client()
        suffix = uuid.uuid4().hex[:8]
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(
            GroupName=f"lab-hosts-{suffix}", Description="lab hosts", VpcId=vpc
        )
        ec2.create_key_pair(KeyName=f"lab-key-{suffix}")
        profile = f"lab-host-profile-{suffix}"
        self.client("iam").create_instance_profile(InstanceProfileName=profile)
        return {
            "vpc": vpc,
            "subnet": subnet,
            "security_group": group["GroupId"],
            "key_name": f"lab-key-{suffix}",
            "instance_profile": profile,
        }
