//! Who may write: remote-write authentication.
//!
//! When [`WriteAuth`] is installed ([`crate::AggregatorState::set_write_auth`]), `POST /api/v1/write`
//! is served only for a request that carries a valid `Authorization: Bearer` token, or arrives on a
//! connection whose client certificate the listener verified (mTLS) when `client_certificates` allows
//! that. Anything else answers 401 with a `WWW-Authenticate: Bearer` header, is counted in
//! `surge_aggregator_auth_refused_total{reason}` and logged with the reason (never the token).
//!
//! Tokens are checked by a [`TokenAuthenticator`]: the seam behind which the Kubernetes TokenReview
//! lives (in `surge-k8s`, the only crate that talks to the API server). Results, positive and
//! negative, are cached for `cache_ttl` by a hash of the token, so a steady stream of writes costs one
//! review per token per TTL; an authenticator that cannot answer (API server down) is not cached and
//! answers 503, which senders retry.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

/// A boxed future, so [`TokenAuthenticator`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who a token or certificate belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// e.g. `system:serviceaccount:monitoring:surge-agent`, or a certificate's common name.
    pub username: String,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    /// The authenticator answered: not a valid token (expired, wrong audience, revoked, unknown).
    #[error("token rejected: {0}")]
    Invalid(String),
    /// The token is valid, but its user is not one allowed to write.
    #[error("user {0:?} is not allowed to write")]
    Forbidden(String),
    /// The authenticator could not answer (e.g. the API server is unreachable); not cached.
    #[error("token could not be checked: {0}")]
    Unavailable(String),
}

/// Checks a bearer token. Implemented by `surge_k8s::token_review::TokenReviewer`, and by fakes in
/// tests.
pub trait TokenAuthenticator: Send + Sync + 'static {
    fn authenticate<'a>(&'a self, token: &'a str)
    -> BoxFuture<'a, Result<Identity, TokenRejected>>;
}

/// Why a write was refused (the `reason` label).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    /// Neither a bearer token nor an accepted client certificate.
    #[error("no credentials: send Authorization: Bearer <token>")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("the Authorization header is not \"Bearer <token>\"")]
    Malformed,
    #[error(transparent)]
    Token(#[from] TokenRejected),
}

impl AuthRefusal {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthRefusal::Missing => "missing",
            AuthRefusal::Malformed => "malformed",
            AuthRefusal::Token(TokenRejected::Invalid(_)) => "invalid_token",
            AuthRefusal::Token(TokenRejected::Forbidden(_)) => "forbidden_user",
            AuthRefusal::Token(TokenRejected::Unavailable(_)) => "unavailable",
        }
    }

    /// 503 when the authenticator could not answer (the sender retries), else 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AuthRefusal::Token(TokenRejected::Unavailable(_)))
    }
}

/// Most cached token results; beyond it the cache is emptied (tokens are few: one per agent pod).
const MAX_CACHED: usize = 4096;

/// A token's answer (by the token's hash) and when it was given.
type CachedAnswer = (Instant, Result<Identity, TokenRejected>);

/// The remote-write authentication policy with its cache and metrics.
pub struct WriteAuth {
    authenticator: Option<Arc<dyn TokenAuthenticator>>,
    /// A verified client certificate (mTLS) is enough on its own.
    client_certificates: bool,
    cache_ttl: Duration,
    cache: Mutex<HashMap<u64, CachedAnswer>>,
    refused: Family<[(&'static str, &'static str); 1], Counter>,
    reviews: Counter,
}

impl std::fmt::Debug for WriteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteAuth")
            .field("tokens", &self.authenticator.is_some())
            .field("client_certificates", &self.client_certificates)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

impl WriteAuth {
    /// Tokens checked by `authenticator` (none: tokens are never accepted), client certificates accepted
    /// when `client_certificates`; results cached for `cache_ttl`. Registers its metrics.
    pub fn new(
        authenticator: Option<Arc<dyn TokenAuthenticator>>,
        client_certificates: bool,
        cache_ttl: Duration,
        registry: &mut Registry,
    ) -> WriteAuth {
        let auth = WriteAuth {
            authenticator,
            client_certificates,
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
            refused: Family::default(),
            reviews: Counter::default(),
        };
        registry.register(
            "surge_aggregator_auth_refused",
            "Remote-write requests refused by authentication, by reason",
            auth.refused.clone(),
        );
        registry.register(
            "surge_aggregator_auth_token_reviews",
            "Tokens sent to the authenticator (cache misses)",
            auth.reviews.clone(),
        );
        auth
    }

    /// Requests refused for `reason` so far.
    pub fn refused(&self, reason: &'static str) -> u64 {
        self.refused.get_or_create(&[("reason", reason)]).get()
    }

    /// Tokens sent to the authenticator so far.
    pub fn reviews(&self) -> u64 {
        self.reviews.get()
    }

