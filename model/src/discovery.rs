//! What discovery hands the scrape side: groups of addresses sharing labels.
//!
//! It lives here, below the agent, so that every discovery source (static configs, file SD, the Kubernetes
//! pod watch) can produce target groups without depending on the agent that scrapes them.

/// A set of addresses sharing labels, as static configs, file SD and live sources (Kubernetes pods of
/// this node) give them. Target relabeling turns each address into one scrape target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    /// `host:port` addresses, each becoming `__address__`.
    pub targets: Vec<String>,
    /// Labels shared by every address of the group, before target relabeling.
    pub labels: Vec<(String, String)>,
    /// Where the group came from (`static`, a file path), for logs.
    pub source: String,
}
