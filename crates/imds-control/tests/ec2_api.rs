//! The EC2 Query API end to end: real SigV4 signatures, the router on a
//! socket, a memory store; exact XML and store effects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use imds_core::sample::sample_instance;
use imds_core::{InstanceId, InstanceState};
use std::net::Ipv4Addr;

const SAMPLE_ID: &str = "i-1234567890abcdef0";

async fn with_sample() -> Server {
    let s = Server::start().await;
    let r = sample_instance(InstanceId::parse(SAMPLE_ID).unwrap(), Ipv4Addr::new(10, 0, 0, 12), None);
    s.put_record(&r).await;
    s
}

#[tokio::test]
async fn describe_instances_renders_the_full_instance_shape() {
    let s = with_sample().await;
    s.ack(SAMPLE_ID).await;
    let r = s.ec2("DescribeInstances", &[("InstanceId.1", SAMPLE_ID)]).await;
    r.assert_ok();
    assert_eq!(r.header("content-type"), Some("text/xml;charset=UTF-8"));
    let expected = concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>REQ</requestId>",
        "<reservationSet><item><reservationId>r-1234567890abcdef0</reservationId><ownerId>123456789012</ownerId><groupSet/>",
        "<instancesSet><item><instanceId>i-1234567890abcdef0</instanceId><imageId>ami-0a887e401f7654935</imageId>",
        "<instanceState><code>16</code><name>running</name></instanceState>",
        "<privateDnsName>ip-10-0-0-12.ec2.internal</privateDnsName><dnsName>ec2-192-0-2-54.compute-1.amazonaws.com</dnsName><reason/>",
        "<keyName>demo-key</keyName><amiLaunchIndex>0</amiLaunchIndex><productCodes/><instanceType>m5.large</instanceType>",
        "<launchTime>2023-11-14T22:13:20.000Z</launchTime>",
        "<placement><availabilityZoneId>use1-az4</availabilityZoneId><availabilityZone>us-east-1a</availabilityZone><groupName/><tenancy>default</tenancy></placement>",
        "<monitoring><state>disabled</state></monitoring><subnetId>subnet-be9b61d7</subnetId><vpcId>vpc-d295a6a7</vpcId>",
        "<privateIpAddress>10.0.0.12</privateIpAddress><ipAddress>192.0.2.54</ipAddress><sourceDestCheck>true</sourceDestCheck>",
        "<groupSet><item><groupId>sg-0b07f8f6cb485d4df</groupId><groupName>default</groupName></item></groupSet>",
        "<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping/>",
        "<virtualizationType>hvm</virtualizationType>",
        "<tagSet><item><key>Environment</key><value>dev</value></item><item><key>Name</key><value>demo-instance</value></item></tagSet>",
        "<hypervisor>xen</hypervisor>",
        "<networkInterfaceSet><item><networkInterfaceId>eni-1234567890abcdef0</networkInterfaceId><subnetId>subnet-be9b61d7</subnetId>",
        "<vpcId>vpc-d295a6a7</vpcId><description/><ownerId>123456789012</ownerId><status>in-use</status><macAddress>0e:49:61:0f:c3:11</macAddress>",
        "<privateIpAddress>10.0.0.12</privateIpAddress><privateDnsName>ip-10-0-0-12.ec2.internal</privateDnsName><sourceDestCheck>true</sourceDestCheck>",
        "<groupSet><item><groupId>sg-0b07f8f6cb485d4df</groupId><groupName>default</groupName></item></groupSet>",
        "<attachment><attachmentId>eni-attach-1234567890abcdef0</attachmentId><deviceIndex>0</deviceIndex><status>attached</status>",
        "<attachTime>2023-11-14T22:13:20.000Z</attachTime><deleteOnTermination>true</deleteOnTermination><networkCardIndex>0</networkCardIndex></attachment>",
        "<association><publicIp>192.0.2.54</publicIp><publicDnsName>ec2-192-0-2-54.compute-1.amazonaws.com</publicDnsName><ipOwnerId>amazon</ipOwnerId></association>",
        "<privateIpAddressesSet><item><privateIpAddress>10.0.0.12</privateIpAddress><privateDnsName>ip-10-0-0-12.ec2.internal</privateDnsName><primary>true</primary>",
        "<association><publicIp>192.0.2.54</publicIp><publicDnsName>ec2-192-0-2-54.compute-1.amazonaws.com</publicDnsName><ipOwnerId>amazon</ipOwnerId></association></item></privateIpAddressesSet>",
        "<ipv6AddressesSet/><ipv4PrefixSet/><ipv6PrefixSet/><interfaceType>interface</interfaceType></item></networkInterfaceSet>",
        "<iamInstanceProfile><arn>arn:aws:iam::123456789012:instance-profile/demo-role</arn><id>AIPA5BOGHHXZELSK34VU4</id></iamInstanceProfile>",
        "<ebsOptimized>false</ebsOptimized><enaSupport>true</enaSupport>",
        "<metadataOptions><state>applied</state><httpTokens>optional</httpTokens><httpPutResponseHopLimit>1</httpPutResponseHopLimit>",
        "<httpEndpoint>enabled</httpEndpoint><httpProtocolIpv6>disabled</httpProtocolIpv6><instanceMetadataTags>disabled</instanceMetadataTags></metadataOptions>",
        "<platformDetails>Linux/UNIX</platformDetails><usageOperation>RunInstances</usageOperation></item></instancesSet></item></reservationSet>",
        "</DescribeInstancesResponse>"
    );
    assert_eq!(r.normalized(), expected);
}

#[tokio::test]
async fn run_then_describe_is_pending_until_the_agent_observes_it() {
    let s = Server::start().await;
    let r = s
        .ec2(
            "RunInstances",
            &[
                ("ImageId", "ami-0abcdef1234567890"),
                ("MinCount", "2"),
                ("MaxCount", "2"),
                ("InstanceType", "t3.micro"),
                ("MetadataOptions.HttpTokens", "required"),
                ("MetadataOptions.HttpPutResponseHopLimit", "2"),
                ("MetadataOptions.InstanceMetadataTags", "enabled"),
                ("TagSpecification.1.ResourceType", "instance"),
                ("TagSpecification.1.Tag.1.Key", "Name"),
                ("TagSpecification.1.Tag.1.Value", "web"),
                ("UserData", "IyEvYmluL3NoCmVjaG8gaGk="),
                ("IamInstanceProfile.Name", "web-role"),
            ],
        )
        .await;
    r.assert_ok();
    assert!(
        r.body
            .contains("<RunInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>")
    );
    assert_eq!(texts(&r.body, "instanceState"), ["<code>0</code><name>pending</name>"; 2]);
    assert_eq!(r.metadata_states(), ["pending", "pending"]);
    let ids = texts(&r.body, "instanceId");
    assert_eq!(ids.len(), 2);
    assert_eq!(texts(&r.body, "privateIpAddress")[0], "10.0.0.4");
    assert_eq!(texts(&r.body, "amiLaunchIndex"), ["0", "1"]);

    let rec = s.record(&ids[0]).await;
    assert_eq!(rec.state, InstanceState::Running, "stored as running, shown as pending");
    assert_eq!(rec.generation, 1);
    assert_eq!(rec.user_data.as_deref(), Some(&b"#!/bin/sh\necho hi"[..]));
    assert_eq!(rec.metadata_options.http_put_response_hop_limit.get(), 2);
    let profile = rec.iam_instance_profile.unwrap();
    assert_eq!(profile.arn, "arn:aws:iam::123456789012:instance-profile/web-role");
    assert_eq!(profile.role_name, "web-role");
    assert_eq!(rec.tags.get("Name").map(String::as_str), Some("web"));
    assert_eq!(rec.launch_time, T0);

    let d = s.ec2("DescribeInstances", &[("InstanceId.1", &ids[0])]).await;
    d.assert_ok();
    assert_eq!(d.metadata_states(), ["pending"]);
    assert_eq!(d.text("instanceState").as_deref(), Some("<code>16</code><name>running</name>"));
    s.ack(&ids[0]).await;
    let d = s.ec2("DescribeInstances", &[("InstanceId.1", &ids[0])]).await;
    assert_eq!(d.metadata_states(), ["applied"]);
    assert_eq!(d.text("httpTokens").as_deref(), Some("required"));
    assert_eq!(d.text("instanceMetadataTags").as_deref(), Some("enabled"));
}

