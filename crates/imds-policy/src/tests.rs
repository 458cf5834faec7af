//! Behaviour tests of the public API: the example policies of
//! docs/protocol/control-plane.md#iam-examples, the IAM grammar and evaluation rules, parse
//! errors, and properties.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::{Context, Decision, MAX_POLICY_BYTES, Policy, PolicyError, Request, evaluate};

const INSTANCE_ARN: &str = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";
const ADMIN_ROLE: &str = "arn:aws:iam::123456789012:role/ec2-imds-admins";
const OTHER_ROLE: &str = "arn:aws:iam::123456789012:role/web-servers";

fn policy(json: &str) -> Policy {
    match Policy::parse(json) {
        Ok(p) => p,
        Err(e) => panic!("{e}\n{json}"),
    }
}

fn allow_all() -> Policy {
    policy(r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#)
}

/// `policies` plus an `Allow * *`, as the examples are meant to be used.
fn decide_with_allow_all(guard: &Policy, action: &str, resource: &str, ctx: &Context) -> Decision {
    let allow = allow_all();
    evaluate([&allow, guard], &Request::new(action, resource, ctx))
}

fn decide(policies: &[&Policy], action: &str, resource: &str, ctx: &Context) -> Decision {
    evaluate(policies.iter().copied(), &Request::new(action, resource, ctx))
}

fn invalid(json: &str) -> String {
    match Policy::parse(json) {
        Err(PolicyError::Invalid(msg)) => msg,
        other => panic!("expected PolicyError::Invalid, got {other:?} for {json}"),
    }
}

// ---------------------------------------------------------------------------
// docs/protocol/control-plane.md#iam-examples, each with both outcomes.

/// Example 1: only principals using role `ec2-imds-admins` may change IMDS
/// options.
#[test]
fn example1_only_imds_admins_modify_metadata_options() {
    let guard = policy(
        r#"{
          "Version": "2012-10-17",
          "Statement": [
            {
              "Sid": "OnlyImdsAdminsModifyImdsOptions",
              "Effect": "Deny",
              "Action": "ec2:ModifyInstanceMetadataOptions",
              "Resource": "*",
              "Condition": {
                "StringNotLike": { "aws:PrincipalARN": "arn:aws:iam::*:role/ec2-imds-admins" }
              }
            }
          ]
        }"#,
    );
    let action = "ec2:ModifyInstanceMetadataOptions";
    let admin = Context::new().with("aws:PrincipalArn", ADMIN_ROLE);
    let other = Context::new().with("aws:PrincipalArn", OTHER_ROLE);
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &admin), Decision::Allow);
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &other), Decision::ExplicitDeny);
    // Same role name in another account is still the admin role (`*`).
    let admin_elsewhere =
        Context::new().with("aws:PrincipalArn", "arn:aws:iam::210987654321:role/ec2-imds-admins");
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &admin_elsewhere), Decision::Allow);
    // No principal in the context: negated operator on an absent key is true.
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &Context::new()), Decision::ExplicitDeny);
    // Other actions are not affected.
    assert_eq!(decide_with_allow_all(&guard, "ec2:DescribeInstances", "*", &other), Decision::Allow);
    // Alone, the guard allows nothing.
    assert_eq!(decide(&[&guard], action, INSTANCE_ARN, &admin), Decision::ImplicitDeny);
}

/// Example 2: launching requires `HttpTokens=required`.
#[test]
fn example2_run_instances_requires_imdsv2() {
    let guard = policy(
        r#"{"Version": "2012-10-17", "Statement": [{
            "Effect": "Deny",
            "Action": "ec2:RunInstances",
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": {"StringNotEquals": {"ec2:MetadataHttpTokens": "required"}}
        }]}"#,
    );
    let required = Context::new().with("ec2:MetadataHttpTokens", "required");
    let optional = Context::new().with("ec2:MetadataHttpTokens", "optional");
    let action = "ec2:RunInstances";
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &required), Decision::Allow);
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &optional), Decision::ExplicitDeny);
    // Not specified: StringNotEquals on an absent key is true → denied.
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &Context::new()), Decision::ExplicitDeny);
    // Other resources of the same call (e.g. the image) are not covered.
    assert_eq!(
        decide_with_allow_all(&guard, action, "arn:aws:ec2:us-east-1::image/ami-12345678", &optional),
        Decision::Allow
    );
    // StringNotEquals is case-sensitive.
    let upper = Context::new().with("ec2:MetadataHttpTokens", "REQUIRED");
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &upper), Decision::ExplicitDeny);
}

/// Example 3: the PUT response hop limit may not exceed 3.
#[test]
fn example3_hop_limit_at_most_three() {
    let guard = policy(
        r#"{"Version": "2012-10-17", "Statement": [{
            "Effect": "Deny",
            "Action": ["ec2:RunInstances", "ec2:ModifyInstanceMetadataOptions"],
            "Resource": "*",
            "Condition": {"NumericGreaterThan": {"ec2:MetadataHttpPutResponseHopLimit": "3"}}
        }]}"#,
    );
    let action = "ec2:ModifyInstanceMetadataOptions";
    for (hops, expected) in [
        ("1", Decision::Allow),
        ("3", Decision::Allow),
        ("3.0", Decision::Allow),
        ("4", Decision::ExplicitDeny),
        ("10", Decision::ExplicitDeny),
        ("64", Decision::ExplicitDeny),
    ] {
        let ctx = Context::new().with("ec2:MetadataHttpPutResponseHopLimit", hops);
        assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &ctx), expected, "hop limit {hops}");
    }
    // Not changing the hop limit: the condition is false, nothing denied.
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &Context::new()), Decision::Allow);
}

