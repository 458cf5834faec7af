//! Snapshot tests: the exact XML of every response shape, with generated
//! ids replaced by numbered placeholders in order of appearance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Replaces generated ids (`i-`, `r-`, `eni-`, `ami-`, `key-` + 17 hex) and
/// MAC addresses by `<prefix>-<n>` / `MAC`, numbering distinct values per
/// prefix.
fn normalize(body: &str) -> String {
    let mut out = body.to_owned();
    for prefix in ["eni-attach-", "eni-", "ami-", "key-", "i-", "r-"] {
        let mut seen: Vec<String> = Vec::new();
        let mut i = 0;
        while let Some(pos) = out[i..].find(prefix).map(|p| p + i) {
            let start = pos + prefix.len();
            let hex = out.get(start..start + 17).unwrap_or_default();
            let boundary = out[..pos].chars().last().is_none_or(|c| !c.is_ascii_alphanumeric() && c != '-');
            if boundary && hex.len() == 17 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                let id = format!("{prefix}{hex}");
                let n = match seen.iter().position(|s| *s == id) {
                    Some(n) => n,
                    None => {
                        seen.push(id.clone());
                        seen.len() - 1
                    }
                };
                let placeholder = format!("{prefix}{n}");
                out.replace_range(pos..start + 17, &placeholder);
                i = pos + placeholder.len();
            } else {
                i = pos + prefix.len();
            }
        }
    }
    // MACs: xx:xx:xx:xx:xx:xx inside <macAddress>.
    while let Some(pos) = out.find("<macAddress>") {
        let start = pos + "<macAddress>".len();
        out.replace_range(pos..start + 17, "<macAddress_>MAC");
    }
    out.replace("<macAddress_>", "<macAddress>")
}

fn response(action: &str, body: &str) -> String {
    format!(
        "{HEAD}<{action}Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>REQ</requestId>{body}</{action}Response>"
    )
}

#[track_caller]
fn assert_shape(r: &Resp, action: &str, body: &str) {
    r.assert_ok();
    assert_eq!(normalize(&r.normalized()), response(action, body));
}

