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
mod demo;
mod serve;

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
