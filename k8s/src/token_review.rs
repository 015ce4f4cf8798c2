//! Bearer tokens checked by the API server: `authentication.k8s.io/v1` TokenReview, as every aggregated
//! API server and kube-rbac-proxy do. The aggregator's write authentication calls [`TokenReviewer`]
//! through its `TokenAuthenticator` seam (wired in the binary); caching is the caller's.
//!
//! RBAC: `create` on `tokenreviews.authentication.k8s.io` (ClusterRole `system:auth-delegator`).

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};

/// Who the API server says a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedUser {
    /// e.g. `system:serviceaccount:monitoring:surge-agent`.
    pub username: String,
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The API server answered: not authenticated (expired, revoked, wrong audience, not a token).
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but the user is not in `allowed_users`.
    #[error("user {0:?} is not allowed")]
    NotAllowed(String),
    /// The review itself failed (API server unreachable, RBAC refused the `create`).
    #[error("TokenReview failed")]
    Failed(#[source] kube::Error),
}

/// Reviews tokens against one API server.
#[derive(Clone)]
pub struct TokenReviewer {
    api: Api<TokenReview>,
    audiences: Vec<String>,
    allowed_users: Vec<String>,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("audiences", &self.audiences)
            .field("allowed_users", &self.allowed_users)
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    /// Tokens must be issued for one of `audiences` (empty: the API server's own) and, when
    /// `allowed_users` is not empty, belong to one of them.
    pub fn new(
        client: Client,
        audiences: Vec<String>,
        allowed_users: Vec<String>,
    ) -> TokenReviewer {
        TokenReviewer {
            api: Api::all(client),
            audiences,
            allowed_users,
        }
    }

    /// One review.
    pub async fn review(&self, token: &str) -> Result<ReviewedUser, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let answer = self
            .api
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::Failed)?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let why = status
                .error
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "the API server did not authenticate the token".to_owned());
            return Err(ReviewError::Unauthenticated(why));
        }
        let username = status.user.and_then(|u| u.username).unwrap_or_default();
        if !self.allowed_users.is_empty() && !self.allowed_users.contains(&username) {
            return Err(ReviewError::NotAllowed(username));
        }
        Ok(ReviewedUser { username })
    }
}
