//! The long-running processes: `imdsd serve` (store, control plane, agent,
//! data plane and admin endpoint in one process, on the embedded redb store),
//! and the fleet split `imdsd control` (control plane on etcd) and `imdsd
//! agent` (one host's data plane on etcd). One code path builds all three;
//! the mode says which parts run.

use crate::ServeArgs;
use crate::admin::{self, AdminState};
use crate::admin_api::ApiState;
use crate::callers::Callers;
use crate::config::Config;
use crate::demo;
use anyhow::Context;
use imds_agent::{Agent, AgentConfig, Placement};
use imds_control::{ControlConfig, ControlPlane, HostAssignment, StaticCredential};
use imds_core::{Clock, SystemClock};
use imds_credentials::{CredentialsConfig, MintedVerifier};
use imds_dataplane::server::{ConnLimits, serve as serve_data};
use imds_dataplane::{DataPlane, DataPlaneMetrics, DataPlaneOptions, Limits};
use imds_net::bind_listener;
use imds_policy::Policy;
use imds_store::RedbStore;
use imds_store::Store;
use imds_store_etcd::{EtcdOptions, EtcdStore, HostLease};
use imds_usage::{UsageConfig, UsageRecorder};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Host id of the single in-process agent.
pub const LOCAL_HOST_ID: &str = "h-local";

/// Region of the demo instance and of commands that name none.
pub const DEFAULT_REGION: &str = "us-east-1";

const DEFAULT_DATA_LISTEN: &str = "127.0.0.1:1338";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9773";
const DEFAULT_DATA_DIR: &str = "imdsd-data";
const STORE_FILE: &str = "imdsd.redb";

const DEFAULT_CONTROL_LISTEN: &str = "127.0.0.1:8773";
/// Token keys live a day as the sealing key, then six more hours (the
/// longest token TTL) as a previous key.
const DEFAULT_TOKEN_KEY_ROTATION_SECS: u64 = 86_400;

/// Settings after merging flags over the config file over defaults.
struct Settings {
    data_dir: PathBuf,
    data_listen: Vec<SocketAddr>,
    admin_listen: SocketAddr,
    control_listen: SocketAddr,
    control: ControlConfig,
    role_policies: HashMap<String, Policy>,
    limits: Limits,
    conn_limits: ConnLimits,
    token_key_rotation: Duration,
    credentials: CredentialsConfig,
}

fn settings_from(args: &ServeArgs) -> anyhow::Result<Settings> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let parse = |s: &str| s.parse::<SocketAddr>().context("built-in default address");
    let data_listen = if !args.data_listen.is_empty() {
        args.data_listen.clone()
    } else {
        match config.data_plane.listen {
            Some(l) if !l.is_empty() => l,
            _ => vec![parse(DEFAULT_DATA_LISTEN)?],
        }
    };
    let mut conn_limits = ConnLimits::default();
    if let Some(secs) = config.data_plane.header_read_timeout_secs {
        conn_limits.header_read_timeout = Duration::from_secs(secs);
    }
    let limits = config.limits.apply(Limits::default());
    let credentials = config.credentials;
    let mut control = ControlConfig { limits: config.control.limits(), ..ControlConfig::default() };
    if let Some(region) = config.control.region {
        control.region = region;
    }
    if let Some(account) = config.control.account_id {
        control.account_id = account;
    }
    if let Some(subnet) = config.control.subnet {
        control.subnet_v4 = subnet;
    }
    control.subnet_v6 = config.control.ipv6_subnet;
    let mut role_policies = HashMap::new();
    for (role, path) in &config.control.role_policies {
        role_policies.insert(role.clone(), load_policy(path)?);
    }
    for c in config.control.credentials {
        let policy = c.policy.as_deref().map(load_policy).transpose()?;
        control.credentials.push(StaticCredential {
            principal_arn: c
                .principal_arn
                .unwrap_or_else(|| format!("arn:aws:iam::{}:user/{}", control.account_id, c.access_key_id)),
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            policy,
        });
    }
    Ok(Settings {
        role_policies,
        control_listen: match args.control_listen.or(config.control.listen) {
            Some(a) => a,
            None => parse(DEFAULT_CONTROL_LISTEN)?,
        },
        control,
        data_dir: args
            .data_dir
            .clone()
            .or(config.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        data_listen,
        admin_listen: match args.admin_listen.or(config.admin.listen) {
            Some(a) => a,
            None => parse(DEFAULT_ADMIN_LISTEN)?,
        },
        limits,
        conn_limits,
        token_key_rotation: Duration::from_secs(
            config.tokens.rotate_every_secs.unwrap_or(DEFAULT_TOKEN_KEY_ROTATION_SECS),
        ),
        credentials,
    })
}