/// Example 4: HttpTokens may only be changed to `required`.
#[test]
fn example4_http_tokens_may_only_become_required() {
    let guard = policy(
        r#"{"Version": "2012-10-17", "Statement": [{
            "Effect": "Deny",
            "Action": "ec2:ModifyInstanceMetadataOptions",
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": {
                "StringEquals": {"ec2:Attribute": "HttpTokens"},
                "StringNotEquals": {"ec2:Attribute/HttpTokens": "required"}
            }
        }]}"#,
    );
    let action = "ec2:ModifyInstanceMetadataOptions";
    let hop_limit_only = Context::new()
        .with("ec2:Attribute", "HttpPutResponseHopLimit")
        .with("ec2:Attribute/HttpPutResponseHopLimit", "2");
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &hop_limit_only), Decision::Allow);
    let to_optional =
        Context::new().with("ec2:Attribute", "HttpTokens").with("ec2:Attribute/HttpTokens", "optional");
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &to_optional), Decision::ExplicitDeny);
    let to_required =
        Context::new().with("ec2:Attribute", "HttpTokens").with("ec2:Attribute/HttpTokens", "required");
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &to_required), Decision::Allow);
    // Several attributes in one call (multivalued ec2:Attribute).
    let both_optional = Context::new()
        .with_all("ec2:Attribute", ["HttpPutResponseHopLimit", "HttpTokens"])
        .with("ec2:Attribute/HttpTokens", "optional");
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &both_optional), Decision::ExplicitDeny);
    let both_required = Context::new()
        .with_all("ec2:Attribute", ["HttpPutResponseHopLimit", "HttpTokens"])
        .with("ec2:Attribute/HttpTokens", "required");
    assert_eq!(decide_with_allow_all(&guard, action, INSTANCE_ARN, &both_required), Decision::Allow);
}

/// Example 5: calls signed with role credentials delivered over IMDSv1 are
/// refused.
#[test]
fn example5_deny_role_credentials_delivered_by_imdsv1() {
    let guard = policy(
        r#"{"Version": "2012-10-17", "Statement": [{
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"NumericLessThan": {"ec2:RoleDelivery": "2.0"}}
        }]}"#,
    );
    let v1 = Context::new().with("ec2:RoleDelivery", "1.0");
    let v2 = Context::new().with("ec2:RoleDelivery", "2.0");
    let v2_int = Context::new().with("ec2:RoleDelivery", "2");
    for (action, resource) in [
        ("ec2:DescribeInstances", "*"),
        ("ec2:ModifyInstanceMetadataOptions", INSTANCE_ARN),
        ("lightsail:UpdateInstanceMetadataOptions", "arn:aws:lightsail:us-east-1:123456789012:Instance/x"),
    ] {
        assert_eq!(decide_with_allow_all(&guard, action, resource, &v1), Decision::ExplicitDeny, "{action}");
        assert_eq!(decide_with_allow_all(&guard, action, resource, &v2), Decision::Allow);
        assert_eq!(decide_with_allow_all(&guard, action, resource, &v2_int), Decision::Allow);
        // Non-role credentials carry no ec2:RoleDelivery: not denied.
        assert_eq!(decide_with_allow_all(&guard, action, resource, &Context::new()), Decision::Allow);
    }
}

// ---------------------------------------------------------------------------
// Evaluation logic.

#[test]
fn no_policies_is_an_implicit_deny() {
    let ctx = Context::new();
    assert_eq!(
        evaluate(std::iter::empty::<&Policy>(), &Request::new("ec2:RunInstances", "*", &ctx)),
        Decision::ImplicitDeny
    );
    assert!(!Decision::ImplicitDeny.is_allowed());
    assert!(!Decision::ExplicitDeny.is_allowed());
    assert!(Decision::Allow.is_allowed());
}

#[test]
fn explicit_deny_wins_in_any_order() {
    let allow = allow_all();
    let deny = policy(r#"{"Statement": {"Effect": "Deny", "Action": "ec2:RunInstances", "Resource": "*"}}"#);
    let ctx = Context::new();
    assert_eq!(decide(&[&allow, &deny], "ec2:RunInstances", "*", &ctx), Decision::ExplicitDeny);
    assert_eq!(decide(&[&deny, &allow], "ec2:RunInstances", "*", &ctx), Decision::ExplicitDeny);
    assert_eq!(decide(&[&deny], "ec2:RunInstances", "*", &ctx), Decision::ExplicitDeny);
    assert_eq!(decide(&[&deny, &allow], "ec2:StopInstances", "*", &ctx), Decision::Allow);
    assert_eq!(decide(&[&deny], "ec2:StopInstances", "*", &ctx), Decision::ImplicitDeny);
    // Within one policy too.
    let mixed = policy(
        r#"{"Statement": [
            {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "ec2:RunInstances", "Resource": "*"}
        ]}"#,
    );
    assert_eq!(decide(&[&mixed], "ec2:RunInstances", "*", &ctx), Decision::ExplicitDeny);
    assert_eq!(decide(&[&mixed], "ec2:StartInstances", "*", &ctx), Decision::Allow);
}

