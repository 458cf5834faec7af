//! Real etcd clusters for tests (feature `testing`): one or three members
//! on free loopback ports in a temporary directory, with SIGKILL and
//! restart of single members. Needs the `etcd` binary (Debian package
//! `etcd-server`; another binary can be named with [`EtcdCluster::start_with`]).
//!
//! Every member is killed when the [`EtcdCluster`] is dropped. Member data
//! lives in `/dev/shm` when it exists (fsync is free there), else in the
//! system temp directory. Not for production use.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::time::Instant;

use crate::{EtcdOptions, EtcdStore};
use imds_store::StoreError;

/// The etcd binary used by [`EtcdCluster::start`].
pub const DEFAULT_ETCD: &str = "/usr/bin/etcd";

/// How long a cluster or a restarted member may take to become healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// How often starting a cluster is tried with fresh ports, in case another
/// process took a port between choosing and binding it.
const START_ATTEMPTS: u32 = 3;

/// One etcd member process.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// A running etcd cluster of real processes; see the module docs.
#[derive(Debug)]
pub struct EtcdCluster {
    binary: PathBuf,
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts a cluster of `size` members (1 or 3 are the useful sizes) from
    /// [`DEFAULT_ETCD`] and waits until every member answers and has a leader.
    pub async fn start(size: usize) -> io::Result<Self> {
        Self::start_with(Path::new(DEFAULT_ETCD), size).await
    }

    /// [`EtcdCluster::start`] with another etcd binary.
    pub async fn start_with(binary: &Path, size: usize) -> io::Result<Self> {
        if size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an etcd cluster needs a member"));
        }
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(binary, size).await {
                Ok(cluster) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    async fn try_start(binary: &Path, size: usize) -> io::Result<Self> {
        let base = Path::new("/dev/shm");
        let mut builder = tempfile::Builder::new();
        builder.prefix("imds-etcd-");
        let dir = match builder.tempdir_in(base) {
            Ok(dir) => dir,
            Err(_) => builder.tempdir()?,
        };
        let ports = free_ports(size * 2)?;
        let members = (0..size)
            .map(|i| Member {
                name: format!("n{}", i + 1),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                child: None,
            })
            .collect();
        let mut cluster = Self { binary: binary.to_owned(), dir, members };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        for i in 0..size {
            cluster.wait_healthy(i).await?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, member: usize) -> io::Result<()> {
        let initial_cluster =
            self.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",");
        let token = self
            .dir
            .path()
            .file_name()
            .map_or_else(|| "imds-test".to_owned(), |n| n.to_string_lossy().into_owned());
        let m = &self.members[member];
        let data_dir = self.dir.path().join(&m.name);
        let log = File::options().create(true).append(true).open(self.log_path(member))?;
        let child = Command::new(&self.binary)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &m.client_url()])
            .args(["--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &token])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.members[member].child = Some(child);
        Ok(())
    }

    fn log_path(&self, member: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.members[member].name))
    }

    /// The last lines of a member's log, for failure messages.
    pub fn log_tail(&self, member: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(member)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until `member` answers a status request and knows a leader.
    async fn wait_healthy(&mut self, member: usize) -> io::Result<()> {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            if let Some(child) = self.members[member].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "etcd member {} exited with {status}:\n{}",
                    self.members[member].name,
                    self.log_tail(member, 20)
                )));
            }
            if let Ok((_, leader)) = self.status(member).await
                && leader != 0
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "etcd member {} not healthy within {HEALTHY_WITHIN:?}:\n{}",
                        self.members[member].name,
                        self.log_tail(member, 20)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (this member's ID, the leader's ID as this member sees it).
    async fn status(&self, member: usize) -> io::Result<(u64, u64)> {
        let mut client = self.member_client(member).await?;
        let status = tokio::time::timeout(Duration::from_secs(2), client.status())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "status timed out"))?
            .map_err(io::Error::other)?;
        let id = status.header().map_or(0, |h| h.member_id());
        Ok((id, status.leader()))
    }

    /// A raw etcd-client connected to one member only.
    pub async fn member_client(&self, member: usize) -> io::Result<Client> {
        let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
        Client::connect([self.endpoint(member)], Some(options)).await.map_err(io::Error::other)
    }

    /// A raw etcd-client over every member (for poking at etcd directly).
    pub async fn client(&self) -> io::Result<Client> {
        let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
        Client::connect(self.endpoints(), Some(options)).await.map_err(io::Error::other)
    }

    /// Number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The client endpoint (`127.0.0.1:port`) of one member.
    pub fn endpoint(&self, member: usize) -> String {
        format!("127.0.0.1:{}", self.members[member].client_port)
    }

    /// Every member's client endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// The `etcd://` URL of the whole cluster (no namespace).
    pub fn url(&self) -> String {
        format!("{}{}", crate::URL_SCHEME, self.endpoints().join(","))
    }

    /// Connects an [`EtcdStore`] to every member.
    pub async fn store(&self, options: EtcdOptions) -> Result<EtcdStore, StoreError> {
        EtcdStore::connect(&self.endpoints(), options).await
    }

    /// Whether a member's process is running (not killed).
    pub fn is_running(&self, member: usize) -> bool {
        self.members[member].child.is_some()
    }

    /// The index of the current leader, as the running members see it.
    pub async fn leader(&self) -> io::Result<usize> {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            let mut ids = Vec::new();
            let mut leader = 0;
            for i in 0..self.members.len() {
                if !self.is_running(i) {
                    ids.push(0);
                    continue;
                }
                match self.status(i).await {
                    Ok((id, seen)) => {
                        ids.push(id);
                        if seen != 0 {
                            leader = seen;
                        }
                    }
                    Err(_) => ids.push(0),
                }
            }
            if let Some(index) = ids.iter().position(|&id| id != 0 && id == leader) {
                return Ok(index);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no etcd leader"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs a member and waits for it to exit. Its data stays for
    /// [`EtcdCluster::restart`].
    pub fn kill(&mut self, member: usize) {
        if let Some(mut child) = self.members[member].child.take() {
            // An already exited child cannot be killed; that is fine.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed member again on its data and ports and waits until it
    /// is healthy.
    pub async fn restart(&mut self, member: usize) -> io::Result<()> {
        self.kill(member);
        self.spawn(member)?;
        self.wait_healthy(member).await
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// `count` distinct free loopback ports (bound at once, then released).
fn free_ports(count: usize) -> io::Result<Vec<u16>> {
    let listeners =
        (0..count).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

/// A loopback TCP proxy in front of one etcd endpoint that a test can cut
/// (every connection dropped, new ones closed at once, like a partition)
/// and restore, to break a client's streams at a chosen moment.
#[derive(Debug)]
pub struct TcpProxy {
    addr: std::net::SocketAddr,
    open: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts a proxy to `target` (`host:port`) on a free loopback port.
    pub async fn start(target: &str) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (open, watch) = tokio::sync::watch::channel(true);
        let target = target.to_owned();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watch = watch.clone();
                if !*watch.borrow() {
                    continue; // Cut: close at once.
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        Ok(Self { addr, open, accept })
    }

    /// The endpoint (`127.0.0.1:port`) to connect to instead of the target.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Drops every proxied connection and closes new ones until
    /// [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Proxies new connections again.
    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