fn load_policy(path: &std::path::Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    Policy::parse(&text).with_context(|| format!("invalid policy file {}", path.display()))
}

/// What the demo role may do on the control API: read.
const DEMO_ROLE_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ec2:Describe*","ec2:GetInstanceMetadataDefaults"],"Resource":"*"}]}"#;

/// Which parts a process runs.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `imdsd serve`: everything, on the embedded store.
    All,
    /// `imdsd control --store etcd://…`: the control plane and admin API.
    Control {
        /// The etcd store URL.
        store_url: String,
    },
    /// `imdsd agent --host-id … --store etcd://…`: one host's data plane.
    Agent {
        /// The etcd store URL.
        store_url: String,
        /// This host.
        host_id: String,
    },
}

impl Mode {
    fn host_id(&self) -> &str {
        match self {
            Mode::Agent { host_id, .. } => host_id,
            _ => LOCAL_HOST_ID,
        }
    }
    fn runs_control(&self) -> bool {
        !matches!(self, Mode::Agent { .. })
    }
    fn runs_data(&self) -> bool {
        !matches!(self, Mode::Control { .. })
    }
}

/// How long an agent's liveness lease lives without keep-alive.
const HOST_LEASE_TTL_SECS: i64 = 10;

/// Runs `imdsd serve` until SIGTERM or Ctrl-C.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    run_mode(Mode::All, args).await
}

