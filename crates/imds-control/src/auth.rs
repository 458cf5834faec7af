//! Who is calling, and may they: SigV4 authentication of every request
//! (header or presigned query form) against the configured credentials, then IAM
//! policy evaluation for each (action, resource) pair a call touches, with
//! the condition keys of docs/protocol/control-plane.md#condition-keys.
//!
//! Signature checking itself is `imds_sigv4`'s and policy semantics are
//! `imds_policy`'s; this module owns the glue: looking up the caller,
//! checking the credential scope (service, region), the session token and
//! the configured clock skew, and building the request context
//! (`aws:PrincipalArn`, `aws:RequestedRegion`, `ec2:ResourceTag/<k>`,
//! `ec2:RoleDelivery`, …). Which resources and keys an action has is the
//! action's business (the `ec2` modules).

use crate::Caller;
use crate::error::ApiError;
use aws_lc_rs::constant_time;
use imds_core::{InstanceRecord, MetadataOptions};
use imds_policy::{Context, Request, evaluate};
use imds_sigv4::{RequestParts, SigV4Error};
use std::collections::BTreeMap;

fn signature_error(e: &SigV4Error) -> ApiError {
    let (code, status) = e.aws_code();
    ApiError::signature(code, status, e.to_string())
}

/// What the scope of a signature must say.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `ec2` or `lightsail`.
    pub service: &'a str,
    /// The configured region.
    pub region: &'a str,
    /// Largest accepted distance of the signing time from the server clock
    /// (header form; the verifier also enforces its own bound).
    pub max_skew_secs: i64,
}

/// Authenticates a request: parses its signature, finds the caller (with
/// `lookup`, by access key id), checks
/// the signature with the caller's secret, then the session token, the
/// scope and the signing time.
pub fn authenticate(
    parts: &RequestParts<'_>,
    lookup: &dyn Fn(&str) -> Option<Caller>,
    scope: Scope<'_>,
    now_unix: i64,
) -> Result<Caller, ApiError> {
    let info = imds_sigv4::parse(parts).map_err(|e| signature_error(&e))?;
    let caller = lookup(&info.access_key_id).ok_or_else(ApiError::auth_failure)?;
    imds_sigv4::verify(parts, &info, &caller.secret_access_key, now_unix).map_err(|e| signature_error(&e))?;
    let token_ok = match (&caller.session_token, &info.session_token) {
        (None, None) => true,
        (Some(expected), Some(given)) => {
            constant_time::verify_slices_are_equal(expected.as_bytes(), given.as_bytes()).is_ok()
        }
        _ => false,
    };
    if !token_ok {
        return Err(ApiError::auth_failure_with("The security token included in the request is invalid."));
    }
    if info.service != scope.service {
        return Err(ApiError::auth_failure_with(format!(
            "Credential should be scoped to correct service: '{}'.",
            scope.service
        )));
    }
    if info.region != scope.region {
        return Err(ApiError::auth_failure_with(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            info.region
        )));
    }
    if !info.from_query && (now_unix - info.timestamp_unix).abs() > scope.max_skew_secs {
        return Err(ApiError::signature(
            "RequestExpired",
            400,
            format!(
                "Request has expired. Signing time {} is more than {} seconds away from the server time.",
                info.amz_date, scope.max_skew_secs
            ),
        ));
    }
    Ok(caller)
}

/// One (action, resource) pair to authorise, with its condition keys.
#[derive(Debug, Clone)]
pub struct Check {
    /// `ec2:RunInstances`.
    pub action: String,
    /// The resource ARN, or `*`.
    pub resource: String,
    /// Condition keys specific to this pair (the caller-wide ones are added
    /// by [`authorize`]).
    pub context: Context,
}

