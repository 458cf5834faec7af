//! From policy text to [`Policy`]: size bound, JSON syntax, then the IAM
//! grammar (`Version`, `Statement`, `Sid`, `Effect`, `Action`/`NotAction`,
//! `Resource`/`NotResource`, `Condition`).
//!
//! Anything this crate cannot evaluate faithfully is a parse error (fail
//! closed): unknown elements, `Principal` (identity policies have none),
//! unsupported condition operators, policy variables other than the
//! escapes, duplicate JSON member names. Element names are case-sensitive,
//! as in IAM.

use std::collections::HashSet;

use crate::condition;
use crate::glob::{Flavor, Pattern};
use crate::json::Json;
use crate::{Effect, MAX_POLICY_BYTES, Policy, PolicyError, Statement, Targets};

/// The two policy language versions IAM knows.
const VERSION_2012: &str = "2012-10-17";
const VERSION_2008: &str = "2008-10-17";

fn invalid(msg: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(msg.into())
}

pub(crate) fn parse(text: &str) -> Result<Policy, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(invalid(format!(
            "policy document is {} bytes; the limit is {MAX_POLICY_BYTES}",
            text.len()
        )));
    }
    let doc: Json = serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))?;
    let Json::Object(members) = doc else {
        return Err(invalid(format!("policy document must be a JSON object, found {}", doc.kind())));
    };

    let mut version = None;
    let mut statement = None;
    for (name, value) in &members {
        match name.as_str() {
            "Version" => version = Some(value),
            "Statement" => statement = Some(value),
            "Id" => {
                if !matches!(value, Json::String(_)) {
                    return Err(invalid(format!("Id must be a string, found {}", value.kind())));
                }
            }
            other => return Err(invalid(format!("unknown policy element \"{other}\""))),
        }
    }

    // Policy variables exist only in the 2012-10-17 language; without a
    // Version, IAM uses 2008-10-17, where `${...}` is literal text.
    let variables = match version {
        None => false,
        Some(Json::String(v)) if v == VERSION_2012 => true,
        Some(Json::String(v)) if v == VERSION_2008 => false,
        Some(other) => {
            return Err(invalid(format!(
                "Version must be \"{VERSION_2012}\" or \"{VERSION_2008}\", found {}",
                describe(other)
            )));
        }
    };

    let statements: Vec<(String, &Json)> = match statement {
        None => return Err(invalid("Statement is required")),
        Some(single @ Json::Object(_)) => vec![("Statement".to_owned(), single)],
        Some(Json::Array(items)) => {
            if items.is_empty() {
                return Err(invalid("Statement must contain at least one statement"));
            }
            items.iter().enumerate().map(|(i, s)| (format!("Statement[{i}]"), s)).collect()
        }
        Some(other) => {
            return Err(invalid(format!(
                "Statement must be an object or an array of objects, found {}",
                other.kind()
            )));
        }
    };

    let mut sids = HashSet::new();
    let mut parsed = Vec::with_capacity(statements.len());
    for (path, value) in statements {
        let statement = parse_statement(value, &path, variables)?;
        if let Some(sid) = &statement.sid
            && !sids.insert(sid.clone())
        {
            return Err(invalid(format!(
                "{path}.Sid \"{sid}\" is used by another statement; Sids must be unique"
            )));
        }
        parsed.push(statement);
    }
    Ok(Policy { statements: parsed })
}

/// A short rendering of a JSON value for error messages.
fn describe(value: &Json) -> String {
    match value {
        Json::String(s) => format!("\"{s}\""),
        Json::Number(n) => n.clone(),
        other => other.kind().to_owned(),
    }
}

