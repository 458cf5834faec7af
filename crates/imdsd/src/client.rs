//! A small HTTP client for the admin API, used by the subcommands that
//! manage a running `imdsd` (`identity`, `events`).

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Default admin endpoint of a local `imdsd serve`.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9773";

/// Sends a request to the admin API and returns the body of a 2xx answer;
/// any other status becomes an error carrying the server's message.
pub async fn call(method: Method, url: &str, json_body: Option<String>) -> anyhow::Result<String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = Request::builder().method(method.clone()).uri(url);
    if json_body.is_some() || method != Method::GET {
        // The admin API refuses changes without it (cross-site protection).
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = builder.body(Full::new(Bytes::from(json_body.unwrap_or_default()))).context("invalid URL")?;
    let resp = client.request(req).await.with_context(|| {
        format!("cannot reach the imdsd admin API at {url} (is `imdsd serve` running? see --admin-url)")
    })?;
    let status = resp.status();
    let body = resp.into_body().collect().await.context("reading the answer")?.to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(text);
        bail!("{method} {url} failed ({status}): {message}");
    }
    Ok(text)
}

/// Parses `90s`, `2m`, `1h`, `7d` or plain seconds.
pub fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| format!("'{s}' is not a duration like 90s, 2m, 1h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use s, m, h or d)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("90"), Ok(90));
        assert_eq!(parse_duration_secs("90s"), Ok(90));
        assert_eq!(parse_duration_secs("2m"), Ok(120));
        assert_eq!(parse_duration_secs("1h"), Ok(3600));
        assert_eq!(parse_duration_secs("7d"), Ok(604_800));
        assert!(parse_duration_secs("7w").is_err());
        assert!(parse_duration_secs("").is_err());
        assert!(parse_duration_secs("-1s").is_err());
        assert!(parse_duration_secs("99999999999999999999d").is_err());
    }
}