#[tokio::test]
async fn modify_metadata_options_answers_pending_and_bumps_the_generation() {
    let s = with_sample().await;
    s.ack(SAMPLE_ID).await;
    let r = s
        .ec2(
            "ModifyInstanceMetadataOptions",
            &[("InstanceId", SAMPLE_ID), ("HttpTokens", "required"), ("HttpPutResponseHopLimit", "2")],
        )
        .await;
    r.assert_ok();
    assert_eq!(
        r.normalized(),
        concat!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
            "<ModifyInstanceMetadataOptionsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>REQ</requestId>",
            "<instanceId>i-1234567890abcdef0</instanceId><instanceMetadataOptions><state>pending</state><httpTokens>required</httpTokens>",
            "<httpPutResponseHopLimit>2</httpPutResponseHopLimit><httpEndpoint>enabled</httpEndpoint><httpProtocolIpv6>disabled</httpProtocolIpv6>",
            "<instanceMetadataTags>disabled</instanceMetadataTags></instanceMetadataOptions></ModifyInstanceMetadataOptionsResponse>"
        )
    );
    let rec = s.record(SAMPLE_ID).await;
    assert_eq!(rec.generation, 2);
    assert_eq!(rec.metadata_options.http_tokens.as_str(), "required");
    // Omitted members keep their value.
    let r = s
        .ec2("ModifyInstanceMetadataOptions", &[("InstanceId", SAMPLE_ID), ("HttpEndpoint", "disabled")])
        .await;
    r.assert_ok();
    let rec = s.record(SAMPLE_ID).await;
    assert_eq!(
        (
            rec.generation,
            rec.metadata_options.http_tokens.as_str(),
            rec.metadata_options.http_put_response_hop_limit.get()
        ),
        (3, "required", 2)
    );
    let d = s
        .ec2(
            "DescribeInstances",
            &[("Filter.1.Name", "metadata-options.state"), ("Filter.1.Value.1", "pending")],
        )
        .await;
    assert_eq!(texts(&d.body, "instanceId"), [SAMPLE_ID]);
    s.ack(SAMPLE_ID).await;
    let d = s
        .ec2(
            "DescribeInstances",
            &[("Filter.1.Name", "metadata-options.state"), ("Filter.1.Value.1", "pending")],
        )
        .await;
    assert!(d.body.contains("<reservationSet/>"), "{}", d.body);
}

#[tokio::test]
async fn invalid_option_values_are_refused_without_writing() {
    let s = with_sample().await;
    let before = s.dump().await;
    for (name, value, message) in [
        ("HttpPutResponseHopLimit", "0", "Value (0) for parameter HttpPutResponseHopLimit is invalid."),
        ("HttpPutResponseHopLimit", "65", "Value (65) for parameter HttpPutResponseHopLimit is invalid."),
        ("HttpPutResponseHopLimit", "two", "Value (two) for parameter HttpPutResponseHopLimit is invalid."),
        ("HttpTokens", "maybe", "Value (maybe) for parameter HttpTokens is invalid."),
        ("HttpEndpoint", "Enabled", "Value (Enabled) for parameter HttpEndpoint is invalid."),
        ("InstanceMetadataTags", "on", "Value (on) for parameter InstanceMetadataTags is invalid."),
    ] {
        let r = s.ec2("ModifyInstanceMetadataOptions", &[("InstanceId", SAMPLE_ID), (name, value)]).await;
        r.assert_error(400, "InvalidParameterValue");
        assert_eq!(r.message(), message);
    }
    let r = s
        .ec2(
            "RunInstances",
            &[
                ("ImageId", "ami-12345678"),
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("MetadataOptions.HttpPutResponseHopLimit", "65"),
            ],
        )
        .await;
    r.assert_error(400, "InvalidParameterValue");
    assert_eq!(s.dump().await, before);
}

#[tokio::test]
async fn unknown_and_malformed_instance_ids() {
    let s = with_sample().await;
    let r = s.ec2("DescribeInstances", &[("InstanceId.1", "i-0000000000000000f")]).await;
    r.assert_error(400, "InvalidInstanceID.NotFound");
    assert_eq!(r.message(), "The instance ID 'i-0000000000000000f' does not exist");
    let r = s
        .ec2(
            "StopInstances",
            &[("InstanceId.1", "i-0000000a"), ("InstanceId.2", SAMPLE_ID), ("InstanceId.3", "i-0000000b")],
        )
        .await;
    r.assert_error(400, "InvalidInstanceID.NotFound");
    assert_eq!(r.message(), "The instance IDs 'i-0000000a, i-0000000b' do not exist");
    let r = s.ec2("ModifyInstanceMetadataOptions", &[("InstanceId", "foo")]).await;
    r.assert_error(400, "InvalidInstanceID.Malformed");
    assert_eq!(r.message(), "Invalid id: \"foo\"");
    let r = s.ec2("ModifyInstanceMetadataOptions", &[("HttpTokens", "required")]).await;
    r.assert_error(400, "MissingParameter");
    assert_eq!(r.message(), "The request must contain the parameter InstanceId");
    assert_eq!(s.record(SAMPLE_ID).await.state, InstanceState::Running);
}

#[tokio::test]
async fn unknown_actions_parameters_and_versions() {
    let s = with_sample().await;
    let r = s.ec2("FrobnicateInstances", &[]).await;
    r.assert_error(400, "InvalidAction");
    assert_eq!(r.message(), "The action FrobnicateInstances is not valid for this web service.");
    let r = s.ec2("DescribeInstances", &[("Foo", "bar")]).await;
    r.assert_error(400, "UnknownParameter");
    assert_eq!(r.message(), "The parameter Foo is not recognized");
    let r = s
        .ec2("ModifyInstanceMetadataOptions", &[("InstanceId", SAMPLE_ID), ("HttpTokens.1", "required")])
        .await;
    r.assert_error(400, "UnknownParameter");
    let r = s.call(&[("Action", "DescribeInstances")]).await;
    r.assert_error(400, "MissingParameter");
    let r = s.call(&[("Action", "DescribeInstances"), ("Version", "2010-01-01")]).await;
    r.assert_error(400, "NoSuchVersion");
    let r = s.call(&[("Version", "2016-11-15")]).await;
    r.assert_error(400, "MissingAction");
}

#[tokio::test]
async fn signatures_are_required_and_checked() {
    let s = with_sample().await;
    let body = form(&[("Action", "DescribeInstances"), ("Version", "2016-11-15")]);
    let good = s.sign(AKID, SECRET, "POST", "/", &body, "ec2", "us-east-1", false);
    s.send(&good).await.assert_ok();

    let wrong_secret = s.sign(AKID, "not-the-secret", "POST", "/", &body, "ec2", "us-east-1", false);
    s.send(&wrong_secret).await.assert_error(403, "SignatureDoesNotMatch");

    let unknown = s.sign("AKIAUNKNOWNKEY000000", SECRET, "POST", "/", &body, "ec2", "us-east-1", false);
    let r = s.send(&unknown).await;
    r.assert_error(401, "AuthFailure");
    assert_eq!(r.message(), "AWS was not able to validate the provided access credentials");

    let region = s.sign(AKID, SECRET, "POST", "/", &body, "ec2", "eu-west-1", false);
    let r = s.send(&region).await;
    r.assert_error(401, "AuthFailure");
    assert!(r.message().contains("eu-west-1"), "{}", r.body);

    let service = s.sign(AKID, SECRET, "POST", "/", &body, "s3", "us-east-1", false);
    s.send(&service).await.assert_error(401, "AuthFailure");

    let unsigned = format!(
        "POST / HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        s.addr,
        body.len()
    );
    s.send(unsigned.as_bytes()).await.assert_error(401, "MissingAuthenticationToken");

    // A body changed after signing.
    let mut tampered = good.clone();
    let n = tampered.len();
    tampered[n - 1] = b'6';
    s.send(&tampered).await.assert_error(403, "SignatureDoesNotMatch");

    // Signed 20 minutes ago.
    s.clock.advance_millis(20 * 60 * 1000);
    s.send(&good).await.assert_error(400, "RequestExpired");
}

