//! The JSON documents of the metadata tree, byte for byte.
//!
//! Owns the exact layout of `iam/info`, `iam/security-credentials/<role>`
//! (success and error documents), `identity-credentials/ec2/info` and
//! `dynamic/instance-identity/document` (docs/protocol/credentials.md#layout,
//! docs/protocol/categories.md#identity-document). Real IMDS writes these with
//! a layout no JSON library reproduces (`"Key" : value`, two-space indent,
//! arrays as `[ "a", "b" ]`, no trailing newline), and the identity document's
//! bytes are what later gets signed, so the layout is written out by hand here;
//! `serde_json` only escapes string values. It does not own where the documents
//! live in the tree (that is [`crate::tree`]) nor where credentials come from.

use imds_core::instance::IamInstanceProfile;
use imds_core::timefmt::{event_time, iso8601_secs};
use imds_core::{InstanceRecord, RoleCredentials};

/// `Code` of every successful credential or info document.
pub const CODE_SUCCESS: &str = "Success";

/// `Code` of the error document served when credentials for the role cannot
/// be obtained (the code the Rust SDK special-cases).
pub const CODE_ASSUME_ROLE_UNAUTHORIZED: &str = "AssumeRoleUnauthorizedAccess";

/// `Type` of every credential document.
pub const CREDENTIALS_TYPE: &str = "AWS-HMAC";

/// `version` of the instance identity document, a constant on EC2.
pub const IDENTITY_DOCUMENT_VERSION: &str = "2017-09-30";