#[test]
fn action_wildcards() {
    let describe =
        policy(r#"{"Statement": {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}}"#);
    let instance =
        policy(r#"{"Statement": {"Effect": "Allow", "Action": "ec2:*Instance*", "Resource": "*"}}"#);
    let question =
        policy(r#"{"Statement": {"Effect": "Allow", "Action": "ec2:?topInstances", "Resource": "*"}}"#);
    let service =
        policy(r#"{"Statement": {"Effect": "Allow", "Action": ["lightsail:*", "ec2:*"], "Resource": "*"}}"#);
    let ctx = Context::new();
    let d = |p: &Policy, a: &str| decide(&[p], a, "*", &ctx);

    assert_eq!(d(&describe, "ec2:DescribeInstances"), Decision::Allow);
    assert_eq!(d(&describe, "ec2:DescribeInstanceAttribute"), Decision::Allow);
    assert_eq!(d(&describe, "ec2:Describe"), Decision::Allow);
    assert_eq!(d(&describe, "ec2:RunInstances"), Decision::ImplicitDeny);
    assert_eq!(d(&describe, "lightsail:DescribeInstances"), Decision::ImplicitDeny);

    assert_eq!(d(&instance, "ec2:RunInstances"), Decision::Allow);
    assert_eq!(d(&instance, "ec2:ModifyInstanceMetadataOptions"), Decision::Allow);
    assert_eq!(d(&instance, "ec2:GetInstanceMetadataDefaults"), Decision::Allow);
    assert_eq!(d(&instance, "ec2:CreateTags"), Decision::ImplicitDeny);

    assert_eq!(d(&question, "ec2:StopInstances"), Decision::Allow);
    assert_eq!(d(&question, "ec2:XtopInstances"), Decision::Allow);
    assert_eq!(d(&question, "ec2:topInstances"), Decision::ImplicitDeny);
    assert_eq!(d(&question, "ec2:StartInstances"), Decision::ImplicitDeny);

    assert_eq!(d(&service, "lightsail:UpdateInstanceMetadataOptions"), Decision::Allow);
    assert_eq!(d(&service, "ec2:RunInstances"), Decision::Allow);
    assert_eq!(d(&service, "iam:CreateUser"), Decision::ImplicitDeny);
    // The service prefix is not a wildcard boundary to skip.
    assert_eq!(d(&service, "ec2messages:GetMessages"), Decision::ImplicitDeny);
}

#[test]
fn action_names_are_case_insensitive() {
    let p = policy(
        r#"{"Statement": {"Effect": "Deny", "Action": "EC2:modifyInstanceMETADATAOptions", "Resource": "*"}}"#,
    );
    let ctx = Context::new();
    for action in [
        "ec2:ModifyInstanceMetadataOptions",
        "EC2:MODIFYINSTANCEMETADATAOPTIONS",
        "ec2:modifyinstancemetadataoptions",
    ] {
        assert_eq!(decide(&[&p], action, INSTANCE_ARN, &ctx), Decision::ExplicitDeny, "{action}");
    }
    let p = policy(r#"{"Statement": {"Effect": "Allow", "Action": "ec2:describe*", "Resource": "*"}}"#);
    assert_eq!(decide(&[&p], "EC2:DescribeInstances", "*", &ctx), Decision::Allow);
}

#[test]
fn resource_arns_are_case_sensitive() {
    let p = policy(
        r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:ec2:*:*:instance/i-0123456789ABCDEF0"}}"#,
    );
    let ctx = Context::new();
    assert_eq!(decide(&[&p], "ec2:StopInstances", INSTANCE_ARN, &ctx), Decision::ImplicitDeny);
}

#[test]
fn resource_wildcards() {
    let ctx = Context::new();
    let allow = |resource: &str| {
        policy(
            &json!({"Statement": {"Effect": "Allow", "Action": "ec2:*", "Resource": resource}}).to_string(),
        )
    };
    let d = |p: &Policy, r: &str| decide(&[p], "ec2:StopInstances", r, &ctx);
    let instances = allow("arn:aws:ec2:*:*:instance/*");
    assert_eq!(d(&instances, INSTANCE_ARN), Decision::Allow);
    assert_eq!(d(&instances, "arn:aws:ec2:eu-west-1:210987654321:instance/i-1"), Decision::Allow);
    assert_eq!(d(&instances, "arn:aws:ec2:us-east-1:123456789012:volume/vol-1"), Decision::ImplicitDeny);
    assert_eq!(d(&instances, "*"), Decision::ImplicitDeny);

    let one = allow("arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef?");
    assert_eq!(d(&one, INSTANCE_ARN), Decision::Allow);
    assert_eq!(
        d(&one, "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef"),
        Decision::ImplicitDeny
    );

    let region = allow("arn:aws:ec2:us-*:123456789012:instance/*");
    assert_eq!(d(&region, INSTANCE_ARN), Decision::Allow);
    assert_eq!(d(&region, "arn:aws:ec2:eu-west-1:123456789012:instance/i-1"), Decision::ImplicitDeny);

    // A trailing `*` reaches across the remaining segments.
    let service = allow("arn:aws:ec2:*");
    assert_eq!(d(&service, INSTANCE_ARN), Decision::Allow);
    assert_eq!(d(&service, "arn:aws:lightsail:us-east-1:123456789012:Instance/x"), Decision::ImplicitDeny);

    let everything = allow("*");
    assert_eq!(d(&everything, INSTANCE_ARN), Decision::Allow);
    assert_eq!(d(&everything, "*"), Decision::Allow);
}

#[test]
fn not_action_applies_to_every_other_action() {
    let p = policy(
        r#"{"Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "NotAction": ["ec2:Describe*", "ec2:GetInstanceMetadataDefaults"], "Resource": "*"}
        ]}"#,
    );
    let ctx = Context::new();
    assert_eq!(decide(&[&p], "ec2:DescribeInstances", "*", &ctx), Decision::Allow);
    assert_eq!(decide(&[&p], "EC2:getinstancemetadatadefaults", "*", &ctx), Decision::Allow);
    assert_eq!(decide(&[&p], "ec2:RunInstances", INSTANCE_ARN, &ctx), Decision::ExplicitDeny);
    assert_eq!(decide(&[&p], "lightsail:GetInstance", "*", &ctx), Decision::ExplicitDeny);

    // NotAction with Allow allows everything else, nothing listed.
    let p = policy(r#"{"Statement": {"Effect": "Allow", "NotAction": "ec2:RunInstances", "Resource": "*"}}"#);
    assert_eq!(decide(&[&p], "ec2:StopInstances", "*", &ctx), Decision::Allow);
    assert_eq!(decide(&[&p], "ec2:runinstances", "*", &ctx), Decision::ImplicitDeny);
}

#[test]
fn not_resource_applies_to_every_other_resource() {
    let p = policy(
        r#"{"Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "ec2:*", "NotResource": "arn:aws:ec2:us-east-1:*:instance/*"}
        ]}"#,
    );
    let ctx = Context::new();
    assert_eq!(decide(&[&p], "ec2:StopInstances", INSTANCE_ARN, &ctx), Decision::Allow);
    assert_eq!(
        decide(&[&p], "ec2:StopInstances", "arn:aws:ec2:eu-west-1:123456789012:instance/i-1", &ctx),
        Decision::ExplicitDeny
    );
    // `*` (actions without resource-level permissions) is not an instance ARN.
    assert_eq!(decide(&[&p], "ec2:DescribeInstances", "*", &ctx), Decision::ExplicitDeny);
}

#[test]
fn resource_tag_condition() {
    let p = policy(
        r#"{"Version": "2012-10-17", "Statement": {
            "Effect": "Allow",
            "Action": "ec2:ModifyInstanceMetadataOptions",
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": {"StringEquals": {"ec2:ResourceTag/Environment": ["dev", "test"]}}
        }}"#,
    );
    let action = "ec2:ModifyInstanceMetadataOptions";
    let dev = Context::new().with("ec2:ResourceTag/Environment", "dev");
    let prod = Context::new().with("ec2:ResourceTag/Environment", "prod");
    let shouting_key = Context::new().with("EC2:RESOURCETAG/ENVIRONMENT", "test");
    let untagged = Context::new().with("ec2:ResourceTag/Owner", "alice");
    assert_eq!(decide(&[&p], action, INSTANCE_ARN, &dev), Decision::Allow);
    assert_eq!(decide(&[&p], action, INSTANCE_ARN, &shouting_key), Decision::Allow);
    assert_eq!(decide(&[&p], action, INSTANCE_ARN, &prod), Decision::ImplicitDeny);
    assert_eq!(decide(&[&p], action, INSTANCE_ARN, &untagged), Decision::ImplicitDeny);
}

