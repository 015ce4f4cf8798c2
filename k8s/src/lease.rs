//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` does it.
//!
//! ```text
//! candidate ──every retry_period (or right when the holder's lease expires)──▶ GET lease
//!   free, expired (renewTime + leaseDurationSeconds < now) or ours ──▶ PUT with resourceVersion
//!     200 ──▶ leader until (request sent + renew_deadline); leaseTransitions + 1 on a takeover
//!     409 ──▶ someone else won: look again
//! leader ──every renew_period──▶ the same GET + PUT (renewTime = now)
//!   no successful renew for renew_deadline ──▶ stop leading at once (before anyone may take over)
//! cancel ──▶ stop leading, then release: holder cleared, leaseDurationSeconds 1 (a successor takes over now)
//! ```
//!
//! Architecture invariant: [`LeaderHandle::is_leader`] never answers `true` after the moment another
//! replica may consider the lease expired. It checks both the flag and the deadline
//! `last successful renew request + renew_deadline`, so it turns `false` on time even when the election
//! task is starved or a request hangs. The margin `lease_duration - renew_deadline` (5 s by default)
//! covers the clock skew between replicas and the time an actuation request takes to land.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// client-go's (and kube-controller-manager's) defaults.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Stop leading when no renew succeeded for this long: the lease duration less a 5 s safety margin.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the leader renews.
pub const DEFAULT_RENEW_PERIOD: Duration = Duration::from_secs(2);
/// How often a candidate (or a leader whose renew failed) tries again.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
/// Lease name when `SURGE_LEASE_NAME` is not set.
pub const DEFAULT_LEASE_NAME: &str = "surge-aggregator";

/// Where the service account's namespace is mounted in a pod.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// Why leadership ends on a graceful shutdown (logged at info, not warn).
const SHUTTING_DOWN: &str = "shutting down";
/// How long the release at shutdown may take.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// Which Lease to compete for, under which identity, and the timing of the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Lease name; every replica of one aggregator uses the same.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (the pod name): unique among the replicas.
    pub identity: String,
    /// `leaseDurationSeconds` written to the Lease (whole seconds, rounded up): how long after the last
    /// renew other replicas wait before they take over.
    pub lease_duration: Duration,
    /// Stop acting as leader when no renew has succeeded for this long. Must be shorter than
    /// `lease_duration`; the difference is the safety margin against clock skew and slow requests.
    pub renew_deadline: Duration,
    /// How often the leader renews. Must be shorter than `renew_deadline`.
    pub renew_period: Duration,
    /// How often a candidate looks at the Lease again (and a leader retries a failed renew).
    pub retry_period: Duration,
}

/// A [`LeaseConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseConfigError {
    /// The name, namespace or identity is empty.
    #[error("lease {field} must not be empty")]
    Empty { field: &'static str },
    /// `renew_deadline` must leave a margin before `lease_duration`.
    #[error(
        "renew_deadline ({renew_deadline:?}) must be shorter than lease_duration ({lease_duration:?})"
    )]
    DeadlineNotBeforeExpiry {
        renew_deadline: Duration,
        lease_duration: Duration,
    },
    /// The leader must renew (at least once) before its deadline.
    #[error(
        "renew_period ({renew_period:?}) must be shorter than renew_deadline ({renew_deadline:?})"
    )]
    RenewNotBeforeDeadline {
        renew_period: Duration,
        renew_deadline: Duration,
    },
    /// A zero retry period would spin.
    #[error("retry_period must be more than zero")]
    ZeroRetry,
}

impl LeaseConfig {
    /// A config with client-go's default timing.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaseConfig {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            renew_period: DEFAULT_RENEW_PERIOD,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    /// From the process environment: see [`LeaseConfig::from_env_with`].
    pub fn from_env() -> Self {
        let namespace_file = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok();
        Self::from_env_with(|k| std::env::var(k).ok(), namespace_file)
    }