/// A JSON value as real IMDS lays it out.
enum Value<'a> {
    /// A string, escaped by `serde_json`.
    Str(&'a str),
    /// A string array written `[ "a", "b" ]`; an empty one is written `null`,
    /// as EC2 does for absent product codes.
    StrList(&'a [String]),
    /// `null`.
    Null,
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Str(s)
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(s: Option<&'a str>) -> Self {
        s.map_or(Value::Null, Value::Str)
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    // Serialising a `&str` cannot fail; the fallback keeps the document valid
    // JSON without a panic path.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_str(&mut out, s);
    out
}

/// Writes `{`, one `  "key" : value` line per field (comma at line end), `}`,
/// without a trailing newline.
fn object(fields: &[(&str, Value<'_>)]) -> String {
    let mut out = String::with_capacity(64 + fields.len() * 48);
    out.push_str("{\n");
    for (i, (key, value)) in fields.iter().enumerate() {
        out.push_str("  ");
        push_json_str(&mut out, key);
        out.push_str(" : ");
        match value {
            Value::Str(s) => push_json_str(&mut out, s),
            Value::Null => out.push_str("null"),
            Value::StrList([]) => out.push_str("null"),
            Value::StrList(items) => {
                out.push_str("[ ");
                for (j, item) in items.iter().enumerate() {
                    if j > 0 {
                        out.push_str(", ");
                    }
                    push_json_str(&mut out, item);
                }
                out.push_str(" ]");
            }
        }
        if i + 1 < fields.len() {
            out.push(',');
        }
        out.push('\n');
    }
    out.push('}');
    out
}

/// `meta-data/iam/info` (docs/protocol/credentials.md#iam-info): `Code`,
/// `LastUpdated`, `InstanceProfileArn`, `InstanceProfileId`.
pub fn iam_info(profile: &IamInstanceProfile, last_updated: u64) -> String {
    let last_updated = iso8601_secs(last_updated);
    object(&[
        ("Code", CODE_SUCCESS.into()),
        ("LastUpdated", last_updated.as_str().into()),
        ("InstanceProfileArn", profile.arn.as_str().into()),
        ("InstanceProfileId", profile.id.as_str().into()),
    ])
}

/// A successful credential document
/// (docs/protocol/credentials.md#role-document), used for
/// `iam/security-credentials/<role>` and for
/// `identity-credentials/ec2/security-credentials/ec2-instance`.
pub fn role_credentials(creds: &RoleCredentials) -> String {
    let last_updated = iso8601_secs(creds.last_updated);
    let expiration = iso8601_secs(creds.expiration);
    object(&[
        ("Code", CODE_SUCCESS.into()),
        ("LastUpdated", last_updated.as_str().into()),
        ("Type", CREDENTIALS_TYPE.into()),
        ("AccessKeyId", creds.access_key_id.as_str().into()),
        ("SecretAccessKey", creds.secret_access_key.as_str().into()),
        ("Token", creds.token.as_str().into()),
        ("Expiration", expiration.as_str().into()),
    ])
}

/// The error document served with status 200 while no credentials exist for
/// `role_name` (docs/protocol/credentials.md#error-document): `Code`
/// [`CODE_ASSUME_ROLE_UNAUTHORIZED`], a `Message`, `LastUpdated` = `now`.
pub fn credentials_error(role_name: &str, now: u64) -> String {
    let message = format!(
        "EC2 cannot assume the role {role_name}.  Please see documentation at https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2.html."
    );
    credentials_error_document(CODE_ASSUME_ROLE_UNAUTHORIZED, &message, now)
}

/// The error document (docs/protocol/credentials.md#error-document) with any
/// `Code` and `Message`.
pub fn credentials_error_document(code: &str, message: &str, now: u64) -> String {
    let last_updated = iso8601_secs(now);
    object(&[
        ("Code", code.into()),
        ("Message", message.into()),
        ("LastUpdated", last_updated.as_str().into()),
    ])
}

/// `meta-data/identity-credentials/ec2/info`
/// (docs/protocol/credentials.md#identity-credentials): `Code`, `LastUpdated`,
/// `AccountId`.
pub fn identity_credentials_info(account_id: &str, last_updated: u64) -> String {
    let last_updated = iso8601_secs(last_updated);
    object(&[
        ("Code", CODE_SUCCESS.into()),
        ("LastUpdated", last_updated.as_str().into()),
        ("AccountId", account_id.into()),
    ])
}

/// `dynamic/instance-identity/document`
/// (docs/protocol/categories.md#identity-document), in the key order of the
/// 2023 capture. Empty product-code lists, an absent kernel or RAM disk and (on
/// an IPv6-only instance) an absent private IPv4 are `null`;
/// `devpayProductCodes` is always `null`.
pub fn identity_document(record: &InstanceRecord) -> String {
    let pending_time = iso8601_secs(record.launch_time);
    let private_ip = record.private_ipv4().map(|ip| ip.to_string());
    object(&[
        ("accountId", record.owner_id.as_str().into()),
        ("architecture", record.architecture.as_str().into()),
        ("availabilityZone", record.placement.availability_zone.as_str().into()),
        ("billingProducts", Value::StrList(&record.billing_products)),
        ("devpayProductCodes", Value::Null),
        ("marketplaceProductCodes", Value::StrList(&record.product_codes)),
        ("imageId", record.image_id.as_str().into()),
        ("instanceId", record.instance_id.as_str().into()),
        ("instanceType", record.instance_type.as_str().into()),
        ("kernelId", record.kernel_id.as_deref().into()),
        ("pendingTime", pending_time.as_str().into()),
        ("privateIp", private_ip.as_deref().into()),
        ("ramdiskId", record.ramdisk_id.as_deref().into()),
        ("region", record.placement.region.as_str().into()),
        ("version", IDENTITY_DOCUMENT_VERSION.into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use imds_core::InstanceId;
    use imds_core::sample::sample_instance;
    use std::net::Ipv4Addr;

    fn creds(key: &str, secret: &str, token: &str, from: u64, to: u64) -> RoleCredentials {
        RoleCredentials {
            access_key_id: key.into(),
            secret_access_key: secret.into(),
            token: token.into(),
            last_updated: from,
            expiration: to,
        }
    }

    /// The record of the example document of docs/protocol/categories.md#identity-document.
    fn spec_example_record() -> InstanceRecord {
        let id = InstanceId::parse("i-1234567890abcdef0").unwrap();
        let mut r = sample_instance(id, Ipv4Addr::new(10, 158, 112, 84), None);
        r.owner_id = "123456789012".into();
        r.architecture = "x86_64".into();
        r.placement.availability_zone = "us-west-2b".into();
        r.placement.region = "us-west-2".into();
        r.image_id = "ami-5fb8c835".into();
        r.instance_type = "t2.micro".into();
        r.launch_time = 1_479_573_131; // 2016-11-19T16:32:11Z
        r.kernel_id = None;
        r.ramdisk_id = None;
        r.billing_products = Vec::new();
        r.product_codes = Vec::new();
        r
    }

    #[test]
    fn iam_info_matches_spec_example() {
        let profile = IamInstanceProfile {
            arn: "arn:aws:iam::896453262835:instance-profile/baskinc-role".into(),
            id: "AIPA5BOGHHXZELSK34VU4".into(),
            role_name: "baskinc-role".into(),
        };
        let expected = r#"{
  "Code" : "Success",
  "LastUpdated" : "2020-04-02T18:50:40Z",
  "InstanceProfileArn" : "arn:aws:iam::896453262835:instance-profile/baskinc-role",
  "InstanceProfileId" : "AIPA5BOGHHXZELSK34VU4"
}"#;
        assert_eq!(iam_info(&profile, 1_585_853_440), expected);
    }

    #[test]
    fn role_credentials_match_spec_example() {
        let c = creds("ASIARTEST", "testsecret", "testtoken", 1_632_174_146, 1_632_197_813);
        let expected = r#"{
  "Code" : "Success",
  "LastUpdated" : "2021-09-20T21:42:26Z",
  "Type" : "AWS-HMAC",
  "AccessKeyId" : "ASIARTEST",
  "SecretAccessKey" : "testsecret",
  "Token" : "testtoken",
  "Expiration" : "2021-09-21T04:16:53Z"
}"#;
        assert_eq!(role_credentials(&c), expected);
    }

    #[test]
    fn credentials_error_matches_spec_example() {
        let expected = r#"{
  "Code" : "AssumeRoleUnauthorizedAccess",
  "Message" : "EC2 cannot assume the role my-role.  Please see documentation at https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2.html.",
  "LastUpdated" : "2019-08-09T16:18:58Z"
}"#;
        assert_eq!(credentials_error("my-role", 1_565_367_538), expected);
    }

    #[test]
    fn identity_credentials_info_matches_spec_example() {
        let expected = r#"{
  "Code" : "Success",
  "LastUpdated" : "2023-10-27T10:00:00Z",
  "AccountId" : "123456789012"
}"#;
        assert_eq!(identity_credentials_info("123456789012", 1_698_400_800), expected);
    }

    #[test]
    fn identity_document_matches_spec_example() {
        let expected = r#"{
  "accountId" : "123456789012",
  "architecture" : "x86_64",
  "availabilityZone" : "us-west-2b",
  "billingProducts" : null,
  "devpayProductCodes" : null,
  "marketplaceProductCodes" : null,
  "imageId" : "ami-5fb8c835",
  "instanceId" : "i-1234567890abcdef0",
  "instanceType" : "t2.micro",
  "kernelId" : null,
  "pendingTime" : "2016-11-19T16:32:11Z",
  "privateIp" : "10.158.112.84",
  "ramdiskId" : null,
  "region" : "us-west-2",
  "version" : "2017-09-30"
}"#;
        assert_eq!(identity_document(&spec_example_record()), expected);
    }

    #[test]
    fn identity_document_writes_arrays_and_ids_inline() {
        let mut r = spec_example_record();
        r.billing_products = vec!["bp-6ba54002".into()];
        r.product_codes = vec!["1abc2defghijklm3nopqrs4tu".into(), "second".into()];
        r.kernel_id = Some("aki-5c21674b".into());
        r.ramdisk_id = Some("ari-01bb5768".into());
        let doc = identity_document(&r);
        assert!(doc.contains("\n  \"billingProducts\" : [ \"bp-6ba54002\" ],\n"));
        assert!(
            doc.contains(
                "\n  \"marketplaceProductCodes\" : [ \"1abc2defghijklm3nopqrs4tu\", \"second\" ],\n"
            )
        );
        assert!(doc.contains("\n  \"kernelId\" : \"aki-5c21674b\",\n"));
        assert!(doc.contains("\n  \"ramdiskId\" : \"ari-01bb5768\",\n"));
        let parsed: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(parsed["marketplaceProductCodes"][1], "second");
    }

    #[test]
    fn identity_document_of_ipv6_only_instance_has_null_private_ip() {
        let mut r = spec_example_record();
        for n in &mut r.network_interfaces {
            n.private_ipv4s.clear();
        }
        assert!(identity_document(&r).contains("\n  \"privateIp\" : null,\n"));
    }

    #[test]
    fn string_values_are_json_escaped() {
        let c = creds("ASIA\"X", "a\\b/c", "line\nbreak\u{1}", 0, 0);
        let doc = role_credentials(&c);
        let parsed: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(parsed["AccessKeyId"], "ASIA\"X");
        assert_eq!(parsed["SecretAccessKey"], "a\\b/c");
        assert_eq!(parsed["Token"], "line\nbreak\u{1}");
        // The document's own layout is the only newline structure: one field per line.
        assert_eq!(doc.lines().count(), 9);
    }

    #[test]
    fn documents_have_no_trailing_newline() {
        let c = creds("A", "B", "C", 1, 2);
        let r = spec_example_record();
        for doc in [
            role_credentials(&c),
            credentials_error("r", 1),
            identity_credentials_info("123456789012", 1),
            identity_document(&r),
        ] {
            assert!(doc.ends_with('}'), "{doc}");
            serde_json::from_str::<serde_json::Value>(&doc).unwrap();
        }
    }
}

/// `spot/instance-action`: `{"action": "terminate", "time": "2017-09-18T08:22:00Z"}`
/// (one line, a space after each colon and comma, as documented).
pub fn spot_instance_action(action: imds_core::events::SpotAction, time: u64) -> String {
    format!(r#"{{"action": "{}", "time": "{}"}}"#, action.as_str(), iso8601_secs(time))
}

/// `events/recommendations/rebalance`: `{"noticeTime": "2020-10-27T08:22:00Z"}`.
pub fn rebalance_recommendation(notice_time: u64) -> String {
    format!(r#"{{"noticeTime": "{}"}}"#, iso8601_secs(notice_time))
}

/// `events/maintenance/scheduled` or `history`: a JSON array of events in
/// the documented layout (keys `NotBefore`, `Code`, `Description`, `EventId`,
/// `NotAfter`, `NotBeforeDeadline`, `State`; times `D Mon YYYY HH:MM:SS GMT`).
/// An empty list is `[]`.
pub fn maintenance_events(events: &[MaintenanceEntry<'_>]) -> String {
    if events.is_empty() {
        return "[]".to_owned();
    }
    let items: Vec<String> = events
        .iter()
        .map(|e| {
            let mut fields = vec![
                format!("    \"NotBefore\" : {}", json_str(&event_time(e.not_before))),
                format!("    \"Code\" : {}", json_str(e.code)),
                format!("    \"Description\" : {}", json_str(&e.description)),
                format!("    \"EventId\" : {}", json_str(e.event_id)),
            ];
            if let Some(after) = e.not_after {
                fields.push(format!("    \"NotAfter\" : {}", json_str(&event_time(after))));
            }
            if let Some(deadline) = e.not_before_deadline {
                fields.push(format!("    \"NotBeforeDeadline\" : {}", json_str(&event_time(deadline))));
            }
            fields.push(format!("    \"State\" : {}", json_str(e.state)));
            format!("  {{\n{}\n  }}", fields.join(",\n"))
        })
        .collect();
    format!("[\n{}\n]", items.join(",\n"))
}

/// One maintenance event as the `scheduled` / `history` documents show it.
#[derive(Debug, Clone)]
pub struct MaintenanceEntry<'a> {
    /// `instance-event-…`
    pub event_id: &'a str,
    /// Event code.
    pub code: &'a str,
    /// Description, with `[Completed] ` / `[Canceled] ` in history.
    pub description: String,
    /// `active`, `completed` or `canceled`.
    pub state: &'a str,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: Option<u64>,
    /// Unix seconds.
    pub not_before_deadline: Option<u64>,
}
