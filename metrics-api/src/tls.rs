//! HTTPS for the metrics APIs: rustls (ring provider) driven by a hand-written accept loop, so the serving
//! certificate can be swapped while serving and each connection's verified client certificate reaches
//! the handlers as a request extension.
//!
//! - The serving certificate comes from PEM files, re-read when their modification time changes (checked
//!   every `reload_interval` by the accept loop; a bad new pair is logged and the old one kept), or is
//!   self-signed with rcgen for development.
//! - Client certificates are *requested*, not required: a presented certificate must verify against the
//!   requestheader CA (else the handshake fails); its subject CN becomes a [`ClientIdentity`]. Whether a
//!   request without one is served is the router's decision (see `super::auth`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use parking_lot::{Mutex, RwLock};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::options::{ClientCa, TlsFiles};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or holds no usable PEM item.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// The private key is not the one the certificate was issued for.
    #[error("{key}: the key does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The development certificate could not be generated.
    #[error("generating a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// The ring provider, the only one surge uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => file_err(
            path,
            "no PRIVATE KEY (or RSA PRIVATE KEY, EC PRIVATE KEY) in the file",
        ),
        e => file_err(path, e),
    })
}

/// Reads a PEM CA bundle into a root store (every certificate must be a usable trust anchor).
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path)? {
        roots.add(c).map_err(|e| file_err(path, e))?;
    }
    Ok(roots)
}

/// The front-proxy CA's certificates, from its file or its PEM text.
pub fn client_roots(ca: &ClientCa) -> Result<RootCertStore, TlsError> {
    match ca {
        ClientCa::File(path) => read_roots(path),
        ClientCa::Pem { pem, origin } => {
            let bad = |m: String| TlsError::Config(format!("{origin}: {m}"));
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no CERTIFICATE in it".into()));
            }
            let mut roots = RootCertStore::empty();
            for c in certs {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
            Ok(roots)
        }
    }
}

/// Which file of a certificate/key pair a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairFile {
    Cert,
    Key,
}

/// Pairs a chain with its key: the provider must sign with the key, and the key must be the chain
/// leaf's. Each error says which file it is about.
fn certified_key(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, (PairFile, TlsError)> {
    let key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| (PairFile::Key, file_err(key_path, e)))?;
    let ck = CertifiedKey::new(certs, key);
    match ck.keys_match() {
        Ok(()) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(_)) => Err((
            PairFile::Key,
            TlsError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            },
        )),
        // The leaf itself does not parse.
        Err(e) => Err((
            PairFile::Cert,
            file_err(
                cert_path,
                format!("the first certificate is not valid: {e}"),
            ),
        )),
    }
}

/// Reads and pairs a certificate chain and its key, reporting the problems of both files (not only the
/// first) with the file each is in.
pub(crate) fn load_pair(
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, Vec<(PairFile, TlsError)>> {
    match (read_certs(cert_file), read_key(key_file)) {
        (Ok(certs), Ok(key)) => {
            certified_key(certs, key, cert_file, key_file).map_err(|problem| vec![problem])
        }
        (certs, key) => Err(certs
            .err()
            .map(|e| (PairFile::Cert, e))
            .into_iter()
            .chain(key.err().map(|e| (PairFile::Key, e)))
            .collect()),
    }
}

/// Every problem [`ReloadingCert::from_files`] (or a client certificate) would refuse in a PEM
/// certificate chain and its key: unreadable files, no PEM item, a key the provider cannot use, a key
/// that is not the certificate's. Empty when the pair loads.
pub fn check_pair(cert_file: &Path, key_file: &Path) -> Vec<(PairFile, TlsError)> {
    load_pair(cert_file, key_file).err().unwrap_or_default()
}

/// The first problem of a pair, for loaders that stop at one.
pub(crate) fn first_problem(problems: Vec<(PairFile, TlsError)>) -> TlsError {
    problems
        .into_iter()
        .next()
        .map(|(_, e)| e)
        .unwrap_or_else(|| TlsError::Config("the certificate pair did not load".into()))
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The serving certificate, swapped in place when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
    files: Option<TlsFiles>,
    seen: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ReloadingCert {
    /// Loads `files` (errors name the file).
    pub fn from_files(files: &TlsFiles) -> Result<ReloadingCert, TlsError> {
        let seen = (mtime(&files.cert_file), mtime(&files.key_file));
        let ck = load_pair(&files.cert_file, &files.key_file).map_err(first_problem)?;
        Ok(ReloadingCert {
            current: RwLock::new(Arc::new(ck)),
            files: Some(files.clone()),
            seen: Mutex::new(seen),
        })
    }

    /// A fresh self-signed certificate for `localhost` and `127.0.0.1` (development only).
    pub fn self_signed() -> Result<ReloadingCert, TlsError> {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
        let cert = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let generated = Path::new("<self-signed>");
        let ck = certified_key(vec![cert], key, generated, generated).map_err(|(_, e)| e)?;
        Ok(ReloadingCert {
            current: RwLock::new(Arc::new(ck)),
            files: None,
            seen: Mutex::new((None, None)),
        })
    }

    /// The certificate chain now served (the leaf first).
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.read().cert.clone()
    }

    /// The files' check interval, when the certificate comes from files.
    pub fn reload_interval(&self) -> Option<Duration> {
        self.files.as_ref().map(|f| f.reload_interval)
    }

    /// Re-reads the files if either modification time changed. `Ok(true)` when a new certificate is
    /// served; on error the old one stays.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let Some(files) = &self.files else {
            return Ok(false);
        };
        let now = (mtime(&files.cert_file), mtime(&files.key_file));
        {
            let mut seen = self.seen.lock();
            if *seen == now {
                return Ok(false);
            }
            // Remember the attempt so a broken pair is reported once per change, not every tick.
            *seen = now;
        }
        let ck = load_pair(&files.cert_file, &files.key_file).map_err(first_problem)?;
        *self.current.write() = Arc::new(ck);
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// Builds the server config: the reloading certificate, and client certificates requested and verified
/// against `client_ca` when given.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    client_ca: Option<&ClientCa>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots(ca)?), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    // HTTP/1.1 only: kube-apiserver's proxy negotiates it when offered nothing else.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The verified client certificate of a connection, as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject's common name, if it has one.
    pub common_name: Option<String>,
}