#[test]
fn condition_key_names_in_policy_are_case_insensitive() {
    let p = policy(
        r#"{"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"NumericLessThan": {"EC2:roledelivery": 2}}}}"#,
    );
    let ctx = Context::new().with("ec2:RoleDelivery", "1.0");
    assert_eq!(decide(&[&p], "ec2:RunInstances", "*", &ctx), Decision::ExplicitDeny);
}

#[test]
fn bool_null_and_if_exists_in_statements() {
    let p = policy(
        r#"{"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Sid": "DenyInsecure", "Effect": "Deny", "Action": "*", "Resource": "*",
             "Condition": {"Bool": {"aws:SecureTransport": false}}},
            {"Sid": "DenyAnonymous", "Effect": "Deny", "Action": "*", "Resource": "*",
             "Condition": {"Null": {"aws:PrincipalArn": "true"}}},
            {"Sid": "DenyIMDSv1IfRole", "Effect": "Deny", "Action": "*", "Resource": "*",
             "Condition": {"StringNotEqualsIfExists": {"ec2:MetadataHttpTokens": "required"},
                           "Null": {"ec2:MetadataHttpTokens": "false"}}}
        ]}"#,
    );
    let d = |ctx: &Context| decide(&[&p], "ec2:RunInstances", INSTANCE_ARN, ctx);
    let base = || Context::new().with("aws:PrincipalArn", OTHER_ROLE).with("aws:SecureTransport", "true");
    assert_eq!(d(&base()), Decision::Allow);
    assert_eq!(d(&base().with("ec2:MetadataHttpTokens", "required")), Decision::Allow);
    assert_eq!(d(&base().with("ec2:MetadataHttpTokens", "optional")), Decision::ExplicitDeny);
    assert_eq!(d(&Context::new().with("aws:SecureTransport", "true")), Decision::ExplicitDeny);
    assert_eq!(
        d(&Context::new().with("aws:PrincipalArn", OTHER_ROLE).with("aws:SecureTransport", "false")),
        Decision::ExplicitDeny
    );
    // Bool on an absent key is false: this Deny does not apply.
    assert_eq!(d(&Context::new().with("aws:PrincipalArn", OTHER_ROLE)), Decision::Allow);

    let p = policy(
        r#"{"Statement": {"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "*",
            "Condition": {"NumericLessThanEqualsIfExists": {"ec2:MetadataHttpPutResponseHopLimit": 2}}}}"#,
    );
    let d = |ctx: &Context| decide(&[&p], "ec2:RunInstances", INSTANCE_ARN, ctx);
    assert_eq!(d(&Context::new()), Decision::Allow);
    assert_eq!(d(&Context::new().with("ec2:MetadataHttpPutResponseHopLimit", "2")), Decision::Allow);
    assert_eq!(d(&Context::new().with("ec2:MetadataHttpPutResponseHopLimit", "3")), Decision::ImplicitDeny);
}