#[tokio::test]
async fn presigned_get_with_query_parameters_works() {
    let s = with_sample().await;
    let query =
        form(&[("Action", "DescribeInstances"), ("Version", "2016-11-15"), ("InstanceId.1", SAMPLE_ID)]);
    let raw = s.sign(AKID, SECRET, "GET", &format!("/?{query}"), "", "ec2", "us-east-1", true);
    let r = s.send(&raw).await;
    r.assert_ok();
    assert_eq!(texts(&r.body, "instanceId")[0], SAMPLE_ID);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let s = Server::start().await;
    let big = "x".repeat(s.max_body + 1);
    let r = s.ec2("DescribeInstances", &[("Filter.1.Name", "tag:a"), ("Filter.1.Value.1", &big)]).await;
    r.assert_error(413, "RequestEntityTooLarge");
}

#[tokio::test]
async fn dry_run_validates_then_answers_412_or_403() {
    let s = Server::start_with(|c| {
        c.credentials.push(limited(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}]}"#,
        ));
    })
    .await;
    let ids = s.run(&[]).await;
    let before = s.dump().await;
    let modify = [("InstanceId", ids[0].as_str()), ("HttpTokens", "required"), ("DryRun", "true")];
    let r = s.ec2("ModifyInstanceMetadataOptions", &modify).await;
    r.assert_error(412, "DryRunOperation");
    assert_eq!(r.message(), "Request would have succeeded, but DryRun flag is set.");
    let r = s.ec2_as(LIMITED_AKID, LIMITED_SECRET, "ModifyInstanceMetadataOptions", &modify).await;
    r.assert_error(403, "UnauthorizedOperation");
    assert_eq!(r.message(), "You are not authorized to perform this operation.");
    // Validation wins over authorisation, existence over DryRun.
    let r = s
        .ec2_as(
            LIMITED_AKID,
            LIMITED_SECRET,
            "ModifyInstanceMetadataOptions",
            &[("InstanceId", &ids[0]), ("HttpTokens", "x"), ("DryRun", "true")],
        )
        .await;
    r.assert_error(400, "InvalidParameterValue");
    let r = s.ec2("ModifyInstanceMetadataOptions", &[("InstanceId", "i-00000000"), ("DryRun", "true")]).await;
    r.assert_error(400, "InvalidInstanceID.NotFound");
    let r = s
        .ec2(
            "RunInstances",
            &[("ImageId", "ami-12345678"), ("MinCount", "1"), ("MaxCount", "1"), ("DryRun", "true")],
        )
        .await;
    r.assert_error(412, "DryRunOperation");
    for action in ["StopInstances", "StartInstances", "TerminateInstances", "RebootInstances"] {
        s.ec2(action, &[("InstanceId.1", &ids[0]), ("DryRun", "true")])
            .await
            .assert_error(412, "DryRunOperation");
    }
    s.ec2("CreateTags", &[("ResourceId.1", &ids[0]), ("Tag.1.Key", "a"), ("DryRun", "true")])
        .await
        .assert_error(412, "DryRunOperation");
    s.ec2("DescribeInstances", &[("DryRun", "true")]).await.assert_error(412, "DryRunOperation");
    s.ec2_as(LIMITED_AKID, LIMITED_SECRET, "DescribeInstances", &[("DryRun", "true")])
        .await
        .assert_error(412, "DryRunOperation");
    assert_eq!(s.dump().await, before, "DryRun changed the store");
}

#[tokio::test]
async fn documented_policy_examples_are_enforced() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"ec2:*","Resource":"*"},
        {"Effect":"Deny","Action":"ec2:RunInstances","Resource":"arn:aws:ec2:*:*:instance/*",
         "Condition":{"StringNotEquals":{"ec2:MetadataHttpTokens":"required"}}},
        {"Effect":"Deny","Action":"ec2:RunInstances","Resource":"arn:aws:ec2:*:*:instance/*",
         "Condition":{"NumericGreaterThan":{"ec2:MetadataHttpPutResponseHopLimit":"3"}}},
        {"Effect":"Deny","Action":"ec2:ModifyInstanceMetadataOptions","Resource":"*",
         "Condition":{"StringEquals":{"ec2:Attribute":"HttpTokens"},"StringNotEquals":{"ec2:Attribute/HttpTokens":"required"}}},
        {"Effect":"Deny","Action":"ec2:ModifyInstanceMetadataOptions","Resource":"*",
         "Condition":{"StringNotLike":{"aws:PrincipalARN":"arn:aws:iam::*:role/ec2-imds-admins"},"NumericGreaterThan":{"ec2:MetadataHttpPutResponseHopLimit":"3"}}}
    ]}"#;
    let s = Server::start_with(|c| c.credentials.push(limited(policy))).await;
    let run = |extra: Vec<(&'static str, &'static str)>| {
        let mut p = vec![("ImageId", "ami-12345678"), ("MinCount", "1"), ("MaxCount", "1")];
        p.extend(extra);
        p
    };
    let before = s.dump().await;
    s.ec2_as(LIMITED_AKID, LIMITED_SECRET, "RunInstances", &run(vec![]))
        .await
        .assert_error(403, "UnauthorizedOperation");
    s.ec2_as(
        LIMITED_AKID,
        LIMITED_SECRET,
        "RunInstances",
        &run(vec![("MetadataOptions.HttpTokens", "optional")]),
    )
    .await
    .assert_error(403, "UnauthorizedOperation");
    s.ec2_as(
        LIMITED_AKID,
        LIMITED_SECRET,
        "RunInstances",
        &run(vec![
            ("MetadataOptions.HttpTokens", "required"),
            ("MetadataOptions.HttpPutResponseHopLimit", "4"),
        ]),
    )
    .await
    .assert_error(403, "UnauthorizedOperation");
    assert_eq!(s.dump().await, before);
    let r = s
        .ec2_as(
            LIMITED_AKID,
            LIMITED_SECRET,
            "RunInstances",
            &run(vec![
                ("MetadataOptions.HttpTokens", "required"),
                ("MetadataOptions.HttpPutResponseHopLimit", "3"),
            ]),
        )
        .await;
    r.assert_ok();
    let id = r.text("instanceId").unwrap();
    let optional = [("InstanceId", id.as_str()), ("HttpTokens", "optional")];
    let required = [("InstanceId", id.as_str()), ("HttpTokens", "required")];
    s.ec2_as(LIMITED_AKID, LIMITED_SECRET, "ModifyInstanceMetadataOptions", &optional)
        .await
        .assert_error(403, "UnauthorizedOperation");
    s.ec2_as(LIMITED_AKID, LIMITED_SECRET, "ModifyInstanceMetadataOptions", &required).await.assert_ok();
    s.ec2_as(
        LIMITED_AKID,
        LIMITED_SECRET,
        "ModifyInstanceMetadataOptions",
        &[("InstanceId", &id), ("HttpPutResponseHopLimit", "5")],
    )
    .await
    .assert_error(403, "UnauthorizedOperation");
    // The policy-free admin is not restricted.
    s.ec2("ModifyInstanceMetadataOptions", &optional).await.assert_ok();
}

#[tokio::test]
async fn resource_tags_and_principal_are_condition_keys() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["ec2:StopInstances","ec2:StartInstances"],"Resource":"*",
         "Condition":{"StringEquals":{"ec2:ResourceTag/team":"blue"}}},
        {"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}]}"#;
    let s = Server::start_with(|c| c.credentials.push(limited(policy))).await;
    let blue = s
        .run(&[
            ("TagSpecification.1.ResourceType", "instance"),
            ("TagSpecification.1.Tag.1.Key", "team"),
            ("TagSpecification.1.Tag.1.Value", "blue"),
        ])
        .await;
    let red = s
        .run(&[
            ("TagSpecification.1.ResourceType", "instance"),
            ("TagSpecification.1.Tag.1.Key", "team"),
            ("TagSpecification.1.Tag.1.Value", "red"),
        ])
        .await;
    s.ec2_as(LIMITED_AKID, LIMITED_SECRET, "StopInstances", &[("InstanceId.1", &blue[0])]).await.assert_ok();
    s.ec2_as(LIMITED_AKID, LIMITED_SECRET, "StopInstances", &[("InstanceId.1", &red[0])])
        .await
        .assert_error(403, "UnauthorizedOperation");
    // One denied instance fails the whole request.
    s.ec2_as(
        LIMITED_AKID,
        LIMITED_SECRET,
        "StartInstances",
        &[("InstanceId.1", &blue[0]), ("InstanceId.2", &red[0])],
    )
    .await
    .assert_error(403, "UnauthorizedOperation");
    assert_eq!(s.record(&blue[0]).await.state, InstanceState::Stopped);
}