#[tokio::test]
async fn run_start_terminate_and_reboot() {
    let s = Server::start().await;
    let r = s
        .ec2("RunInstances", &[("ImageId", "ami-0abcdef1234567890"), ("MinCount", "1"), ("MaxCount", "1")])
        .await;
    assert_shape(
        &r,
        "RunInstances",
        concat!(
            "<reservationId>r-0</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet><item>",
            "<instanceId>i-0</instanceId><imageId>ami-0</imageId><instanceState><code>0</code><name>pending</name></instanceState>",
            "<privateDnsName>ip-10-0-0-4.ec2.internal</privateDnsName><dnsName/><reason/><amiLaunchIndex>0</amiLaunchIndex><productCodes/>",
            "<instanceType>t2.micro</instanceType><launchTime>2024-01-02T03:04:05.000Z</launchTime>",
            "<placement><availabilityZoneId>use1-az1</availabilityZoneId><availabilityZone>us-east-1a</availabilityZone><groupName/><tenancy>default</tenancy></placement>",
            "<monitoring><state>disabled</state></monitoring><subnetId>subnet-be9b61d7</subnetId><vpcId>vpc-d295a6a7</vpcId>",
            "<privateIpAddress>10.0.0.4</privateIpAddress><sourceDestCheck>true</sourceDestCheck>",
            "<groupSet><item><groupId>sg-0b07f8f6cb485d4df</groupId><groupName>default</groupName></item></groupSet>",
            "<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping/>",
            "<virtualizationType>hvm</virtualizationType><tagSet/><hypervisor>xen</hypervisor>",
            "<networkInterfaceSet><item><networkInterfaceId>eni-0</networkInterfaceId><subnetId>subnet-be9b61d7</subnetId><vpcId>vpc-d295a6a7</vpcId>",
            "<description/><ownerId>123456789012</ownerId><status>in-use</status><macAddress>MAC</macAddress><privateIpAddress>10.0.0.4</privateIpAddress>",
            "<privateDnsName>ip-10-0-0-4.ec2.internal</privateDnsName><sourceDestCheck>true</sourceDestCheck>",
            "<groupSet><item><groupId>sg-0b07f8f6cb485d4df</groupId><groupName>default</groupName></item></groupSet>",
            "<attachment><attachmentId>eni-attach-0</attachmentId><deviceIndex>0</deviceIndex><status>attached</status>",
            "<attachTime>2024-01-02T03:04:05.000Z</attachTime><deleteOnTermination>true</deleteOnTermination><networkCardIndex>0</networkCardIndex></attachment>",
            "<privateIpAddressesSet><item><privateIpAddress>10.0.0.4</privateIpAddress><privateDnsName>ip-10-0-0-4.ec2.internal</privateDnsName><primary>true</primary></item></privateIpAddressesSet>",
            "<ipv6AddressesSet/><ipv4PrefixSet/><ipv6PrefixSet/><interfaceType>interface</interfaceType></item></networkInterfaceSet>",
            "<ebsOptimized>false</ebsOptimized><enaSupport>true</enaSupport>",
            "<metadataOptions><state>pending</state><httpTokens>optional</httpTokens><httpPutResponseHopLimit>1</httpPutResponseHopLimit>",
            "<httpEndpoint>enabled</httpEndpoint><httpProtocolIpv6>disabled</httpProtocolIpv6><instanceMetadataTags>disabled</instanceMetadataTags></metadataOptions>",
            "<platformDetails>Linux/UNIX</platformDetails><usageOperation>RunInstances</usageOperation></item></instancesSet>"
        ),
    );
    let id = r.text("instanceId").unwrap();
    let r = s.ec2("RebootInstances", &[("InstanceId.1", &id)]).await;
    assert_shape(&r, "RebootInstances", "<return>true</return>");
    s.ec2("StopInstances", &[("InstanceId.1", &id)]).await.assert_ok();
    let r = s.ec2("StartInstances", &[("InstanceId.1", &id)]).await;
    assert_shape(
        &r,
        "StartInstances",
        "<instancesSet><item><instanceId>i-0</instanceId><currentState><code>0</code><name>pending</name></currentState><previousState><code>80</code><name>stopped</name></previousState></item></instancesSet>",
    );
    let r = s.ec2("TerminateInstances", &[("InstanceId.1", &id)]).await;
    assert_shape(
        &r,
        "TerminateInstances",
        "<instancesSet><item><instanceId>i-0</instanceId><currentState><code>32</code><name>shutting-down</name></currentState><previousState><code>16</code><name>running</name></previousState></item></instancesSet>",
    );
    let r = s.ec2("DescribeInstanceStatus", &[("IncludeAllInstances", "true")]).await;
    assert_shape(
        &r,
        "DescribeInstanceStatus",
        concat!(
            "<instanceStatusSet><item><instanceId>i-0</instanceId><availabilityZone>us-east-1a</availabilityZone><availabilityZoneId>use1-az1</availabilityZoneId>",
            "<eventsSet/><instanceState><code>48</code><name>terminated</name></instanceState>",
            "<systemStatus><status>not-applicable</status><details/></systemStatus><instanceStatus><status>not-applicable</status><details/></instanceStatus>",
            "</item></instanceStatusSet>"
        ),
    );
}