#[test]
fn set_operators_in_statements() {
    // Allow modifying only hop limit and endpoint, never HttpTokens.
    let p = policy(
        r#"{"Statement": {"Effect": "Allow", "Action": "ec2:ModifyInstanceMetadataOptions", "Resource": "*",
            "Condition": {"ForAllValues:StringEquals": {"ec2:Attribute": ["HttpPutResponseHopLimit", "HttpEndpoint"]}}}}"#,
    );
    let d = |ctx: &Context| decide(&[&p], "ec2:ModifyInstanceMetadataOptions", INSTANCE_ARN, ctx);
    assert_eq!(d(&Context::new().with("ec2:Attribute", "HttpEndpoint")), Decision::Allow);
    assert_eq!(
        d(&Context::new().with_all("ec2:Attribute", ["HttpEndpoint", "HttpPutResponseHopLimit"])),
        Decision::Allow
    );
    assert_eq!(
        d(&Context::new().with_all("ec2:Attribute", ["HttpEndpoint", "HttpTokens"])),
        Decision::ImplicitDeny
    );
    // ForAllValues is vacuously true on an absent key (documented IAM pitfall).
    assert_eq!(d(&Context::new()), Decision::Allow);

    let deny = policy(
        r#"{"Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "ec2:ModifyInstanceMetadataOptions", "Resource": "*",
             "Condition": {"ForAnyValue:StringLike": {"ec2:Attribute": "HttpTok*"}}}
        ]}"#,
    );
    let d = |ctx: &Context| decide(&[&deny], "ec2:ModifyInstanceMetadataOptions", INSTANCE_ARN, ctx);
    assert_eq!(
        d(&Context::new().with_all("ec2:Attribute", ["HttpEndpoint", "HttpTokens"])),
        Decision::ExplicitDeny
    );
    assert_eq!(d(&Context::new().with("ec2:Attribute", "HttpEndpoint")), Decision::Allow);
    assert_eq!(d(&Context::new()), Decision::Allow);
}

#[test]
fn policy_variables_are_refused_in_2012_documents_and_literal_in_2008() {
    let e = invalid(
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*",
            "Resource": "arn:aws:iam::*:user/${aws:username}"}}"#,
    );
    assert!(e.starts_with("Statement.Resource: policy variable \"${aws:username}\""), "{e}");
    let e = invalid(
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:PrincipalArn": "${aws:PrincipalArn}"}}}}"#,
    );
    assert!(e.contains("${aws:PrincipalArn}"), "{e}");

    // 2008-10-17 (also the default): `${...}` is literal text, as in IAM, so
    // it only matches that exact text.
    let p = policy(
        r#"{"Statement": {"Effect": "Allow", "Action": "*",
            "Condition": {"StringEquals": {"aws:username": "${aws:username}"}},
            "Resource": "*"}}"#,
    );
    let alice = Context::new().with("aws:username", "alice");
    assert_eq!(decide(&[&p], "ec2:RunInstances", "*", &alice), Decision::ImplicitDeny);

    // The escapes work in 2012-10-17.
    let p = policy(
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": {"StringLike": {"ec2:ResourceTag/Name": "web${*}"}}}}"#,
    );
    let star = Context::new().with("ec2:ResourceTag/Name", "web*");
    let web1 = Context::new().with("ec2:ResourceTag/Name", "web1");
    assert_eq!(decide(&[&p], "ec2:RunInstances", "*", &star), Decision::Allow);
    assert_eq!(decide(&[&p], "ec2:RunInstances", "*", &web1), Decision::ImplicitDeny);
}

// ---------------------------------------------------------------------------
// Parsing.

