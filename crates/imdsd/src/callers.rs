//! Who may call the control API: the long-term keys of the config file, and
//! role credentials that instances read from IMDS, which authenticate as
//! their role with the role's policy and `ec2:RoleDelivery` telling whether
//! they came through IMDSv1 (`1.0`) or IMDSv2 (`2.0`). Keys and role
//! policies are swapped whole when the config file is reloaded (SIGHUP).
//!
//! Minted role and identity credentials are stateless: their session token
//! carries (sealed) who they were issued to, and [`MintedVerifier`] checks
//! it against the minting key and the instance record in the store. The
//! control plane asks for a caller through [`CredentialSource::lookup`],
//! which is synchronous and sees only the access key id; so
//! [`resolve_minted`], a middleware in front of the control router, reads
//! the request's session token, verifies it (the one asynchronous store
//! read), and hands the resulting caller to `lookup` for the rest of that
//! request through a task-local. A handler that ran outside that scope
//! would find no minted caller: it fails closed.

use arc_swap::ArcSwap;
use axum::extract::{Query, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use imds_control::{Caller, CredentialSource, StaticCredential, StaticCredentials};
use imds_core::Clock;
use imds_credentials::{MintedVerifier, TOKEN_PREFIX, VerifyError};
use imds_policy::Policy;
use std::collections::HashMap;
use std::sync::Arc;

/// Header and query parameter of a SigV4 session token.
const SECURITY_TOKEN_HEADER: &str = "x-amz-security-token";
const SECURITY_TOKEN_PARAM: &str = "X-Amz-Security-Token";

tokio::task_local! {
    /// The minted caller whose session token the request in progress
    /// presented, verified by [`resolve_minted`].
    static PRESENTED: Option<Caller>;
}

/// The reloadable part: keys and role policies.
struct Rules {
    statics: StaticCredentials,
    role_policies: HashMap<String, Arc<Policy>>,
}

/// The control plane's callers.
pub struct Callers {
    minted: MintedVerifier,
    clock: Arc<dyn Clock>,
    rules: ArcSwap<Rules>,
    /// What a role without a configured policy gets: nothing, as an IAM role
    /// without policies.
    deny_all: Arc<Policy>,
}

/// A role with no policy may do nothing (IAM's implicit deny, made explicit
/// because an empty policy list means "allow everything" to the control plane).
const DENY_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;

fn rules(statics: &[StaticCredential], role_policies: HashMap<String, Policy>) -> Rules {
    Rules {
        statics: StaticCredentials::new(statics),
        role_policies: role_policies.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
    }
}

impl Callers {
    /// Callers from `statics` and from minted credentials (checked by
    /// `minted` on `clock`), with `role_policies` by role name.
    pub fn new(
        minted: MintedVerifier,
        clock: Arc<dyn Clock>,
        statics: &[StaticCredential],
        role_policies: HashMap<String, Policy>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            minted,
            clock,
            rules: ArcSwap::from_pointee(rules(statics, role_policies)),
            deny_all: Arc::new(Policy::parse(DENY_ALL)?),
        })
    }

    /// Replaces the keys and role policies (config reload).
    pub fn reload(&self, statics: &[StaticCredential], role_policies: HashMap<String, Policy>) {
        self.rules.store(Arc::new(rules(statics, role_policies)));
    }

    /// The caller a minted session token stands for, if it still stands.
    async fn minted_caller(&self, session_token: &str) -> Option<Caller> {
        let verified = match self.minted.verify(session_token, self.clock.now_secs()).await {
            Ok(v) => v,
            Err(VerifyError::Store(e)) => {
                tracing::warn!(error = %e, "cannot read the instance of minted credentials; refused");
                return None;
            }
            Err(e) => {
                // Debug: refusals are the caller's business, and an info
                // line per forged request would let anyone fill the log.
                tracing::debug!(reason = %e, "minted credentials refused");
                return None;
            }
        };
        let rules = self.rules.load();
        let policy = rules.role_policies.get(&verified.role_name).unwrap_or(&self.deny_all);
        Some(Caller {
            access_key_id: verified.access_key_id,
            secret_access_key: verified.secret_access_key,
            principal_arn: verified.principal_arn,
            policies: vec![Arc::clone(policy)],
            role_delivery: verified.role_delivery.map(|d| d.as_str().to_owned()),
            session_token: Some(session_token.to_owned()),
        })
    }
}

/// The session token a request presents: the `X-Amz-Security-Token` header
/// (exactly one), else the parameter of a presigned URL.
fn session_token(req: &Request) -> Option<String> {
    let mut headers = req.headers().get_all(SECURITY_TOKEN_HEADER).iter();
    if let Some(value) = headers.next() {
        return if headers.next().is_none() { value.to_str().ok().map(str::to_owned) } else { None };
    }
    let Query(params) = Query::<Vec<(String, String)>>::try_from_uri(req.uri()).ok()?;
    params.into_iter().find(|(k, _)| k == SECURITY_TOKEN_PARAM).map(|(_, v)| v)
}

/// Middleware of the control router: verifies a minted session token, if
/// the request carries one, and runs the rest of the request with the
/// caller it stands for visible to [`Callers`]' `lookup`.
pub async fn resolve_minted(State(callers): State<Arc<Callers>>, req: Request, next: Next) -> Response {
    let caller = match session_token(&req) {
        Some(token) if token.starts_with(TOKEN_PREFIX) => callers.minted_caller(&token).await,
        _ => None,
    };
    PRESENTED.scope(caller, next.run(req)).await
}

impl CredentialSource for Callers {
    fn lookup(&self, access_key_id: &str) -> Option<Caller> {
        if let Some(caller) = self.rules.load().statics.lookup(access_key_id) {
            return Some(caller);
        }
        // The signature names the key; the token must be that key's.
        PRESENTED
            .try_with(|presented| presented.as_ref().filter(|c| c.access_key_id == access_key_id).cloned())
            .ok()
            .flatten()
    }
}
