//! The one error type of the Kubernetes metrics APIs, rendered as a `metav1.Status`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Every error a metrics API request can answer with. Only these messages reach the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The metric (or the object) is not served here (404, `NotFound`).
    #[error("the server could not find the metric {metric} for {what}")]
    NotFound { metric: String, what: String },
    /// A path that is not part of the API (404, `NotFound`).
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// A malformed selector or parameter (400, `BadRequest`).
    #[error("{0}")]
    BadRequest(String),
    /// No verified front-proxy certificate (401, `Unauthorized`).
    #[error("Unauthorized")]
    Unauthorized,
    /// Only GET is served (405, `MethodNotAllowed`).
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// An `Accept` header this server cannot satisfy, e.g. aggregated discovery (406, `NotAcceptable`).
    #[error("only application/json is served; aggregated discovery is not supported")]
    NotAcceptable,
    /// The metric's data is stale or the forward target is unreachable (503, `ServiceUnavailable`).
    #[error("{0}")]
    Unavailable(String),
    /// Evaluation failed (500, `InternalError`).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// HTTP status and `metav1.StatusReason`.
    pub fn kind(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => (StatusCode::NOT_FOUND, "NotFound"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ApiError::NotAcceptable => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }

    /// The `metav1.Status` body.
    pub fn status_json(&self) -> serde_json::Value {
        let (code, reason) = self.kind();
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code.as_u16(),
        });
        if let ApiError::NotFound { metric, .. } = self {
            v["details"] = json!({"name": metric});
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _) = self.kind();
        (
            code,
            [(header::CONTENT_TYPE, "application/json")],
            self.status_json().to_string(),
        )
            .into_response()
    }
}