    /// Name from `SURGE_LEASE_NAME` (default `surge-aggregator`); namespace from `POD_NAMESPACE`, else
    /// the service account's namespace (`namespace_file`), else `default`; identity from `POD_NAME`, else
    /// `HOSTNAME`, else `surge-<pid>`. The timing is client-go's default.
    pub fn from_env_with(
        get: impl Fn(&str) -> Option<String>,
        namespace_file: Option<String>,
    ) -> Self {
        let non_empty =
            |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let name = non_empty(get("SURGE_LEASE_NAME")).unwrap_or_else(|| DEFAULT_LEASE_NAME.into());
        let namespace = non_empty(get("POD_NAMESPACE"))
            .or_else(|| non_empty(namespace_file))
            .unwrap_or_else(|| "default".into());
        let identity = non_empty(get("POD_NAME"))
            .or_else(|| non_empty(get("HOSTNAME")))
            .unwrap_or_else(|| format!("surge-{}", std::process::id()));
        LeaseConfig::new(name, namespace, identity)
    }

    /// Checks the names and that the timing keeps a margin: renew_period < renew_deadline <
    /// lease_duration.
    pub fn validate(&self) -> Result<(), LeaseConfigError> {
        for (field, v) in [
            ("name", &self.name),
            ("namespace", &self.namespace),
            ("identity", &self.identity),
        ] {
            if v.is_empty() {
                return Err(LeaseConfigError::Empty { field });
            }
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(LeaseConfigError::DeadlineNotBeforeExpiry {
                renew_deadline: self.renew_deadline,
                lease_duration: self.lease_duration,
            });
        }
        if self.renew_period >= self.renew_deadline {
            return Err(LeaseConfigError::RenewNotBeforeDeadline {
                renew_period: self.renew_period,
                renew_deadline: self.renew_deadline,
            });
        }
        if self.retry_period.is_zero() {
            return Err(LeaseConfigError::ZeroRetry);
        }
        Ok(())
    }

    /// `leaseDurationSeconds`: whole seconds, rounded up so others never wait less than configured.
    fn lease_duration_seconds(&self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX).max(1)
    }

    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Starts leader elections.
pub struct LeaderElector;

impl LeaderElector {
    /// Validates `cfg` and spawns the election task on the current tokio runtime. On `cancel`, the task
    /// stops leading and releases the Lease if it holds it; [`LeaderHandle::stopped`] waits for that.
    pub fn start(
        client: Client,
        cfg: LeaseConfig,
        cancel: CancellationToken,
    ) -> Result<LeaderHandle, LeaseConfigError> {
        cfg.validate()?;
        let (tx, rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            leading: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            valid_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            tx,
            identity: cfg.identity.clone(),
            lease: cfg.key(),
        });
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        let task = tokio::spawn(run(api, cfg, shared.clone(), cancel));
        Ok(LeaderHandle {
            shared,
            rx,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }
}

/// A running election: whether this replica leads now, and a channel of changes. Cheap to clone.
#[derive(Clone)]
pub struct LeaderHandle {
    shared: Arc<Shared>,
    rx: watch::Receiver<bool>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for LeaderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderHandle")
            .field("lease", &self.shared.lease)
            .field("identity", &self.shared.identity)
            .field("is_leader", &self.is_leader())
            .finish()
    }
}

impl LeaderHandle {
    /// Whether this replica may act as the leader right now: it holds the Lease and its last successful
    /// renew is younger than `renew_deadline`.
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// How much longer this replica may act as the leader without another successful renew (`None`
    /// when it does not lead). Bound the duration of an actuation request with it.
    pub fn remaining(&self) -> Option<Duration> {
        self.shared.remaining()
    }

    /// Leadership changes: `true` when this replica became the leader, `false` when it stopped.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    /// This replica's identity in the Lease.
    pub fn identity(&self) -> &str {
        &self.shared.identity
    }

    /// `namespace/name` of the Lease.
    pub fn lease(&self) -> &str {
        &self.shared.lease
    }

    /// Stops the election at once **without** releasing the Lease, as a crash would: this replica stops
    /// leading now, and the others take over once the lease expires. For tests and fatal errors; a
    /// graceful shutdown cancels the token given to [`LeaderElector::start`] instead.
    pub fn abort(&self) {
        self.shared.aborted.store(true, Ordering::Release);
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
        self.shared.lose("election aborted (lease not released)");
    }

