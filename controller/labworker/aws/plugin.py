"""The `aws` provider as a plug-in (entry point `labctl.providers: aws`): its settings.

Declaring settings imports nothing heavy, so `labctl run --help` and `labctl providers`
stay fast; boto3 and httpx are imported by `build`, once LAB_PROVIDER=aws is chosen.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from controller.labworker.plugins import ProviderContext, ProviderPlugin, ProviderSetting

if TYPE_CHECKING:
    from controller.labworker.aws.provider import AwsProvider

log = logging.getLogger("controller.labworker.aws")

SECRETS_DIR: Final = "LAB_SECRETS_DIR"

SETTINGS: Final = (
    ProviderSetting(
        "AWS_REGION",
        None,
        "AWS region of the lab hosts (else AWS_DEFAULT_REGION or the profile's region); "
        "credentials and AWS_ENDPOINT_URL(_EC2) come from the standard AWS chain",
    ),
    ProviderSetting(
        "LAB_AWS_DEFAULT_IMAGE", None, "AMI for workers whose spec.instance.image is empty"
    ),
    ProviderSetting("LAB_AWS_SUBNET_ID", None, "subnet to launch lab hosts in"),
    ProviderSetting(
        "LAB_AWS_SECURITY_GROUP_IDS", None, "security groups of lab hosts, comma-separated"
    ),
    ProviderSetting("LAB_AWS_KEY_NAME", None, "EC2 key pair for SSH to lab hosts"),
    ProviderSetting(
        "LAB_AWS_INSTANCE_PROFILE", None, "IAM instance profile of lab hosts: name or ARN"
    ),
    ProviderSetting("LAB_AWS_VOLUME_TYPE", "gp3", "EBS type of the root volume"),
    ProviderSetting(
        "LAB_AWS_BOOT_ESTIMATE",
        "300",
        "seconds a launched instance takes to run; a pending one is looked at again then",
    ),
    ProviderSetting(
        "LAB_AWS_POLL_INTERVAL",
        "15",
        "shortest wait, seconds, before looking again at an instance that is changing state",
    ),
    ProviderSetting(
        "LAB_AWS_MAX_ATTEMPTS", "3", "attempts of one EC2 call (botocore retries, with backoff)"
    ),
    ProviderSetting("LAB_AWS_RETRY_MODE", "standard", "botocore retry mode: standard or adaptive"),
    ProviderSetting("LAB_AWS_CONNECT_TIMEOUT", "5", "EC2 connect timeout, seconds"),
    ProviderSetting("LAB_AWS_READ_TIMEOUT", "20", "EC2 read timeout, seconds"),
    # The LAB_CML_* names are cml.ENV_NAMES (a unit test keeps the two equal).
    ProviderSetting(
        "LAB_CML_URL_TEMPLATE",
        "https://{address}",
        "base URL of a host's CML API; {address} is the instance's public (else private) IP",
    ),
    ProviderSetting("LAB_CML_USERNAME", "admin", "CML admin user"),
    ProviderSetting(
        "LAB_CML_PASSWORD_FILE",
        None,
        "file holding the CML admin password, re-read at each login (preferred)",
    ),
    ProviderSetting(
        "LAB_CML_PASSWORD",
        None,
        "CML admin password (visible in the environment; prefer LAB_CML_PASSWORD_FILE)",
        secret=True,
    ),
    ProviderSetting("LAB_CML_CA_CERT", None, "CA bundle that signed the CML hosts' certificates"),
    ProviderSetting(
        "LAB_CML_INSECURE",
        "false",
        "true: do not verify CML's TLS certificate (logged as a warning at start)",
    ),
    ProviderSetting("LAB_CML_TIMEOUT", "10", "seconds per CML API request"),
    ProviderSetting(
        "LAB_CML_BOOT_POLL", "10", "seconds before asking a host that is not answering yet again"
    ),
    ProviderSetting(
        SECRETS_DIR,
        None,
        "directory of mounted license secrets: spec.host.licenseSecretRef names the file "
        "<dir>/<ref> or <dir>/<ref>/token",
    ),
)


def build(context: ProviderContext) -> AwsProvider:
    """The provider from its resolved settings; ValueError names a bad setting."""
    from controller.labworker.aws.cml import CmlClient, CmlSettings
    from controller.labworker.aws.ec2 import Ec2Instances, settings_from
    from controller.labworker.aws.provider import AwsProvider
    from controller.labworker.provider import ProviderFatalError

    values = context.settings
    ec2_settings = settings_from(values)
    cml_settings = CmlSettings.from_env({k: v for k, v in values.items() if v is not None})
    try:
        ec2 = Ec2Instances(ec2_settings)
    except ProviderFatalError as exc:
        raise ValueError(str(exc)) from None
    secrets_dir = (values.get(SECRETS_DIR) or "").strip() or None
    if secrets_dir is None:
        log.warning(
            "%s is not set: workers with spec.host.autoLicense will show Licensed=False "
            "(reason LicenseSecretMissing)",
            SECRETS_DIR,
        )
    return AwsProvider(ec2, CmlClient(cml_settings), secrets_dir)


PLUGIN = ProviderPlugin(
    name="aws",
    summary="EC2 instances running Cisco Modeling Labs (boto3 + the CML REST API)",
    build=build,
    settings=SETTINGS,
)
