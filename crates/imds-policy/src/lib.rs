//! IAM identity policies: parsing and evaluation for one principal.
//!
//! The control plane (EC2 Query API, Lightsail API) authorises each call by
//! evaluating the caller's JSON policies for every (action, resource) pair
//! the call touches. This crate owns:
//!
//! * [`Policy::parse`]: the IAM JSON policy grammar (`Version`, `Statement`
//!   as object or array, `Sid`, `Effect`, `Action`/`NotAction`,
//!   `Resource`/`NotResource`, `Condition`), with the document size bounded
//!   ([`MAX_POLICY_BYTES`]) before any parsing;
//! * [`evaluate`]: IAM's evaluation logic restricted to identity-based
//!   policies — an explicit `Deny` in any statement wins, otherwise any
//!   `Allow` allows, otherwise the request is implicitly denied;
//! * [`Context`]: condition keys and their values for one request.
//!
//! It does not own which condition keys a request carries (the control plane
//! fills the [`Context`] with `ec2:MetadataHttpTokens`, `ec2:Attribute`,
//! `aws:PrincipalArn`, ... as docs/protocol/control-plane.md#condition-keys lists), where the
//! policies come from, or what to answer: every non-allowed [`Decision`] is
//! `UnauthorizedOperation` (HTTP 403), and with `DryRun=true` an allowed call
//! answers `DryRunOperation` (HTTP 412) instead of executing
//! (docs/protocol/control-plane.md#dry-run).
//! Nor does it own the default for a principal with no policy at all:
//! [`evaluate`] over no policies is [`Decision::ImplicitDeny`], as in IAM; a
//! deployment that wants "no policy configured = allow everything" must say
//! so itself, before calling this crate.
//!
//! Not supported, and refused at parse time rather than evaluated wrongly
//! (fail closed): resource policies, `Principal`/`NotPrincipal`, permission
//! boundaries and SCPs; the `Date*`, `IpAddress`, `Binary*` condition
//! operators; policy variables such as `${aws:username}` (only the escapes
//! `${*}`, `${?}`, `${$}` are understood; without `"Version": "2012-10-17"`,
//! `${` is literal text, as in IAM). See the module docs of `condition` and
//! `glob` for the exact matching rules and the IAM documentation they follow.
//!
//! Why hand-written: the crates.io IAM-policy crates are policy *models*
//! (builders, serde types) or young single-maintainer evaluators whose
//! condition semantics (absent keys, negated operators, set operators) we
//! would have to audit line by line anyway; the evaluator is a few hundred
//! lines that this crate tests directly against the IAM User Guide.
//!
//! ```
//! use imds_policy::{Context, Decision, Policy, Request, evaluate};
//!
//! let allow_all = Policy::parse(r#"{"Version": "2012-10-17",
//!     "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#)?;
//! let guard = Policy::parse(r#"{"Version": "2012-10-17", "Statement": [{
//!     "Effect": "Deny", "Action": "ec2:RunInstances",
//!     "Resource": "arn:aws:ec2:*:*:instance/*",
//!     "Condition": {"StringNotEquals": {"ec2:MetadataHttpTokens": "required"}}}]}"#)?;
//!
//! let ctx = Context::new().with("ec2:MetadataHttpTokens", "optional");
//! let req = Request {
//!     action: "ec2:RunInstances",
//!     resource: "arn:aws:ec2:us-east-1:123456789012:instance/*",
//!     context: &ctx,
//! };
//! assert_eq!(evaluate([&allow_all, &guard], &req), Decision::ExplicitDeny);
//! # Ok::<(), imds_policy::PolicyError>(())
//! ```

mod condition;
mod context;
mod glob;
mod json;
mod parse;

#[cfg(test)]
mod tests;

use std::str::FromStr;

pub use context::Context;

use condition::Condition;
use glob::Pattern;

