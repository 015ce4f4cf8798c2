//! What every aggregated API server reads before it serves: kube-apiserver's front-proxy CA and the
//! names it may present, from ConfigMap `kube-system/extension-apiserver-authentication`.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

/// The namespace and name kube-apiserver publishes its client authentication settings under.
const NAMESPACE: &str = "kube-system";
const NAME: &str = "extension-apiserver-authentication";

/// kube-apiserver's front proxy as the cluster publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontProxy {
    /// PEM CA bundle (`requestheader-client-ca-file`).
    pub client_ca_pem: String,
    /// Allowed client certificate common names (`requestheader-allowed-names`; empty: any).
    pub allowed_names: Vec<String>,
}

/// Why the front-proxy settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrontProxyError {
    /// The API server refused or failed the read (RBAC: Role `extension-apiserver-authentication-reader`).
    #[error("reading ConfigMap {NAMESPACE}/{NAME}")]
    Read(#[source] kube::Error),
    /// The ConfigMap has no front-proxy CA: kube-apiserver runs without `--requestheader-client-ca-file`.
    #[error(
        "ConfigMap {NAMESPACE}/{NAME} has no requestheader-client-ca-file (kube-apiserver runs without --requestheader-client-ca-file)"
    )]
    NoCa,
    /// `requestheader-allowed-names` is not a JSON list of strings.
    #[error(
        "ConfigMap {NAMESPACE}/{NAME}: requestheader-allowed-names is not a JSON list of names: {0}"
    )]
    AllowedNames(String),
}

/// Reads the front-proxy CA and allowed names.
pub async fn front_proxy(client: Client) -> Result<FrontProxy, FrontProxyError> {
    let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    let cm = api.get(NAME).await.map_err(FrontProxyError::Read)?;
    parse(&cm)
}

fn parse(cm: &ConfigMap) -> Result<FrontProxy, FrontProxyError> {
    let data = cm.data.as_ref();
    let get = |k: &str| data.and_then(|d| d.get(k)).map(String::as_str);
    let client_ca_pem = get("requestheader-client-ca-file")
        .filter(|s| !s.trim().is_empty())
        .ok_or(FrontProxyError::NoCa)?
        .to_owned();
    let allowed_names = match get("requestheader-allowed-names") {
        None | Some("") => Vec::new(),
        Some(text) => serde_json::from_str(text)
            .map_err(|_| FrontProxyError::AllowedNames(text.to_owned()))?,
    };
    Ok(FrontProxy {
        client_ca_pem,
        allowed_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(pairs: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn reads_what_kube_apiserver_publishes() {
        let fp = parse(&cm(&[
            (
                "requestheader-client-ca-file",
                "-----BEGIN CERTIFICATE-----\n...",
            ),
            ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
        ]))
        .unwrap();
        assert_eq!(fp.allowed_names, ["front-proxy-client"]);
        assert!(fp.client_ca_pem.starts_with("-----BEGIN"));
        assert!(matches!(parse(&cm(&[])), Err(FrontProxyError::NoCa)));
        assert!(matches!(
            parse(&cm(&[
                ("requestheader-client-ca-file", "x"),
                ("requestheader-allowed-names", "front-proxy-client")
            ])),
            Err(FrontProxyError::AllowedNames(_))
        ));
    }
}