#[test]
fn statement_may_be_an_object_or_an_array_and_version_is_optional() {
    let one = policy(r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#);
    assert_eq!(one.len(), 1);
    assert!(!one.is_empty());
    let two = policy(
        r#"{"Version": "2008-10-17", "Id": "x", "Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": ["ec2:RunInstances"], "Resource": ["*"]},
            {"Sid": "B", "Effect": "Deny", "NotAction": "ec2:*", "NotResource": "arn:aws:ec2:*:*:*/*"}
        ]}"#,
    );
    assert_eq!(two.len(), 2);
    assert_eq!(
        "{\"Statement\": {\"Effect\": \"Allow\", \"Action\": \"*\", \"Resource\": \"*\"}}".parse::<Policy>(),
        Ok(one)
    );
}

#[test]
fn parse_errors_name_the_bad_element() {
    let cases: &[(&str, &str)] = &[
        (r#"[]"#, "policy document must be a JSON object, found an array"),
        (r#"{}"#, "Statement is required"),
        (r#"{"Statement": []}"#, "Statement must contain at least one statement"),
        (r#"{"Statement": "x"}"#, "Statement must be an object or an array of objects, found a string"),
        (r#"{"Statement": [1]}"#, "Statement[0] must be an object, found a number"),
        (
            r#"{"Version": "2012-10-18", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#,
            "Version must be \"2012-10-17\" or \"2008-10-17\", found \"2012-10-18\"",
        ),
        (r#"{"Statment": []}"#, "unknown policy element \"Statment\""),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}, {"Effect": "Permit", "Action": "*", "Resource": "*"}]}"#,
            "Statement[1].Effect must be Allow or Deny, found \"Permit\"",
        ),
        (
            r#"{"Statement": [{"Effect": "allow", "Action": "*", "Resource": "*"}]}"#,
            "Statement[0].Effect must be Allow or Deny, found \"allow\"",
        ),
        (
            r#"{"Statement": [{"Action": "*", "Resource": "*"}]}"#,
            "Statement[0].Effect is required (Allow or Deny)",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Resource": "*"}]}"#,
            "Statement[0] must have Action or NotAction",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "*", "NotAction": "ec2:*", "Resource": "*"}]}"#,
            "Statement[0] cannot have both Action and NotAction",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "*"}]}"#,
            "Statement[0] must have Resource or NotResource",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "NotResource": "*"}]}"#,
            "Statement[0] cannot have both Resource and NotResource",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]}"#,
            "Statement[0].Action must not be empty",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": ["ec2:RunInstances", 7], "Resource": "*"}]}"#,
            "Statement[0].Action must be a string or an array of strings, found a number",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": ["ec2:RunInstances", "RunInstances"], "Resource": "*"}]}"#,
            "Statement[0].Action[1] \"RunInstances\" must be \"*\" or \"service:Action\"",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "*:RunInstances", "Resource": "*"}]}"#,
            "Statement[0].Action \"*:RunInstances\" must be \"*\" or \"service:Action\"",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "i-0123456789abcdef0"}]}"#,
            "Statement[0].Resource \"i-0123456789abcdef0\" must be \"*\" or an ARN",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "*", "NotResource": ["*", "arn:aws:ec2"]}]}"#,
            "Statement[0].NotResource[1] \"arn:aws:ec2\" must be \"*\" or an ARN",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]}"#,
            "Statement[0].Principal is not allowed in an identity-based policy",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Conditions": {}}]}"#,
            "Statement[0]: unknown statement element \"Conditions\"",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}}]}"#,
            "Statement[0].Condition: unknown or unsupported condition operator \"DateGreaterThan\"",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"ec2:RoleDelivery": "v2"}}}]}"#,
            "Statement[0].Condition.NumericLessThan.ec2:RoleDelivery: \"v2\" is not a number",
        ),
        (
            r#"{"Statement": [{"Sid": "A", "Effect": "Allow", "Action": "*", "Resource": "*"}, {"Sid": "A", "Effect": "Deny", "Action": "*", "Resource": "*"}]}"#,
            "Statement[1].Sid \"A\" is used by another statement",
        ),
        (
            r#"{"Statement": [{"Sid": 1, "Effect": "Allow", "Action": "*", "Resource": "*"}]}"#,
            "Statement[0].Sid must be a string, found a number",
        ),
    ];
    for (json, expected) in cases {
        let msg = invalid(json);
        assert!(msg.starts_with(expected), "for {json}\n  got: {msg}\n want: {expected}");
    }
}