#[tokio::test]
async fn attribute_and_tag_shapes() {
    let s = Server::start().await;
    let id = s.run(&[("KernelId", "aki-12345678")]).await.remove(0);
    let r = s.ec2("DescribeInstanceAttribute", &[("InstanceId", &id), ("Attribute", "instanceType")]).await;
    assert_shape(
        &r,
        "DescribeInstanceAttribute",
        "<instanceId>i-0</instanceId><instanceType><value>t2.micro</value></instanceType>",
    );
    let r = s.ec2("DescribeInstanceAttribute", &[("InstanceId", &id), ("Attribute", "kernel")]).await;
    assert_shape(
        &r,
        "DescribeInstanceAttribute",
        "<instanceId>i-0</instanceId><kernel><value>aki-12345678</value></kernel>",
    );
    let r = s.ec2("DescribeInstanceAttribute", &[("InstanceId", &id), ("Attribute", "ramdisk")]).await;
    assert_shape(&r, "DescribeInstanceAttribute", "<instanceId>i-0</instanceId><ramdisk/>");
    let r = s
        .ec2("DescribeInstanceAttribute", &[("InstanceId", &id), ("Attribute", "disableApiTermination")])
        .await;
    assert_shape(
        &r,
        "DescribeInstanceAttribute",
        "<instanceId>i-0</instanceId><disableApiTermination><value>false</value></disableApiTermination>",
    );
    let r = s.ec2("DescribeInstanceAttribute", &[("InstanceId", &id), ("Attribute", "enclaveOptions")]).await;
    assert_shape(
        &r,
        "DescribeInstanceAttribute",
        "<instanceId>i-0</instanceId><enclaveOptions><enabled>false</enabled></enclaveOptions>",
    );
    s.ec2("StopInstances", &[("InstanceId.1", &id)]).await.assert_ok();
    let r = s.ec2("ModifyInstanceAttribute", &[("InstanceId", &id), ("UserData.Value", "aGk=")]).await;
    assert_shape(&r, "ModifyInstanceAttribute", "<return>true</return>");
    let r = s.ec2("DeleteTags", &[("ResourceId.1", &id)]).await;
    assert_shape(&r, "DeleteTags", "<return>true</return>");
    let r = s.ec2("DescribeTags", &[]).await;
    assert_shape(&r, "DescribeTags", "<tagSet/>");
}

#[tokio::test]
async fn settings_image_and_key_shapes() {
    let s = Server::start().await;
    let r = s
        .ec2(
            "ModifyInstanceMetadataDefaults",
            &[("HttpTokens", "required"), ("HttpTokensEnforced", "disabled")],
        )
        .await;
    assert_shape(&r, "ModifyInstanceMetadataDefaults", "<return>true</return>");
    let r = s.ec2("GetInstanceMetadataDefaults", &[]).await;
    assert_shape(
        &r,
        "GetInstanceMetadataDefaults",
        "<accountLevel><httpTokens>required</httpTokens><managedBy>account</managedBy><httpTokensEnforced>disabled</httpTokensEnforced></accountLevel>",
    );
    let r = s
        .ec2(
            "RegisterImage",
            &[
                ("Name", "web (2024)"),
                ("Description", "a & b"),
                ("ImdsSupport", "v2.0"),
                ("TagSpecification.1.ResourceType", "image"),
                ("TagSpecification.1.Tag.1.Key", "os"),
                ("TagSpecification.1.Tag.1.Value", "linux"),
            ],
        )
        .await;
    assert_shape(&r, "RegisterImage", "<imageId>ami-0</imageId>");
    let ami = r.text("imageId").unwrap();
    let r = s.ec2("DescribeImages", &[("Owner.1", "self")]).await;
    assert_shape(
        &r,
        "DescribeImages",
        concat!(
            "<imagesSet><item><imageId>ami-0</imageId><imageLocation>123456789012/web (2024)</imageLocation><imageState>available</imageState>",
            "<imageOwnerId>123456789012</imageOwnerId><creationDate>2024-01-02T03:04:05.000Z</creationDate><isPublic>false</isPublic>",
            "<architecture>x86_64</architecture><imageType>machine</imageType><name>web (2024)</name><description>a &amp; b</description>",
            "<rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping/><virtualizationType>hvm</virtualizationType>",
            "<tagSet><item><key>os</key><value>linux</value></item></tagSet><hypervisor>xen</hypervisor><enaSupport>false</enaSupport>",
            "<imdsSupport>v2.0</imdsSupport><platformDetails>Linux/UNIX</platformDetails><usageOperation>RunInstances</usageOperation></item></imagesSet>"
        ),
    );
    let r = s.ec2("DescribeImageAttribute", &[("ImageId", &ami), ("Attribute", "description")]).await;
    assert_shape(
        &r,
        "DescribeImageAttribute",
        "<imageId>ami-0</imageId><description><value>a &amp; b</value></description>",
    );
    let r = s.ec2("ModifyImageAttribute", &[("ImageId", &ami), ("Description.Value", "c")]).await;
    assert_shape(&r, "ModifyImageAttribute", "<return>true</return>");
    let r = s.ec2("DescribeTags", &[("Filter.1.Name", "resource-type"), ("Filter.1.Value.1", "image")]).await;
    assert_shape(
        &r,
        "DescribeTags",
        "<tagSet><item><resourceId>ami-0</resourceId><resourceType>image</resourceType><key>os</key><value>linux</value></item></tagSet>",
    );

    let material = "c3NoLWVkMjU1MTkgQUFBQUMzTnphQzFsWkRJMU5URTVBQUFBSUhuVjNUTGxBRnMxVGNVeEFXdjl2MW4zZHRTQzBaanlaMUlGaUt4U044cUwgbWVAaG9zdA==";
    let r = s.ec2("ImportKeyPair", &[("KeyName", "laptop"), ("PublicKeyMaterial", material)]).await;
    assert_shape(
        &r,
        "ImportKeyPair",
        "<keyFingerprint>ULO3IPYsKMclWxxAScDMpYfV2OqV+zNSLPpemPYljaU=</keyFingerprint><keyName>laptop</keyName><keyPairId>key-0</keyPairId><tagSet/>",
    );
    let r = s.ec2("DescribeKeyPairs", &[("IncludePublicKey", "true")]).await;
    assert_shape(
        &r,
        "DescribeKeyPairs",
        concat!(
            "<keySet><item><keyPairId>key-0</keyPairId><keyName>laptop</keyName><keyFingerprint>ULO3IPYsKMclWxxAScDMpYfV2OqV+zNSLPpemPYljaU=</keyFingerprint>",
            "<keyType>ed25519</keyType><tagSet/><createTime>2024-01-02T03:04:05.000Z</createTime>",
            "<publicKey>ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnV3TLlAFs1TcUxAWv9v1n3dtSC0ZjyZ1IFiKxSN8qL</publicKey></item></keySet>"
        ),
    );
    let r = s.ec2("DeleteKeyPair", &[("KeyName", "laptop")]).await;
    assert_shape(&r, "DeleteKeyPair", "<return>true</return><keyPairId>key-0</keyPairId>");
    let r = s.ec2("DeregisterImage", &[("ImageId", &ami)]).await;
    assert_shape(&r, "DeregisterImage", "<return>true</return>");
}

