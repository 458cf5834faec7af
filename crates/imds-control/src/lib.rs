//! The control plane of `imdsd`: the EC2 Query API and the Lightsail JSON
//! API over the store, with SigV4 authentication and
//! IAM policy checks, so that unmodified AWS tools (`aws ec2 …
//! --endpoint-url`, boto3, the SDKs) launch instances and change their
//! metadata options.
//!
//! Layers, each in its own module:
//!
//! * [`error`]: every client-visible EC2 error (code, HTTP status, message)
//!   and its XML document;
//! * [`query`]: the form-encoded request format and typed parameter access;
//! * [`xml`]: the response writer;
//! * [`auth`]: SigV4 and policy evaluation with the condition keys of
//!   docs/protocol/control-plane.md#condition-keys;
//! * [`ops`]: protocol-independent store operations (launch, change with
//!   compare-and-set, read with `pending`/`applied`), shared with Lightsail;
//! * `ec2`: one module per action family, each validating its input;
//! * [`server`]: the axum router, request ids and the audit log;
//! * [`listener`]: the accept loop with its header-read timeout and the
//!   stalled-write guard;
//! * [`lightsail`]: the Lightsail JSON protocol (awsJson 1.1): instances
//!   created, read, changed and deleted by name over the same [`ops`], and
//!   their `MetadataNoToken` metric data;
//! * [`cloudwatch`]: CloudWatch's metric read API (`GetMetricStatistics`,
//!   `GetMetricData`, `ListMetrics`) for `AWS/EC2` `MetadataNoToken` in
//!   JSON 1.0, RPC v2 CBOR and query;
//! * [`metrics`]: Prometheus counters and latency of every API call;
//! * [`limits`]: the per-credential rate limit and the request time
//!   limits, reloadable.
//!
//! It does not own the data plane, the agent that applies specs, or the
//! store backends. The store layout it adds is documented in [`ops`].

pub mod auth;
pub mod cloudwatch;
mod ec2;
pub mod error;
mod ids;
pub mod lightsail;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod ops;
pub mod query;
pub mod server;
pub mod xml;

use imds_core::Clock;
use imds_policy::Policy;
use imds_store::Store;
use ipnet::{Ipv4Net, Ipv6Net};
use std::sync::Arc;

pub use error::ApiError;
pub use limits::{ControlLimits, LimitsHandle};
pub use metrics::ControlMetrics;
pub use ops::launch::HostAssignment;
pub use ops::{OpError, Ops, OpsConfig};

/// Settings of the control plane.
#[derive(Clone)]
pub struct ControlConfig {
    /// The region this endpoint serves (`us-east-1`); signatures must be
    /// scoped to it.
    pub region: String,
    /// The account that owns every resource (12 digits).
    pub account_id: String,
    /// Long-term credentials accepted in addition to the
    /// [`CredentialSource`] given to [`ControlPlane::new`].
    pub credentials: Vec<StaticCredential>,
    /// Pool for private IPv4 addresses of instances launched without one.
    pub subnet_v4: Ipv4Net,
    /// Pool for `Ipv6AddressCount`, if any.
    pub subnet_v6: Option<Ipv6Net>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest accepted distance between a request's signing time and the
    /// server clock, in seconds (at most the verifier's own 15 minutes).
    pub clock_skew_secs: i64,
    /// How launches choose a host: [`HostAssignment::None`] for `imdsd
    /// serve`, [`HostAssignment::LiveHosts`] for a fleet's `imdsd control`.
    pub host_assignment: HostAssignment,
    /// Rate limit and time limits of the listener (the starting values;
    /// [`ControlPlane::limits`] changes them while serving).
    pub limits: ControlLimits,
}

/// Default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

impl Default for ControlConfig {
    /// us-east-1, the sample account, no credentials, `10.0.0.0/16`, no
    /// IPv6 pool, 1 MiB bodies, 15 minutes of clock skew, no host
    /// assignment.
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            account_id: imds_core::sample::SAMPLE_ACCOUNT.to_owned(),
            credentials: Vec::new(),
            subnet_v4: Ipv4Net::new(std::net::Ipv4Addr::new(10, 0, 0, 0), 16).unwrap_or_default(),
            subnet_v6: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            clock_skew_secs: imds_sigv4::MAX_SKEW_SECS,
            host_assignment: HostAssignment::None,
            limits: ControlLimits::default(),
        }
    }
}

impl std::fmt::Debug for ControlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlConfig")
            .field("region", &self.region)
            .field("account_id", &self.account_id)
            .field("credentials", &self.credentials)
            .field("subnet_v4", &self.subnet_v4)
            .field("subnet_v6", &self.subnet_v6)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("clock_skew_secs", &self.clock_skew_secs)
            .field("host_assignment", &self.host_assignment)
            .field("limits", &self.limits)
            .finish()
    }
}

