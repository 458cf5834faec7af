//! Answers in the protocol the request came in: one output tree ([`Out`])
//! per operation, written as JSON 1.0, RPC v2 CBOR or query XML, and the
//! errors of [`super::error`] in each protocol's shape.
//!
//! * JSON: members in model order, timestamps as epoch seconds, `__type`
//!   and `message` for errors.
//! * CBOR: a map per structure, timestamps as tag 1 over epoch seconds,
//!   doubles as floats; errors as a map with `__type` and `message`.
//! * Query: `<<Op>Response xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">`
//!   with the `<<Op>Result>` wrapper, list items as `<member>`, timestamps
//!   in ISO 8601 and `<ResponseMetadata><RequestId>`; errors as
//!   `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>`.
//!
//! JSON and CBOR errors also carry `x-amzn-query-error: <Code>;<Fault>`
//! (the service is query-compatible), and every answer `x-amzn-RequestId`.

use super::error::CwError;
use crate::xml::escape;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use std::fmt::Write;

/// The XML namespace of the query protocol.
pub const XMLNS: &str = "http://monitoring.amazonaws.com/doc/2010-08-01/";

/// `Content-Type` of JSON 1.0.
pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// `Content-Type` of RPC v2 CBOR.
pub const CBOR_CONTENT_TYPE: &str = "application/cbor";

/// `Content-Type` of query answers.
pub const XML_CONTENT_TYPE: &str = "text/xml";

/// The wire protocol of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// awsJson 1.0 (`X-Amz-Target`).
    Json,
    /// Smithy RPC v2 CBOR (`/service/…/operation/…`).
    Cbor,
    /// awsQuery (`Action=…&Version=2010-08-01`).
    Query,
}

/// An output value.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// A string.
    Str(String),
    /// A double.
    Double(f64),
    /// A timestamp, Unix seconds.
    Time(u64),
    /// A list.
    List(Vec<Out>),
    /// A structure, members in model order; `None` members are left out.
    Struct(Vec<(&'static str, Option<Out>)>),
}

impl Out {
    /// A structure whose members are all present.
    pub fn structure(members: Vec<(&'static str, Out)>) -> Self {
        Out::Struct(members.into_iter().map(|(k, v)| (k, Some(v))).collect())
    }
}

/// Writes `out` as JSON, structure members in model order.
fn write_json(json: &mut String, out: &Out) {
    match out {
        Out::Str(s) => json.push_str(&serde_json::Value::from(s.as_str()).to_string()),
        Out::Double(d) => match serde_json::Number::from_f64(*d) {
            Some(n) => json.push_str(&n.to_string()),
            None => json.push_str("null"),
        },
        Out::Time(t) => {
            let _ = write!(json, "{t}");
        }
        Out::List(items) => {
            json.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                write_json(json, item);
            }
            json.push(']');
        }
        Out::Struct(members) => {
            json.push('{');
            let mut first = true;
            for (k, v) in members {
                let Some(v) = v else { continue };
                if !first {
                    json.push(',');
                }
                first = false;
                json.push_str(&serde_json::Value::from(*k).to_string());
                json.push(':');
                write_json(json, v);
            }
            json.push('}');
        }
    }
}

fn to_json(out: &Out) -> String {
    let mut json = String::new();
    write_json(&mut json, out);
    json
}

fn to_cbor(out: &Out) -> ciborium::Value {
    use ciborium::Value;
    match out {
        Out::Str(s) => Value::Text(s.clone()),
        Out::Double(d) => Value::Float(*d),
        Out::Time(t) => Value::Tag(1, Box::new(Value::Integer((*t).into()))),
        Out::List(items) => Value::Array(items.iter().map(to_cbor).collect()),
        Out::Struct(members) => Value::Map(
            members
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (Value::Text((*k).to_owned()), to_cbor(v))))
                .collect(),
        ),
    }
}

/// A double the way CloudWatch's XML writes it (`3.0`, `0.5`).
fn xml_double(d: f64) -> String {
    format!("{d:?}")
}

fn write_xml(xml: &mut String, name: &str, out: &Out) {
    match out {
        Out::Str(s) => {
            let _ = write!(xml, "<{name}>{}</{name}>", escape(s));
        }
        Out::Double(d) => {
            let _ = write!(xml, "<{name}>{}</{name}>", xml_double(*d));
        }
        Out::Time(t) => {
            let _ = write!(xml, "<{name}>{}</{name}>", imds_core::timefmt::iso8601_secs(*t));
        }
        Out::List(items) if items.is_empty() => {
            let _ = write!(xml, "<{name}/>");
        }
        Out::List(items) => {
            let _ = write!(xml, "<{name}>");
            for item in items {
                write_xml(xml, "member", item);
            }
            let _ = write!(xml, "</{name}>");
        }
        Out::Struct(members) => {
            let _ = write!(xml, "<{name}>");
            write_members(xml, members);
            let _ = write!(xml, "</{name}>");
        }
    }
}