impl Check {
    /// A check with an empty context.
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        Self { action: action.into(), resource: resource.into(), context: Context::new() }
    }

    /// Adds `ec2:ResourceTag/<k>` for every tag.
    pub fn resource_tags(mut self, tags: &BTreeMap<String, String>) -> Self {
        for (k, v) in tags {
            self.context.insert(format!("ec2:ResourceTag/{k}"), v.clone());
        }
        self
    }

    /// Adds `aws:RequestTag/<k>` and `aws:TagKeys` for tags being set.
    pub fn request_tags<'a>(mut self, tags: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        for (k, v) in tags {
            self.context.insert(format!("aws:RequestTag/{k}"), v.clone());
            self.context.insert("aws:TagKeys", k.clone());
        }
        self
    }

    /// Adds the keys describing an existing instance: its tags, type,
    /// region and zone.
    pub fn instance(self, record: &InstanceRecord) -> Self {
        let mut c = self.resource_tags(&record.tags);
        c.context
            .insert("ec2:InstanceType", record.instance_type.clone())
            .insert("ec2:AvailabilityZone", record.placement.availability_zone.clone());
        c
    }

    /// Adds the metadata-option keys (`ec2:MetadataHttpTokens`,
    /// `ec2:MetadataHttpPutResponseHopLimit`, `ec2:MetadataHttpEndpoint`,
    /// `ec2:InstanceMetadataTags`) for the resulting options.
    pub fn metadata_options(mut self, o: &MetadataOptions) -> Self {
        self.context
            .insert("ec2:MetadataHttpTokens", o.http_tokens.as_str())
            .insert("ec2:MetadataHttpPutResponseHopLimit", o.http_put_response_hop_limit.get().to_string())
            .insert("ec2:MetadataHttpEndpoint", o.http_endpoint.as_str())
            .insert("ec2:InstanceMetadataTags", o.instance_metadata_tags.as_str());
        self
    }

    /// Adds `ec2:Attribute` = `name` and `ec2:Attribute/<name>` = `value`.
    pub fn attribute(mut self, name: &str, value: impl Into<String>) -> Self {
        self.context.insert("ec2:Attribute", name).insert(format!("ec2:Attribute/{name}"), value);
        self
    }

    /// Adds one arbitrary key.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.context.insert(key, value);
        self
    }
}

/// Evaluates the caller's policies for every check; the first one not
/// allowed gives `UnauthorizedOperation`. A caller without policies may do
/// everything (the configured default for static credentials).
pub fn authorize(caller: &Caller, region: &str, checks: Vec<Check>) -> Result<(), ApiError> {
    if caller.policies.is_empty() {
        return Ok(());
    }
    for mut check in checks {
        check
            .context
            .insert("aws:PrincipalArn", caller.principal_arn.clone())
            .insert("aws:RequestedRegion", region)
            .insert("ec2:Region", region);
        if let Some(delivery) = &caller.role_delivery {
            check.context.insert("ec2:RoleDelivery", delivery.clone());
        }
        let req = Request::new(&check.action, &check.resource, &check.context);
        let decision = evaluate(caller.policies.iter().map(|p| p.as_ref()), &req);
        if !decision.is_allowed() {
            tracing::info!(
                principal = %caller.principal_arn,
                action = %check.action,
                resource = %check.resource,
                ?decision,
                "request denied by policy"
            );
            return Err(ApiError::unauthorized());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use imds_policy::Policy;
    use std::sync::Arc;

    fn caller(policy: &str) -> Caller {
        Caller {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            principal_arn: "arn:aws:iam::123456789012:user/dev".into(),
            policies: vec![Arc::new(Policy::parse(policy).unwrap())],
            role_delivery: None,
            session_token: None,
        }
    }

    const ALLOW_ALL: &str =
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#;

    #[test]
    fn no_policies_allow_everything() {
        let mut c = caller(ALLOW_ALL);
        c.policies.clear();
        assert!(authorize(&c, "us-east-1", vec![Check::new("ec2:RunInstances", "*")]).is_ok());
    }

    #[test]
    fn hop_limit_condition_denies() {
        let c = caller(
            r#"{"Version":"2012-10-17","Statement":[
                {"Effect":"Allow","Action":"*","Resource":"*"},
                {"Effect":"Deny","Action":"ec2:RunInstances","Resource":"arn:aws:ec2:*:*:instance/*",
                 "Condition":{"NumericGreaterThan":{"ec2:MetadataHttpPutResponseHopLimit":"3"}}}]}"#,
        );
        let mut o = MetadataOptions::default();
        let check = |o: &MetadataOptions| {
            vec![
                Check::new("ec2:RunInstances", "arn:aws:ec2:us-east-1:123456789012:instance/*")
                    .metadata_options(o),
            ]
        };
        assert!(authorize(&c, "us-east-1", check(&o)).is_ok());
        o.http_put_response_hop_limit = imds_core::HopLimit::new(4).unwrap();
        assert_eq!(authorize(&c, "us-east-1", check(&o)).unwrap_err().code, "UnauthorizedOperation");
    }

    #[test]
    fn principal_and_resource_tags_are_in_context() {
        let c = caller(
            r#"{"Version":"2012-10-17","Statement":[
                {"Effect":"Allow","Action":"ec2:StopInstances","Resource":"*",
                 "Condition":{"StringEquals":{"ec2:ResourceTag/team":"a","aws:PrincipalARN":"arn:aws:iam::123456789012:user/dev"}}}]}"#,
        );
        let mut tags = BTreeMap::new();
        tags.insert("team".to_owned(), "a".to_owned());
        assert!(
            authorize(&c, "us-east-1", vec![Check::new("ec2:StopInstances", "x").resource_tags(&tags)])
                .is_ok()
        );
        tags.insert("team".to_owned(), "b".to_owned());
        assert!(
            authorize(&c, "us-east-1", vec![Check::new("ec2:StopInstances", "x").resource_tags(&tags)])
                .is_err()
        );
    }
}