/// Runs a process of `mode` until SIGTERM or Ctrl-C.
pub async fn run_mode(mode: Mode, args: ServeArgs) -> anyhow::Result<()> {
    let mut signals = Signals::install()?;
    let settings = settings_from(&args)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut lease = None;
    let store: Arc<dyn Store> = match &mode {
        Mode::All => {
            std::fs::create_dir_all(&settings.data_dir)
                .with_context(|| format!("cannot create data directory {}", settings.data_dir.display()))?;
            let store_path = settings.data_dir.join(STORE_FILE);
            Arc::new(
                RedbStore::open(&store_path)
                    .with_context(|| format!("cannot open store {}", store_path.display()))?,
            )
        }
        Mode::Control { store_url } | Mode::Agent { store_url, .. } => {
            let etcd = EtcdStore::connect_url(store_url, EtcdOptions::default())
                .await
                .with_context(|| format!("cannot connect to the store {store_url}"))?;
            if let Mode::Agent { host_id, .. } = &mode {
                // The lease marks this host alive; its key vanishes when the
                // agent stops renewing it.
                let l =
                    HostLease::grant(&etcd, HOST_LEASE_TTL_SECS).await.context("cannot get a host lease")?;
                let marker = serde_json::json!({ "host_id": host_id, "started_at": clock.now_secs() });
                l.put(&imds_store::records::host_key(host_id), marker.to_string())
                    .await
                    .context("cannot register this host")?;
                lease = Some(l);
            }
            Arc::new(etcd)
        }
    };

    let mut demo_hint = None;
    // Demo additions survive config reloads.
    let mut demo_credential = None;
    if args.demo {
        if demo::ensure_demo(store.as_ref(), clock.now_secs()).await? {
            tracing::info!(instance_id = demo::DEMO_INSTANCE_ID, "created the demo instance");
        }
        let key = demo::demo_key(store.as_ref()).await?;
        demo_hint = Some(demo::write_profile(&settings.data_dir, &key)?);
        demo_credential = Some(StaticCredential {
            principal_arn: format!("arn:aws:iam::{}:user/imdsd-demo", settings.control.account_id),
            access_key_id: key.access_key_id,
            secret_access_key: key.secret_access_key,
            policy: None,
        });
    }
    let control_rules =
        |settings: &Settings| -> anyhow::Result<(Vec<StaticCredential>, HashMap<String, Policy>)> {
            let mut statics = settings.control.credentials.clone();
            statics.extend(demo_credential.clone());
            let mut role_policies = settings.role_policies.clone();
            if args.demo && !role_policies.contains_key("demo-role") {
                role_policies.insert("demo-role".to_owned(), Policy::parse(DEMO_ROLE_POLICY)?);
            }
            Ok((statics, role_policies))
        };
    let host_id = mode.host_id().to_owned();
    let keys = imds_agent::token_keys::load_or_create(store.as_ref(), &host_id, clock.now_millis()).await?;
    let metrics = DataPlaneMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let agent_metrics = imds_agent::metrics::AgentMetrics::default();
    agent_metrics.register(&mut registry);
    let control_metrics = imds_control::ControlMetrics::default();
    control_metrics.register(&mut registry);
    // The data plane reports IMDSv1 use to the recorder, which needs to know
    // which instances are served (to report quiet minutes as 0): a cycle
    // broken by a late-bound handle.
    let served: Arc<std::sync::OnceLock<std::sync::Weak<DataPlane>>> = Arc::default();
    let served_view = Arc::clone(&served);
    let usage = UsageRecorder::with_served(
        Arc::clone(&store),
        Arc::clone(&clock),
        UsageConfig::default(),
        Arc::new(move || {
            served_view
                .get()
                .and_then(std::sync::Weak::upgrade)
                .map(|dp| dp.instance_ids())
                .unwrap_or_default()
        }),
    );
    let dp = DataPlane::new(
        keys,
        Arc::clone(&clock),
        DataPlaneOptions {
            metrics,
            limits: settings.limits,
            usage: Arc::clone(&usage) as Arc<dyn imds_dataplane::usage::UsageSink>,
        },
    );
    let _ = served.set(Arc::downgrade(&dp));

    // Bind everything before serving, so a busy port fails the start.
    let data_listeners = if mode.runs_data() {
        settings.data_listen.iter().map(|a| bind_listener(*a)).collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let admin_listener = bind_listener(settings.admin_listen)?;
    let control_listener = mode.runs_control().then(|| bind_listener(settings.control_listen)).transpose()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let admin_state = Arc::new(AdminState { registry, ready: AtomicBool::new(false) });

    // A control-only process serves no instance: no agent (and so no
    // credential manager minting for a host that is not one).
    let agent = if mode.runs_data() {
        let mut agent = Agent::new(
            Arc::clone(&store),
            Arc::clone(&dp),
            Arc::clone(&clock),
            AgentConfig {
                host_id: host_id.clone(),
                placement: match &mode {
                    Mode::Agent { host_id, .. } => Placement::Host(host_id.clone()),
                    _ => Placement::All,
                },
                credentials: settings.credentials.clone(),
                token_key_rotation: settings.token_key_rotation,
                metrics: agent_metrics,
            },
        );
        agent.sync().await.context("initial sync with the store failed")?;
        Some(agent)
    } else {
        None
    };
    // The data plane now serves what the store holds.
    admin_state.ready.store(true, Ordering::Release);

    let mut tasks = tokio::task::JoinSet::new();
    for listener in data_listeners {
        let addr = listener.local_addr()?;
        tasks.spawn(serve_data(Arc::clone(&dp), listener, settings.conn_limits, stop_rx.clone()));
        println!("listening data http://{addr}");
    }
    let (statics, role_policies) = control_rules(&settings)?;
    // Minted credentials are checked with the fleet's minting key (created
    // here if this process is the first to need it).
    let minted = MintedVerifier::load(Arc::clone(&store)).await.context("cannot load the minting key")?;
    let callers = Arc::new(Callers::new(minted, Arc::clone(&clock), &statics, role_policies)?);
    // Kept to apply reloaded control-plane limits.
    let mut control_limits = None;
    if let Some(control_listener) = control_listener {
        let control_addr = control_listener.local_addr()?;
        // Keys are served by `callers` (reloadable), not by the static config.
        // A fleet's control plane places launches on live hosts.
        let host_assignment = if matches!(mode, Mode::Control { .. }) {
            HostAssignment::LiveHosts
        } else {
            HostAssignment::None
        };
        let control_config =
            ControlConfig { credentials: Vec::new(), host_assignment, ..settings.control.clone() };
        let control = ControlPlane::new(
            Arc::clone(&store),
            control_config,
            Arc::clone(&callers) as Arc<dyn imds_control::CredentialSource>,
            Arc::clone(&clock),
        )
        .with_metrics(control_metrics);
        let limits = control.limits();
        control_limits = Some(limits.clone());
        // Minted session tokens are verified (one store read) before the
        // control plane looks the caller up.
        let router = control.router().layer(axum::middleware::from_fn_with_state(
            Arc::clone(&callers),
            crate::callers::resolve_minted,
        ));
        tasks.spawn(imds_control::listener::serve(router, control_listener, limits, stop_rx.clone()));
        println!("listening control http://{control_addr}");
        if let Some(profile) = &demo_hint {
            println!(
                "try: AWS_SHARED_CREDENTIALS_FILE={} aws --profile {} --region {} --endpoint-url http://{control_addr} ec2 describe-instances",
                profile.display(),
                demo::DEMO_PROFILE,
                settings.control.region,
            );
        }
    }
    let admin_addr = admin_listener.local_addr()?;
    let api_state = Arc::new(ApiState {
        store: Arc::clone(&store),
        clock: Arc::clone(&clock),
        default_region: DEFAULT_REGION.to_owned(),
        host_id: host_id.clone(),
    });
    tasks.spawn(serve_router(
        admin::router(Arc::clone(&admin_state), api_state),
        admin_listener,
        stop_rx.clone(),
    ));
    println!("listening admin http://{admin_addr}");
    let agent_task = agent.map(|agent| tokio::spawn(agent.run(stop_rx.clone())));
    // Only a process that serves instances records IMDSv1 use; a control
    // process would otherwise repeat the agents' flushes and retention sweeps.
    let usage_task = mode.runs_data().then(|| tokio::spawn(Arc::clone(&usage).run(stop_rx.clone())));
    tracing::info!(mode = ?mode, "imdsd is serving");

    loop {
        match signals.next().await {
            Signal::Stop => break,
            Signal::Reload => match settings_from(&args) {
                Ok(new) => {
                    dp.set_limits(new.limits);
                    if let Some(handle) = &control_limits {
                        handle.set(new.control.limits);
                    }
                    match control_rules(&new) {
                        Ok((statics, role_policies)) => callers.reload(&statics, role_policies),
                        Err(e) => {
                            tracing::error!(error = %e, "reload: keeping the running control-plane keys")
                        }
                    }
                    tracing::info!(
                        "configuration reloaded (limits, control-plane keys and role policies, control-plane limits)"
                    );
                }
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "configuration reload failed; the running configuration stays in force"
                ),
            },
        }
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    if let Some(task) = agent_task {
        match task.await {
            Ok(Err(e)) => tracing::error!(error = %e, "agent stopped with an error"),
            Err(e) => tracing::error!(error = %e, "agent task failed"),
            Ok(Ok(())) => {}
        }
    }
    // The recorder flushes what it counted before it returns.
    if let Some(task) = usage_task {
        let _ = task.await;
    }
    if let Some(lease) = lease {
        // Leaving on purpose: the host is gone at once, not after the TTL.
        let _ = lease.revoke().await;
    }
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

/// Serves an axum `router` on `listener` until `shutdown` turns true, then
/// lets requests in flight finish.
async fn serve_router(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let stop = async move { imds_dataplane::server::stopped(&mut shutdown).await };
    if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop).await {
        tracing::error!(error = %e, "HTTP endpoint failed");
    }
}

/// What a signal asks for.
enum Signal {
    /// SIGTERM or Ctrl-C: shut down gracefully.
    Stop,
    /// SIGHUP: reload the configuration file.
    Reload,
}

/// The signals a running process obeys, registered before anything is
/// announced on stdout: a supervisor that sends SIGTERM as soon as it sees
/// "listening …" gets a graceful stop, not the default kill.
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Signal::Stop,
            _ = self.term.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}