/// Largest policy document [`Policy::parse`] accepts, in bytes (64 KiB).
///
/// IAM's own limits are far lower (6 144 characters for a managed policy),
/// so any real policy fits; the bound keeps a hostile document from costing
/// more than a fixed amount of parsing and matching.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Why a policy document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not JSON (or has duplicate member names, or nests too
    /// deeply). The message is `serde_json`'s, with line and column.
    #[error("policy is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not a policy this crate can evaluate. The message names
    /// the offending element, e.g. `Statement[1].Effect must be Allow or
    /// Deny, found "Permit"`.
    #[error("invalid policy: {0}")]
    Invalid(String),
}

/// A parsed identity policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

impl Policy {
    /// Parses and validates a policy document.
    ///
    /// Documents larger than [`MAX_POLICY_BYTES`] are refused before any
    /// parsing. Never panics, whatever the input.
    pub fn parse(json: &str) -> Result<Policy, PolicyError> {
        parse::parse(json)
    }

    /// Number of statements in the document.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    /// Always false: a policy has at least one statement.
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::parse(s)
    }
}

/// The request context for one (action, resource) pair.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `service:Action`, e.g. `ec2:ModifyInstanceMetadataOptions`. Matched
    /// case-insensitively, as IAM matches action names.
    pub action: &'a str,
    /// The resource ARN, e.g.
    /// `arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0`, or
    /// `*` for actions without resource-level permissions (only statements
    /// whose `Resource` is `*`, or whose `NotResource` lists no pattern
    /// matching `*`, apply to those). Matched case-sensitively.
    pub resource: &'a str,
    /// Condition keys and their values.
    pub context: &'a Context,
}

impl<'a> Request<'a> {
    /// Shorthand for the struct literal.
    pub fn new(action: &'a str, resource: &'a str, context: &'a Context) -> Self {
        Request { action, resource, context }
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// At least one `Allow` statement applies and no `Deny` does.
    Allow,
    /// At least one `Deny` statement applies.
    ExplicitDeny,
    /// No statement applies: denied by default.
    ImplicitDeny,
}

impl Decision {
    /// True only for [`Decision::Allow`].
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// Evaluates `policies` (all attached to one principal) for one request.
///
/// Any applicable `Deny` statement gives [`Decision::ExplicitDeny`]; else
/// any applicable `Allow` gives [`Decision::Allow`]; else
/// [`Decision::ImplicitDeny`] (also when there are no policies). A
/// statement applies when its action, resource and every condition match.
/// The order of policies and statements does not matter.
pub fn evaluate<'p>(policies: impl IntoIterator<Item = &'p Policy>, req: &Request<'_>) -> Decision {
    let action = req.action.to_lowercase();
    let mut allowed = false;
    for policy in policies {
        for statement in &policy.statements {
            // Once allowed, only a Deny can change the outcome.
            if allowed && statement.effect == Effect::Allow {
                continue;
            }
            if statement.applies(&action, req) {
                match statement.effect {
                    Effect::Deny => return Decision::ExplicitDeny,
                    Effect::Allow => allowed = true,
                }
            }
        }
    }
    if allowed { Decision::Allow } else { Decision::ImplicitDeny }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// `Action`/`NotAction` or `Resource`/`NotResource`.
#[derive(Debug, Clone, PartialEq)]
struct Targets {
    /// The `Not...` form: matches what no pattern matches.
    negated: bool,
    patterns: Vec<Pattern>,
}

impl Targets {
    fn matches(&self, value: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(value)) != self.negated
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    /// Kept for diagnostics (`Debug`); unique within a policy.
    sid: Option<String>,
    effect: Effect,
    /// Patterns compiled lower-case; matched against the lower-cased action.
    actions: Targets,
    resources: Targets,
    /// ANDed.
    conditions: Vec<Condition>,
}

impl Statement {
    fn applies(&self, lowercase_action: &str, req: &Request<'_>) -> bool {
        self.actions.matches(lowercase_action)
            && self.resources.matches(req.resource)
            && self.conditions.iter().all(|c| c.holds(req.context))
    }
}
