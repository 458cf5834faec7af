//! Subcommands that manage a running `imdsd` through its admin API:
//! `imdsd identity …` and `imdsd events …`.

use crate::client::{self, DEFAULT_ADMIN_URL, parse_duration_secs};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{Value, json};

/// Where the running service's admin API is.
#[derive(Debug, Args)]
pub struct AdminUrl {
    /// Admin endpoint of the running imdsd (its --admin-listen).
    #[arg(long, value_name = "URL", default_value = DEFAULT_ADMIN_URL, global = true)]
    pub admin_url: String,
}

/// `imdsd identity`
#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Print the PEM certificate(s) that verify a region's signed identity
    /// documents (dynamic/instance-identity/pkcs7, rsa2048, signature).
    ///
    /// Save it and verify as AWS's guide shows, e.g. for pkcs7:
    ///
    ///   imdsd identity certificate > cert.pem
    ///
    ///   (echo '-----BEGIN PKCS7-----'; curl -s http://169.254.169.254/latest/dynamic/instance-identity/pkcs7; echo; echo '-----END PKCS7-----') > pkcs7
    ///
    ///   openssl smime -verify -in pkcs7 -inform PEM -certfile cert.pem -noverify
    Certificate {
        /// Region whose certificate to print.
        #[arg(long, default_value = "us-east-1")]
        region: String,
        #[command(flatten)]
        admin: AdminUrl,
    },
    /// Replace a region's signing keys. Documents served from then on verify
    /// only with the new certificate, which this prints.
    Rotate {
        /// Region whose keys to replace.
        #[arg(long, default_value = "us-east-1")]
        region: String,
        #[command(flatten)]
        admin: AdminUrl,
    },
}

/// `imdsd report`
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Who still calls IMDSv1: token-less requests per instance, grouped by
    /// source address, User-Agent and path, with counts and first/last seen;
    /// then the instances that made no IMDSv1 call in the window, the ones
    /// safe to switch to `aws ec2 modify-instance-metadata-options
    /// --http-tokens required`.
    V1Callers {
        /// Only this instance.
        #[arg(long = "instance", value_name = "INSTANCE_ID")]
        instance: Option<String>,
        /// How far back to look (e.g. 1h, 7d).
        #[arg(long, value_parser = parse_duration_secs, default_value = "7d")]
        since: u64,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminUrl,
    },
}

/// Runs `imdsd report …`.
pub async fn report(cmd: ReportCommand) -> anyhow::Result<()> {
    let ReportCommand::V1Callers { instance, since, json, admin } = cmd;
    let mut url =
        format!("{}/v1/reports/v1-callers?since={}", admin.admin_url, now_secs().saturating_sub(since));
    if let Some(id) = instance {
        url.push_str(&format!("&instance_id={id}"));
    }
    let text = client::call(Method::GET, &url, None).await?;
    if json {
        println!("{text}");
        return Ok(());
    }
    let report: Value = serde_json::from_str(&text)?;
    let empty = Vec::new();
    for inst in report["instances"].as_array().unwrap_or(&empty) {
        println!(
            "{}  {} IMDSv1 requests, {} refused",
            inst["instance_id"].as_str().unwrap_or(""),
            inst["no_token_requests"],
            inst["rejected_requests"]
        );
        println!(
            "  {:<40} {:<32} {:<40} {:>8}  {:<20} LAST SEEN",
            "SOURCE", "USER-AGENT", "PATH", "COUNT", "FIRST SEEN"
        );
        for c in inst["callers"].as_array().unwrap_or(&empty) {
            let when = |v: &Value| imds_core::timefmt::iso8601_secs(v.as_u64().unwrap_or(0));
            println!(
                "  {:<40} {:<32} {:<40} {:>8}  {:<20} {}",
                c["source"].as_str().unwrap_or(""),
                c["user_agent"].as_str().unwrap_or(""),
                format!("/{}", c["path"].as_str().unwrap_or("")),
                c["count"],
                when(&c["first_seen"]),
                when(&c["last_seen"])
            );
        }
    }
    let safe: Vec<&str> =
        report["no_imdsv1_calls"].as_array().unwrap_or(&empty).iter().filter_map(Value::as_str).collect();
    println!(
        "\nNo IMDSv1 calls in the window (safe for --http-tokens required): {}",
        if safe.is_empty() { "none".to_owned() } else { safe.join(" ") }
    );
    Ok(())
}

/// `imdsd tokens`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a new key for sealing IMDSv2 session tokens now (it also happens
    /// daily, see [tokens] rotate_every_secs). Tokens sealed before stay
    /// valid until they expire.
    Rotate {
        #[command(flatten)]
        admin: AdminUrl,
    },
}

/// Runs `imdsd tokens …`.
pub async fn tokens(cmd: TokensCommand) -> anyhow::Result<()> {
    match cmd {
        TokensCommand::Rotate { admin } => {
            print!(
                "{}",
                client::call(Method::POST, &format!("{}/v1/tokens/rotate", admin.admin_url), None).await?
            );
        }
    }
    Ok(())
}

/// `imdsd events`
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Schedule an event for an instance; it appears in the instance's
    /// metadata within a second (after --delay, if given).
    Schedule(ScheduleArgs),
    /// Cancel an event: maintenance moves to events/maintenance/history as
    /// "[Canceled]", other kinds disappear.
    Cancel {
        /// The event id printed by `schedule` or `list` (instance-event-…).
        event_id: String,
        #[command(flatten)]
        admin: AdminUrl,
    },
    /// List events with their current phase (scheduled, active, completed,
    /// canceled).
    List {
        /// Only this instance's events.
        #[arg(long)]
        instance_id: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminUrl,
    },
}

