"""botocore's real IMDS classes against a running `imdsd serve --demo`.

These are the code paths boto3, the AWS CLI v1 and every botocore-based tool
take on EC2: InstanceMetadataFetcher (role credentials), InstanceMetadataProvider
(the credential chain entry), InstanceMetadataRegionFetcher / IMDSRegionProvider
(region), and IMDSFetcher._get_request (any other path).
"""

from __future__ import annotations

import datetime as dt
import json

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import InstanceMetadataProvider, RefreshableCredentials
from botocore.utils import (
    IMDSFetcher,
    IMDSRegionProvider,
    InstanceMetadataFetcher,
    InstanceMetadataRegionFetcher,
    _RetriesExceededError,
)

import demo

CREDS_PATH = f"latest/meta-data/iam/security-credentials/{demo.ROLE}"
CRED_FIELDS = ["Code", "LastUpdated", "Type", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"]
TOKENS_ISSUED = "imds_tokens_issued_total"
NO_TOKEN = "imds_no_token_requests_total"

# botocore's default is 1 s; a debug build on a busy 2-core machine gets slack.
TIMEOUT_S = 5


def make(cls, endpoint: str, **config):
    """A botocore fetcher configured the way a botocore Session configures it
    from ec2_metadata_service_endpoint[_mode]."""
    return cls(
        timeout=TIMEOUT_S,
        num_attempts=1,
        config={"ec2_metadata_service_endpoint": endpoint, **config},
        env={},
    )


def utc(ts: str) -> dt.datetime:
    return dt.datetime.strptime(ts, demo.TIMESTAMP_FMT).replace(tzinfo=dt.timezone.utc)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def assert_botocore_role_credentials(creds: dict) -> None:
    assert creds, "botocore got no credentials from imdsd (see its debug log)"
    assert creds["role_name"] == demo.ROLE
    assert demo.ACCESS_KEY_RE.match(creds["access_key"]), creds["access_key"]
    assert demo.SECRET_KEY_RE.match(creds["secret_key"]), creds["secret_key"]
    assert creds["token"] and creds["token"].strip() == creds["token"]
    # botocore rewrites expiry_time to now+~10-20 min when the served
    # credentials expire within its refresh window, so > 1 h proves both
    # the format and a sane lifetime.
    assert utc(creds["expiry_time"]) > now() + dt.timedelta(hours=1), creds["expiry_time"]


def credential_document(imdsd, token: str | None) -> dict:
    resp = imdsd.get(CREDS_PATH, token=token)
    assert resp.status == 200, (resp.status, resp.body)
    doc = resp.json()
    assert list(doc) == CRED_FIELDS, f"fields/order differ from docs/protocol/credentials.md#role-document: {list(doc)}"
    assert doc["Code"] == "Success" and doc["Type"] == "AWS-HMAC"
    assert demo.ACCESS_KEY_RE.match(doc["AccessKeyId"])
    assert demo.SECRET_KEY_RE.match(doc["SecretAccessKey"])
    assert utc(doc["LastUpdated"]) <= now() + dt.timedelta(seconds=5)
    return doc


def test_instance_metadata_fetcher_returns_role_credentials(imdsd):
    creds = make(InstanceMetadataFetcher, imdsd.data_v4).retrieve_iam_role_credentials()
    assert_botocore_role_credentials(creds)


def test_instance_metadata_provider_loads_working_refreshable_credentials(imdsd):
    fetcher = make(InstanceMetadataFetcher, imdsd.data_v4)
    creds = InstanceMetadataProvider(iam_role_fetcher=fetcher).load()

    assert isinstance(creds, RefreshableCredentials), creds
    assert creds.method == "iam-role"
    # Not inside botocore's 15 min advisory window: no refresh on every call.
    assert not creds.refresh_needed()
    frozen = creds.get_frozen_credentials()

    v2 = credential_document(imdsd, imdsd.token())
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        v2["AccessKeyId"], v2["SecretAccessKey"], v2["Token"],
    )

    # The frozen credentials sign an API request as a session credential.
    request = AWSRequest(
        method="POST",
        url="https://sts.us-east-1.amazonaws.com/",
        data="Action=GetCallerIdentity&Version=2011-06-15",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    SigV4Auth(frozen, "sts", demo.REGION).add_auth(request)
    auth = request.headers["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/"), auth
    assert f"/{demo.REGION}/sts/aws4_request" in auth
    assert request.headers["X-Amz-Security-Token"] == frozen.token


def test_session_credential_chain_finds_imds_credentials(imdsd, monkeypatch, tmp_path):
    # What `boto3.Session()` / `aws` do on an instance with no other
    # credentials, with botocore's defaults (1 s timeout, 1 attempt).
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imdsd.data_v4)
    session = botocore.session.Session()

    creds = session.get_credentials()
    assert creds is not None, "botocore's credential chain found nothing"
    assert creds.method == "iam-role"
    frozen = creds.get_frozen_credentials()
    v2 = credential_document(imdsd, imdsd.token())
    assert frozen.access_key == v2["AccessKeyId"]
    assert frozen.token == v2["Token"]

    assert IMDSRegionProvider(session).provide() == demo.REGION


def test_region_fetcher_reads_the_availability_zone(imdsd):
    # botocore asks for placement/availability-zone/ (trailing slash) and
    # drops the last character: a trailing newline would yield 'us-east-1a'.
    assert make(InstanceMetadataRegionFetcher, imdsd.data_v4).retrieve_region() == demo.REGION