#[tokio::test]
async fn stop_start_terminate_state_machine() {
    let s = Server::start().await;
    let ids = s.run(&[]).await;
    let id = ids[0].as_str();
    let first = s.record(id).await;
    s.ack(id).await;

    let r = s.ec2("StopInstances", &[("InstanceId.1", id)]).await;
    r.assert_ok();
    assert_eq!(
        r.normalized(),
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<StopInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>REQ</requestId><instancesSet><item><instanceId>{id}</instanceId><currentState><code>64</code><name>stopping</name></currentState><previousState><code>16</code><name>running</name></previousState></item></instancesSet></StopInstancesResponse>"
        )
    );
    let stopped = s.record(id).await;
    assert_eq!(
        (stopped.state, stopped.generation, stopped.incarnation),
        (InstanceState::Stopped, 2, first.incarnation)
    );
    // Stopping again changes nothing.
    let r = s.ec2("StopInstances", &[("InstanceId.1", id)]).await;
    assert_eq!(r.text("currentState").as_deref(), Some("<code>80</code><name>stopped</name>"));
    assert_eq!(s.record(id).await.generation, 2);

    s.clock.advance_millis(60_000);
    let r = s.ec2("StartInstances", &[("InstanceId.1", id)]).await;
    r.assert_ok();
    assert_eq!(r.text("currentState").as_deref(), Some("<code>0</code><name>pending</name>"));
    assert_eq!(r.text("previousState").as_deref(), Some("<code>80</code><name>stopped</name>"));
    let started = s.record(id).await;
    assert_eq!(started.state, InstanceState::Running);
    assert_ne!(started.incarnation, first.incarnation, "tokens of the previous run must die");
    assert_eq!(started.launch_time, T0 + 60);
    assert_eq!(started.generation, 3);
    let r = s.ec2("StartInstances", &[("InstanceId.1", id)]).await;
    assert_eq!(r.text("currentState").as_deref(), Some("<code>16</code><name>running</name>"));

    let r = s.ec2("TerminateInstances", &[("InstanceId.1", id)]).await;
    r.assert_ok();
    assert_eq!(r.text("currentState").as_deref(), Some("<code>32</code><name>shutting-down</name>"));
    assert_eq!(r.text("previousState").as_deref(), Some("<code>16</code><name>running</name>"));
    assert_eq!(s.record(id).await.state, InstanceState::Terminated);
    let r = s.ec2("StartInstances", &[("InstanceId.1", id)]).await;
    r.assert_error(400, "IncorrectInstanceState");
    assert_eq!(r.message(), format!("The instance '{id}' is not in a state from which it can be started."));
    s.ec2("StopInstances", &[("InstanceId.1", id)]).await.assert_error(400, "IncorrectInstanceState");
    let r = s.ec2("TerminateInstances", &[("InstanceId.1", id)]).await;
    assert_eq!(r.text("currentState").as_deref(), Some("<code>48</code><name>terminated</name>"));
    // Terminated instances are still listed, without their network.
    let d = s.ec2("DescribeInstances", &[]).await;
    assert_eq!(d.text("instanceState").as_deref(), Some("<code>48</code><name>terminated</name>"));
    assert!(d.body.contains("<networkInterfaceSet/>"));
    // ...and cannot be modified.
    s.ec2("ModifyInstanceMetadataOptions", &[("InstanceId", id), ("HttpTokens", "required")])
        .await
        .assert_error(400, "InvalidInstanceID.NotFound");
    // Its address is free again.
    let again = s.run(&[]).await;
    assert_eq!(s.record(&again[0]).await.private_ipv4(), first.private_ipv4());
}

#[tokio::test]
async fn addresses_are_allocated_and_conflicts_refused() {
    let s = Server::start().await;
    let a = s.run(&[("PrivateIpAddress", "192.168.50.10")]).await;
    let before = s.dump().await;
    let r = s
        .ec2(
            "RunInstances",
            &[
                ("ImageId", "ami-12345678"),
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("PrivateIpAddress", "192.168.50.10"),
            ],
        )
        .await;
    r.assert_error(400, "InvalidIPAddress.InUse");
    assert_eq!(r.message(), "Address 192.168.50.10 is in use.");
    let r = s
        .ec2(
            "RunInstances",
            &[
                ("ImageId", "ami-12345678"),
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("NetworkInterface.1.DeviceIndex", "0"),
                ("NetworkInterface.1.PrivateIpAddresses.1.PrivateIpAddress", "192.168.50.10"),
            ],
        )
        .await;
    r.assert_error(400, "InvalidIPAddress.InUse");
    assert_eq!(s.dump().await, before);
    let r = s
        .ec2(
            "RunInstances",
            &[
                ("ImageId", "ami-12345678"),
                ("MinCount", "1"),
                ("MaxCount", "2"),
                ("PrivateIpAddress", "192.168.50.11"),
            ],
        )
        .await;
    r.assert_error(400, "InvalidParameterCombination");
    assert_eq!(s.record(&a[0]).await.private_ipv4(), Some(Ipv4Addr::new(192, 168, 50, 10)));

    // Interfaces with secondary addresses, IPv6 and prefixes.
    let ids = s
        .run(&[
            ("NetworkInterface.1.DeviceIndex", "0"),
            ("NetworkInterface.1.SecondaryPrivateIpAddressCount", "2"),
            ("NetworkInterface.1.Ipv6AddressCount", "1"),
            ("NetworkInterface.1.Ipv4Prefix.1.Ipv4Prefix", "10.0.8.0/28"),
            ("NetworkInterface.1.Ipv6Prefix.1.Ipv6Prefix", "2001:db8:10:0:1::/80"),
            ("NetworkInterface.2.DeviceIndex", "1"),
            ("NetworkInterface.2.SubnetId", "subnet-0123456789abcdef0"),
        ])
        .await;
    let rec = s.record(&ids[0]).await;
    assert_eq!(rec.network_interfaces.len(), 2);
    let eth0 = &rec.network_interfaces[0];
    assert_eq!(eth0.private_ipv4s.len(), 3);
    assert_eq!(eth0.ipv6s, ["2001:db8:10::4".parse::<std::net::Ipv6Addr>().unwrap()]);
    assert_eq!(eth0.ipv4_prefixes[0].to_string(), "10.0.8.0/28");
    assert_eq!(rec.network_interfaces[1].subnet_id, "subnet-0123456789abcdef0");
    let d = s.ec2("DescribeInstances", &[("InstanceId.1", &ids[0])]).await;
    assert!(
        d.body.contains("<ipv4PrefixSet><item><ipv4Prefix>10.0.8.0/28</ipv4Prefix></item></ipv4PrefixSet>")
    );
    assert!(d.body.contains("<ipv6AddressesSet><item><ipv6Address>2001:db8:10::4</ipv6Address><isPrimaryIpv6>false</isPrimaryIpv6></item></ipv6AddressesSet>"));
    assert_eq!(d.text("ipv6Address").as_deref(), Some("2001:db8:10::4"));
    s.ec2(
        "RunInstances",
        &[
            ("ImageId", "ami-12345678"),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("NetworkInterface.1.DeviceIndex", "0"),
            ("NetworkInterface.1.Ipv4Prefix.1.Ipv4Prefix", "10.0.8.0/28"),
        ],
    )
    .await
    .assert_error(400, "InvalidIPAddress.InUse");
    s.ec2(
        "RunInstances",
        &[
            ("ImageId", "ami-12345678"),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("NetworkInterface.1.DeviceIndex", "0"),
            ("PrivateIpAddress", "10.0.0.9"),
        ],
    )
    .await
    .assert_error(400, "InvalidParameterCombination");
}

