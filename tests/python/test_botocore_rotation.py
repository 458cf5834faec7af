"""botocore's InstanceMetadataProvider keeps working across a rotation of
the role credentials. imdsd is configured to mint credentials that live
901 s and are replaced 900 s before expiry, i.e. a new set every second, so
rotation is observed without long sleeps. botocore's own clock is moved 400 s
ahead (its `time_fetcher`, the clock it judges expiry by), which puts the
credentials inside its refresh window, so it refreshes as it would a few
hours into a real instance's life. (Without that, botocore randomly rewrites
the expiry of credentials that expire within 12 to 20 minutes, and refreshes
only minutes later.)"""

import datetime
import time

from dateutil.tz import tzlocal

import botocore.session

from botocore.credentials import InstanceMetadataProvider
from botocore.utils import InstanceMetadataFetcher

from conftest import start_imdsd

ROTATING = """
[credentials.default]
provider = "minted"
lifetime_secs = 901
refresh_before_secs = 900
"""

CREDS_PATH = "/latest/meta-data/iam/security-credentials/demo-role"


def test_refreshable_credentials_follow_a_rotation():
    with start_imdsd(config_text=ROTATING) as imdsd:
        fetcher = InstanceMetadataFetcher(
            timeout=5, num_attempts=2, base_url=imdsd.data_v4 + "/",
        )
        creds = InstanceMetadataProvider(iam_role_fetcher=fetcher).load()
        first = creds.get_frozen_credentials()
        creds._time_fetcher = lambda: datetime.datetime.now(tzlocal()) + datetime.timedelta(seconds=400)
        assert first.access_key.startswith("ASIA")
        deadline = time.monotonic() + 15
        while True:
            now = creds.get_frozen_credentials()
            if now.access_key != first.access_key:
                break
            assert time.monotonic() < deadline, "botocore never saw rotated credentials"
            time.sleep(0.3)
        # Both the rotated-out set (still unexpired) and the new one work:
        # the demo role may describe instances on the control plane.
        for c in (first, now):
            ec2 = botocore.session.get_session().create_client(
                "ec2", endpoint_url=imdsd.control, region_name="us-east-1",
                aws_access_key_id=c.access_key, aws_secret_access_key=c.secret_key,
                aws_session_token=c.token,
            )
            ids = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
            assert ids == ["i-0123456789abcdef0"]