/// A long-term access key with the principal it acts as.
#[derive(Clone)]
pub struct StaticCredential {
    /// `AKIA…`
    pub access_key_id: String,
    /// The secret; never logged.
    pub secret_access_key: String,
    /// `arn:aws:iam::<account>:user/admin`
    pub principal_arn: String,
    /// The identity policy; `None` allows everything.
    pub policy: Option<Policy>,
}

impl std::fmt::Debug for StaticCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("principal_arn", &self.principal_arn)
            .field("policy", &self.policy.as_ref().map(|_| "…"))
            .finish()
    }
}

/// An authenticated caller: who it is and what it may do.
#[derive(Clone)]
pub struct Caller {
    /// The access key the request was signed with.
    pub access_key_id: String,
    /// Its secret (needed to verify the signature); never logged.
    pub secret_access_key: String,
    /// `aws:PrincipalArn`.
    pub principal_arn: String,
    /// Identity policies; empty allows everything.
    pub policies: Vec<Arc<Policy>>,
    /// `ec2:RoleDelivery` (`1.0` / `2.0`) for role credentials served by
    /// IMDS.
    pub role_delivery: Option<String>,
    /// The session token temporary credentials must present; `None` for
    /// long-term keys, which must present none.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("principal_arn", &self.principal_arn)
            .field("policies", &self.policies.len())
            .field("role_delivery", &self.role_delivery)
            .field("session_token", &self.session_token.as_ref().map(|_| "** redacted **"))
            .finish()
    }
}

/// Where callers come from: static keys now, minted role credentials later.
pub trait CredentialSource: Send + Sync + 'static {
    /// The caller owning `access_key_id`, if any.
    fn lookup(&self, access_key_id: &str) -> Option<Caller>;
}

impl StaticCredential {
    /// The caller this credential authenticates.
    pub fn caller(&self) -> Caller {
        Caller {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            principal_arn: self.principal_arn.clone(),
            policies: self.policy.iter().cloned().map(Arc::new).collect(),
            role_delivery: None,
            session_token: None,
        }
    }
}

impl CredentialSource for Vec<StaticCredential> {
    fn lookup(&self, access_key_id: &str) -> Option<Caller> {
        self.iter().find(|c| c.access_key_id == access_key_id).map(StaticCredential::caller)
    }
}

/// Static credentials with their callers prepared once (policies shared,
/// not cloned per request).
#[derive(Debug, Clone, Default)]
pub struct StaticCredentials {
    callers: Vec<Caller>,
}

impl StaticCredentials {
    /// Prepares the callers of `credentials`.
    pub fn new(credentials: &[StaticCredential]) -> Self {
        Self { callers: credentials.iter().map(StaticCredential::caller).collect() }
    }
}

impl CredentialSource for StaticCredentials {
    fn lookup(&self, access_key_id: &str) -> Option<Caller> {
        self.callers.iter().find(|c| c.access_key_id == access_key_id).cloned()
    }
}

/// The control plane: build it, then serve [`ControlPlane::router`].
pub struct ControlPlane {
    shared: Arc<server::Shared>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// A control plane over `store`. Requests are authenticated against
    /// `config.credentials` first, then `credentials`.
    pub fn new(
        store: Arc<dyn Store>,
        config: ControlConfig,
        credentials: Arc<dyn CredentialSource>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let ops_config = OpsConfig {
            region: config.region.clone(),
            account_id: config.account_id.clone(),
            subnet_v4: config.subnet_v4,
            subnet_v6: config.subnet_v6,
            host_assignment: config.host_assignment,
        };
        let ops = Ops::new(store, clock.clone(), ops_config);
        let statics = StaticCredentials::new(&config.credentials);
        let metrics = ControlMetrics::default();
        let limits = LimitsHandle::new(config.limits);
        Self {
            shared: Arc::new(server::Shared { ops, config, statics, credentials, clock, metrics, limits }),
        }
    }

    /// The limits in force; keep it to change them while the plane serves
    /// (config reload) and to give it to [`listener::serve`].
    pub fn limits(&self) -> LimitsHandle {
        self.shared.limits.clone()
    }

    /// Records calls in `metrics` (registered by the caller, e.g. in the
    /// process's Prometheus registry) instead of the plane's own.
    pub fn with_metrics(mut self, metrics: ControlMetrics) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.metrics = metrics,
            // `shared` is only shared once `router` consumed `self`.
            None => tracing::warn!("control-plane metrics not replaced: the plane is already serving"),
        }
        self
    }

    /// The metrics calls are recorded in (clones share their values).
    pub fn metrics(&self) -> &ControlMetrics {
        &self.shared.metrics
    }

    /// Registers the plane's metrics in `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.shared.metrics.register(registry);
    }

    /// The store operations, for other front ends and tests.
    pub fn ops(&self) -> &Ops {
        &self.shared.ops
    }

    /// The HTTP service: EC2 Query on `POST /` (and `GET /?…`), Lightsail
    /// when `X-Amz-Target` is present, CloudWatch by its target prefix, CBOR
    /// path or signing service.
    pub fn router(self) -> axum::Router {
        server::router(self.shared)
    }
}
