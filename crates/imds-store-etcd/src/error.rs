//! How etcd client failures become [`StoreError`]s: the one place that
//! decides what is retried and what callers are told.
//!
//! Every failed call is first put into one [`Class`]:
//!
//! | what etcd-client returned | class | read (`get`, `list`, watch open) | write (`txn`, lease grant, lease put) |
//! | --- | --- | --- | --- |
//! | `Unavailable` "tcp connect error" / connection refused / DNS error, a transport error while building the channel | [`Class::NotSent`]: the request never reached a server | retried across endpoints, then [`StoreError::Unavailable`] | retried across endpoints, then [`StoreError::Unavailable`] |
//! | "etcdserver: no leader" (refused by the server's interceptor before the handler), "etcdserver: too many requests" | [`Class::NotSent`] | same | same |
//! | our request timeout elapsed, `Unknown` "transport error", "etcdserver: request timed out", "leader changed", any other `Unavailable`, `Cancelled`, `DeadlineExceeded`, `Internal`, `Aborted`, a broken stream | [`Class::Unknown`]: the server may have applied it | retried (a read changes nothing), then [`StoreError::Unavailable`] | **not retried**: [`StoreError::OutcomeUnknown`]; the caller re-reads and decides |
//! | `OutOfRange` (revision compacted) | [`Class::Compacted`] | `list` restarts at a new revision | — |
//! | `InvalidArgument`, `FailedPrecondition`, `NotFound` (e.g. lease not found), `PermissionDenied`, `Unauthenticated`, `ResourceExhausted` (other than too many requests), anything else | [`Class::Refused`]: retrying cannot help | [`StoreError::InvalidRequest`] for argument and not-found errors, else [`StoreError::Backend`] | same |
//!
//! Retries of [`Class::NotSent`] (and of [`Class::Unknown`] for reads) stop
//! at the store's attempt limit or its request timeout, whichever comes
//! first; the request timeout bounds each call as a whole, including its
//! retries.

use imds_store::StoreError;
use tonic::Code;

/// What a failed etcd call means for whether it was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The request never reached an etcd server (or was refused before any
    /// handler ran): nothing was applied, retrying is safe.
    NotSent,
    /// The request may have been applied: only reads are retried.
    Unknown,
    /// The requested revision has been compacted away.
    Compacted,
    /// The server refused the request for a reason retrying cannot fix.
    Refused,
}

/// A classified failure with the text callers see.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// Its class.
    pub(crate) class: Class,
    /// The gRPC code, when the failure was a gRPC status.
    pub(crate) code: Option<Code>,
    /// What happened, for the error message.
    pub(crate) message: String,
}

impl Failure {
    /// Our own request timeout elapsed while the request was in flight.
    pub(crate) fn timed_out(after: std::time::Duration) -> Self {
        Self { class: Class::Unknown, code: None, message: format!("no answer within {after:?}") }
    }

    /// The [`StoreError`] for this failure, once retrying has stopped.
    /// `write` says whether the call could have changed the store.
    pub(crate) fn into_store_error(self, write: bool) -> StoreError {
        let message = self.message;
        match self.class {
            Class::NotSent => StoreError::Unavailable(message),
            Class::Unknown if write => StoreError::OutcomeUnknown(message),
            Class::Unknown => StoreError::Unavailable(message),
            Class::Compacted => StoreError::Backend(format!("revision compacted: {message}")),
            Class::Refused => match self.code {
                Some(
                    Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange | Code::NotFound,
                ) => StoreError::InvalidRequest(message),
                _ => StoreError::Backend(message),
            },
        }
    }
}

/// Message fragments of connection failures that happen before a request
/// is written to any connection (hyper-util's connector, tonic's channel).
const NOT_SENT_TRANSPORT: &[&str] =
    &["tcp connect error", "connection refused", "dns error", "error trying to connect"];

/// Messages of etcd server errors returned before a request is proposed to
/// raft: `ErrGRPCNoLeader` comes from the gRPC interceptor (we always send
/// `hasleader`), `ErrGRPCTooManyRequests` from the apply-lag check.
const NOT_SENT_SERVER: &[&str] = &["etcdserver: no leader", "etcdserver: too many requests"];