    /// Waits until the election task ended (after a cancel: once the Lease is released).
    pub async fn stopped(&self) {
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// What the election task and the handles share.
struct Shared {
    leading: AtomicBool,
    /// Set by [`LeaderHandle::abort`]: the task may still be finishing a step, but never leads again.
    aborted: AtomicBool,
    /// Milliseconds after `epoch` until which leading is allowed without another successful renew.
    valid_until_ms: AtomicU64,
    epoch: Instant,
    tx: watch::Sender<bool>,
    identity: String,
    lease: String,
}

impl Shared {
    fn ms_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn valid_until(&self) -> Instant {
        self.epoch + Duration::from_millis(self.valid_until_ms.load(Ordering::Acquire))
    }

    fn is_leader(&self) -> bool {
        !self.aborted.load(Ordering::Acquire)
            && self.leading.load(Ordering::Acquire)
            && self.ms_since_epoch(Instant::now()) < self.valid_until_ms.load(Ordering::Acquire)
    }

    fn remaining(&self) -> Option<Duration> {
        if !self.is_leader() {
            return None;
        }
        let left = self.valid_until().saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// A renew (or the acquisition) whose request was sent at `sent` succeeded.
    fn held(&self, sent: Instant, renew_deadline: Duration) {
        if self.aborted.load(Ordering::Acquire) {
            return;
        }
        // Only ever move the deadline forward, and before raising the flag: is_leader() needs both.
        self.valid_until_ms
            .fetch_max(self.ms_since_epoch(sent + renew_deadline), Ordering::AcqRel);
        if !self.leading.swap(true, Ordering::AcqRel) {
            tracing::info!(lease = %self.lease, identity = %self.identity, "became the leader");
            self.tx.send_replace(true);
        }
    }

    fn lose(&self, why: &str) {
        if self.leading.swap(false, Ordering::AcqRel) {
            if why == SHUTTING_DOWN {
                tracing::info!(lease = %self.lease, identity = %self.identity, reason = why, "stopped leading");
            } else {
                tracing::warn!(lease = %self.lease, identity = %self.identity, reason = why, "stopped leading");
            }
            self.tx.send_replace(false);
        }
        self.valid_until_ms.store(0, Ordering::Release);
    }
}

/// The outcome of one look at the Lease.
#[derive(Debug)]
enum Attempt {
    /// We hold it now (created, acquired or renewed).
    Held,
    /// Another live holder has it; it expires in `expires_in` unless renewed.
    HeldByOther {
        holder: String,
        expires_in: Duration,
    },
    /// The write lost a race (409): someone else changed the Lease first.
    Conflict,
}

/// When the Lease's record last changed, as this replica saw it: a holder whose clock runs ahead
/// (a renewTime in the future) still expires `leaseDurationSeconds` after we last saw it change.
struct Observed {
    resource_version: String,
    at: Instant,
}

async fn run(api: Api<Lease>, cfg: LeaseConfig, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut observed: Option<Observed> = None;
    let mut next_attempt = Instant::now();
    let mut last_holder: Option<String> = None;
    loop {
        let leading = shared.leading.load(Ordering::Acquire);
        let deadline = shared.valid_until();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(deadline), if leading => {
                shared.lose("no successful renew within the renew deadline");
                continue;
            }
            _ = tokio::time::sleep_until(next_attempt) => {}
        }
        let sent = Instant::now();
        // A leader's attempt may not outlive its leadership; a candidate's is bounded by the deadline.
        let bound = if leading {
            deadline.saturating_duration_since(sent)
        } else {
            cfg.renew_deadline
        };
        let attempt = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(bound, try_acquire_or_renew(&api, &cfg, &mut observed)) => r,
        };
        match attempt {
            Ok(Ok(Attempt::Held)) => {
                shared.held(sent, cfg.renew_deadline);
                last_holder = Some(cfg.identity.clone());
                next_attempt = sent + cfg.renew_period;
            }
            Ok(Ok(Attempt::HeldByOther { holder, expires_in })) => {
                shared.lose(&format!("the lease is held by {holder}"));
                if last_holder.as_deref() != Some(holder.as_str()) {
                    tracing::info!(lease = %shared.lease, identity = %cfg.identity, leader = %holder, "new leader observed");
                    last_holder = Some(holder);
                }
                // Look again at the retry period, or right after the holder's lease expires if sooner.
                let wait = cfg.retry_period.min(expires_in + Duration::from_millis(20));
                next_attempt = Instant::now() + wait;
            }
            Ok(Ok(Attempt::Conflict)) => {
                // Someone else wrote the Lease first: the next GET tells who holds it.
                tracing::debug!(lease = %shared.lease, identity = %cfg.identity, "lease update conflict");
                next_attempt = Instant::now() + Duration::from_millis(50);
            }
            Ok(Err(e)) => {
                // A leader keeps leading until its deadline; the deadline timer above ends it.
                tracing::warn!(lease = %shared.lease, identity = %cfg.identity, error = %e, "lease request failed");
                next_attempt = Instant::now() + cfg.retry_period;
            }
            Err(_elapsed) => {
                tracing::warn!(lease = %shared.lease, identity = %cfg.identity, "lease request timed out");
                next_attempt = Instant::now() + cfg.retry_period;
            }
        }
    }
    if shared.leading.load(Ordering::Acquire) {
        // Stop acting first, then hand over.
        shared.lose(SHUTTING_DOWN);
        match tokio::time::timeout(RELEASE_TIMEOUT, release(&api, &cfg)).await {
            Ok(Ok(true)) => {
                tracing::info!(lease = %shared.lease, identity = %cfg.identity, "lease released")
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(lease = %shared.lease, identity = %cfg.identity, error = %e, "lease release failed")
            }
            Err(_) => {
                tracing::warn!(lease = %shared.lease, identity = %cfg.identity, "lease release timed out")
            }
        }
    } else {
        shared.lose(SHUTTING_DOWN);
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// One round of client-go's `tryAcquireOrRenew`.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    observed: &mut Option<Observed>,
) -> Result<Attempt, kube::Error> {
    let now = Timestamp::now();
    let Some(lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(cfg.lease_duration_seconds()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Held),
            Err(e) if is_conflict(&e) => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        };
    };
    let rv = lease.resource_version().unwrap_or_default();
    let seen_at = match observed {
        Some(o) if o.resource_version == rv => o.at,
        _ => {
            let at = Instant::now();
            *observed = Some(Observed {
                resource_version: rv.clone(),
                at,
            });
            at
        }
    };
    let old = lease.spec.clone().unwrap_or_default();
    let holder = old.holder_identity.clone().filter(|h| !h.is_empty());
    let ours = holder.as_deref() == Some(cfg.identity.as_str());
    if let Some(holder) = holder.as_ref().filter(|_| !ours) {
        let expires_in = expires_in(&old, now, seen_at);
        if !expires_in.is_zero() {
            return Ok(Attempt::HeldByOther {
                holder: holder.clone(),
                expires_in,
            });
        }
        tracing::info!(lease = %cfg.key(), identity = %cfg.identity, expired_holder = %holder, "taking over an expired lease");
    }
    let spec = if ours {
        LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(cfg.lease_duration_seconds()),
            renew_time: Some(MicroTime(now)),
            acquire_time: old.acquire_time.clone().or(Some(MicroTime(now))),
            lease_transitions: old.lease_transitions,
            ..old
        }
    } else {
        LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(cfg.lease_duration_seconds()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(old.lease_transitions.unwrap_or(0).saturating_add(1)),
            ..old
        }
    };
    let mut updated = lease;
    updated.spec = Some(spec);
    // resourceVersion is still the one we read: the API server rejects the write (409) if anyone wrote
    // the Lease in between.
    match api
        .replace(&cfg.name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(Attempt::Held),
        Err(e) if is_conflict(&e) => Ok(Attempt::Conflict),
        Err(e) => Err(e),
    }
}

