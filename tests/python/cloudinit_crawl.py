"""Run by test_cloud_init.py with Debian's /usr/bin/python3 (cloud-init is
not on PyPI): cloud-init's own EC2 datasource crawls imdsd the way it does at
boot on AWS, and the result is printed as one JSON object on stdout.
cloud-init's debug log goes to stderr.

usage: /usr/bin/python3 cloudinit_crawl.py http://127.0.0.1:PORT
"""

import base64
import json
import logging
import sys
import tempfile


def main() -> int:
    url = sys.argv[1].rstrip("/")
    from cloudinit import distros, helpers, version
    from cloudinit import log as ci_log
    from cloudinit.sources import DataSourceEc2 as ec2_ds
    from cloudinit.sources.helpers import ec2

    # Importing cloudinit.log resets the logging setup, so set it up after.
    ci_log.setupBasicLogging(
        logging.DEBUG, logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    tmp = tempfile.mkdtemp(prefix="cloudinit-")
    paths = helpers.Paths({"cloud_dir": tmp, "run_dir": tmp})
    distro = distros.fetch("debian")("debian", {}, paths)
    sys_cfg = {
        "datasource": {
            "Ec2": {
                "metadata_urls": [url],
                # cloud-init waits up to 120 s / 50 s per try by default.
                "max_wait": 30,
                "timeout": 5,
            }
        }
    }
    ds = ec2_ds.DataSourceEc2(sys_cfg, distro, paths)
    # On AWS identify_platform() finds "aws" in the DMI data; the test runs
    # on a machine that is no EC2 instance, so say it. This is what makes
    # the datasource use IMDSv2 tokens (and never IMDSv1).
    ds._cloud_name = ec2_ds.CloudNames.AWS

    # DataSourceEc2.crawl_metadata: token PUT (wait_for_metadata_service),
    # version probe, then ec2.get_instance_userdata / get_instance_metadata /
    # get_instance_identity with the datasource's token header callback.
    crawled = ds.crawl_metadata()

    out = {
        "cloud_init_version": version.version_string(),
        "metadata_address": ds.metadata_address,
        "api_version": crawled.get("_metadata_api_version"),
        "meta_data": crawled.get("meta-data"),
        "dynamic": crawled.get("dynamic"),
        "user_data_b64": None,
        "public_ssh_keys": None,
        "min_version_meta_data": None,
    }
    user_data = crawled.get("user-data")
    if user_data is not None:
        if isinstance(user_data, str):
            user_data = user_data.encode("utf-8")
        out["user_data_b64"] = base64.b64encode(user_data).decode("ascii")
    if crawled.get("meta-data"):
        ds.metadata = crawled["meta-data"]
        out["public_ssh_keys"] = ds.get_public_ssh_keys()

    # The fallback every cloud-init uses when none of its preferred
    # versions answers: the 2009-04-04 tree, same helper, same tokens.
    out["min_version_meta_data"] = ec2.get_instance_metadata(
        ds.min_metadata_version,
        ds.metadata_address or url,
        headers_cb=ds._get_headers,
        headers_redact=ec2_ds.AWS_TOKEN_REDACT,
        exception_cb=ds._refresh_stale_aws_token_cb,
    )

    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