def test_ipv6_endpoint_mode(imdsd):
    config = {"ec2_metadata_service_endpoint_mode": "ipv6"}
    creds_fetcher = make(InstanceMetadataFetcher, imdsd.data_v6, **config)
    assert creds_fetcher.get_base_url() == imdsd.data_v6
    creds = creds_fetcher.retrieve_iam_role_credentials()
    assert_botocore_role_credentials(creds)
    # Same instance, same IMDSv2 credential set, whichever address family.
    v2 = credential_document(imdsd, imdsd.token())
    assert creds["access_key"] == v2["AccessKeyId"]

    region_fetcher = make(InstanceMetadataRegionFetcher, imdsd.data_v6, **config)
    assert region_fetcher.retrieve_region() == demo.REGION


def test_ipv6_endpoint_from_session_environment(imdsd, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imdsd.data_v6)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")
    monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", str(TIMEOUT_S))
    session = botocore.session.Session()
    creds = session.get_credentials()
    assert creds is not None and creds.method == "iam-role"
    assert demo.ACCESS_KEY_RE.match(creds.get_frozen_credentials().access_key)
    assert IMDSRegionProvider(session).provide() == demo.REGION


def test_botocore_uses_imdsv2_and_gets_the_imdsv2_credential_set(imdsd):
    fetcher = make(InstanceMetadataFetcher, imdsd.data_v4)

    before = imdsd.metrics()
    creds = fetcher.retrieve_iam_role_credentials()
    after = imdsd.metrics()
    assert_botocore_role_credentials(creds)
    # One PUT /latest/api/token per credential fetch, and no token-less GET.
    assert after.get(TOKENS_ISSUED, 0) == before.get(TOKENS_ISSUED, 0) + 1, (
        before.get(TOKENS_ISSUED), after.get(TOKENS_ISSUED))
    assert after.get(NO_TOKEN, 0) == before.get(NO_TOKEN, 0)

    # A manual IMDSv2 request (the AWS docs' curl recipe) sees the same set...
    v2 = credential_document(imdsd, imdsd.token())
    assert (creds["access_key"], creds["secret_key"], creds["token"], creds["expiry_time"]) == (
        v2["AccessKeyId"], v2["SecretAccessKey"], v2["Token"], v2["Expiration"],
    )

    # ...and a token-less (IMDSv1) caller gets a different one (ec2:RoleDelivery 1.0).
    before_v1 = imdsd.metric(NO_TOKEN)
    v1 = credential_document(imdsd, None)
    assert imdsd.metric(NO_TOKEN) == before_v1 + 1
    assert v1["AccessKeyId"] != v2["AccessKeyId"]
    assert v1["SecretAccessKey"] != v2["SecretAccessKey"]
    assert v1["Token"] != v2["Token"]

    # The role listing and iam/info are the same for both kinds of caller.
    token = imdsd.token()
    for path in ("latest/meta-data/iam/security-credentials/", "latest/meta-data/iam/info"):
        assert imdsd.get(path).body == imdsd.get(path, token=token).body


def test_botocore_gets_nothing_with_a_tampered_token(imdsd):
    fetcher = make(IMDSFetcher, imdsd.data_v4)
    token = fetcher._fetch_metadata_token()
    assert token
    tampered = ("A" if token[0] != "A" else "B") + token[1:]
    resp = imdsd.get("latest/meta-data/instance-id", token=tampered)
    assert resp.status == 401, (resp.status, resp.body)
    try:
        fetcher._get_request("latest/meta-data/instance-id", None, token=tampered)
    except _RetriesExceededError:
        pass
    else:
        raise AssertionError("botocore accepted an answer to a tampered token")
    # The untampered token still works.
    assert fetcher._get_request("latest/meta-data/instance-id", None, token=token).text == demo.INSTANCE_ID


def test_identity_document_through_imds_fetcher(imdsd):
    fetcher = make(IMDSFetcher, imdsd.data_v4)
    token = fetcher._fetch_metadata_token()
    assert token, "botocore could not get an IMDSv2 token"
    resp = fetcher._get_request("latest/dynamic/instance-identity/document", None, token=token)
    doc = json.loads(resp.text)

    assert set(doc) == {
        "accountId", "architecture", "availabilityZone", "billingProducts",
        "devpayProductCodes", "marketplaceProductCodes", "imageId", "instanceId",
        "instanceType", "kernelId", "pendingTime", "privateIp", "ramdiskId",
        "region", "version",
    }, sorted(doc)
    assert doc["instanceId"] == demo.INSTANCE_ID
    assert doc["region"] == demo.REGION
    assert doc["availabilityZone"] == demo.AZ
    assert doc["privateIp"] == demo.PRIVATE_IPV4
    assert doc["version"] == "2017-09-30"
    assert doc["architecture"] in ("i386", "x86_64", "arm64")
    assert doc["imageId"].startswith("ami-")
    assert doc["devpayProductCodes"] is None
    assert utc(doc["pendingTime"]) < now()
    assert demo.ACCOUNT_RE.match(doc["accountId"]), doc["accountId"]

    # The account agrees with the instance profile ARN and with the
    # instance identity credentials' info document.
    info = json.loads(fetcher._get_request("latest/meta-data/iam/info", None, token=token).text)
    assert info["InstanceProfileArn"] == (
        f"arn:aws:iam::{doc['accountId']}:instance-profile/{demo.PROFILE}"
    )
    ident = json.loads(
        fetcher._get_request("latest/meta-data/identity-credentials/ec2/info", None, token=token).text
    )
    assert ident["AccountId"] == doc["accountId"]
    assert ident["Code"] == "Success"
