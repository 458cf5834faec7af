//! The fleet processes as real children: `imdsd control --store etcd://…`
//! and `imdsd agent --host-id … --store etcd://…`, on ephemeral ports,
//! with their logs kept in a file for failure messages instead of the test
//! output.

use crate::process::{Listeners, read_listeners};
use anyhow::{Context, bail};
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Which fleet process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `imdsd control`: control plane and admin API.
    Control,
    /// `imdsd agent --host-id <id>`: one host's data plane.
    Agent(String),
}

/// How to start one fleet process.
#[derive(Debug, Clone)]
pub struct FleetBuilder {
    binary: PathBuf,
    role: Role,
    store_url: String,
    data_listen: Vec<String>,
    config: Option<String>,
    log_filter: String,
}

impl FleetBuilder {
    /// `imdsd control --store <store_url>`; `binary` is
    /// `env!("CARGO_BIN_EXE_imdsd")`.
    pub fn control(binary: impl Into<PathBuf>, store_url: &str) -> Self {
        Self::new(binary.into(), Role::Control, store_url)
    }

    /// `imdsd agent --host-id <host_id> --store <store_url>`.
    pub fn agent(binary: impl Into<PathBuf>, host_id: &str, store_url: &str) -> Self {
        Self::new(binary.into(), Role::Agent(host_id.to_owned()), store_url)
    }

    fn new(binary: PathBuf, role: Role, store_url: &str) -> Self {
        Self {
            binary,
            role,
            store_url: store_url.to_owned(),
            data_listen: Vec::new(),
            config: None,
            log_filter: "info".to_owned(),
        }
    }

    /// Adds a `--data-listen` address for an agent (default `127.0.0.1:0`).
    pub fn data_listen(mut self, addr: &str) -> Self {
        self.data_listen.push(addr.to_owned());
        self
    }

    /// Writes this TOML to a config file and passes `--config`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// The `IMDSD_LOG` filter of the process (default `info`).
    pub fn log(mut self, filter: &str) -> Self {
        self.log_filter = filter.to_owned();
        self
    }

    /// Starts the process and waits until it printed its listeners.
    pub fn start(self) -> anyhow::Result<FleetProcess> {
        let tmp = tempfile::tempdir()?;
        let log = tmp.path().join("imdsd.log");
        let mut cmd = Command::new(&self.binary);
        let data_listen = match &self.role {
            Role::Control => {
                cmd.args(["control", "--control-listen", "127.0.0.1:0"]);
                Vec::new()
            }
            Role::Agent(host) => {
                cmd.args(["agent", "--host-id", host]);
                let listens = if self.data_listen.is_empty() {
                    vec!["127.0.0.1:0".to_owned()]
                } else {
                    self.data_listen.clone()
                };
                for l in &listens {
                    cmd.arg("--data-listen").arg(l);
                }
                listens
            }
        };
        cmd.arg("--store").arg(&self.store_url).args(["--admin-listen", "127.0.0.1:0"]);
        if let Some(toml) = &self.config {
            let path = tmp.path().join("imdsd.toml");
            std::fs::write(&path, toml)?;
            cmd.arg("--config").arg(path);
        }
        let log_file = std::fs::File::create(&log)?;
        cmd.env("IMDSD_LOG", &self.log_filter).stdout(Stdio::piped()).stderr(log_file).stdin(Stdio::null());
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", self.binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut reader = BufReader::new(stdout);
        let wants_control = self.role == Role::Control;
        let listeners = match read_listeners(&mut child, &mut reader, data_listen.len(), wants_control) {
            Ok(l) => l,
            Err(e) => {
                let tail = tail(&std::fs::read_to_string(&log).unwrap_or_default(), 30);
                bail!("{e:#}; its log ends with:\n{tail}");
            }
        };
        Ok(FleetProcess {
            child: Some(child),
            _stdout: Some(reader),
            listeners,
            builder: self,
            log,
            _tmp: tmp,
        })
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A running fleet process; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct FleetProcess {
    child: Option<Child>,
    _stdout: Option<BufReader<ChildStdout>>,
    listeners: Listeners,
    builder: FleetBuilder,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl FleetProcess {
    /// Its role.
    pub fn role(&self) -> &Role {
        &self.builder.role
    }

    /// The first data-plane listener (agents).
    pub fn data(&self) -> Option<SocketAddr> {
        self.listeners.data.first().copied()
    }

    /// The admin listener.
    pub fn admin(&self) -> SocketAddr {
        self.listeners.admin
    }

    /// The control-plane listener (control).
    pub fn control(&self) -> Option<SocketAddr> {
        self.listeners.control
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has been killed (and not restarted).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILLs the process and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self._stdout = None;
    }

    /// Kills the process if it runs, then starts it again with the same
    /// arguments; an agent listens on the same data addresses it had, so
    /// clients keep their target.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let mut builder = self.builder.clone();
        if matches!(builder.role, Role::Agent(_)) {
            builder.data_listen = self.listeners.data.iter().map(ToString::to_string).collect();
        }
        // The address was just released; another process could take it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let fresh = loop {
            match builder.clone().start() {
                Ok(p) => break p,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => return Err(e),
            }
        };
        *self = fresh;
        Ok(())
    }

    /// The last `lines` lines of its log (stderr), for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), lines)
    }
}

impl Drop for FleetProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
