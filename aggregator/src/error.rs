//! The one error type of the aggregator's HTTP surface, rendered as the body each API expects.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::auth::AuthRefusal;
use crate::ingest::RequestError;

/// Every error an aggregator handler can answer with. Internals never leak: only the messages below reach
/// the client.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A remote-write request refused as a whole; plain text, as Prometheus answers.
    #[error(transparent)]
    Ingest(#[from] RequestError),
    /// A bad parameter of the query API (400, `bad_data`).
    #[error("{0}")]
    BadData(String),
    /// A query that parsed but failed to evaluate (422, `execution`).
    #[error("{0}")]
    Execution(String),
    /// A query that ran out of time (503, `timeout`).
    #[error("{0}")]
    Timeout(String),
    /// A remote-write request without acceptable credentials (401 with `WWW-Authenticate: Bearer`), or
    /// whose token could not be checked (503, retried by senders); plain text.
    #[error(transparent)]
    Unauthenticated(#[from] AuthRefusal),
    /// Writes are not taken yet: a warm-up from a peer replica runs (503 with `Retry-After: 1`,
    /// retried by senders); plain text.
    #[error("{0}")]
    Warming(String),
    /// Anything else (500, `internal`).
    #[error("{0}")]
    Internal(String),
}

impl HttpError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.kind().0
    }

    /// Status and Prometheus `errorType`.
    fn kind(&self) -> (StatusCode, &'static str) {
        match self {
            HttpError::Ingest(e) => (e.status(), "bad_data"),
            HttpError::Unauthenticated(e) if e.is_unavailable() => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            HttpError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            HttpError::BadData(_) => (StatusCode::BAD_REQUEST, "bad_data"),
            HttpError::Execution(_) => (StatusCode::UNPROCESSABLE_ENTITY, "execution"),
            HttpError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            HttpError::Warming(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            HttpError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, error_type) = self.kind();
        match self {
            HttpError::Ingest(e) => (status, format!("{e}\n")).into_response(),
            HttpError::Warming(e) => (
                status,
                [(axum::http::header::RETRY_AFTER, "1")],
                format!("{e}\n"),
            )
                .into_response(),
            HttpError::Unauthenticated(e) => (
                status,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                format!("{e}\n"),
            )
                .into_response(),
            other => (
                status,
                Json(serde_json::json!({
                    "status": "error",
                    "errorType": error_type,
                    "error": other.to_string(),
                })),
            )
                .into_response(),
        }
    }
}
