//! Writes many instance records into an imdsd redb store, through
//! `imds_store` (the same records `RunInstances` would write), in a few large
//! transactions. Run it before `imdsd serve --data-dir DIR` opens the file.
//!
//! ```text
//! load-instances --db DIR/imdsd.redb --count 100000 [--batch 20000] [--no-role]
//!                [--base 10.0.0.1] [--extra i-00000000000000002=127.0.0.2 ...]
//! ```
//!
//! Instance `n` (0-based) gets the id `i-1000000000000000` + n (17 hex
//! digits) and the private address 10.0.0.0 + n + 1 (10.0.0.1,
//! 10.0.0.2, …, so up to 16M instances), no IPv6, no user data; everything
//! else comes from `imds_core::sample::sample_instance` (role `demo-role`
//! unless `--no-role`). `--base IPV4` moves the first address (e.g.
//! `127.1.0.1`, so that a client on the same machine can call every
//! instance's data plane from its own loopback address). `--extra ID=IPV4` adds an instance at that address
//! (the abuse benchmark's 127.0.0.2 / 127.0.0.3). Prints one JSON line:
//! `{"written": N, "seconds": S, "bytes_per_record": B}`.

use imds_core::InstanceId;
use imds_core::sample::sample_instance;
use imds_store::{Op, RedbStore, Store, records};
use std::net::Ipv4Addr;
use std::time::Instant;

const FIRST_ID: u64 = 0x1000_0000_0000_0000;

struct Args {
    db: String,
    count: u64,
    batch: usize,
    role: bool,
    extra: Vec<(String, Ipv4Addr)>,
    base: Ipv4Addr,
}

fn usage() -> ! {
    eprintln!(
        "usage: load-instances --db FILE --count N [--batch N] [--no-role] [--base IPV4] [--extra ID=IPV4]..."
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        db: String::new(),
        count: 0,
        batch: 20_000,
        role: true,
        extra: Vec::new(),
        base: Ipv4Addr::new(10, 0, 0, 1),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--db" => args.db = value(),
            "--count" => args.count = value().parse().unwrap_or_else(|_| usage()),
            "--batch" => args.batch = value().parse().unwrap_or_else(|_| usage()),
            "--no-role" => args.role = false,
            "--base" => args.base = value().parse().unwrap_or_else(|_| usage()),
            "--extra" => {
                let v = value();
                let (id, ip) = v.split_once('=').unwrap_or_else(|| usage());
                args.extra.push((id.to_owned(), ip.parse().unwrap_or_else(|_| usage())));
            }
            _ => usage(),
        }
    }
    if args.db.is_empty() || args.batch == 0 {
        usage()
    }
    args
}

fn record_json(id: &str, ip: Ipv4Addr, role: bool) -> (String, Vec<u8>) {
    let id = InstanceId::parse(id).unwrap_or_else(|_| {
        eprintln!("load-instances: malformed instance id {id}");
        std::process::exit(2)
    });
    let mut record = sample_instance(id, ip, None);
    record.user_data = None;
    if !role {
        record.iam_instance_profile = None;
    }
    let key = records::instance_key(&record.instance_id);
    let value = serde_json::to_vec(&record).unwrap_or_else(|e| {
        eprintln!("load-instances: cannot encode a record: {e}");
        std::process::exit(1)
    });
    (key, value)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let store = RedbStore::open(&args.db).unwrap_or_else(|e| {
        eprintln!("load-instances: cannot open {}: {e}", args.db);
        std::process::exit(1)
    });
    let started = Instant::now();
    let mut ops = Vec::with_capacity(args.batch);
    let mut written = 0u64;
    let mut bytes = 0usize;
    let base = u32::from(args.base);
    let numbered = (0..args.count).map(|n| {
        let offset = u32::try_from(n).unwrap_or(u32::MAX);
        (format!("i-{:017x}", FIRST_ID + n), Ipv4Addr::from(base.saturating_add(offset)))
    });
    let all = numbered.chain(args.extra.iter().cloned());
    for (id, ip) in all {
        let (key, value) = record_json(&id, ip, args.role);
        bytes += value.len();
        ops.push(Op::put(key, value));
        if ops.len() == args.batch {
            written += commit(&store, std::mem::take(&mut ops)).await;
        }
    }
    if !ops.is_empty() {
        written += commit(&store, ops).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let per = if written == 0 { 0 } else { bytes / usize::try_from(written).unwrap_or(1) };
    println!("{{\"written\": {written}, \"seconds\": {seconds:.3}, \"bytes_per_record\": {per}}}");
}

async fn commit(store: &RedbStore, ops: Vec<Op>) -> u64 {
    let n = ops.len() as u64;
    match store.txn(Vec::new(), ops).await {
        Ok(Some(_)) => n,
        Ok(None) => {
            eprintln!("load-instances: transaction without conditions was refused");
            std::process::exit(1)
        }
        Err(e) => {
            eprintln!("load-instances: write failed: {e}");
            std::process::exit(1)
        }
    }
}
