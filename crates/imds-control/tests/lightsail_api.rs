//! The Lightsail JSON API over real SigV4 signatures (service `lightsail`):
//! the exact JSON of every answer and error, `pending` → `applied`,
//! paging, name uniqueness, policy denials, and that failed requests write
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use common::*;
use imds_core::Clock;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

/// A signed Lightsail request as raw bytes.
fn sign_json(s: &Server, akid: &str, secret: &str, service: &str, target: &str, body: &str) -> Vec<u8> {
    let uri = format!("http://{}/", s.addr);
    let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target)];
    let identity: Identity = Credentials::new(akid, secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(UNIX_EPOCH + Duration::from_millis(s.clock.now_millis()))
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        Cow::Owned(uri.clone()),
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder().method("POST").uri(&uri);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut req = req.body(body.as_bytes().to_vec()).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    let mut raw = format!("POST / HTTP/1.1\r\nhost: {}\r\n", s.addr);
    for (k, v) in req.headers() {
        raw.push_str(&format!("{}: {}\r\n", k, v.to_str().unwrap()));
    }
    raw.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Calls `op` as the admin.
async fn ls(s: &Server, op: &str, body: Value) -> Resp {
    ls_as(s, AKID, SECRET, op, &body.to_string()).await
}

async fn ls_as(s: &Server, akid: &str, secret: &str, op: &str, body: &str) -> Resp {
    s.send(&sign_json(s, akid, secret, "lightsail", &format!("Lightsail_20161128.{op}"), body)).await
}

/// The body as JSON, asserting a 200 with the awsJson headers.
#[track_caller]
fn ok(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
    assert!(r.header("x-amzn-requestid").is_some_and(|v| v.len() == 36));
    serde_json::from_str(&r.body).unwrap()
}

/// Asserts an error with this status, `__type` and `code`; returns the message.
#[track_caller]
fn err(r: &Resp, status: u16, kind: &str, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
    assert!(r.header("x-amzn-requestid").is_some());
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!((v["__type"].as_str(), v["code"].as_str()), (Some(kind), Some(code)), "{}", r.body);
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["__type", "code", "docs", "message", "tip"]);
    v["message"].as_str().unwrap().to_owned()
}

/// Replaces UUIDs by `<uuid>` and `i-` + 17 hex by `<i>`.
fn normalize(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let hex = |s: &[u8]| s.iter().all(u8::is_ascii_hexdigit);
    while i < b.len() {
        if i + 36 <= b.len() {
            let c = &b[i..i + 36];
            let dashes = [8, 13, 18, 23].iter().all(|d| c[*d] == b'-');
            let parts = [&c[0..8], &c[9..13], &c[14..18], &c[19..23], &c[24..36]];
            if dashes && parts.iter().all(|p| hex(p)) {
                out.push_str("<uuid>");
                i += 36;
                continue;
            }
        }
        if b[i..].starts_with(b"i-") && i + 19 <= b.len() && hex(&b[i + 2..i + 19]) {
            out.push_str("<i>");
            i += 19;
            continue;
        }
        out.push(char::from(b[i]));
        i += 1;
    }
    out
}

fn create_body(names: &[&str]) -> Value {
    json!({"instanceNames": names, "availabilityZone": "us-east-1a",
           "blueprintId": "amazon_linux_2023", "bundleId": "nano_3_0"})
}

async fn create(s: &Server, names: &[&str]) -> Value {
    ok(&ls(s, "CreateInstances", create_body(names)).await)
}

async fn get(s: &Server, name: &str) -> Value {
    ok(&ls(s, "GetInstance", json!({"instanceName": name})).await)["instance"].clone()
}

/// The instance id behind a Lightsail name (from its support code).
fn instance_id(instance: &Value) -> String {
    instance["supportCode"].as_str().unwrap().split('/').nth(1).unwrap().to_owned()
}

const OPERATION: &str = r#"{"id":"<uuid>","resourceName":"web-1","resourceType":"Instance","createdAt":1704164645.0,"location":{"availabilityZone":"us-east-1a","regionName":"us-east-1"},"isTerminal":false,"operationType":"CreateInstance","status":"Started","statusChangedAt":1704164645.0}"#;