#[tokio::test]
async fn region_and_zone_shapes() {
    let s = Server::start().await;
    let r = s.ec2("DescribeRegions", &[]).await;
    assert_shape(
        &r,
        "DescribeRegions",
        "<regionInfo><item><regionName>us-east-1</regionName><regionEndpoint>ec2.us-east-1.amazonaws.com</regionEndpoint><optInStatus>opt-in-not-required</optInStatus></item></regionInfo>",
    );
    let r = s.ec2("DescribeAvailabilityZones", &[("ZoneName.1", "us-east-1c")]).await;
    assert_shape(
        &r,
        "DescribeAvailabilityZones",
        concat!(
            "<availabilityZoneInfo><item><zoneName>us-east-1c</zoneName><zoneId>use1-az3</zoneId><zoneState>available</zoneState>",
            "<regionName>us-east-1</regionName><groupName>us-east-1</groupName><networkBorderGroup>us-east-1</networkBorderGroup>",
            "<optInStatus>opt-in-not-required</optInStatus><zoneType>availability-zone</zoneType><messageSet/></item></availabilityZoneInfo>"
        ),
    );
    let r = s.ec2("DescribeAvailabilityZones", &[("ZoneName.1", "us-east-1z")]).await;
    r.assert_error(400, "InvalidParameterValue");
}

#[test]
fn normalizer_numbers_distinct_ids() {
    assert_eq!(
        normalize(
            "<a>i-0123456789abcdef0</a><b>i-0123456789abcdef0</b><c>i-1123456789abcdef0</c><d>ami-1234567</d><e>eni-attach-0123456789abcdef0</e>"
        ),
        "<a>i-0</a><b>i-0</b><c>i-1</c><d>ami-1234567</d><e>eni-attach-0</e>"
    );
}