/// `imdsd events schedule`
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The instance (i-…).
    #[arg(long)]
    pub instance_id: String,
    /// Show the event only after this long (e.g. 30s, 5m), as the EC2 metadata
    /// mock's users are used to. Default: at once.
    #[arg(long, value_parser = parse_duration_secs, default_value = "0")]
    pub delay: u64,
    #[command(subcommand)]
    pub kind: KindArgs,
    #[command(flatten)]
    pub admin: AdminUrl,
}

/// The kinds of event.
#[derive(Debug, Subcommand)]
pub enum KindArgs {
    /// Spot interruption notice: spot/instance-action (and
    /// spot/termination-time for terminate).
    SpotInterruption {
        /// hibernate, stop or terminate.
        #[arg(long, default_value = "terminate")]
        action: String,
        /// How long after the notice the action happens (EC2 gives 2 minutes).
        #[arg(long = "in", value_parser = parse_duration_secs, default_value = "2m")]
        in_secs: u64,
    },
    /// Rebalance recommendation: events/recommendations/rebalance.
    Rebalance,
    /// Scheduled maintenance: events/maintenance/scheduled, then history.
    Maintenance {
        /// instance-reboot, system-reboot, system-maintenance,
        /// instance-retirement or instance-stop.
        #[arg(long)]
        code: String,
        /// Free text (default: EC2's, e.g. "scheduled reboot").
        #[arg(long)]
        description: Option<String>,
        /// Maintenance window starts this long from now.
        #[arg(long = "starts-in", value_parser = parse_duration_secs, default_value = "1d")]
        starts_in: u64,
        /// Window length; the event is completed (history) after it.
        #[arg(long, value_parser = parse_duration_secs, default_value = "15m")]
        duration: u64,
        /// Rescheduling deadline, this long from now.
        #[arg(long = "deadline-in", value_parser = parse_duration_secs)]
        deadline_in: Option<u64>,
    },
    /// Auto Scaling target lifecycle state: autoscaling/target-lifecycle-state.
    Lifecycle {
        /// e.g. InService, Standby, Terminated, Warmed:Running.
        #[arg(long)]
        state: String,
    },
}

fn now_secs() -> u64 {
    use imds_core::Clock;
    imds_core::SystemClock.now_secs()
}

/// Runs `imdsd identity …`.
pub async fn identity(cmd: IdentityCommand) -> anyhow::Result<()> {
    let text = match cmd {
        IdentityCommand::Certificate { region, admin } => {
            client::call(
                Method::GET,
                &format!("{}/v1/identity/certificate?region={region}", admin.admin_url),
                None,
            )
            .await?
        }
        IdentityCommand::Rotate { region, admin } => {
            client::call(
                Method::POST,
                &format!("{}/v1/identity/rotate?region={region}", admin.admin_url),
                None,
            )
            .await?
        }
    };
    print!("{text}");
    Ok(())
}

/// Runs `imdsd events …`.
pub async fn events(cmd: EventsCommand) -> anyhow::Result<()> {
    match cmd {
        EventsCommand::Schedule(args) => {
            let now = now_secs();
            let kind = match args.kind {
                KindArgs::SpotInterruption { action, in_secs } => {
                    json!({"kind": "spot-interruption", "action": action, "time": now + args.delay + in_secs})
                }
                KindArgs::Rebalance => json!({"kind": "rebalance", "notice_time": now + args.delay}),
                KindArgs::Maintenance { code, description, starts_in, duration, deadline_in } => {
                    let parsed: imds_core::events::MaintenanceCode =
                        code.parse().map_err(|e: imds_core::events::InvalidEvent| anyhow::anyhow!(e))?;
                    json!({
                        "kind": "maintenance",
                        "code": code,
                        "description": description.unwrap_or_else(|| parsed.default_description().to_owned()),
                        "not_before": now + starts_in,
                        "not_after": now + starts_in + duration,
                        "not_before_deadline": deadline_in.map(|d| now + d),
                    })
                }
                KindArgs::Lifecycle { state } => json!({"kind": "target-lifecycle-state", "state": state}),
            };
            let mut body = kind;
            body["instance_id"] = Value::from(args.instance_id);
            body["delay_secs"] = Value::from(args.delay);
            let text = client::call(
                Method::POST,
                &format!("{}/v1/events", args.admin.admin_url),
                Some(body.to_string()),
            )
            .await?;
            let event: Value = serde_json::from_str(&text)?;
            println!("{}", event["event_id"].as_str().unwrap_or("?"));
        }
        EventsCommand::Cancel { event_id, admin } => {
            client::call(Method::DELETE, &format!("{}/v1/events/{event_id}", admin.admin_url), None).await?;
            println!("canceled {event_id}");
        }
        EventsCommand::List { instance_id, json, admin } => {
            let mut url = format!("{}/v1/events", admin.admin_url);
            if let Some(id) = instance_id {
                url.push_str(&format!("?instance_id={id}"));
            }
            let text = client::call(Method::GET, &url, None).await?;
            if json {
                println!("{text}");
            } else {
                let events: Vec<Value> = serde_json::from_str(&text)?;
                println!("{:<34} {:<21} {:<24} PHASE", "EVENT", "INSTANCE", "KIND");
                for e in events {
                    println!(
                        "{:<34} {:<21} {:<24} {}",
                        e["event_id"].as_str().unwrap_or(""),
                        e["instance_id"].as_str().unwrap_or(""),
                        e["kind"].as_str().unwrap_or(""),
                        e["phase"].as_str().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(())
}