#[tokio::test]
async fn run_instances_validation() {
    let s = Server::start().await;
    let before = s.dump().await;
    let base = [("ImageId", "ami-12345678"), ("MinCount", "1"), ("MaxCount", "1")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut p = base.to_vec();
        for (k, v) in extra {
            p.retain(|(pk, _)| pk != k);
            p.push((k, v));
        }
        p
    };
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, Option<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        (
            with(&[("UserData", "%%%not-base64")]),
            "InvalidParameterValue",
            Some("Invalid BASE64 encoding of user data"),
        ),
        (with(&[("MinCount", "0")]), "InvalidParameterValue", None),
        (with(&[("MinCount", "3"), ("MaxCount", "2")]), "InvalidParameterValue", None),
        (with(&[("MaxCount", "1001")]), "InvalidParameterValue", None),
        (with(&[("ImageId", "img-1")]), "InvalidAMIID.Malformed", None),
        (
            with(&[("InstanceType", "Huge")]),
            "InvalidParameterValue",
            Some("Invalid value 'Huge' for InstanceType."),
        ),
        (with(&[("KeyName", "nope")]), "InvalidKeyPair.NotFound", Some("The key pair 'nope' does not exist")),
        (with(&[("Placement.AvailabilityZone", "eu-west-1a")]), "InvalidParameterValue", None),
        (
            with(&[("TagSpecification.1.ResourceType", "vpc"), ("TagSpecification.1.Tag.1.Key", "a")]),
            "InvalidParameterValue",
            None,
        ),
        (
            with(&[
                ("TagSpecification.1.ResourceType", "instance"),
                ("TagSpecification.1.Tag.1.Key", "aws:x"),
            ]),
            "InvalidParameterValue",
            None,
        ),
        (
            with(&[
                ("MetadataOptions.InstanceMetadataTags", "enabled"),
                ("TagSpecification.1.ResourceType", "instance"),
                ("TagSpecification.1.Tag.1.Key", "has space"),
                ("TagSpecification.1.Tag.1.Value", "v"),
            ]),
            "InvalidParameterValue",
            Some(
                r"'has space' is not a valid tag key. Tag keys must match pattern ([0-9a-zA-Z\\-_+=,.@:]{1,255}), and must not be a reserved name ('.', '..', '_index')",
            ),
        ),
        (with(&[("InstanceMarketOptions.MarketType", "cheap")]), "InvalidParameterValue", None),
        (with(&[("IamInstanceProfile.Arn", "arn:aws:s3:::bucket")]), "InvalidParameterValue", None),
        (with(&[("PrivateIpAddress", "10.0.0.1")]), "InvalidParameterValue", None),
        (with(&[("PrivateIpAddress", "10.0.0.300")]), "InvalidParameterValue", None),
        (
            with(&[("NetworkInterface.1.SubnetId", "subnet-12345678")]),
            "InvalidParameterValue",
            Some("Each network interface requires a device index."),
        ),
        (with(&[("NetworkInterface.1.DeviceIndex", "1")]), "InvalidParameterValue", None),
        (
            with(&[
                ("NetworkInterface.1.DeviceIndex", "0"),
                ("NetworkInterface.1.NetworkInterfaceId", "eni-12345678"),
            ]),
            "InvalidNetworkInterfaceID.NotFound",
            None,
        ),
        (
            vec![("ImageId", "ami-12345678"), ("MinCount", "1")],
            "MissingParameter",
            Some("The request must contain the parameter MaxCount"),
        ),
    ];
    for (params, code, message) in cases {
        let r = s.ec2("RunInstances", &params).await;
        r.assert_error(400, code);
        if let Some(m) = message {
            assert_eq!(r.message(), m, "{params:?}");
        }
    }
    let big = base64_of(&vec![b'x'; 16385]);
    let r = s.ec2("RunInstances", &[base[0], base[1], base[2], ("UserData", &big)]).await;
    r.assert_error(400, "InvalidParameterValue");
    assert_eq!(r.message(), "User data is limited to 16384 bytes");
    assert_eq!(s.dump().await, before);
    let ok = base64_of(&vec![b'x'; 16384]);
    s.run(&[("UserData", &ok)]).await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn user_data_via_instance_attributes() {
    let s = Server::start().await;
    let ids = s.run(&[]).await;
    let id = ids[0].as_str();
    let r = s.ec2("DescribeInstanceAttribute", &[("InstanceId", id), ("Attribute", "userData")]).await;
    r.assert_ok();
    assert_eq!(
        r.normalized(),
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstanceAttributeResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>REQ</requestId><instanceId>{id}</instanceId><userData/></DescribeInstanceAttributeResponse>"
        )
    );
    let r =
        s.ec2("ModifyInstanceAttribute", &[("InstanceId", id), ("UserData.Value", "IyEvYmluL3NoCg==")]).await;
    r.assert_error(400, "IncorrectInstanceState");
    assert_eq!(r.message(), format!("The instance '{id}' is not in the 'stopped' state."));
    s.ec2("StopInstances", &[("InstanceId.1", id)]).await.assert_ok();
    let generation = s.record(id).await.generation;
    let r =
        s.ec2("ModifyInstanceAttribute", &[("InstanceId", id), ("UserData.Value", "IyEvYmluL3NoCg==")]).await;
    r.assert_ok();
    assert!(r.body.ends_with("<return>true</return></ModifyInstanceAttributeResponse>"));
    assert_eq!(s.record(id).await.user_data.as_deref(), Some(&b"#!/bin/sh\n"[..]));
    assert_eq!(s.record(id).await.generation, generation + 1);
    s.ec2(
        "ModifyInstanceAttribute",
        &[("InstanceId", id), ("Attribute", "userData"), ("Value", "ZWNobyBoaQ==")],
    )
    .await
    .assert_ok();
    let r = s.ec2("DescribeInstanceAttribute", &[("InstanceId", id), ("Attribute", "userData")]).await;
    assert!(r.body.contains("<userData><value>ZWNobyBoaQ==</value></userData>"), "{}", r.body);
    s.ec2(
        "ModifyInstanceAttribute",
        &[
            ("InstanceId", id),
            ("Attribute", "userData"),
            ("Value", "ZWNobyBoaQ=="),
            ("UserData.Value", "ZWNobyBoaQ=="),
        ],
    )
    .await
    .assert_error(400, "InvalidParameterCombination");
    let r = s.ec2("ModifyInstanceAttribute", &[("InstanceId", id), ("UserData.Value", "***")]).await;
    r.assert_error(400, "InvalidParameterValue");
    assert_eq!(r.message(), "Invalid BASE64 encoding of user data");
    let r = s
        .ec2(
            "ModifyInstanceAttribute",
            &[("InstanceId", id), ("UserData.Value", &base64_of(&vec![1; 16385]))],
        )
        .await;
    assert_eq!(r.message(), "User data is limited to 16384 bytes");
    s.ec2("ModifyInstanceAttribute", &[("InstanceId", id), ("SourceDestCheck.Value", "false")])
        .await
        .assert_error(400, "InvalidParameterValue");
    s.ec2("ModifyInstanceAttribute", &[("InstanceId", id), ("InstanceType.Value", "m5.xlarge")])
        .await
        .assert_ok();
    let r = s.ec2("DescribeInstanceAttribute", &[("InstanceId", id), ("Attribute", "instanceType")]).await;
    assert!(r.body.contains("<instanceType><value>m5.xlarge</value></instanceType>"));
    s.ec2("DescribeInstanceAttribute", &[("InstanceId", id), ("Attribute", "bogus")])
        .await
        .assert_error(400, "InvalidParameterValue");
    let r = s.ec2("DescribeInstanceAttribute", &[("InstanceId", id), ("Attribute", "groupSet")]).await;
    assert!(r.body.contains("<groupSet><item><groupId>sg-0b07f8f6cb485d4df</groupId><groupName>default</groupName></item></groupSet>"));
}