    /// Decides one request from its headers and the connection's verified client certificate name.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        client_cert: Option<&str>,
    ) -> Result<Identity, AuthRefusal> {
        let result = self.decide(headers, client_cert).await;
        if let Err(e) = &result {
            self.refused.get_or_create(&[("reason", e.reason())]).inc();
        }
        result
    }

    async fn decide(
        &self,
        headers: &HeaderMap,
        client_cert: Option<&str>,
    ) -> Result<Identity, AuthRefusal> {
        let token = match headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(bearer_token(v.as_bytes()).ok_or(AuthRefusal::Malformed)?),
        };
        match (token, client_cert) {
            (Some(token), _) => Ok(self.token(token).await?),
            (None, Some(cn)) if self.client_certificates => Ok(Identity {
                username: cn.to_owned(),
            }),
            (None, _) => Err(AuthRefusal::Missing),
        }
    }

    async fn token(&self, token: &str) -> Result<Identity, TokenRejected> {
        let Some(authenticator) = &self.authenticator else {
            return Err(TokenRejected::Invalid(
                "bearer tokens are not accepted here (no token authenticator configured)".into(),
            ));
        };
        let key = xxhash_rust::xxh3::xxh3_64(token.as_bytes());
        if let Some((at, result)) = self.cache.lock().get(&key)
            && at.elapsed() < self.cache_ttl
        {
            return result.clone();
        }
        self.reviews.inc();
        let result = authenticator.authenticate(token).await;
        if !matches!(result, Err(TokenRejected::Unavailable(_))) {
            let mut cache = self.cache.lock();
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), result.clone()));
        }
        result
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, as RFC 7235 says).
fn bearer_token(value: &[u8]) -> Option<&str> {
    let v = std::str::from_utf8(value).ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fake authenticator: the tests check the policy and the cache, not the API server (that is
    /// `tests/tests/token_review.rs`, against a real kube-apiserver).
    struct Fake {
        calls: AtomicUsize,
    }

    impl TokenAuthenticator for Fake {
        fn authenticate<'a>(
            &'a self,
            token: &'a str,
        ) -> BoxFuture<'a, Result<Identity, TokenRejected>> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                match token {
                    "good" => Ok(Identity {
                        username: "agent".into(),
                    }),
                    "down" => Err(TokenRejected::Unavailable("connection refused".into())),
                    _ => Err(TokenRejected::Invalid("unknown token".into())),
                }
            })
        }
    }

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    fn auth(client_certificates: bool) -> (WriteAuth, Arc<Fake>) {
        let fake = Arc::new(Fake {
            calls: AtomicUsize::new(0),
        });
        let a = WriteAuth::new(
            Some(fake.clone()),
            client_certificates,
            Duration::from_secs(60),
            &mut Registry::default(),
        );
        (a, fake)
    }

    #[tokio::test]
    async fn decides_every_kind_of_request() {
        let (a, _) = auth(false);
        // (Authorization header, client certificate name, user or refusal reason)
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Result<&'a str, &'a str>);
        let cases: &[Case] = &[
            (Some("Bearer good"), None, Ok("agent")),
            (Some("bearer good"), None, Ok("agent")),
            (Some("Bearer bad"), None, Err("invalid_token")),
            (Some("Bearer down"), None, Err("unavailable")),
            (None, None, Err("missing")),
            (Some("Basic dXNlcjpwYXNz"), None, Err("malformed")),
            (Some("Bearer"), None, Err("malformed")),
            (Some("Bearer a b"), None, Err("malformed")),
            // A client certificate alone is not enough unless allowed.
            (None, Some("surge-agent"), Err("missing")),
        ];
        for (header, cert, want) in cases {
            let got = a.check(&headers(*header), *cert).await;
            let got = got.map(|i| i.username).map_err(|e| e.reason());
            assert_eq!(
                got.as_ref().map(String::as_str),
                want.as_ref().copied(),
                "{header:?} {cert:?}"
            );
        }
        assert_eq!(a.refused("malformed"), 3);
        let (a, _) = auth(true);
        assert_eq!(
            a.check(&headers(None), Some("surge-agent")).await,
            Ok(Identity {
                username: "surge-agent".into()
            })
        );
        // A token is still checked when a certificate is there too.
        assert_eq!(
            a.check(&headers(Some("Bearer bad")), Some("surge-agent"))
                .await
                .map_err(|e| e.reason()),
            Err("invalid_token")
        );
    }

    #[tokio::test]
    async fn answers_are_cached_but_unavailability_is_not() {
        let (a, fake) = auth(false);
        for _ in 0..5 {
            assert!(a.check(&headers(Some("Bearer good")), None).await.is_ok());
            assert!(a.check(&headers(Some("Bearer bad")), None).await.is_err());
            assert!(a.check(&headers(Some("Bearer down")), None).await.is_err());
        }
        // good and bad once each; down every time.
        assert_eq!(fake.calls.load(Ordering::Relaxed), 2 + 5);
        assert_eq!(a.reviews(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn cached_answers_expire() {
        let (a, fake) = auth(false);
        assert!(a.check(&headers(Some("Bearer good")), None).await.is_ok());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(a.check(&headers(Some("Bearer good")), None).await.is_ok());
        assert_eq!(fake.calls.load(Ordering::Relaxed), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(a.check(&headers(Some("Bearer good")), None).await.is_ok());
        assert_eq!(fake.calls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn no_authenticator_refuses_every_token() {
        let a = WriteAuth::new(None, true, Duration::from_secs(1), &mut Registry::default());
        assert_eq!(
            a.check(&headers(Some("Bearer good")), None)
                .await
                .map_err(|e| e.reason()),
            Err("invalid_token")
        );
    }
}