/// How long until a holder's lease expires: `renewTime + leaseDurationSeconds` by the wall clock, or,
/// if sooner, `leaseDurationSeconds` after this replica last saw the record change. Zero = expired.
fn expires_in(spec: &LeaseSpec, now: Timestamp, seen_at: Instant) -> Duration {
    let duration =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    let by_wall_clock = match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
        Some(MicroTime(renewed)) => {
            let expiry = renewed
                .saturating_add(SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX))
                .unwrap_or(*renewed);
            let left = now.duration_until(expiry);
            Duration::try_from(left).unwrap_or(Duration::ZERO)
        }
        None => Duration::ZERO,
    };
    let by_observation = (seen_at + duration).saturating_duration_since(Instant::now());
    by_wall_clock.min(by_observation)
}

/// Gives the Lease up if we hold it: holder cleared and a 1 s duration, as client-go's `release`, so a
/// successor takes over at its next attempt. Returns whether anything was released.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        return Ok(false);
    };
    let old = lease.spec.clone().unwrap_or_default();
    if old.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(false);
    }
    let now = Timestamp::now();
    lease.spec = Some(LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: old.lease_transitions,
        ..old
    });
    api.replace(&cfg.name, &PostParams::default(), &lease)
        .await
        .map(|_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_defaults_and_overrides() {
        let none = LeaseConfig::from_env_with(|_| None, None);
        assert_eq!(none.name, "surge-aggregator");
        assert_eq!(none.namespace, "default");
        assert!(none.identity.starts_with("surge-"));
        let env = |k: &str| match k {
            "SURGE_LEASE_NAME" => Some("my-lease".to_owned()),
            "POD_NAME" => Some("agg-0".to_owned()),
            "HOSTNAME" => Some("host".to_owned()),
            _ => None,
        };
        let c = LeaseConfig::from_env_with(env, Some("surge\n".into()));
        assert_eq!(
            (c.name.as_str(), c.namespace.as_str(), c.identity.as_str()),
            ("my-lease", "surge", "agg-0")
        );
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.renew_period, Duration::from_secs(2));
        assert_eq!(c.retry_period, Duration::from_secs(2));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validation_keeps_a_margin() {
        let mut c = LeaseConfig::new("l", "ns", "a");
        c.renew_deadline = c.lease_duration;
        assert!(matches!(
            c.validate(),
            Err(LeaseConfigError::DeadlineNotBeforeExpiry { .. })
        ));
        let mut c = LeaseConfig::new("l", "ns", "a");
        c.renew_period = c.renew_deadline;
        assert!(matches!(
            c.validate(),
            Err(LeaseConfigError::RenewNotBeforeDeadline { .. })
        ));
        assert_eq!(
            LeaseConfig::new("l", "ns", "").validate(),
            Err(LeaseConfigError::Empty { field: "identity" })
        );
        let mut c = LeaseConfig::new("l", "ns", "a");
        c.lease_duration = Duration::from_millis(4500);
        assert_eq!(c.lease_duration_seconds(), 5);
    }

    fn spec(renewed_ago: Duration, duration_s: i32) -> LeaseSpec {
        let renewed = Timestamp::now()
            .checked_sub(SignedDuration::try_from(renewed_ago).unwrap())
            .unwrap();
        LeaseSpec {
            holder_identity: Some("other".into()),
            lease_duration_seconds: Some(duration_s),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }
    }

    #[tokio::test]
    async fn expiry_by_renew_time_and_by_observation() {
        let now = Timestamp::now();
        // Renewed 20 s ago with a 15 s lease: expired.
        assert_eq!(
            expires_in(&spec(Duration::from_secs(20), 15), now, Instant::now()),
            Duration::ZERO
        );
        // Renewed 5 s ago: about 10 s left.
        let left = expires_in(&spec(Duration::from_secs(5), 15), now, Instant::now());
        assert!(
            left > Duration::from_secs(9) && left <= Duration::from_millis(10_100),
            "{left:?}"
        );
        // A renewTime an hour in the future (a holder's clock far ahead) still expires 15 s after we saw
        // the record change.
        let mut future = spec(Duration::ZERO, 15);
        future.renew_time = Some(MicroTime(
            now.checked_add(SignedDuration::from_hours(1)).unwrap(),
        ));
        let seen = Instant::now() - Duration::from_secs(16);
        assert_eq!(expires_in(&future, now, seen), Duration::ZERO);
        // No renewTime at all: free.
        let mut none = spec(Duration::ZERO, 15);
        none.renew_time = None;
        assert_eq!(expires_in(&none, now, Instant::now()), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_ends_at_the_deadline_without_the_task() {
        let (tx, _rx) = watch::channel(false);
        let shared = Shared {
            leading: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            valid_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            tx,
            identity: "a".into(),
            lease: "ns/l".into(),
        };
        assert!(!shared.is_leader());
        shared.held(Instant::now(), Duration::from_secs(10));
        assert!(shared.is_leader());
        tokio::time::advance(Duration::from_millis(9_990)).await;
        assert!(shared.is_leader());
        assert!(shared.remaining().unwrap() <= Duration::from_millis(10));
        // Nobody renewed: the flag is still up, but is_leader() already says no.
        tokio::time::advance(Duration::from_millis(20)).await;
        assert!(!shared.is_leader());
        assert_eq!(shared.remaining(), None);
        shared.lose("test");
        assert!(!shared.is_leader());
    }
}