#[tokio::test]
async fn tags_create_delete_describe_and_their_rules() {
    let s = Server::start().await;
    let ids = s.run(&[]).await;
    let id = ids[0].as_str();
    let r = s
        .ec2(
            "CreateTags",
            &[("ResourceId.1", id), ("Tag.1.Key", "Name"), ("Tag.1.Value", "web"), ("Tag.2.Key", "empty")],
        )
        .await;
    r.assert_ok();
    assert_eq!(
        r.normalized(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>REQ</requestId><return>true</return></CreateTagsResponse>"
    );
    let rec = s.record(id).await;
    assert_eq!(rec.tags.get("empty").map(String::as_str), Some(""));
    assert_eq!(rec.generation, 2);
    let r = s
        .ec2(
            "DescribeTags",
            &[
                ("Filter.1.Name", "resource-id"),
                ("Filter.1.Value.1", id),
                ("Filter.2.Name", "key"),
                ("Filter.2.Value.1", "Na*"),
            ],
        )
        .await;
    assert_eq!(
        r.normalized(),
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>REQ</requestId><tagSet><item><resourceId>{id}</resourceId><resourceType>instance</resourceType><key>Name</key><value>web</value></item></tagSet></DescribeTagsResponse>"
        )
    );
    let d = s.ec2("DescribeInstances", &[("Filter.1.Name", "tag:Name"), ("Filter.1.Value.1", "web")]).await;
    assert_eq!(texts(&d.body, "instanceId"), [id]);

    let before = s.dump().await;
    let r =
        s.ec2("CreateTags", &[("ResourceId.1", id), ("Tag.1.Key", "aws:owner"), ("Tag.1.Value", "x")]).await;
    r.assert_error(400, "InvalidParameterValue");
    s.ec2("CreateTags", &[("ResourceId.1", "vol-12345678"), ("Tag.1.Key", "a")])
        .await
        .assert_error(400, "InvalidID");
    s.ec2("CreateTags", &[("ResourceId.1", "i-00000000"), ("Tag.1.Key", "a")])
        .await
        .assert_error(400, "InvalidInstanceID.NotFound");
    s.ec2("CreateTags", &[("ResourceId.1", id)]).await.assert_error(400, "MissingParameter");
    let many: Vec<(String, String)> =
        (0..49).flat_map(|i| [(format!("Tag.{}.Key", i + 1), format!("k{i}"))]).collect();
    let mut params: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    params.push(("ResourceId.1", id));
    s.ec2("CreateTags", &params).await.assert_error(400, "TagLimitExceeded");
    // Two resources, one of which fails: neither changes.
    let other = s.run(&[]).await;
    s.ec2("CreateTags", &[("ResourceId.1", &other[0]), ("ResourceId.2", "i-00000000"), ("Tag.1.Key", "a")])
        .await
        .assert_error(400, "InvalidInstanceID.NotFound");
    assert!(s.record(&other[0]).await.tags.is_empty());
    let mut before_other = before.clone();
    before_other.retain(|_| true);
    // Enabling tags in metadata with an incompatible key fails with EC2's text.
    s.ec2("CreateTags", &[("ResourceId.1", id), ("Tag.1.Key", "bad key"), ("Tag.1.Value", "x")])
        .await
        .assert_ok();
    let r = s
        .ec2("ModifyInstanceMetadataOptions", &[("InstanceId", id), ("InstanceMetadataTags", "enabled")])
        .await;
    r.assert_error(400, "InvalidParameterValue");
    assert_eq!(
        r.message(),
        r"'bad key' is not a valid tag key. Tag keys must match pattern ([0-9a-zA-Z\\-_+=,.@:]{1,255}), and must not be a reserved name ('.', '..', '_index')"
    );
    // DeleteTags: key+value deletes only on match, key alone always.
    s.ec2("DeleteTags", &[("ResourceId.1", id), ("Tag.1.Key", "Name"), ("Tag.1.Value", "other")])
        .await
        .assert_ok();
    assert!(s.record(id).await.tags.contains_key("Name"));
    s.ec2(
        "DeleteTags",
        &[("ResourceId.1", id), ("Tag.1.Key", "bad key"), ("Tag.2.Key", "Name"), ("Tag.2.Value", "web")],
    )
    .await
    .assert_ok();
    let tags = s.record(id).await.tags;
    assert_eq!(tags.keys().collect::<Vec<_>>(), ["empty"]);
    s.ec2("ModifyInstanceMetadataOptions", &[("InstanceId", id), ("InstanceMetadataTags", "enabled")])
        .await
        .assert_ok();
    // With tags in metadata, CreateTags enforces the IMDS key rule.
    let r = s.ec2("CreateTags", &[("ResourceId.1", id), ("Tag.1.Key", "a/b"), ("Tag.1.Value", "x")]).await;
    r.assert_error(400, "InvalidParameterValue");
    assert!(r.message().starts_with("'a/b' is not a valid tag key."));
    s.ec2("DeleteTags", &[("ResourceId.1", id)]).await.assert_ok();
    assert!(s.record(id).await.tags.is_empty());
    s.ec2("DescribeTags", &[("Filter.1.Name", "colour"), ("Filter.1.Value.1", "x")])
        .await
        .assert_error(400, "InvalidParameterValue");
}

#[tokio::test]
async fn describe_instances_pages_and_filters() {
    let s = Server::start().await;
    s.run(&[("MinCount", "7"), ("MaxCount", "7")]).await;
    let stopped = s.run(&[("InstanceType", "t4g.nano")]).await;
    s.ec2("StopInstances", &[("InstanceId.1", &stopped[0])]).await.assert_ok();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = vec![("MaxResults", "5".to_owned())];
        if let Some(t) = &token {
            params.push(("NextToken", t.clone()));
        }
        let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = s.ec2("DescribeInstances", &p).await;
        r.assert_ok();
        let page = texts(&r.body, "instanceId");
        assert!(page.len() <= 5);
        seen.extend(page);
        token = r.text("nextToken");
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 8);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8);
    let r = s
        .ec2(
            "DescribeInstances",
            &[("Filter.1.Name", "instance-state-name"), ("Filter.1.Value.1", "stopped")],
        )
        .await;
    assert_eq!(texts(&r.body, "instanceId"), stopped);
    assert_eq!(r.text("architecture").as_deref(), Some("arm64"));
    let r = s
        .ec2(
            "DescribeInstances",
            &[
                ("Filter.1.Name", "instance-state-name"),
                ("Filter.1.Value.1", "running"),
                ("Filter.2.Name", "metadata-options.http-tokens"),
                ("Filter.2.Value.1", "optional"),
            ],
        )
        .await;
    assert_eq!(texts(&r.body, "instanceId").len(), 7);
    assert_eq!(texts(&r.body, "reservationId").len(), 1, "one reservation for one RunInstances call");
    s.ec2("DescribeInstances", &[("MaxResults", "4")]).await.assert_error(400, "InvalidParameterValue");
    s.ec2("DescribeInstances", &[("MaxResults", "5"), ("InstanceId.1", &stopped[0])])
        .await
        .assert_error(400, "InvalidParameterCombination");
    s.ec2("DescribeInstances", &[("Filter.1.Name", "flavour"), ("Filter.1.Value.1", "x")])
        .await
        .assert_error(400, "InvalidParameterValue");
}

#[tokio::test]
async fn client_token_makes_run_instances_idempotent() {
    let s = Server::start().await;
    let params =
        [("ImageId", "ami-12345678"), ("MinCount", "2"), ("MaxCount", "2"), ("ClientToken", "abc-123")];
    let a = s.ec2("RunInstances", &params).await;
    let b = s.ec2("RunInstances", &params).await;
    a.assert_ok();
    b.assert_ok();
    assert_eq!(texts(&a.body, "instanceId"), texts(&b.body, "instanceId"));
    assert_eq!(a.text("reservationId"), b.text("reservationId"));
    let all = s.ec2("DescribeInstances", &[]).await;
    assert_eq!(texts(&all.body, "instanceId").len(), 2);
    s.ec2("RunInstances", &[params[0], params[1], ("MaxCount", "3"), params[3]])
        .await
        .assert_error(400, "IdempotentParameterMismatch");
}