fn write_members(xml: &mut String, members: &[(&'static str, Option<Out>)]) {
    for (k, v) in members {
        if let Some(v) = v {
            write_xml(xml, k, v);
        }
    }
}

/// The query answer of `operation`.
pub fn query_document(operation: &str, out: &Out, request_id: &str) -> String {
    let mut xml = format!("<{operation}Response xmlns=\"{XMLNS}\"><{operation}Result>");
    match out {
        Out::Struct(members) => write_members(&mut xml, members),
        other => write_xml(&mut xml, "Value", other),
    }
    let _ = write!(
        xml,
        "</{operation}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{operation}Response>",
        escape(request_id)
    );
    xml
}

/// The query error document.
pub fn query_error_document(e: &CwError, request_id: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        e.fault(),
        escape(e.code),
        escape(&e.message),
        escape(request_id)
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>, request_id: &str) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

fn cbor_bytes(value: &ciborium::Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Err(e) = ciborium::into_writer(value, &mut bytes) {
        // Writing to a Vec cannot fail; keep a valid (empty-map) body anyway.
        tracing::error!(error = %e, "encoding a CBOR answer failed");
        return vec![0xa0];
    }
    bytes
}

/// A successful answer of `operation`.
pub fn success(protocol: Protocol, operation: &str, out: &Out, request_id: &str) -> Response {
    match protocol {
        Protocol::Json => respond(StatusCode::OK, JSON_CONTENT_TYPE, to_json(out).into_bytes(), request_id),
        Protocol::Cbor => {
            let mut r = respond(StatusCode::OK, CBOR_CONTENT_TYPE, cbor_bytes(&to_cbor(out)), request_id);
            r.headers_mut().insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
            r
        }
        Protocol::Query => respond(
            StatusCode::OK,
            XML_CONTENT_TYPE,
            query_document(operation, out, request_id).into_bytes(),
            request_id,
        ),
    }
}

/// An error answer.
pub fn error(protocol: Protocol, e: &CwError, request_id: &str) -> Response {
    let mut r = match protocol {
        Protocol::Json => {
            let body = serde_json::json!({ "__type": e.type_name(), "message": e.message });
            respond(e.status, JSON_CONTENT_TYPE, body.to_string().into_bytes(), request_id)
        }
        Protocol::Cbor => {
            let body = ciborium::Value::Map(vec![
                (ciborium::Value::Text("__type".to_owned()), ciborium::Value::Text(e.type_name().to_owned())),
                (ciborium::Value::Text("message".to_owned()), ciborium::Value::Text(e.message.clone())),
            ]);
            let mut r = respond(e.status, CBOR_CONTENT_TYPE, cbor_bytes(&body), request_id);
            r.headers_mut().insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
            r
        }
        Protocol::Query => {
            return respond(
                e.status,
                XML_CONTENT_TYPE,
                query_error_document(e, request_id).into_bytes(),
                request_id,
            );
        }
    };
    if let Ok(v) = HeaderValue::from_str(&e.query_error_header()) {
        r.headers_mut().insert("x-amzn-query-error", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Out {
        Out::structure(vec![
            ("Label", Out::Str("MetadataNoToken".into())),
            (
                "Datapoints",
                Out::List(vec![Out::structure(vec![
                    ("Timestamp", Out::Time(1_704_164_640)),
                    ("Sum", Out::Double(3.0)),
                    ("Unit", Out::Str("Count".into())),
                ])]),
            ),
        ])
    }

    #[test]
    fn json_keeps_model_order_and_epoch_seconds() {
        assert_eq!(
            to_json(&sample()),
            r#"{"Label":"MetadataNoToken","Datapoints":[{"Timestamp":1704164640,"Sum":3.0,"Unit":"Count"}]}"#
        );
    }

    #[test]
    fn json_escapes_and_skips_absent_members() {
        let out = Out::Struct(vec![
            ("A", Some(Out::Str("q\"\n".into()))),
            ("B", None),
            ("C", Some(Out::List(vec![Out::Double(0.5), Out::Double(f64::NAN)]))),
        ]);
        assert_eq!(to_json(&out), r#"{"A":"q\"\n","C":[0.5,null]}"#);
    }

    #[test]
    fn query_has_result_wrapper_members_and_request_id() {
        assert_eq!(
            query_document("GetMetricStatistics", &sample(), "r-1"),
            "<GetMetricStatisticsResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><GetMetricStatisticsResult><Label>MetadataNoToken</Label><Datapoints><member><Timestamp>2024-01-02T03:04:00Z</Timestamp><Sum>3.0</Sum><Unit>Count</Unit></member></Datapoints></GetMetricStatisticsResult><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></GetMetricStatisticsResponse>"
        );
        let empty = Out::structure(vec![("Datapoints", Out::List(vec![]))]);
        assert!(query_document("X", &empty, "r").contains("<XResult><Datapoints/></XResult>"));
    }

    #[test]
    fn cbor_timestamps_are_tagged() {
        let value = to_cbor(&sample());
        let ciborium::Value::Map(entries) = value else { panic!() };
        let ciborium::Value::Array(points) = &entries[1].1 else { panic!() };
        let ciborium::Value::Map(point) = &points[0] else { panic!() };
        assert_eq!(
            point[0].1,
            ciborium::Value::Tag(1, Box::new(ciborium::Value::Integer(1_704_164_640.into())))
        );
        assert_eq!(point[1].1, ciborium::Value::Float(3.0));
    }

    #[test]
    fn errors_carry_the_query_code_in_every_protocol() {
        let e = CwError::invalid_value("bad <x>");
        let r = error(Protocol::Json, &e, "r-1");
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["x-amzn-query-error"], "InvalidParameterValue;Sender");
        assert_eq!(r.headers()["content-type"], JSON_CONTENT_TYPE);
        let r = error(Protocol::Cbor, &e, "r-1");
        assert_eq!(r.headers()["smithy-protocol"], "rpc-v2-cbor");
        assert_eq!(
            query_error_document(&e, "r-1"),
            "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error><Type>Sender</Type><Code>InvalidParameterValue</Code><Message>bad &lt;x&gt;</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
        );
    }
}
