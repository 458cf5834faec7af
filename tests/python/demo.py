"""What `imdsd serve --demo` promises about its demo instance
(crates/imdsd/src/demo.rs, README) and the formats of docs/protocol/."""

import re

INSTANCE_ID = "i-0123456789abcdef0"
REGION = "us-east-1"
AZ = "us-east-1a"
ROLE = "demo-role"
PROFILE = "demo-role"  # the instance profile has the role's name
KEY_NAME = "demo-key"
TAGS = {"Name": "demo-instance", "Environment": "dev"}
USER_DATA = b"#!/bin/sh\necho 'hello from imdsd user data'\n"
PRIVATE_IPV4 = "127.0.0.1"
IPV6 = "::1"

# docs/protocol/credentials.md#role-document: formats of the role credential document.
ACCESS_KEY_RE = re.compile(r"^ASIA[A-Z0-9]{16}$")
SECRET_KEY_RE = re.compile(r"^[A-Za-z0-9/+]{40}$")
TIMESTAMP_FMT = "%Y-%m-%dT%H:%M:%SZ"
ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