#[tokio::test]
async fn account_defaults_and_ami_support_decide_launch_options() {
    let s = Server::start().await;
    let r = s.ec2("GetInstanceMetadataDefaults", &[]).await;
    assert!(r.body.contains("<accountLevel/>"), "{}", r.body);
    let r = s
        .ec2("RegisterImage", &[("Name", "al2023-v2"), ("ImdsSupport", "v2.0"), ("Architecture", "arm64")])
        .await;
    r.assert_ok();
    let ami = r.text("imageId").unwrap();
    let ids = s.run(&[("ImageId", &ami)]).await;
    let rec = s.record(&ids[0]).await;
    assert_eq!(
        (rec.metadata_options.http_tokens.as_str(), rec.metadata_options.http_put_response_hop_limit.get()),
        ("required", 2)
    );
    assert_eq!(rec.architecture, "arm64");
    // Account default beats the AMI for HttpTokens; the AMI's hop limit stays.
    s.ec2("ModifyInstanceMetadataDefaults", &[("HttpTokens", "optional")]).await.assert_ok();
    let ids = s.run(&[("ImageId", &ami)]).await;
    let rec = s.record(&ids[0]).await;
    assert_eq!(
        (rec.metadata_options.http_tokens.as_str(), rec.metadata_options.http_put_response_hop_limit.get()),
        ("optional", 2)
    );
    // Launch parameters beat both.
    let ids = s
        .run(&[
            ("ImageId", &ami),
            ("MetadataOptions.HttpTokens", "required"),
            ("MetadataOptions.HttpPutResponseHopLimit", "5"),
        ])
        .await;
    let rec = s.record(&ids[0]).await;
    assert_eq!(
        (rec.metadata_options.http_tokens.as_str(), rec.metadata_options.http_put_response_hop_limit.get()),
        ("required", 5)
    );
    let r = s.ec2("GetInstanceMetadataDefaults", &[]).await;
    assert!(
        r.body.contains(
            "<accountLevel><httpTokens>optional</httpTokens><managedBy>account</managedBy></accountLevel>"
        ),
        "{}",
        r.body
    );
    s.ec2(
        "ModifyInstanceMetadataDefaults",
        &[("HttpTokens", "no-preference"), ("HttpPutResponseHopLimit", "-1")],
    )
    .await
    .assert_ok();
    assert!(s.ec2("GetInstanceMetadataDefaults", &[]).await.body.contains("<accountLevel/>"));
    s.ec2("ModifyInstanceMetadataDefaults", &[("HttpPutResponseHopLimit", "0")])
        .await
        .assert_error(400, "InvalidParameterValue");
    s.ec2("ModifyInstanceMetadataDefaults", &[("HttpTokensEnforced", "enabled")]).await.assert_ok();
    s.ec2("RunInstances", &[("ImageId", "ami-12345678"), ("MinCount", "1"), ("MaxCount", "1")])
        .await
        .assert_error(400, "InvalidParameterValue");
    let r = s.ec2("DescribeImages", &[("ImageId.1", &ami)]).await;
    assert!(r.body.contains("<imdsSupport>v2.0</imdsSupport>"));
    let r = s.ec2("DescribeImageAttribute", &[("ImageId", &ami), ("Attribute", "imdsSupport")]).await;
    assert!(r.body.contains("<imdsSupport><value>v2.0</value></imdsSupport>"), "{}", r.body);
    s.ec2("ModifyImageAttribute", &[("ImageId", &ami), ("ImdsSupport.Value", "v1.0")])
        .await
        .assert_error(400, "InvalidParameterValue");
    s.ec2("DescribeImages", &[("ImageId.1", "ami-00000000")])
        .await
        .assert_error(400, "InvalidAMIID.NotFound");
    s.ec2("RegisterImage", &[("Name", "al2023-v2")]).await.assert_error(400, "InvalidAMIName.Duplicate");
    let r = s.ec2("RegisterImage", &[("Name", "plain")]).await;
    let plain = r.text("imageId").unwrap();
    s.ec2("ModifyImageAttribute", &[("ImageId", &plain), ("Attribute", "imdsSupport"), ("Value", "v2.0")])
        .await
        .assert_ok();
    let r = s.ec2("DescribeImageAttribute", &[("ImageId", &plain), ("Attribute", "imdsSupport")]).await;
    assert!(r.body.contains("<imdsSupport><value>v2.0</value></imdsSupport>"));
    s.ec2("DeregisterImage", &[("ImageId", &plain)]).await.assert_ok();
    s.ec2("DescribeImages", &[("ImageId.1", &plain)]).await.assert_error(400, "InvalidAMIID.NotFound");
}

#[tokio::test]
async fn key_pairs_feed_launches() {
    let s = Server::start().await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnV3TLlAFs1TcUxAWv9v1n3dtSC0ZjyZ1IFiKxSN8qL me@laptop";
    let r = s
        .ec2("ImportKeyPair", &[("KeyName", "laptop"), ("PublicKeyMaterial", &base64_of(key.as_bytes()))])
        .await;
    r.assert_ok();
    assert!(r.text("keyPairId").unwrap().starts_with("key-"));
    s.ec2("ImportKeyPair", &[("KeyName", "laptop"), ("PublicKeyMaterial", &base64_of(key.as_bytes()))])
        .await
        .assert_error(400, "InvalidKeyPair.Duplicate");
    s.ec2("ImportKeyPair", &[("KeyName", "bad"), ("PublicKeyMaterial", &base64_of(b"hello"))])
        .await
        .assert_error(400, "InvalidKeyPair.Format");
    let ids = s.run(&[("KeyName", "laptop")]).await;
    let rec = s.record(&ids[0]).await;
    let k = rec.key.unwrap();
    assert_eq!(
        (k.name.as_str(), k.openssh_key.as_str()),
        ("laptop", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnV3TLlAFs1TcUxAWv9v1n3dtSC0ZjyZ1IFiKxSN8qL")
    );
    let r = s.ec2("DescribeKeyPairs", &[("KeyName.1", "laptop"), ("IncludePublicKey", "true")]).await;
    assert_eq!(r.text("keyType").as_deref(), Some("ed25519"));
    assert!(r.body.contains("<publicKey>ssh-ed25519 AAAA"));
    s.ec2("DescribeKeyPairs", &[("KeyName.1", "nope")]).await.assert_error(400, "InvalidKeyPair.NotFound");
    s.ec2("DeleteKeyPair", &[("KeyName", "laptop")]).await.assert_ok();
    s.ec2("DeleteKeyPair", &[("KeyName", "laptop")]).await.assert_ok();
    assert!(s.ec2("DescribeKeyPairs", &[]).await.body.contains("<keySet/>"));
}

#[tokio::test]
async fn regions_zones_and_status_for_waiters() {
    let s = Server::start().await;
    let ids = s.run(&[("Placement.AvailabilityZone", "us-east-1b")]).await;
    let r = s.ec2("DescribeAvailabilityZones", &[]).await;
    assert_eq!(texts(&r.body, "zoneName"), ["us-east-1a", "us-east-1b", "us-east-1c"]);
    let r = s.ec2("DescribeRegions", &[]).await;
    assert_eq!(r.text("regionName").as_deref(), Some("us-east-1"));
    let r = s.ec2("DescribeInstanceStatus", &[("InstanceId.1", &ids[0])]).await;
    assert_eq!(r.text("availabilityZone").as_deref(), Some("us-east-1b"));
    assert_eq!(texts(&r.body, "status"), ["ok", "passed", "ok", "passed"]);
    let rec = s.record(&ids[0]).await;
    assert_eq!(
        (rec.placement.availability_zone.as_str(), rec.placement.availability_zone_id.as_str()),
        ("us-east-1b", "use1-az2")
    );
}

#[tokio::test]
async fn json_protocol_requests_reach_the_lightsail_front_end() {
    let s = Server::start().await;
    let r = s.send(&s.sign(AKID, SECRET, "POST", "/", "{}", "lightsail", "us-east-1", false)).await;
    // Without X-Amz-Target this is an EC2 call, signed for the wrong service.
    r.assert_error(401, "AuthFailure");
    let mut raw = s.sign(AKID, SECRET, "POST", "/", "{}", "lightsail", "us-east-1", false);
    let text = String::from_utf8(raw.clone()).unwrap().replacen(
        "\r\n",
        "\r\nx-amz-target: Lightsail_20161128.GetBundles\r\n",
        1,
    );
    raw = text.into_bytes();
    let r = s.send(&raw).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, r#"{"__type":"com.amazon.coral.service#UnknownOperationException"}"#);
}

#[tokio::test]
async fn deny_on_any_resource_judges_the_launch_options() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"ec2:*","Resource":"*"},
        {"Effect":"Deny","Action":"ec2:RunInstances","Resource":"*",
         "Condition":{"StringNotEquals":{"ec2:MetadataHttpTokens":"required"}}}]}"#;
    let s = Server::start_with(|c| c.credentials.push(limited(policy))).await;
    let base = [("ImageId", "ami-12345678"), ("MinCount", "1"), ("MaxCount", "1")];
    s.ec2_as(LIMITED_AKID, LIMITED_SECRET, "RunInstances", &base)
        .await
        .assert_error(403, "UnauthorizedOperation");
    let mut required = base.to_vec();
    required.push(("MetadataOptions.HttpTokens", "required"));
    s.ec2_as(LIMITED_AKID, LIMITED_SECRET, "RunInstances", &required).await.assert_ok();
    // Tagging at launch needs ec2:CreateTags too (with ec2:CreateAction).
    let no_tags = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:RunInstances","Resource":"*"}]}"#;
    let s = Server::start_with(|c| c.credentials.push(limited(no_tags))).await;
    let mut tagged = base.to_vec();
    tagged.extend([
        ("TagSpecification.1.ResourceType", "instance"),
        ("TagSpecification.1.Tag.1.Key", "a"),
        ("TagSpecification.1.Tag.1.Value", "b"),
    ]);
    s.ec2_as(LIMITED_AKID, LIMITED_SECRET, "RunInstances", &tagged)
        .await
        .assert_error(403, "UnauthorizedOperation");
    s.ec2_as(LIMITED_AKID, LIMITED_SECRET, "RunInstances", &base).await.assert_ok();
}