#[test]
fn json_errors_are_reported_as_json() {
    for bad in ["", "{", "{\"Statement\": }", "nul", "{\"a\":1,\"a\":2}"] {
        match Policy::parse(bad) {
            Err(PolicyError::Json(msg)) => assert!(!msg.is_empty()),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // Duplicate members would otherwise silently drop a condition.
    let dup = r#"{"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {"StringEquals": {"k:a": "1"}, "StringEquals": {"k:b": "2"}}}}"#;
    let Err(PolicyError::Json(msg)) = Policy::parse(dup) else {
        panic!("duplicate member accepted");
    };
    assert!(msg.contains("duplicate member name \"StringEquals\""), "{msg}");
    assert!(PolicyError::Json("x".into()).to_string().contains("not valid JSON"));
    assert!(PolicyError::Invalid("x".into()).to_string().contains("invalid policy"));
}

#[test]
fn oversized_documents_are_refused_before_parsing() {
    let padding = " ".repeat(MAX_POLICY_BYTES);
    let doc = format!(r#"{{"Statement": {{"Effect": "Allow", "Action": "*", "Resource": "*"}}}}{padding}"#);
    let msg = invalid(&doc);
    assert!(msg.contains("the limit is 65536"), "{msg}");
    // Right at the limit is fine.
    let body = r#"{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#;
    let doc = format!("{body}{}", " ".repeat(MAX_POLICY_BYTES - body.len()));
    assert!(Policy::parse(&doc).is_ok());
}

// ---------------------------------------------------------------------------
// Properties.

const ACTIONS: &[&str] = &[
    "ec2:RunInstances",
    "ec2:ModifyInstanceMetadataOptions",
    "EC2:modifyinstancemetadataoptions",
    "ec2:DescribeInstances",
    "ec2:StopInstances",
    "ec2:CreateTags",
    "lightsail:UpdateInstanceMetadataOptions",
    "iam:PassRole",
];

const RESOURCES: &[&str] = &[
    "*",
    INSTANCE_ARN,
    "arn:aws:ec2:eu-west-1:210987654321:instance/i-1",
    "arn:aws:ec2:us-east-1::image/ami-12345678",
    "arn:aws:lightsail:us-east-1:123456789012:Instance/x",
];

const ACTION_PATTERNS: &[&str] = &[
    "*",
    "ec2:*",
    "ec2:Describe*",
    "ec2:*Instance*",
    "ec2:?topInstances",
    "ec2:RunInstances",
    "ec2:ModifyInstanceMetadataOptions",
    "lightsail:*",
];

const RESOURCE_PATTERNS: &[&str] = &[
    "*",
    "arn:aws:ec2:*:*:instance/*",
    "arn:aws:ec2:us-*:*:*",
    "arn:aws:ec2:*",
    INSTANCE_ARN,
    "arn:aws:lightsail:*:*:Instance/?",
];

const CONDITIONS: &[&str] = &[
    r#"{"StringNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/ec2-imds-admins"}}"#,
    r#"{"StringNotEquals": {"ec2:MetadataHttpTokens": "required"}}"#,
    r#"{"StringEqualsIfExists": {"ec2:MetadataHttpTokens": "optional"}}"#,
    r#"{"NumericGreaterThan": {"ec2:MetadataHttpPutResponseHopLimit": 3}}"#,
    r#"{"StringEquals": {"ec2:Attribute": "HttpTokens"}, "StringNotEquals": {"ec2:Attribute/HttpTokens": "required"}}"#,
    r#"{"NumericLessThan": {"ec2:RoleDelivery": "2.0"}}"#,
    r#"{"Null": {"aws:PrincipalArn": "true"}}"#,
    r#"{"Bool": {"aws:SecureTransport": "false"}}"#,
    r#"{"ForAllValues:StringEquals": {"ec2:Attribute": ["HttpEndpoint", "HttpPutResponseHopLimit"]}}"#,
    r#"{"ForAnyValue:StringLike": {"ec2:Attribute": "Http*"}}"#,
    r#"{"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:*"}}"#,
    r#"{"StringEqualsIgnoreCase": {"ec2:ResourceTag/Environment": "PROD"}}"#,
];

const CONTEXT_ENTRIES: &[(&str, &str)] = &[
    ("aws:PrincipalArn", ADMIN_ROLE),
    ("aws:PrincipalArn", OTHER_ROLE),
    ("ec2:MetadataHttpTokens", "required"),
    ("ec2:MetadataHttpTokens", "optional"),
    ("ec2:MetadataHttpPutResponseHopLimit", "2"),
    ("ec2:MetadataHttpPutResponseHopLimit", "5"),
    ("ec2:Attribute", "HttpTokens"),
    ("ec2:Attribute", "HttpEndpoint"),
    ("ec2:Attribute/HttpTokens", "optional"),
    ("ec2:RoleDelivery", "1.0"),
    ("ec2:RoleDelivery", "2.0"),
    ("aws:SecureTransport", "true"),
    ("EC2:ResourceTag/Environment", "prod"),
];

fn arb_statement(effects: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(effects),
        any::<bool>(),
        prop::collection::vec(prop::sample::select(ACTION_PATTERNS), 1..3),
        any::<bool>(),
        prop::collection::vec(prop::sample::select(RESOURCE_PATTERNS), 1..3),
        prop::option::of(prop::sample::select(CONDITIONS)),
    )
        .prop_map(|(effect, not_action, actions, not_resource, resources, condition)| {
            let mut s = serde_json::Map::new();
            s.insert("Effect".into(), json!(effect));
            s.insert(if not_action { "NotAction" } else { "Action" }.into(), json!(actions));
            s.insert(if not_resource { "NotResource" } else { "Resource" }.into(), json!(resources));
            if let Some(c) = condition {
                s.insert("Condition".into(), serde_json::from_str(c).unwrap());
            }
            Value::Object(s)
        })
}

fn to_policy(statements: &[Value]) -> Policy {
    policy(&json!({"Version": "2012-10-17", "Statement": statements}).to_string())
}

fn arb_context() -> impl Strategy<Value = Context> {
    prop::sample::subsequence(CONTEXT_ENTRIES, 0..CONTEXT_ENTRIES.len()).prop_map(|entries| {
        let mut ctx = Context::new();
        for (k, v) in entries {
            ctx.insert(k, v);
        }
        ctx
    })
}

const JSON_WORDS: &[&str] = &[
    "Version",
    "Statement",
    "Sid",
    "Effect",
    "Allow",
    "Deny",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
    "Principal",
    "2012-10-17",
    "2008-10-17",
    "*",
    "ec2:*",
    "arn:aws:ec2:*:*:instance/*",
    "StringEquals",
    "StringNotLike",
    "NumericLessThan",
    "Bool",
    "Null",
    "ArnLike",
    "ForAnyValue:StringLike",
    "ForAllValues:StringNotEquals",
    "StringEqualsIfExists",
    "aws:PrincipalArn",
    "ec2:RoleDelivery",
    "${aws:username}",
    "${*}",
    "true",
    "1.5",
    "",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let words = prop::sample::select(JSON_WORDS).prop_map(str::to_owned);
    let text = prop_oneof![words.clone(), any::<String>()];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((text.clone(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = Policy::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_json_like_text(text in r#"[{}\[\]",:0-9a-zA-Z*?$ ]{0,200}"#) {
        let _ = Policy::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_json(value in arb_json()) {
        let _ = Policy::parse(&value.to_string());
        // And wrapped as a statement, to reach the deeper parsers.
        let doc = json!({"Version": "2012-10-17", "Statement": value});
        let _ = Policy::parse(&doc.to_string());
    }

    #[test]
    fn parse_never_panics_on_arbitrary_statement_members(
        condition in arb_json(),
        action in arb_json(),
        resource in arb_json(),
    ) {
        let doc = json!({"Version": "2012-10-17", "Statement": {
            "Effect": "Deny", "Action": action, "Resource": resource, "Condition": condition}});
        if let Ok(p) = Policy::parse(&doc.to_string()) {
            let ctx = Context::new().with("aws:PrincipalArn", ADMIN_ROLE);
            let _ = evaluate([&p], &Request::new("ec2:RunInstances", INSTANCE_ARN, &ctx));
        }
    }

    #[test]
    fn deny_everything_always_denies(
        action in any::<String>(),
        resource in any::<String>(),
        entries in prop::collection::vec((any::<String>(), any::<String>()), 0..6),
        others in prop::collection::vec(arb_statement(&["Allow", "Deny"]), 0..4),
    ) {
        let deny = policy(r#"{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}"#);
        let mut ctx = Context::new();
        for (k, v) in entries {
            ctx.insert(k, v);
        }
        let req = Request::new(&action, &resource, &ctx);
        prop_assert_eq!(evaluate([&deny], &req), Decision::ExplicitDeny);
        let allow = allow_all();
        prop_assert_eq!(evaluate([&allow, &deny], &req), Decision::ExplicitDeny);
        if !others.is_empty() {
            let other = to_policy(&others);
            prop_assert_eq!(evaluate([&other, &deny, &allow], &req), Decision::ExplicitDeny);
        }
    }

    #[test]
    fn adding_an_allow_never_lifts_an_explicit_deny(
        statements in prop::collection::vec(arb_statement(&["Allow", "Deny"]), 1..5),
        extra in arb_statement(&["Allow"]),
        action in prop::sample::select(ACTIONS),
        resource in prop::sample::select(RESOURCES),
        ctx in arb_context(),
    ) {
        let base = to_policy(&statements);
        let req = Request::new(action, resource, &ctx);
        let before = evaluate([&base], &req);

        let mut more = statements.clone();
        more.push(extra.clone());
        let with_statement = evaluate([&to_policy(&more)], &req);
        let extra_policy = to_policy(std::slice::from_ref(&extra));
        let with_policy = evaluate([&base, &extra_policy], &req);
        let reversed = evaluate([&extra_policy, &base], &req);

        if before == Decision::ExplicitDeny {
            prop_assert_eq!(with_statement, Decision::ExplicitDeny);
            prop_assert_eq!(with_policy, Decision::ExplicitDeny);
            prop_assert_eq!(reversed, Decision::ExplicitDeny);
        }
        // More generally an Allow can only turn an implicit deny into Allow.
        if before == Decision::Allow {
            prop_assert_eq!(with_statement, Decision::Allow);
        }
        prop_assert_eq!(with_statement, with_policy);
        prop_assert_eq!(with_policy, reversed);
    }

    #[test]
    fn statement_order_does_not_matter(
        statements in prop::collection::vec(arb_statement(&["Allow", "Deny"]), 1..5),
        action in prop::sample::select(ACTIONS),
        resource in prop::sample::select(RESOURCES),
        ctx in arb_context(),
    ) {
        let forward = to_policy(&statements);
        let mut rev = statements.clone();
        rev.reverse();
        let backward = to_policy(&rev);
        let req = Request::new(action, resource, &ctx);
        prop_assert_eq!(evaluate([&forward], &req), evaluate([&backward], &req));
    }
}
