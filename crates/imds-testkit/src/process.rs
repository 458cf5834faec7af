//! A real `imdsd` child process.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start `imdsd serve`.
#[derive(Debug, Clone)]
pub struct ImdsdBuilder {
    binary: PathBuf,
    data_dir: Option<PathBuf>,
    data_listen: Vec<String>,
    demo: bool,
    extra: Vec<String>,
    config: Option<String>,
}

impl ImdsdBuilder {
    /// `binary` is the `imdsd` executable (`env!("CARGO_BIN_EXE_imdsd")`).
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            data_dir: None,
            data_listen: Vec::new(),
            demo: false,
            extra: Vec::new(),
            config: None,
        }
    }

    /// Adds `--demo`.
    pub fn demo(mut self) -> Self {
        self.demo = true;
        self
    }

    /// Uses this data directory (default: a fresh temporary one).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Adds a `--data-listen` address (default: `127.0.0.1:0` and `[::1]:0`).
    pub fn data_listen(mut self, addr: &str) -> Self {
        self.data_listen.push(addr.to_owned());
        self
    }

    /// Writes this TOML to a config file and passes `--config`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// Any other argument.
    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.to_owned());
        self
    }

    /// Starts the process and waits until every listener is ready.
    pub fn start(self) -> anyhow::Result<ImdsdProcess> {
        let tmp = tempfile::tempdir()?;
        let data_dir = self.data_dir.clone().unwrap_or_else(|| tmp.path().join("data"));
        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--admin-listen")
            .arg("127.0.0.1:0")
            .arg("--control-listen")
            .arg("127.0.0.1:0");
        let listens = if self.data_listen.is_empty() {
            vec!["127.0.0.1:0".to_owned(), "[::1]:0".to_owned()]
        } else {
            self.data_listen.clone()
        };
        for l in &listens {
            cmd.arg("--data-listen").arg(l);
        }
        if self.demo {
            cmd.arg("--demo");
        }
        if let Some(toml) = &self.config {
            let path = tmp.path().join("imdsd.toml");
            std::fs::write(&path, toml)?;
            cmd.arg("--config").arg(path);
        }
        cmd.args(&self.extra);
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::null());
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", self.binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut reader = BufReader::new(stdout);
        let Listeners { data, admin, control } =
            read_listeners(&mut child, &mut reader, listens.len(), true)?;
        let control = control.context("no control listener")?;
        Ok(ImdsdProcess { child, _stdout: reader, data, admin, control, data_dir, _tmp: tmp })
    }
}

/// The addresses a starting `imdsd` printed (`listening data|control|admin
/// http://…` lines on stdout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    /// Data-plane listeners, in the order printed.
    pub data: Vec<SocketAddr>,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The control-plane listener, if the process runs one.
    pub control: Option<SocketAddr>,
}

/// Reads `child`'s stdout until it has printed `data` data listeners, its
/// admin listener and (if `control`) its control listener; kills it and
/// fails if that takes more than 30 s or it exits first.
pub fn read_listeners(
    child: &mut Child,
    reader: &mut BufReader<ChildStdout>,
    data: usize,
    control: bool,
) -> anyhow::Result<Listeners> {
    let mut found = Vec::new();
    let mut admin = None;
    let mut control_addr = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while found.len() < data || admin.is_none() || (control && control_addr.is_none()) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("imdsd did not report its listeners in time");
        }
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            let status = child.wait()?;
            bail!("imdsd exited before it was ready: {status}");
        }
        let mut words = line.split_whitespace();
        if let (Some("listening"), Some(kind), Some(url)) = (words.next(), words.next(), words.next()) {
            let addr: SocketAddr = url.trim_start_matches("http://").parse()?;
            match kind {
                "data" => found.push(addr),
                "admin" => admin = Some(addr),
                "control" => control_addr = Some(addr),
                _ => {}
            }
        }
    }
    Ok(Listeners { data: found, admin: admin.context("no admin listener")?, control: control_addr })
}

/// A running `imdsd serve`; killed when dropped.
#[derive(Debug)]
pub struct ImdsdProcess {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    /// Data-plane listeners, in the order given.
    pub data: Vec<SocketAddr>,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Control-plane listener (EC2 / Lightsail APIs).
    pub control: SocketAddr,
    data_dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl ImdsdProcess {
    /// The IPv4 data-plane address.
    pub fn data_v4(&self) -> SocketAddr {
        self.data.iter().copied().find(SocketAddr::is_ipv4).unwrap_or(self.data[0])
    }

    /// The IPv6 data-plane address, if one was asked for.
    pub fn data_v6(&self) -> Option<SocketAddr> {
        self.data.iter().copied().find(SocketAddr::is_ipv6)
    }

    /// `http://127.0.0.1:PORT`
    pub fn data_url(&self) -> String {
        format!("http://{}", self.data_v4())
    }

    /// `http://127.0.0.1:PORT` of the control plane.
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control)
    }

    /// The AWS shared-credentials file `--demo` wrote (profile `imdsd-demo`).
    pub fn demo_credentials_file(&self) -> PathBuf {
        self.data_dir.join("aws-credentials")
    }

    /// The data directory in use.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL and waits.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> anyhow::Result<Option<i32>> {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        Ok(self.child.wait()?.code())
    }
}

impl Drop for ImdsdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