#[tokio::test]
async fn create_get_update_and_apply() {
    let s = Server::start().await;
    let mut body = create_body(&["web-1"]);
    body["tags"] = json!([{"key": "team", "value": "a"}, {"key": "solo"}]);
    body["userData"] = json!("#!/bin/sh\necho hi\n");
    let r = ls(&s, "CreateInstances", body).await;
    ok(&r);
    assert_eq!(normalize(&r.body), format!(r#"{{"operations":[{OPERATION}]}}"#));

    let r = ls(&s, "GetInstance", json!({"instanceName": "web-1"})).await;
    ok(&r);
    let port = |n: u16| {
        format!(
            r#"{{"fromPort":{n},"toPort":{n},"protocol":"tcp","accessFrom":"Anywhere (0.0.0.0/0)","accessType":"public","commonName":"","accessDirection":"inbound","cidrs":["0.0.0.0/0"],"ipv6Cidrs":["::/0"]}}"#
        )
    };
    let expected = [
        r#"{"instance":{"name":"web-1","arn":"arn:aws:lightsail:us-east-1:123456789012:Instance/<uuid>","#,
        r#""supportCode":"123456789012/<i>","createdAt":1704164645.0,"#,
        r#""location":{"availabilityZone":"us-east-1a","regionName":"us-east-1"},"resourceType":"Instance","#,
        r#""tags":[{"key":"solo","value":""},{"key":"team","value":"a"}],"#,
        r#""blueprintId":"amazon_linux_2023","bundleId":"nano_3_0","isStaticIp":false,"#,
        r#""privateIpAddress":"10.0.0.4","ipv6Addresses":["2001:db8:10::4"],"ipAddressType":"dualstack","#,
        r#""hardware":{"cpuCount":2,"disks":[{"createdAt":1704164645.0,"sizeInGb":20,"isSystemDisk":true,"iops":100,"path":"/dev/xvda","attachedTo":"web-1","attachmentState":"attached"}],"ramSizeInGb":0.5},"#,
        &format!(r#""networking":{{"monthlyTransfer":{{"gbPerMonthAllocated":1024}},"ports":[{},{}]}},"#, port(22), port(80)),
        r#""state":{"code":16,"name":"running"},"username":"ec2-user","#,
        r#""metadataOptions":{"state":"pending","httpTokens":"optional","httpEndpoint":"enabled","httpPutResponseHopLimit":1,"httpProtocolIpv6":"disabled"}}}"#,
    ]
    .concat();
    assert_eq!(normalize(&r.body), expected);
    let inst: Value = serde_json::from_str(&r.body).unwrap();
    let id = instance_id(&inst["instance"]);

    // An EC2-style record the data plane serves, raw user data, a t3.nano.
    let rec = s.record(&id).await;
    assert_eq!(rec.user_data.as_deref(), Some(&b"#!/bin/sh\necho hi\n"[..]));
    assert_eq!((rec.instance_type.as_str(), rec.architecture.as_str()), ("t3.nano", "x86_64"));
    let info = rec.lightsail.clone().unwrap();
    assert_eq!((info.name.as_str(), info.bundle_id.as_str()), ("web-1", "nano_3_0"));
    assert!(inst["instance"]["arn"].as_str().unwrap().ends_with(&info.resource_id));
    // DescribeInstances sees it too.
    let d = s.ec2("DescribeInstances", &[("InstanceId.1", &id)]).await;
    d.assert_ok();
    assert_eq!(d.text("instanceType").as_deref(), Some("t3.nano"));

    s.ack(&id).await;
    assert_eq!(get(&s, "web-1").await["metadataOptions"]["state"], "applied");

    let r = ls(
        &s,
        "UpdateInstanceMetadataOptions",
        json!({"instanceName": "web-1", "httpTokens": "required", "httpPutResponseHopLimit": 2}),
    )
    .await;
    ok(&r);
    assert_eq!(
        normalize(&r.body),
        r#"{"operation":{"id":"<uuid>","resourceName":"web-1","resourceType":"Instance","createdAt":1704164645.0,"location":{"availabilityZone":"us-east-1a","regionName":"us-east-1"},"isTerminal":false,"operationType":"UpdateInstanceMetadataOptions","status":"Started","statusChangedAt":1704164645.0}}"#
    );
    assert_eq!(
        get(&s, "web-1").await["metadataOptions"],
        json!({"state": "pending", "httpTokens": "required", "httpEndpoint": "enabled",
               "httpPutResponseHopLimit": 2, "httpProtocolIpv6": "disabled"})
    );
    assert_eq!(s.record(&id).await.generation, 2);
    // The agent reports generation 2 (records::put_status): applied.
    s.ack(&id).await;
    assert_eq!(get(&s, "web-1").await["metadataOptions"]["state"], "applied");

    // Omitted members keep their values; the rest change.
    ok(&ls(
        &s,
        "UpdateInstanceMetadataOptions",
        json!({"instanceName": "web-1", "httpEndpoint": "disabled",
        "httpProtocolIpv6": "enabled"}),
    )
    .await);
    assert_eq!(
        get(&s, "web-1").await["metadataOptions"],
        json!({"state": "pending", "httpTokens": "required", "httpEndpoint": "disabled",
               "httpPutResponseHopLimit": 2, "httpProtocolIpv6": "enabled"})
    );
    let o = s.record(&id).await.metadata_options;
    assert_eq!((o.http_endpoint.as_str(), o.http_protocol_ipv6.as_str()), ("disabled", "enabled"));
}

#[tokio::test]
async fn several_names_in_one_call_and_launch_parameters() {
    let s = Server::start().await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnV3TLlAFs1TcUxAWv9v1n3dtSC0ZjyZ1IFiKxSN8qL me@laptop";
    use base64::Engine;
    let material = base64::engine::general_purpose::STANDARD.encode(key);
    s.ec2("ImportKeyPair", &[("KeyName", "laptop"), ("PublicKeyMaterial", &material)]).await.assert_ok();
    let mut body = create_body(&["a-1", "a-2", "a-3"]);
    body["availabilityZone"] = json!("us-east-1c");
    body["bundleId"] = json!("medium_2_0");
    body["blueprintId"] = json!("ubuntu_22_04");
    body["keyPairName"] = json!("laptop");
    body["ipAddressType"] = json!("ipv4");
    let v = ok(&ls(&s, "CreateInstances", body).await);
    let names: Vec<&str> =
        v["operations"].as_array().unwrap().iter().map(|o| o["resourceName"].as_str().unwrap()).collect();
    assert_eq!(names, ["a-1", "a-2", "a-3"]);
    let ids: Vec<&str> =
        v["operations"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "operation ids are distinct");
    let i = get(&s, "a-2").await;
    assert_eq!(i["location"], json!({"availabilityZone": "us-east-1c", "regionName": "us-east-1"}));
    assert_eq!((i["sshKeyName"].as_str(), i["username"].as_str()), (Some("laptop"), Some("ubuntu")));
    assert_eq!(i["ipAddressType"], "ipv4");
    assert!(i.get("ipv6Addresses").is_none());
    assert_eq!(i["networking"]["ports"][0].get("ipv6Cidrs"), None);
    assert_eq!(i["hardware"]["ramSizeInGb"], json!(4.0));
    let rec = s.record(&instance_id(&i)).await;
    assert_eq!(rec.instance_type, "t2.medium");
    assert_eq!(rec.key.unwrap().name, "laptop");
    assert_eq!(rec.placement.availability_zone_id, "use1-az3");
    let all: Vec<String> = [get(&s, "a-1").await, i, get(&s, "a-3").await]
        .iter()
        .map(|i| i["privateIpAddress"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(all, ["10.0.0.4", "10.0.0.5", "10.0.0.6"]);
}

#[tokio::test]
async fn get_instances_pages_lightsail_instances_by_name() {
    let s = Server::start().await;
    // An EC2 launch has no Lightsail name: not listed.
    s.run(&[]).await;
    let v = ok(&ls(&s, "GetInstances", json!({})).await);
    assert_eq!(v, json!({"instances": []}));
    let first: Vec<String> = (0..20).map(|i| format!("n{i:02}")).collect();
    create(&s, &first.iter().map(String::as_str).collect::<Vec<_>>()).await;
    create(&s, &["m-last", "z-last"]).await;
    let page = ok(&ls(&s, "GetInstances", json!({})).await);
    let names = |p: &Value| -> Vec<String> {
        p["instances"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect()
    };
    let one = names(&page);
    assert_eq!(one.len(), 20);
    assert_eq!(one[0], "m-last");
    let token = page["nextPageToken"].as_str().unwrap();
    let page = ok(&ls(&s, "GetInstances", json!({"pageToken": token})).await);
    assert_eq!(names(&page), ["n19", "z-last"]);
    assert!(page.get("nextPageToken").is_none());
    assert_eq!(page["instances"][1]["metadataOptions"]["state"], "pending");
    let r = ls(&s, "GetInstances", json!({"pageToken": "%%%"})).await;
    assert_eq!(err(&r, 400, "InvalidInputException", "InvalidInput"), "The pageToken is not valid.");
    // Deleted instances are gone from the list.
    ok(&ls(&s, "DeleteInstance", json!({"instanceName": "z-last"})).await);
    let page = ok(&ls(&s, "GetInstances", json!({"pageToken": token})).await);
    assert_eq!(names(&page), ["n19"]);
}

#[tokio::test]
async fn delete_terminates_and_frees_the_name() {
    let s = Server::start().await;
    create(&s, &["web-1"]).await;
    let id = instance_id(&get(&s, "web-1").await);
    let r = ls(&s, "DeleteInstance", json!({"instanceName": "web-1", "forceDeleteAddOns": true})).await;
    ok(&r);
    assert_eq!(
        normalize(&r.body),
        r#"{"operations":[{"id":"<uuid>","resourceName":"web-1","resourceType":"Instance","createdAt":1704164645.0,"location":{"availabilityZone":"us-east-1a","regionName":"us-east-1"},"isTerminal":true,"operationType":"DeleteInstance","status":"Succeeded","statusChangedAt":1704164645.0}]}"#
    );
    assert_eq!(s.record(&id).await.state, imds_core::InstanceState::Terminated);
    let d = s.ec2("DescribeInstances", &[("InstanceId.1", &id)]).await;
    assert!(d.body.contains("<name>terminated</name>"), "{}", d.body);
    for op in ["GetInstance", "DeleteInstance", "UpdateInstanceMetadataOptions"] {
        let r = ls(&s, op, json!({"instanceName": "web-1"})).await;
        assert_eq!(
            err(&r, 400, "NotFoundException", "DoesNotExist"),
            "The Instance does not exist: web-1",
            "{op}"
        );
    }
    // The name and the address are free again.
    create(&s, &["web-1"]).await;
    let again = get(&s, "web-1").await;
    assert_ne!(instance_id(&again), id);
    assert_eq!(again["privateIpAddress"], "10.0.0.4");
}

#[tokio::test]
async fn names_are_unique_among_live_instances() {
    let s = Server::start().await;
    create(&s, &["web-1"]).await;
    let before = s.dump().await;
    let r = ls(&s, "CreateInstances", create_body(&["web-2", "web-1"])).await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v,
        json!({"__type": "InvalidInputException", "code": "AlreadyExists",
               "docs": "https://docs.aws.amazon.com/lightsail/2016-11-28/api-reference/API_CreateInstances.html",
               "message": "Some names are already in use: web-1",
               "tip": "Please check the request parameters against the Lightsail API reference."})
    );
    assert_eq!(r.status, 400);
    let r = ls(&s, "CreateInstances", create_body(&["web-3", "web-3"])).await;
    assert_eq!(
        err(&r, 400, "InvalidInputException", "InvalidInput"),
        "The instance name web-3 is specified more than once."
    );
    assert_eq!(s.dump().await, before, "nothing was created");
}

#[tokio::test]
async fn racing_creates_of_one_name_make_one_instance() {
    let s = std::sync::Arc::new(Server::start().await);
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { ls(&s, "CreateInstances", create_body(&["race"])).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 400));
    let all = ok(&ls(&s, "GetInstances", json!({})).await);
    assert_eq!(all["instances"].as_array().unwrap().len(), 1);
    let live = s.ec2("DescribeInstances", &[]).await;
    assert_eq!(texts(&live.body, "instanceId").len(), 1);
}

#[tokio::test]
async fn invalid_input_is_refused_without_writing() {
    let s = Server::start().await;
    create(&s, &["web-1"]).await;
    let before = s.dump().await;
    let update = |extra: Value| {
        let mut body = json!({"instanceName": "web-1"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body.to_string()
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "UpdateInstanceMetadataOptions",
            update(json!({"httpPutResponseHopLimit": 65})),
            "InvalidInput",
            "The value 65 for parameter httpPutResponseHopLimit is not valid. It must be between 1 and 64.",
        ),
        (
            "UpdateInstanceMetadataOptions",
            update(json!({"httpPutResponseHopLimit": 0})),
            "InvalidInput",
            "The value 0 for parameter httpPutResponseHopLimit is not valid. It must be between 1 and 64.",
        ),
        (
            "UpdateInstanceMetadataOptions",
            update(json!({"httpPutResponseHopLimit": "2"})),
            "InvalidParameterType",
            "Invalid type for parameter httpPutResponseHopLimit, expected an integer.",
        ),
        (
            "UpdateInstanceMetadataOptions",
            update(json!({"httpPutResponseHopLimit": 2.5})),
            "InvalidParameterType",
            "Invalid type for parameter httpPutResponseHopLimit, expected an integer.",
        ),
        (
            "UpdateInstanceMetadataOptions",
            update(json!({"httpTokens": "maybe"})),
            "InvalidInput",
            "Invalid value 'maybe' for parameter httpTokens. Valid values: optional, required.",
        ),
        (
            "UpdateInstanceMetadataOptions",
            update(json!({"httpEndpoint": "Enabled"})),
            "InvalidInput",
            "Invalid value 'Enabled' for parameter httpEndpoint. Valid values: disabled, enabled.",
        ),
        (
            "UpdateInstanceMetadataOptions",
            update(json!({"httpProtocolIpv6": true})),
            "InvalidParameterType",
            "Invalid type for parameter httpProtocolIpv6, expected a string.",
        ),
        (
            "UpdateInstanceMetadataOptions",
            update(json!({"instanceMetadataTags": "enabled"})),
            "UnknownParameter",
            "Unknown parameter in input: \"instanceMetadataTags\", must be one of: instanceName, httpTokens, httpEndpoint, httpPutResponseHopLimit, httpProtocolIpv6",
        ),
        (
            "UpdateInstanceMetadataOptions",
            update(json!({"HttpTokens": "required"})),
            "UnknownParameter",
            "Unknown parameter in input: \"HttpTokens\", must be one of: instanceName, httpTokens, httpEndpoint, httpPutResponseHopLimit, httpProtocolIpv6",
        ),
        (
            "UpdateInstanceMetadataOptions",
            r#"{"httpTokens":"required"}"#.into(),
            "MissingParameter",
            "Missing required parameter in input: \"instanceName\"",
        ),
        (
            "UpdateInstanceMetadataOptions",
            r#"{"instanceName":"web 1"}"#.into(),
            "InvalidInput",
            "web 1 is not a valid resource name. Resource names must be at least 2 characters long and contain only alphanumerics, -, _, and .",
        ),
        (
            "UpdateInstanceMetadataOptions",
            "[1]".into(),
            "InvalidParameterType",
            "The request body must be a JSON object.",
        ),
        (
            "GetInstance",
            r#"{"instanceName":"#.into(),
            "SerializationException",
            "The request body is not valid JSON: EOF while parsing a value at line 1 column 16",
        ),
        (
            "GetInstance",
            r#"{"instanceName":7}"#.into(),
            "InvalidParameterType",
            "Invalid type for parameter instanceName, expected a string.",
        ),
        (
            "DeleteInstance",
            r#"{"instanceName":"web-1","forceDeleteAddOns":"yes"}"#.into(),
            "InvalidParameterType",
            "Invalid type for parameter forceDeleteAddOns, expected a boolean.",
        ),
        (
            "GetInstances",
            r#"{"pageToken":5}"#.into(),
            "InvalidParameterType",
            "Invalid type for parameter pageToken, expected a string.",
        ),
    ];
    for (op, body, code, message) in cases {
        let r = ls_as(&s, AKID, SECRET, op, &body).await;
        assert_eq!(err(&r, 400, "InvalidInputException", code), message, "{op} {body}");
    }
    let create_cases: Vec<(Value, &str, &str)> = vec![
        (json!({"instanceNames": []}), "InvalidInput", "instanceNames must name at least one instance."),
        (
            json!({"instanceNames": ["x"]}),
            "InvalidInput",
            "x is not a valid resource name. Resource names must be at least 2 characters long and contain only alphanumerics, -, _, and .",
        ),
        (
            json!({"instanceNames": "web-2"}),
            "InvalidParameterType",
            "Invalid type for parameter instanceNames, expected a list.",
        ),
        (
            json!({"instanceNames": [3]}),
            "InvalidParameterType",
            "Invalid type for parameter instanceNames[0], expected a string.",
        ),
        (
            json!({"availabilityZone": "us-west-2a"}),
            "InvalidInput",
            "Invalid availability zone: [us-west-2a]",
        ),
        (json!({"bundleId": "huge_3_0"}), "InvalidBundle", "The bundle ID 'huge_3_0' is not valid."),
        (
            json!({"blueprintId": "Amazon Linux"}),
            "InvalidBlueprint",
            "The blueprint ID 'Amazon Linux' is not valid.",
        ),
        (
            json!({"ipAddressType": "ipv5"}),
            "InvalidInput",
            "Invalid value 'ipv5' for parameter ipAddressType. Valid values: dualstack, ipv4, ipv6.",
        ),
        (json!({"tags": [{"key": "a;b"}]}), "InvalidInput", "The tag key 'a;b' is not valid."),
        (
            json!({"tags": [{"key": "k", "value": "1"}, {"key": "k", "value": "2"}]}),
            "InvalidInput",
            "Duplicate tag key 'k' specified.",
        ),
        (
            json!({"tags": [{"key": "k", "Value": "v"}]}),
            "UnknownParameter",
            "Unknown parameter in tags[0]: \"Value\", must be one of: key, value",
        ),
        (
            json!({"userData": "x".repeat(16 * 1024 + 1)}),
            "InvalidInput",
            "User data is limited to 16384 bytes.",
        ),
        (
            json!({"addOns": [{"addOnType": "AutoSnapshot"}]}),
            "Unsupported",
            "Add-ons are not supported by this endpoint.",
        ),
        (
            json!({"addOns": [{"addOnType": "Backup"}]}),
            "InvalidInput",
            "Invalid value 'Backup' for parameter addOns[0].addOnType. Valid values: AutoSnapshot, StopInstanceOnIdle.",
        ),
        (
            json!({"customImageName": "-"}),
            "InvalidInput",
            "- is not a valid resource name. Resource names must be at least 2 characters long and contain only alphanumerics, -, _, and .",
        ),
    ];
    for (patch, code, message) in create_cases {
        let mut body = create_body(&["web-2"]);
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = ls(&s, "CreateInstances", body.clone()).await;
        assert_eq!(err(&r, 400, "InvalidInputException", code), message, "{body}");
    }
    for missing in ["instanceNames", "availabilityZone", "blueprintId", "bundleId"] {
        let mut body = create_body(&["web-2"]);
        body.as_object_mut().unwrap().remove(missing);
        let r = ls(&s, "CreateInstances", body).await;
        let m = err(&r, 400, "InvalidInputException", "MissingParameter");
        assert_eq!(m, format!("Missing required parameter in input: \"{missing}\""));
    }
    let mut body = create_body(&["web-2"]);
    body["keyPairName"] = json!("nope");
    let r = ls(&s, "CreateInstances", body).await;
    assert_eq!(err(&r, 400, "NotFoundException", "DoesNotExist"), "The KeyPair does not exist: nope");
    assert_eq!(s.dump().await, before, "no failed request wrote anything");
    // null is as good as absent.
    ok(&ls(&s, "UpdateInstanceMetadataOptions", json!({"instanceName": "web-1", "httpTokens": null})).await);
}

#[tokio::test]
async fn unknown_instances_and_operations() {
    let s = Server::start().await;
    let r = ls(&s, "GetInstance", json!({"instanceName": "nope"})).await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        v,
        json!({"__type": "NotFoundException", "code": "DoesNotExist",
               "docs": "https://docs.aws.amazon.com/lightsail/2016-11-28/api-reference/API_GetInstance.html",
               "message": "The Instance does not exist: nope",
               "tip": "Please check that the resource name and the AWS Region are correct."})
    );
    // An EC2 instance is not a Lightsail instance, whatever its tags say.
    let id = s
        .run(&[
            ("TagSpecification.1.ResourceType", "instance"),
            ("TagSpecification.1.Tag.1.Key", "Name"),
            ("TagSpecification.1.Tag.1.Value", "ec2-box"),
        ])
        .await;
    assert_eq!(id.len(), 1);
    let r =
        ls(&s, "UpdateInstanceMetadataOptions", json!({"instanceName": "ec2-box", "httpTokens": "required"}))
            .await;
    err(&r, 400, "NotFoundException", "DoesNotExist");
    for target in
        ["Lightsail_20161128.GetBundles", "Lightsail_20161128.", "DynamoDB_20120810.GetItem", "GetInstance"]
    {
        let r = s.send(&sign_json(&s, AKID, SECRET, "lightsail", target, "{}")).await;
        assert_eq!(r.status, 400, "{target}");
        assert_eq!(r.body, r#"{"__type":"com.amazon.coral.service#UnknownOperationException"}"#);
        assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
    }
}

#[tokio::test]
async fn authentication_failures_are_unauthenticated() {
    let s = Server::start().await;
    let target = "Lightsail_20161128.GetInstances";
    let r = s.send(&sign_json(&s, AKID, "wrong-secret", "lightsail", target, "{}")).await;
    let m = err(&r, 400, "UnauthenticatedException", "SignatureDoesNotMatch");
    assert!(m.starts_with("The request signature we calculated does not match"), "{m}");
    let r = s.send(&sign_json(&s, "AKIAUNKNOWN000000000", SECRET, "lightsail", target, "{}")).await;
    err(&r, 400, "UnauthenticatedException", "AuthFailure");
    let r = s.send(&sign_json(&s, AKID, SECRET, "ec2", target, "{}")).await;
    assert_eq!(
        err(&r, 400, "UnauthenticatedException", "AuthFailure"),
        "Credential should be scoped to correct service: 'lightsail'."
    );
    let raw = format!(
        "POST / HTTP/1.1\r\nhost: {}\r\nx-amz-target: {target}\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}",
        s.addr
    );
    let r = s.send(raw.as_bytes()).await;
    err(&r, 400, "UnauthenticatedException", "MissingAuthenticationToken");
    // Unauthenticated callers learn nothing about operations either.
    let r = s.send(&sign_json(&s, AKID, "wrong", "lightsail", "Lightsail_20161128.Nope", "{}")).await;
    err(&r, 400, "UnauthenticatedException", "SignatureDoesNotMatch");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let s = Server::start().await;
    let body = json!({"instanceName": "x".repeat(s.max_body)}).to_string();
    let r = ls_as(&s, AKID, SECRET, "GetInstance", &body).await;
    let m = err(&r, 400, "InvalidInputException", "RequestEntityTooLarge");
    assert_eq!(m, format!("The request body exceeds the limit of {} bytes.", s.max_body));
}

#[tokio::test]
async fn policies_govern_lightsail_actions() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"lightsail:*","Resource":"*"},
        {"Effect":"Deny","Action":"lightsail:UpdateInstanceMetadataOptions","Resource":"arn:aws:lightsail:*:*:Instance/*",
         "Condition":{"StringEquals":{"aws:ResourceTag/team":"prod"}}},
        {"Effect":"Deny","Action":"lightsail:CreateInstances","Resource":"*",
         "Condition":{"StringEquals":{"aws:RequestTag/team":"prod"}}}]}"#;
    let s = Server::start_with(|c| c.credentials.push(limited(policy))).await;
    let mut prod = create_body(&["prod-1"]);
    prod["tags"] = json!([{"key": "team", "value": "prod"}]);
    ok(&ls(&s, "CreateInstances", prod.clone()).await);
    create(&s, &["dev-1"]).await;
    let before = s.dump().await;
    let arn = get(&s, "prod-1").await["arn"].as_str().unwrap().to_owned();

    let update = json!({"instanceName": "prod-1", "httpTokens": "required"}).to_string();
    let r = ls_as(&s, LIMITED_AKID, LIMITED_SECRET, "UpdateInstanceMetadataOptions", &update).await;
    assert_eq!(
        err(&r, 400, "AccessDeniedException", "AccessDenied"),
        format!(
            "User: arn:aws:iam::{ACCOUNT}:user/dev is not authorized to perform: lightsail:UpdateInstanceMetadataOptions on resource: {arn}"
        )
    );
    let mut prod2 = prod.clone();
    prod2["instanceNames"] = json!(["prod-2"]);
    let r = ls_as(&s, LIMITED_AKID, LIMITED_SECRET, "CreateInstances", &prod2.to_string()).await;
    assert_eq!(
        err(&r, 400, "AccessDeniedException", "AccessDenied"),
        format!(
            "User: arn:aws:iam::{ACCOUNT}:user/dev is not authorized to perform: lightsail:CreateInstances on resource: arn:aws:lightsail:us-east-1:{ACCOUNT}:Instance/*"
        )
    );
    assert_eq!(s.dump().await, before, "denied requests change nothing");

    // Validation and existence come first; then the policy.
    let r = ls_as(
        &s,
        LIMITED_AKID,
        LIMITED_SECRET,
        "UpdateInstanceMetadataOptions",
        r#"{"instanceName":"prod-1","httpTokens":"maybe"}"#,
    )
    .await;
    err(&r, 400, "InvalidInputException", "InvalidInput");
    let r = ls_as(
        &s,
        LIMITED_AKID,
        LIMITED_SECRET,
        "UpdateInstanceMetadataOptions",
        r#"{"instanceName":"nope-1","httpTokens":"required"}"#,
    )
    .await;
    err(&r, 400, "NotFoundException", "DoesNotExist");
    // Allowed elsewhere.
    let dev = json!({"instanceName": "dev-1", "httpTokens": "required"}).to_string();
    ok(&ls_as(&s, LIMITED_AKID, LIMITED_SECRET, "UpdateInstanceMetadataOptions", &dev).await);
    let r = ls_as(&s, LIMITED_AKID, LIMITED_SECRET, "GetInstance", r#"{"instanceName":"prod-1"}"#).await;
    ok(&r);

    let read_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"lightsail:Get*","Resource":"*"}]}"#;
    let s = Server::start_with(|c| c.credentials.push(limited(read_only))).await;
    create(&s, &["web-1"]).await;
    ok(&ls_as(&s, LIMITED_AKID, LIMITED_SECRET, "GetInstances", "{}").await);
    let r = ls_as(&s, LIMITED_AKID, LIMITED_SECRET, "DeleteInstance", r#"{"instanceName":"web-1"}"#).await;
    err(&r, 400, "AccessDeniedException", "AccessDenied");
    assert_eq!(get(&s, "web-1").await["state"]["name"], "running");
    // The EC2 actions are not Lightsail actions.
    s.ec2_as(LIMITED_AKID, LIMITED_SECRET, "DescribeInstances", &[])
        .await
        .assert_error(403, "UnauthorizedOperation");
}

#[tokio::test]
async fn account_enforcement_applies_to_lightsail() {
    let s = Server::start().await;
    create(&s, &["web-1"]).await;
    s.ec2("ModifyInstanceMetadataDefaults", &[("HttpTokens", "required"), ("HttpTokensEnforced", "enabled")])
        .await
        .assert_ok();
    let r =
        ls(&s, "UpdateInstanceMetadataOptions", json!({"instanceName": "web-1", "httpTokens": "optional"}))
            .await;
    err(&r, 400, "InvalidInputException", "HttpTokensEnforced");
    // New instances take the account defaults like any launch.
    create(&s, &["web-2"]).await;
    assert_eq!(get(&s, "web-2").await["metadataOptions"]["httpTokens"], "required");
}
