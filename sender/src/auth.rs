//! A destination's credentials: TLS options (its own CA, a client certificate, the server name to
//! verify) and a bearer token read from a file.
//!
//! - TLS: a destination with [`ClientTls`] gets a `reqwest::Client` of its own, built here; the others
//!   share the caller's client. Verification is on unless `insecure_skip_verify`. `server_name` is the
//!   name the certificate must carry when the URL names something else (a pod IP): the request goes to
//!   `https://<server_name>:<port>/…` and a resolver sends that name to the URL's host, so SNI and
//!   verification both use `server_name`.
//! - Token: `Authorization: Bearer <file content, trimmed>`, the file re-read when its modification
//!   time changes (checked at most once per [`TOKEN_CHECK_EVERY`]): the kubelet rotates projected
//!   ServiceAccount tokens in place. A file that cannot be read fails the attempt as a network error
//!   would (retried, never sent without the token); a token read before is kept across a failed
//!   re-read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::time::Instant;

/// TLS toward one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA bundle the server's certificate must chain to (instead of the system roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must carry, when not the URL's host.
    pub server_name: Option<String>,
    /// Accept any server certificate (development only).
    pub insecure_skip_verify: bool,
}

/// How often a token file's modification time is looked at.
pub const TOKEN_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A bearer token in a file, re-read when the file changes.
#[derive(Debug)]
pub(crate) struct TokenFile {
    path: PathBuf,
    state: Mutex<TokenState>,
}

#[derive(Debug, Default)]
struct TokenState {
    token: Option<Arc<str>>,
    mtime: Option<SystemTime>,
    checked: Option<Instant>,
}

impl TokenFile {
    pub(crate) fn new(path: PathBuf) -> TokenFile {
        TokenFile {
            path,
            state: Mutex::new(TokenState::default()),
        }
    }

    /// The current token, re-read if the file changed since the last look.
    pub(crate) fn current(&self) -> Result<Arc<str>, String> {
        let mut st = self.state.lock();
        let due = st
            .checked
            .is_none_or(|at| at.elapsed() >= TOKEN_CHECK_EVERY);
        if due {
            st.checked = Some(Instant::now());
            let mtime = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            if st.token.is_none() || mtime != st.mtime {
                match read_token(&self.path) {
                    Ok(t) => {
                        st.token = Some(t);
                        st.mtime = mtime;
                    }
                    Err(e) if st.token.is_some() => {
                        tracing::warn!(path = %self.path.display(), error = %e, "bearer_token_file: re-reading failed; keeping the token read before");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        st.token
            .clone()
            .ok_or_else(|| format!("bearer_token_file {}: no token", self.path.display()))
    }
}

fn read_token(path: &Path) -> Result<Arc<str>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("bearer_token_file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() || token.contains(['\n', '\r', ' ']) {
        return Err(format!(
            "bearer_token_file {}: not a single token",
            path.display()
        ));
    }
    Ok(token.into())
}

/// Sends `alias` to `target` (the URL's own host), every other name to the system resolver.
struct AliasResolver {
    alias: String,
    target: String,
}

impl reqwest::dns::Resolve for AliasResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = if name.as_str() == self.alias {
            self.target.clone()
        } else {
            name.as_str().to_owned()
        };
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client of a destination with TLS options, and the URL to send to (its host replaced by
/// `server_name` when set).
pub(crate) fn tls_client(
    tls: &ClientTls,
    url: &reqwest::Url,
) -> Result<(reqwest::Client, reqwest::Url), String> {
    // The process-wide provider reqwest's rustls uses; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(90));
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "ca_file {}: no CERTIFICATE in the file",
                ca.display()
            ));
        }
        builder = builder.tls_certs_only(certs);
    }
    if let Some((cert, key)) = &tls.client_cert {
        let mut pem =
            std::fs::read(cert).map_err(|e| format!("cert_file {}: {e}", cert.display()))?;
        pem.push(b'\n');
        pem.extend(std::fs::read(key).map_err(|e| format!("key_file {}: {e}", key.display()))?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!(
                "cert_file {} / key_file {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
        builder = builder.identity(identity);
    }
    if tls.insecure_skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    let mut url = url.clone();
    if let Some(name) = &tls.server_name {
        let target = url
            .host_str()
            .ok_or_else(|| "the URL has no host".to_owned())?
            .trim_matches(['[', ']'])
            .to_owned();
        url.set_host(Some(name))
            .map_err(|e| format!("server_name {name:?}: {e}"))?;
        builder = builder.dns_resolver(Arc::new(AliasResolver {
            alias: name.clone(),
            target,
        }));
    }
    let client = builder.build().map_err(|e| format!("TLS client: {e}"))?;
    Ok((client, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_re_read_when_it_changes_and_kept_when_it_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let tf = TokenFile::new(path.clone());
        assert!(tf.current().unwrap_err().contains("token"));
        std::fs::write(&path, "first\n").unwrap();
        // The failed read above was a look: the next one waits for TOKEN_CHECK_EVERY.
        tf.state.lock().checked = None;
        assert_eq!(&*tf.current().unwrap(), "first");
        std::fs::write(&path, "second").unwrap();
        // Force a different modification time, whatever the file system's resolution.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        // Not due yet: the token read before is used.
        assert_eq!(&*tf.current().unwrap(), "first");
        tf.state.lock().checked = None;
        assert_eq!(&*tf.current().unwrap(), "second");
        std::fs::write(&path, "two tokens\nhere").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later + Duration::from_secs(5))
            .unwrap();
        tf.state.lock().checked = None;
        assert_eq!(&*tf.current().unwrap(), "second");
    }
}
