//! The AWS SDK's configuration (credentials, region, endpoint, HTTPS client) and how its errors map onto
//! the queue's retry-or-drop decision.
//!
//! Credentials come from the SDK's standard chain: environment variables, the shared config/credentials
//! files, web identity (IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`), the container provider
//! (EKS Pod Identity: `AWS_CONTAINER_CREDENTIALS_FULL_URI`) and the instance profile (IMDS). `region` and
//! `endpoint_url` override the chain's region and the service endpoint (tests point them at LocalStack).
//!
//! HTTPS: the SDK's default client uses rustls over aws-lc-rs, whose build needs cmake and a C
//! toolchain. This crate builds the client from `aws-smithy-http-client` with rustls over **ring**
//! instead (the workspace already uses ring for every other TLS connection).
//!
//! The SDK's own retries are disabled: the [`QueuedOutput`](surge_sender::QueuedOutput) retries each
//! request with its backoff and counts every attempt, so the two never multiply.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use std::time::Duration;
use surge_sender::Attempt;

/// Where and as whom to call AWS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsTarget {
    /// Overrides the chain's region (`AWS_REGION`, the config file, IMDS).
    pub region: Option<String>,
    /// Overrides the service endpoint, e.g. `http://127.0.0.1:4566`.
    pub endpoint_url: Option<String>,
}

/// Loads the SDK configuration from the standard chain with `target`'s overrides.
pub async fn load(target: &AwsTarget, attempt_timeout: Duration) -> aws_config::SdkConfig {
    let config = loader(target, attempt_timeout).load().await;
    if config.region().is_none() {
        tracing::error!(
            "no AWS region: set aws.region in the output's config or AWS_REGION; every request will be refused"
        );
    }
    config
}

/// The loader [`load`] uses, for callers that add to it (tests set static credentials).
pub fn loader(target: &AwsTarget, attempt_timeout: Duration) -> aws_config::ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(attempt_timeout)
                .connect_timeout(Duration::from_secs(3))
                .build(),
        );
    if let Some(region) = &target.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &target.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    loader
}

/// Error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// Error codes that mean the caller is not who AWS accepts: retrying cannot help.
const AUTH_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AccessDeniedException",
    "ExpiredToken",
    "ExpiredTokenException",
    "MissingAuthenticationToken",
    "IncompleteSignature",
];

/// Maps an SDK error onto the queue's decision: throttling, 5xx, timeouts and network errors are
/// retried; credentials, permissions and other refusals drop the request (counted, one log line per
/// interval), so a wrong credential or region never turns into a retry storm.
pub fn classify<E>(err: &SdkError<E>) -> Attempt
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = error_chain(err);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().unwrap_or_default().to_owned();
    let retry = |reason| Attempt::Retry {
        reason,
        after: None,
        detail: detail.clone(),
    };
    let refuse = |reason| Attempt::Refused {
        reason,
        detail: detail.clone(),
    };
    match err {
        SdkError::TimeoutError(_) => retry("timeout"),
        SdkError::DispatchFailure(d) if d.is_io() => retry("network"),
        SdkError::DispatchFailure(d) if d.is_timeout() => retry("timeout"),
        // Before transmission: no credentials, or signing failed. Retrying would fail the same way.
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => refuse("credentials"),
        _ if THROTTLING_CODES.contains(&code.as_str()) || status == Some(429) => retry("throttled"),
        _ if AUTH_CODES.contains(&code.as_str()) || matches!(status, Some(401 | 403)) => {
            refuse("auth")
        }
        _ if status.is_some_and(|s| s >= 500) => retry("http_5xx"),
        _ if status.is_some_and(|s| (400..500).contains(&s)) => refuse("http_4xx"),
        _ => retry("network"),
    }
}

/// The error and its sources on one line (the SDK's `Display` is terse: "service error").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
