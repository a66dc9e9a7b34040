//! `POST /csp-report`: browsers report Content-Security-Policy violations here.
//!
//! Both report formats are accepted: the legacy `application/csp-report` body
//! (`{"csp-report": {...}}`) and the Reporting API's `application/reports+json` list. Each
//! violation becomes one `csp_violation` warning in the log and a metric.
//!
//! # Security
//! Reports are attacker-controlled input: the body is bounded (16 KiB), only three fields are
//! read, URIs lose their query and fragment (tokens must not reach the logs) and every value is
//! cut to 200 characters. The endpoint answers `204` whatever the report says, so it leaks
//! nothing.

use axum::body::Bytes;
use axum::extract::State;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::error::Error;
use crate::state::AppState;

/// Largest report body read.
const MAX_REPORT_BYTES: usize = 16 * 1024;
/// Longest value logged from a report.
const MAX_FIELD_CHARS: usize = 200;

/// Receives a report.
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Error> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let accepted = [
        "application/csp-report",
        "application/reports+json",
        "application/json",
    ];
    if !accepted.iter().any(|a| content_type.starts_with(a)) {
        return Err(Error::UnsupportedMediaType);
    }
    if body.len() > MAX_REPORT_BYTES {
        return Err(Error::PayloadTooLarge);
    }
    let json: Value = serde_json::from_slice(&body)
        .map_err(|_| Error::BadRequest("the report is not valid JSON".into()))?;
    let reports: Vec<&Value> = match &json {
        Value::Object(o) if o.contains_key("csp-report") => vec![&o["csp-report"]],
        Value::Array(items) => items.iter().filter_map(|r| r.get("body")).collect(),
        _ => return Err(Error::BadRequest("not a CSP violation report".into())),
    };
    for report in reports.into_iter().take(20) {
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| report.get(*n).and_then(Value::as_str))
                .map(clean)
                .unwrap_or_default()
        };
        tracing::warn!(
            event = "csp_violation",
            document = %field(&["document-uri", "documentURL"]),
            directive = %field(&["effective-directive", "effectiveDirective", "violated-directive"]),
            blocked = %field(&["blocked-uri", "blockedURL"]),
            "content security policy violation reported"
        );
        state.metrics.csp_report();
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Drops the query and fragment of a URI and bounds its length.
fn clean(value: &str) -> String {
    let end = value.find(['?', '#']).unwrap_or(value.len());
    value[..end]
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_FIELD_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn report_uris_lose_queries_and_control_characters() {
        assert_eq!(
            clean("https://gate.example/login/magic?token=secret#x"),
            "https://gate.example/login/magic"
        );
        assert_eq!(clean("inline\n\r"), "inline");
        assert_eq!(clean(&"a".repeat(500)).len(), 200);
    }
}