/// Role credentials as IMDS would mint them: a session token and a
/// delivery version.
struct RoleCredentials;

impl imds_control::CredentialSource for RoleCredentials {
    fn lookup(&self, access_key_id: &str) -> Option<imds_control::Caller> {
        let delivery = match access_key_id {
            "ASIAROLEV1EXAMPLE000" => "1.0",
            "ASIAROLEV2EXAMPLE000" => "2.0",
            _ => return None,
        };
        let policy = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"*","Resource":"*"},
            {"Effect":"Deny","Action":"*","Resource":"*","Condition":{"NumericLessThan":{"ec2:RoleDelivery":"2.0"}}}]}"#;
        Some(imds_control::Caller {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: "role/secret".to_owned(),
            principal_arn: format!("arn:aws:sts::{ACCOUNT}:assumed-role/web/i-0123456789abcdef0"),
            policies: vec![std::sync::Arc::new(imds_policy::Policy::parse(policy).unwrap())],
            role_delivery: Some(delivery.to_owned()),
            session_token: Some("session-token".to_owned()),
        })
    }
}

#[tokio::test]
async fn role_credentials_need_their_token_and_carry_role_delivery() {
    let s = Server::start_with_source(|_| {}, std::sync::Arc::new(RoleCredentials)).await;
    let body = form(&[("Action", "DescribeInstances"), ("Version", "2016-11-15")]);
    let call = |akid: &'static str, token: Option<&'static str>| {
        s.sign_with_token(akid, "role/secret", token, "POST", "/", &body, "ec2", "us-east-1", false)
    };
    s.send(&call("ASIAROLEV2EXAMPLE000", Some("session-token"))).await.assert_ok();
    s.send(&call("ASIAROLEV1EXAMPLE000", Some("session-token")))
        .await
        .assert_error(403, "UnauthorizedOperation");
    let r = s.send(&call("ASIAROLEV2EXAMPLE000", Some("forged"))).await;
    r.assert_error(401, "AuthFailure");
    assert_eq!(r.message(), "The security token included in the request is invalid.");
    s.send(&call("ASIAROLEV2EXAMPLE000", None)).await.assert_error(401, "AuthFailure");
    // Long-term keys must not present a token.
    let r = s
        .send(&s.sign_with_token(AKID, SECRET, Some("x"), "POST", "/", &body, "ec2", "us-east-1", false))
        .await;
    r.assert_error(401, "AuthFailure");
}

#[tokio::test]
async fn the_mac_address_tag_gives_the_hypervisors_nics_their_macs() {
    let s = Server::start().await;
    let tag = |value: &'static str| {
        [
            ("TagSpecification.1.ResourceType", "network-interface"),
            ("TagSpecification.1.Tag.1.Key", "imdsd:mac-address"),
            ("TagSpecification.1.Tag.1.Value", value),
        ]
    };
    let id = s
        .run(
            &[("PrivateIpAddress", "192.168.60.10")]
                .iter()
                .copied()
                .chain(tag("52:54:00:AB:cd:01"))
                .collect::<Vec<_>>(),
        )
        .await;
    let record = s.record(&id[0]).await;
    assert_eq!(record.network_interfaces[0].mac, "52:54:00:ab:cd:01");
    let r = s.ec2("DescribeInstances", &[("InstanceId.1", &id[0])]).await;
    assert_eq!(texts(&r.body, "macAddress"), vec!["52:54:00:ab:cd:01"]);

    // Two NICs take the list in device order.
    let two = [
        ("NetworkInterface.1.DeviceIndex", "1"),
        ("NetworkInterface.1.PrivateIpAddress", "192.168.60.21"),
        ("NetworkInterface.2.DeviceIndex", "0"),
        ("NetworkInterface.2.PrivateIpAddress", "192.168.60.20"),
    ];
    let id = s
        .run(&two.iter().copied().chain(tag("52:54:00:00:00:10,52:54:00:00:00:11")).collect::<Vec<_>>())
        .await;
    let record = s.record(&id[0]).await;
    let macs: Vec<_> = record.network_interfaces.iter().map(|n| (n.device_index, n.mac.as_str())).collect();
    assert_eq!(macs, vec![(0, "52:54:00:00:00:10"), (1, "52:54:00:00:00:11")]);

    // Without the tag the MAC is EC2's kind: random, locally administered.
    let id = s.run(&[]).await;
    let mac = s.record(&id[0]).await.network_interfaces[0].mac.clone();
    assert_eq!(u8::from_str_radix(&mac[..2], 16).unwrap() & 0x03, 0x02, "{mac}");

    let before = s.dump().await;
    for (value, count, code, message) in [
        (
            "01:00:5e:00:00:01",
            "1",
            "InvalidParameterValue",
            "Value (01:00:5e:00:00:01) for parameter imdsd:mac-address is invalid.",
        ),
        (
            "00:00:00:00:00:00",
            "1",
            "InvalidParameterValue",
            "Value (00:00:00:00:00:00) for parameter imdsd:mac-address is invalid.",
        ),
        (
            "52:54:00:00:00",
            "1",
            "InvalidParameterValue",
            "Value (52:54:00:00:00) for parameter imdsd:mac-address is invalid.",
        ),
        (
            "52:54:00:00:00:1",
            "1",
            "InvalidParameterValue",
            "Value (52:54:00:00:00:1) for parameter imdsd:mac-address is invalid.",
        ),
        (
            "52:54:00:00:00:01,52:54:00:00:00:02",
            "1",
            "InvalidParameterValue",
            "The imdsd:mac-address tag lists 2 MAC addresses for 1 network interfaces.",
        ),
        (
            "52:54:00:00:00:01",
            "2",
            "InvalidParameterCombination",
            "The imdsd:mac-address network-interface tag cannot be specified when launching more than one instance.",
        ),
    ] {
        let mut params = vec![("ImageId", "ami-12345678"), ("MinCount", "1"), ("MaxCount", count)];
        params.extend(tag(value));
        let r = s.ec2("RunInstances", &params).await;
        r.assert_error(400, code);
        assert_eq!(r.message(), message);
    }
    let mut params = vec![("ImageId", "ami-12345678"), ("MinCount", "1"), ("MaxCount", "1")];
    params.extend(two);
    params.extend(tag("52:54:00:00:00:30,52:54:00:00:00:30"));
    let r = s.ec2("RunInstances", &params).await;
    r.assert_error(400, "InvalidParameterValue");
    assert_eq!(r.message(), "The MAC address 52:54:00:00:00:30 is listed twice.");
    assert_eq!(s.dump().await, before, "a refused launch writes nothing");
}
