//! `imdsd`: an EC2-compatible Instance Metadata Service.
//!
//! This binary owns the command line, the configuration file, wiring the
//! crates together, signals and graceful shutdown; the behaviour itself lives
//! in the library crates.

mod admin;
mod admin_api;
mod callers;
mod client;
mod commands;
mod config;
mod console;
mod demo;
mod serve;

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: a fleet's start-up allocates and
/// frees the records and snapshots of every instance from many threads, and
/// glibc's per-thread arenas kept ~2.5 KiB per instance of freed memory
/// resident (measured with `malloc_trim`, bench/README §2); jemalloc
/// returns such pages to the kernel after a few seconds.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// An EC2-compatible Instance Metadata Service.
///
/// imdsd answers the HTTP requests that software inside a virtual machine
/// sends to http://169.254.169.254/latest/... (IMDSv1 and IMDSv2 session
/// tokens, instance identity, user data, tags, IAM role credentials) exactly
/// as EC2 does, so the AWS SDKs, the AWS CLI and cloud-init work unchanged.
///
/// Quick start on a laptop:
///
///   imdsd serve --demo
///
///   curl http://127.0.0.1:1338/latest/meta-data/instance-id
#[derive(Debug, Parser)]
#[command(name = "imdsd", version, propagate_version = true)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the metadata service, control API and admin endpoint in one
    /// process on the embedded store (a redb file under --data-dir).
    ///
    /// Instances are matched to callers by source address: a request from an
    /// instance's private IPv4/IPv6 address, or from inside one of its
    /// delegated prefixes, is answered as that instance; any other caller's
    /// connection is closed. With --demo a demo instance owning 127.0.0.1 and
    /// ::1 is created once, so curl and the AWS SDKs on this machine work at
    /// once.
    ///
    /// On a host that serves real VMs, listen on the link-local addresses:
    ///
    ///   imdsd serve --data-listen 169.254.169.254:80 --data-listen '[fd00:ec2::254]:80'
    ///
    /// Every line of standard output names one listener once it is ready,
    /// e.g. "listening data http://127.0.0.1:1338". Logs go to standard
    /// error; IMDSD_LOG (e.g. IMDSD_LOG=debug) sets their level. SIGTERM or
    /// Ctrl-C stops accepting, finishes requests in flight and closes the
    /// store cleanly.
    Serve(ServeArgs),

    /// Run the control plane of a fleet on etcd: the EC2 and Lightsail APIs
    /// and the admin API, stateless (run several behind a load balancer).
    ///
    /// Desired state goes to etcd; the agent of the host that serves an
    /// instance (its Placement.HostId) applies it and reports back, so
    /// DescribeInstances shows "applied" only when that host really serves
    /// the change.
    ///
    ///   imdsd control --store etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379 --config imdsd.toml
    Control(FleetControlArgs),

    /// Run the data plane of one hypervisor host of a fleet on etcd: serves
    /// the instances placed on this host (Placement.HostId) at the link-local
    /// addresses and marks the host alive with a lease.
    ///
    ///   imdsd agent --host-id h-0123456789abcdef0 --store etcd://10.0.0.1:2379 --data-listen 169.254.169.254:80
    Agent(FleetAgentArgs),

    /// Signed instance identity: print the certificate that verifies the
    /// documents, or rotate a region's signing keys (talks to a running
    /// imdsd through its admin endpoint).
    #[command(subcommand)]
    Identity(commands::IdentityCommand),

    /// Spot interruptions, rebalance recommendations, scheduled maintenance
    /// and Auto Scaling lifecycle states of instances (talks to a running
    /// imdsd through its admin endpoint).
    #[command(subcommand)]
    Events(commands::EventsCommand),

    /// Reports of a running imdsd: who still calls IMDSv1.
    #[command(subcommand)]
    Report(commands::ReportCommand),

    /// IMDSv2 session token keys of a running imdsd (rotate now).
    #[command(subcommand)]
    Tokens(commands::TokensCommand),
}

/// Options of `imdsd serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address the metadata service listens on; repeat for several.
    /// [default: 127.0.0.1:1338]
    #[arg(long = "data-listen", value_name = "ADDR")]
    pub data_listen: Vec<SocketAddr>,

    /// Address of the EC2/Lightsail control API. [default: 127.0.0.1:8773]
    #[arg(long, value_name = "ADDR")]
    pub control_listen: Option<SocketAddr>,

    /// Address of the admin endpoint (/healthz, /metrics). [default: 127.0.0.1:9773]
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// TOML configuration file; flags given on the command line win over it.
    /// Unknown keys are rejected.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory of the embedded store (created if missing). [default: ./imdsd-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Create a demo instance (once per data directory) that owns 127.0.0.1
    /// and ::1, with a role, user data and tags.
    #[arg(long)]
    pub demo: bool,
}

/// Options of `imdsd control`.
#[derive(Debug, clap::Args)]
pub struct FleetControlArgs {
    /// The etcd cluster: etcd://HOST:PORT[,HOST:PORT…][/namespace/].
    #[arg(long, value_name = "URL")]
    pub store: String,
    /// Address of the EC2/Lightsail control API. [default: 127.0.0.1:8773]
    #[arg(long, value_name = "ADDR")]
    pub control_listen: Option<SocketAddr>,
    /// Address of the admin endpoint (/healthz, /metrics, /v1/…). [default: 127.0.0.1:9773]
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// TOML configuration file (same format as for `serve`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Options of `imdsd agent`.
#[derive(Debug, clap::Args)]
pub struct FleetAgentArgs {
    /// This host's id, as given in RunInstances Placement.HostId (h-…).
    #[arg(long, value_name = "ID")]
    pub host_id: String,
    /// The etcd cluster: etcd://HOST:PORT[,HOST:PORT…][/namespace/].
    #[arg(long, value_name = "URL")]
    pub store: String,
    /// Address the metadata service listens on; repeat for several.
    /// [default: 127.0.0.1:1338]
    #[arg(long = "data-listen", value_name = "ADDR")]
    pub data_listen: Vec<SocketAddr>,
    /// Address of the admin endpoint (/healthz, /metrics). [default: 127.0.0.1:9773]
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// TOML configuration file (same format as for `serve`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMDSD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imdsd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Control(a) => runtime.block_on(serve::run_mode(
            serve::Mode::Control { store_url: a.store },
            ServeArgs {
                data_listen: Vec::new(),
                control_listen: a.control_listen,
                admin_listen: a.admin_listen,
                config: a.config,
                data_dir: None,
                demo: false,
            },
        )),
        Command::Agent(a) => runtime.block_on(serve::run_mode(
            serve::Mode::Agent { store_url: a.store, host_id: a.host_id },
            ServeArgs {
                data_listen: a.data_listen,
                control_listen: None,
                admin_listen: a.admin_listen,
                config: a.config,
                data_dir: None,
                demo: false,
            },
        )),
        Command::Identity(cmd) => runtime.block_on(commands::identity(cmd)),
        Command::Events(cmd) => runtime.block_on(commands::events(cmd)),
        Command::Tokens(cmd) => runtime.block_on(commands::tokens(cmd)),
        Command::Report(cmd) => runtime.block_on(commands::report(cmd)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imdsd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
