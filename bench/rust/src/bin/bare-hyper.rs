//! `bare-hyper --port P`: the reference the issue measures imdsd against
//! besides nginx: a tokio + hyper server with nothing of its own. An accept
//! loop, `TCP_NODELAY`, HTTP/1.1 keep-alive, and constant answers: the demo
//! instance id (19 bytes) to every GET, a 55-byte body plus the TTL header
//! to every PUT. Runs on the same runtime flavour as imdsd (multi-thread,
//! default workers), so `imdsd / bare-hyper` is the cost of what imdsd does
//! per request beyond HTTP itself (source lookup, token, snapshot, metrics).
//! Loopback only.

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;

const INSTANCE_ID: &[u8] = b"i-0123456789abcdef0";
const TOKEN: &[u8] = b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = if req.method() == Method::PUT {
        let mut r = Response::new(Full::new(Bytes::from_static(TOKEN)));
        r.headers_mut().insert(
            "x-aws-ec2-metadata-token-ttl-seconds",
            hyper::header::HeaderValue::from_static("21600"),
        );
        r
    } else {
        Response::new(Full::new(Bytes::from_static(INSTANCE_ID)))
    };
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = match args.iter().position(|a| a == "--port").and_then(|i| args.get(i + 1)) {
        Some(p) => p.parse().map_err(|_| std::io::Error::other("--port takes a number"))?,
        None => return Err(std::io::Error::other("usage: bare-hyper --port PORT")),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on 127.0.0.1:{port}");
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    })
}
