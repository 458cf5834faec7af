//! Instance metadata options: ModifyInstanceMetadataOptions (every member
//! optional, omitted members keep their value, the answer says `pending`)
//! and the account-level defaults (Modify/GetInstanceMetadataDefaults) that
//! launches consult.

use super::instances::options_request;
use super::{Cx, render, required_instance_id, tags};
use crate::error::ApiError;
use crate::ops::settings::{AccountDefaults, DefaultsPatch};
use crate::ops::{OpError, OptionsState, Visibility};
use crate::query::View;
use crate::xml::Xml;
use imds_core::{Enabled, HopLimit, HttpTokens};

/// `ModifyInstanceMetadataOptions`.
pub async fn modify_options(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let id = required_instance_id(&p)?;
    let req = options_request(&p)?;
    if req.http_tokens == Some(HttpTokens::Optional)
        && cx.ops.account_defaults().await?.http_tokens_enforced == Some(Enabled::Enabled)
    {
        return Err(OpError::HttpTokensEnforced.into());
    }
    let changes = {
        let cx = &*cx;
        cx.ops
            .update::<ApiError, _>(std::slice::from_ref(&id), Visibility::LiveOnly, |views| {
                let mut out = Vec::with_capacity(views.len());
                let mut checks = Vec::new();
                for v in views {
                    let mut r = v.record.clone();
                    let o = &mut r.metadata_options;
                    let mut check = cx.check(cx.instance_arn(r.instance_id.as_str())).instance(&v.record);
                    if let Some(t) = req.http_tokens {
                        o.http_tokens = t;
                        check = check.attribute("HttpTokens", t.as_str());
                    }
                    if let Some(h) = req.http_put_response_hop_limit {
                        o.http_put_response_hop_limit = h;
                        check = check.attribute("HttpPutResponseHopLimit", h.get().to_string());
                    }
                    if let Some(e) = req.http_endpoint {
                        o.http_endpoint = e;
                        check = check.attribute("HttpEndpoint", e.as_str());
                    }
                    if let Some(e) = req.http_protocol_ipv6 {
                        o.http_protocol_ipv6 = e;
                        check = check.attribute("HttpProtocolIpv6", e.as_str());
                    }
                    if let Some(e) = req.instance_metadata_tags {
                        o.instance_metadata_tags = e;
                        check = check.attribute("InstanceMetadataTags", e.as_str());
                    }
                    tags::check_imds_keys(&r)?;
                    checks.push(check.metadata_options(&r.metadata_options));
                    out.push(r);
                }
                cx.gate(checks)?;
                Ok(out)
            })
            .await?
    };
    cx.touched = vec![id.to_string()];
    let mut x = cx.xml();
    x.leaf("instanceId", &id);
    if let Some(c) = changes.first() {
        render::options(&mut x, "instanceMetadataOptions", &c.after.metadata_options, OptionsState::Pending);
    }
    Ok(x.finish())
}

/// A `*-or-no-preference` member: `None` absent, `Some(None)` cleared.
#[allow(clippy::option_option)]
fn preference<T>(
    p: &View<'_>,
    name: &'static str,
    parse: impl Fn(&str) -> Result<T, ApiError>,
) -> Result<Option<Option<T>>, ApiError> {
    match p.str(name) {
        None => Ok(None),
        Some("no-preference") => Ok(Some(None)),
        Some(v) => parse(v).map(|t| Some(Some(t))),
    }
}

fn enabled(name: &'static str) -> impl Fn(&str) -> Result<Enabled, ApiError> {
    move |v| Enabled::parse(name, v).map_err(ApiError::from)
}

/// `ModifyInstanceMetadataDefaults`.
pub async fn modify_defaults(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let hops = match p.str("HttpPutResponseHopLimit") {
        None => None,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(-1) => Some(None),
            Ok(n) => Some(Some(HopLimit::new(n)?)),
            Err(_) => return Err(ApiError::invalid_parameter("HttpPutResponseHopLimit", raw)),
        },
    };
    let patch = DefaultsPatch {
        http_tokens: preference(&p, "HttpTokens", |v| v.parse::<HttpTokens>().map_err(ApiError::from))?,
        http_put_response_hop_limit: hops,
        http_endpoint: preference(&p, "HttpEndpoint", enabled("HttpEndpoint"))?,
        instance_metadata_tags: preference(&p, "InstanceMetadataTags", enabled("InstanceMetadataTags"))?,
        http_tokens_enforced: preference(&p, "HttpTokensEnforced", enabled("HttpTokensEnforced"))?,
    };
    let cx_ref = &*cx;
    cx_ref
        .ops
        .modify_account_defaults(patch, |_next: &AccountDefaults| {
            let mut check = cx_ref.check("*");
            let named = [
                ("HttpTokens", p.str("HttpTokens")),
                ("HttpPutResponseHopLimit", p.str("HttpPutResponseHopLimit")),
                ("HttpEndpoint", p.str("HttpEndpoint")),
                ("InstanceMetadataTags", p.str("InstanceMetadataTags")),
                ("HttpTokensEnforced", p.str("HttpTokensEnforced")),
            ];
            for (name, value) in named {
                if let Some(v) = value {
                    check = check.attribute(name, v);
                }
            }
            cx_ref.gate(vec![check])
        })
        .await?;
    let mut x = cx.xml();
    x.leaf("return", true);
    Ok(x.finish())
}

/// `GetInstanceMetadataDefaults`: only members with a preference; an empty
/// `<accountLevel/>` when none is set.
pub async fn get_defaults(cx: &mut Cx<'_>, _p: View<'_>) -> Result<String, ApiError> {
    let d = cx.ops.account_defaults().await?;
    cx.gate(vec![cx.check("*")])?;
    let mut x = cx.xml();
    write_defaults(&mut x, &d);
    Ok(x.finish())
}

fn write_defaults(x: &mut Xml, d: &AccountDefaults) {
    if *d == AccountDefaults::default() {
        x.empty("accountLevel");
        return;
    }
    x.structure("accountLevel", |x| {
        x.leaf_opt("httpTokens", d.http_tokens.map(HttpTokens::as_str))
            .leaf_opt("httpPutResponseHopLimit", d.http_put_response_hop_limit.map(HopLimit::get))
            .leaf_opt("httpEndpoint", d.http_endpoint.map(Enabled::as_str))
            .leaf_opt("instanceMetadataTags", d.instance_metadata_tags.map(Enabled::as_str))
            .leaf("managedBy", "account")
            .leaf_opt("httpTokensEnforced", d.http_tokens_enforced.map(Enabled::as_str));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_render_only_what_is_set() {
        let mut x = Xml::response("GetInstanceMetadataDefaults", "r");
        write_defaults(&mut x, &AccountDefaults::default());
        assert!(
            x.finish()
                .ends_with("<requestId>r</requestId><accountLevel/></GetInstanceMetadataDefaultsResponse>")
        );
        let mut x = Xml::response("GetInstanceMetadataDefaults", "r");
        let d = AccountDefaults {
            http_tokens: Some(HttpTokens::Required),
            http_put_response_hop_limit: HopLimit::new(2).ok(),
            ..Default::default()
        };
        write_defaults(&mut x, &d);
        assert!(x.finish().ends_with(
            "<accountLevel><httpTokens>required</httpTokens><httpPutResponseHopLimit>2</httpPutResponseHopLimit><managedBy>account</managedBy></accountLevel></GetInstanceMetadataDefaultsResponse>"
        ));
    }
}