/// Classifies a failed etcd-client call.
pub(crate) fn classify(error: &etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    match error {
        E::GRpcStatus(status) => classify_status(status.code(), status.message()),
        E::TransportError(e) => {
            Failure { class: Class::NotSent, code: None, message: format!("transport error: {e}") }
        }
        E::LeaseKeepAliveError(message) if message.contains("not found") => {
            Failure { class: Class::Refused, code: Some(Code::NotFound), message: error.to_string() }
        }
        E::InvalidArgs(_) | E::InvalidUri(_) | E::InvalidMetadataValue(_) | E::Utf8Error(_) => {
            Failure { class: Class::Refused, code: Some(Code::InvalidArgument), message: error.to_string() }
        }
        // Stream and keeper failures, I/O errors, internal errors: the
        // connection broke under an in-flight request.
        _ => Failure { class: Class::Unknown, code: None, message: error.to_string() },
    }
}

/// Classifies a gRPC status by code and message.
pub(crate) fn classify_status(code: Code, message: &str) -> Failure {
    let lower = message.to_ascii_lowercase();
    let class = match code {
        Code::Unavailable | Code::ResourceExhausted if NOT_SENT_SERVER.iter().any(|m| lower.contains(m)) => {
            Class::NotSent
        }
        Code::Unavailable if NOT_SENT_TRANSPORT.iter().any(|m| lower.contains(m)) => Class::NotSent,
        Code::Unavailable
        | Code::Unknown
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Internal
        | Code::Aborted => Class::Unknown,
        Code::OutOfRange => Class::Compacted,
        _ => Class::Refused,
    };
    Failure { class, code: Some(code), message: format!("{code:?}: {message}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(code: Code, message: &str) -> Class {
        classify_status(code, message).class
    }

    #[test]
    fn connect_failures_are_not_sent() {
        assert_eq!(class(Code::Unavailable, "tcp connect error"), Class::NotSent);
        assert_eq!(
            class(Code::Unavailable, "error trying to connect: Connection refused (os error 111)"),
            Class::NotSent
        );
        assert_eq!(class(Code::Unavailable, "etcdserver: no leader"), Class::NotSent);
        assert_eq!(class(Code::ResourceExhausted, "etcdserver: too many requests"), Class::NotSent);
    }

    #[test]
    fn in_flight_failures_are_unknown() {
        assert_eq!(class(Code::Unavailable, "etcdserver: request timed out"), Class::Unknown);
        assert_eq!(
            class(
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to previous leader failure"
            ),
            Class::Unknown
        );
        assert_eq!(class(Code::Unknown, "transport error"), Class::Unknown);
        assert_eq!(class(Code::Unavailable, "h2 protocol error: connection reset"), Class::Unknown);
        assert_eq!(class(Code::Cancelled, "operation was canceled"), Class::Unknown);
    }

    #[test]
    fn unknown_write_is_outcome_unknown_but_read_is_unavailable() {
        let failure = classify_status(Code::Unknown, "transport error");
        assert!(matches!(failure.clone().into_store_error(true), StoreError::OutcomeUnknown(_)));
        assert!(matches!(failure.into_store_error(false), StoreError::Unavailable(_)));
        let timeout = Failure::timed_out(std::time::Duration::from_secs(5));
        assert!(matches!(timeout.into_store_error(true), StoreError::OutcomeUnknown(_)));
    }

    #[test]
    fn refusals_are_not_retryable() {
        let failure =
            classify_status(Code::InvalidArgument, "etcdserver: duplicate key given in txn request");
        assert_eq!(failure.class, Class::Refused);
        assert!(matches!(failure.into_store_error(true), StoreError::InvalidRequest(_)));
        let failure = classify_status(Code::PermissionDenied, "etcdserver: permission denied");
        assert!(matches!(failure.into_store_error(false), StoreError::Backend(_)));
        assert_eq!(
            class(Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            Class::Compacted
        );
    }
}