/// Reads one DER TLV at the start of `b`: (tag, contents, rest).
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &x in &b[..n] {
            len = (len << 8) | usize::from(x);
        }
        b = &b[n..];
        len
    };
    if b.len() < len {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

/// The subject common name of a DER certificate: Certificate → TBSCertificate → subject (the sixth
/// field, fifth without the optional version) → the first RDN attribute 2.5.4.3.
pub fn subject_common_name(cert: &[u8]) -> Option<String> {
    let (_, certificate, _) = der_tlv(cert)?;
    let (_, tbs, _) = der_tlv(certificate)?;
    let mut rest = tbs;
    let (tag, _, r) = der_tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // explicit version
    }
    // serialNumber, signature, issuer, validity
    for _ in 0..4 {
        rest = der_tlv(rest)?.2;
    }
    let (_, subject, _) = der_tlv(rest)?;
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (_, set, r) = der_tlv(rdns)?;
        rdns = r;
        let mut attrs = set;
        while !attrs.is_empty() {
            let (_, atv, r) = der_tlv(attrs)?;
            attrs = r;
            let (oid_tag, oid, value) = der_tlv(atv)?;
            if oid_tag == 0x06 && oid == [0x55, 0x04, 0x03] {
                let (vtag, v, _) = der_tlv(value)?;
                return match vtag {
                    // BMPString: UCS-2 big endian.
                    0x1e => {
                        let units: Vec<u16> = v
                            .chunks_exact(2)
                            .map(|c| u16::from_be_bytes([c[0], c[1]]))
                            .collect();
                        String::from_utf16(&units).ok()
                    }
                    _ => Some(String::from_utf8_lossy(v).into_owned()),
                };
            }
        }
    }
    None
}

fn identity_of(conn: &rustls::ServerConnection) -> Option<ClientIdentity> {
    let leaf = conn.peer_certificates()?.first()?;
    Some(ClientIdentity {
        common_name: subject_common_name(leaf),
    })
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, reloading `cert` as configured.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: Arc<ServerConfig>,
    cert: Arc<ReloadingCert>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let mut reload =
        tokio::time::interval(cert.reload_interval().unwrap_or(Duration::from_secs(3600)));
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = reload.tick() => match cert.reload_if_changed() {
                Ok(true) => tracing::info!("kubernetes metrics API: serving certificate reloaded"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "kubernetes metrics API: certificate reload failed; keeping the current one"),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "kubernetes metrics API: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                conns.spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "kubernetes metrics API: TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let identity = identity_of(tls.get_ref().1);
                    let svc = app.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                        if let Some(id) = &identity {
                            req.extensions_mut().insert(id.clone());
                        }
                        req
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc));
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "kubernetes metrics API: connection ended");
                    }
                });
            }
        }
    }
    conns.shutdown().await;
    Ok(())
}