fn parse_statement(value: &Json, path: &str, variables: bool) -> Result<Statement, PolicyError> {
    let Json::Object(members) = value else {
        return Err(invalid(format!("{path} must be an object, found {}", value.kind())));
    };
    let mut sid = None;
    let mut effect = None;
    let mut action = None;
    let mut not_action = None;
    let mut resource = None;
    let mut not_resource = None;
    let mut condition = None;
    for (name, value) in members {
        match name.as_str() {
            "Sid" => match value {
                Json::String(s) => sid = Some(s.clone()),
                other => {
                    return Err(invalid(format!("{path}.Sid must be a string, found {}", other.kind())));
                }
            },
            "Effect" => effect = Some(value),
            "Action" => action = Some(value),
            "NotAction" => not_action = Some(value),
            "Resource" => resource = Some(value),
            "NotResource" => not_resource = Some(value),
            "Condition" => condition = Some(value),
            "Principal" | "NotPrincipal" => {
                return Err(invalid(format!("{path}.{name} is not allowed in an identity-based policy")));
            }
            other => return Err(invalid(format!("{path}: unknown statement element \"{other}\""))),
        }
    }

    let effect = match effect {
        Some(Json::String(s)) if s == "Allow" => Effect::Allow,
        Some(Json::String(s)) if s == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(invalid(format!("{path}.Effect must be Allow or Deny, found {}", describe(other))));
        }
        None => return Err(invalid(format!("{path}.Effect is required (Allow or Deny)"))),
    };

    let actions = match (action, not_action) {
        (Some(v), None) => Targets { negated: false, patterns: parse_actions(v, &format!("{path}.Action"))? },
        (None, Some(v)) => {
            Targets { negated: true, patterns: parse_actions(v, &format!("{path}.NotAction"))? }
        }
        (Some(_), Some(_)) => {
            return Err(invalid(format!("{path} cannot have both Action and NotAction")));
        }
        (None, None) => {
            return Err(invalid(format!("{path} must have Action or NotAction")));
        }
    };

    let resources = match (resource, not_resource) {
        (Some(v), None) => {
            Targets { negated: false, patterns: parse_resources(v, &format!("{path}.Resource"), variables)? }
        }
        (None, Some(v)) => Targets {
            negated: true,
            patterns: parse_resources(v, &format!("{path}.NotResource"), variables)?,
        },
        (Some(_), Some(_)) => {
            return Err(invalid(format!("{path} cannot have both Resource and NotResource")));
        }
        (None, None) => {
            return Err(invalid(format!("{path} must have Resource or NotResource")));
        }
    };

    let conditions = match condition {
        Some(c) => condition::parse_block(c, &format!("{path}.Condition"), variables)?,
        None => Vec::new(),
    };

    Ok(Statement { sid, effect, actions, resources, conditions })
}

/// A string or a non-empty array of strings, each with its path.
fn string_list<'a>(value: &'a Json, path: &str) -> Result<Vec<(String, &'a str)>, PolicyError> {
    let bad = |found: &Json| {
        invalid(format!("{path} must be a string or an array of strings, found {}", found.kind()))
    };
    match value {
        Json::String(s) => Ok(vec![(path.to_owned(), s.as_str())]),
        Json::Array(items) => {
            if items.is_empty() {
                return Err(invalid(format!("{path} must not be empty")));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Json::String(s) => Ok((format!("{path}[{i}]"), s.as_str())),
                    other => Err(bad(other)),
                })
                .collect()
        }
        other => Err(bad(other)),
    }
}

/// `*`, or `service:action` where the service prefix has no wildcards and
/// the action may. Compiled lower-case: action names are case-insensitive.
fn parse_actions(value: &Json, path: &str) -> Result<Vec<Pattern>, PolicyError> {
    string_list(value, path)?
        .into_iter()
        .map(|(path, action)| {
            let well_formed = action == "*"
                || action.split_once(':').is_some_and(|(service, name)| {
                    !service.is_empty()
                        && service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"*?-_".contains(&b))
                });
            if !well_formed {
                return Err(invalid(format!(
                    "{path} \"{action}\" must be \"*\" or \"service:Action\" (wildcards * and ? \
                     allowed in the action name)"
                )));
            }
            // Actions take no policy variables.
            Pattern::compile(&action.to_lowercase(), Flavor::Plain, false)
                .map_err(|e| invalid(format!("{path}: {e}")))
        })
        .collect()
}

/// `*`, or an ARN (six colon-separated parts, or fewer ending in `*`) with
/// wildcards.
fn parse_resources(value: &Json, path: &str, variables: bool) -> Result<Vec<Pattern>, PolicyError> {
    string_list(value, path)?
        .into_iter()
        .map(|(path, resource)| {
            // A `*` ending the pattern spans the remaining segments
            // (`arn:aws:ec2:*`), so a short ARN is fine when it ends in `*`.
            let well_formed = resource == "*"
                || (resource.starts_with("arn:")
                    && (condition::split_arn(resource).is_some() || resource.ends_with('*')));
            if !well_formed {
                return Err(invalid(format!(
                    "{path} \"{resource}\" must be \"*\" or an ARN \
                     (arn:partition:service:region:account:resource)"
                )));
            }
            Pattern::compile(resource, Flavor::Arn, variables).map_err(|e| invalid(format!("{path}: {e}")))
        })
        .collect()
}
