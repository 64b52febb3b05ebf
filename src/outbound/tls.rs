//! TLS towards one outside peer (the operator, the RGS, Redis): which certificate authority
//! to trust and which client certificate to present, from `<PEER>_CA_FILE`,
//! `<PEER>_CLIENT_CERT` and `<PEER>_CLIENT_KEY`.
//!
//! The files are read and parsed once, at start: a missing, unreadable or malformed file, or
//! a certificate without its key, stops the hub with one line naming the variable. Only the
//! paths are ever shown; the key's contents never reach a log line or `Debug` output.

use std::path::{Path, PathBuf};

use crate::settings::{ConfigError, Env};

/// A PEM file as read at start. `Debug` shows the path only.
#[derive(Clone)]
pub struct PemFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PemFile").field(&self.path).finish()
    }
}

/// A client certificate (with its chain) and its private key.
#[derive(Clone)]
pub struct ClientCert {
    pub cert: PemFile,
    pub key: PemFile,
    identity: reqwest::Identity,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("cert", &self.cert.path)
            .field("key", &self.key.path)
            .finish()
    }
}

/// How to talk TLS to one peer. The default trusts the public roots and presents no
/// certificate.
#[derive(Clone, Default)]
pub struct PeerTls {
    /// Trusted instead of the public roots: a private CA pins the peer to it.
    pub ca: Option<PemFile>,
    ca_certs: Vec<reqwest::Certificate>,
    /// Presented when the peer asks for one (mutual TLS).
    pub client: Option<ClientCert>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("ca", &self.ca.as_ref().map(|ca| &ca.path))
            .field("client", &self.client)
            .finish()
    }
}

impl PeerTls {
    /// Reads `<peer>_CA_FILE`, `<peer>_CLIENT_CERT` and `<peer>_CLIENT_KEY`.
    pub fn from_env(env: &Env, peer: &str) -> Result<Self, ConfigError> {
        let (ca_var, cert_var, key_var) = (
            format!("{peer}_CA_FILE"),
            format!("{peer}_CLIENT_CERT"),
            format!("{peer}_CLIENT_KEY"),
        );
        let mut tls = PeerTls::default();
        if let Some(path) = env.get(&ca_var) {
            let ca = read(&ca_var, path)?;
            tls.ca_certs = ca_certificates(&ca_var, &ca)?;
            tls.ca = Some(ca);
        }
        tls.client = match (env.get(&cert_var), env.get(&key_var)) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(client_cert(
                (&cert_var, read(&cert_var, cert)?),
                (&key_var, read(&key_var, key)?),
            )?),
            _ => {
                return Err(ConfigError(format!(
                    "{cert_var} and {key_var} must be set together"
                )))
            }
        };
        Ok(tls)
    }

    /// Whether a CA or a client certificate is configured.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }

    /// This peer's CA and client certificate as the redis crate takes them; its CA replaces
    /// the system's roots there too.
    pub fn redis_certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self.client.as_ref().map(|client| redis::ClientTlsConfig {
                client_cert: client.cert.pem.clone(),
                client_key: client.key.pem.clone(),
            }),
            root_cert: self.ca.as_ref().map(|ca| ca.pem.clone()),
        }
    }

    /// `builder` with this peer's trust and client certificate.
    pub fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if !self.ca_certs.is_empty() {
            builder = builder.tls_built_in_root_certs(false);
            for cert in &self.ca_certs {
                builder = builder.add_root_certificate(cert.clone());
            }
        }
        match &self.client {
            Some(client) => builder.identity(client.identity.clone()),
            None => builder,
        }
    }
}

/// How long the start-time look at an `https://` peer's certificate may take.
const CERTIFICATE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// At start, for an `https://` peer: a server certificate that `client`'s trust refuses (a
/// CA file that did not sign it) is a misconfiguration, reported now with `ca_var` named. A
/// peer that cannot be reached, or that turns us away after the handshake (a client
/// certificate it does not accept), is an outage like any other and is ridden out by the
/// callers as always, so the hub still starts while its operator is down.
pub async fn check_peer_certificate(
    client: &reqwest::Client,
    url: &str,
    ca_var: &str,
) -> Result<(), String> {
    if !url.starts_with("https://") {
        return Ok(());
    }
    let Err(error) = client
        .head(url)
        .timeout(CERTIFICATE_CHECK_TIMEOUT)
        .send()
        .await
    else {
        return Ok(());
    };
    let mut reasons = vec![error.to_string()];
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        reasons.push(cause.to_string());
        source = cause.source();
    }
    match reasons
        .iter()
        .find(|reason| reason.starts_with("invalid peer certificate"))
    {
        Some(reason) => Err(format!(
            "{ca_var}: {} presents a certificate the hub does not trust ({reason})",
            crate::settings::redact_url(url)
        )),
        None => Ok(()),
    }
}

/// `REDIS_CA_FILE`, `REDIS_CLIENT_CERT` and `REDIS_CLIENT_KEY`, which need a `rediss://`
/// `REDIS_URL`: set with a plain one they would silently protect nothing.
pub fn redis_tls(env: &Env, redis_url: Option<&str>) -> Result<PeerTls, ConfigError> {
    let tls = PeerTls::from_env(env, "REDIS")?;
    if tls.is_set() && !redis_url.is_some_and(|url| url.starts_with("rediss://")) {
        return Err(ConfigError(
            "REDIS_CA_FILE, REDIS_CLIENT_CERT and REDIS_CLIENT_KEY need a rediss:// REDIS_URL"
                .into(),
        ));
    }
    Ok(tls)
}

fn read(var: &str, path: &str) -> Result<PemFile, ConfigError> {
    let path = Path::new(path.trim());
    let pem = std::fs::read(path)
        .map_err(|error| ConfigError(format!("{var}: cannot read {}: {error}", path.display())))?;
    Ok(PemFile {
        path: path.to_owned(),
        pem,
    })
}

fn ca_certificates(var: &str, ca: &PemFile) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let not_pem = || {
        ConfigError(format!(
            "{var}: {} holds no PEM certificate",
            ca.path.display()
        ))
    };
    let certs = reqwest::Certificate::from_pem_bundle(&ca.pem).map_err(|_| not_pem())?;
    if certs.is_empty() {
        return Err(not_pem());
    }
    Ok(certs)
}

fn client_cert(
    (cert_var, cert): (&str, PemFile),
    (key_var, key): (&str, PemFile),
) -> Result<ClientCert, ConfigError> {
    let unusable = |why: &str| {
        ConfigError(format!(
            "{cert_var}/{key_var}: {} and {} are not a usable certificate and private key: {why}",
            cert.path.display(),
            key.path.display()
        ))
    };
    if !cert
        .pem
        .windows(b"CERTIFICATE-----".len())
        .any(|w| w == b"CERTIFICATE-----")
    {
        return Err(unusable("no PEM certificate in the first"));
    }
    let mut both = cert.pem.clone();
    both.push(b'\n');
    both.extend_from_slice(&key.pem);
    let identity =
        reqwest::Identity::from_pem(&both).map_err(|_| unusable("no PEM private key"))?;
    // Building a client pairs the key with the certificate, so a mismatch shows now.
    reqwest::Client::builder()
        .identity(identity.clone())
        .build()
        .map_err(|_| unusable("the key does not belong to the certificate"))?;
    Ok(ClientCert {
        cert,
        key,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, written into `dir` as `name.crt`/`name.key`.
    fn write_pair(dir: &Path, name: &str) -> (String, String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (
            cert_path.display().to_string(),
            key_path.display().to_string(),
            key.serialize_pem(),
        )
    }

    fn error_of(pairs: &[(&str, &str)]) -> String {
        match PeerTls::from_env(&Env::from_pairs(pairs.iter().copied()), "OPERATOR") {
            Ok(_) => panic!("{pairs:?} was accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn nothing_set_trusts_the_public_roots_and_presents_nothing() {
        let tls = PeerTls::from_env(&Env::from_pairs([]), "OPERATOR").unwrap();
        assert!(!tls.is_set());
    }

    #[test]
    fn bad_files_stop_the_start_with_one_line_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = write_pair(dir.path(), "a");
        let (_, other_key, _) = write_pair(dir.path(), "b");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let junk = junk.display().to_string();

        let cases: [(&[(&str, &str)], &str); 6] = [
            (
                &[("OPERATOR_CA_FILE", "/nonexistent/ca.pem")],
                "OPERATOR_CA_FILE: cannot read /nonexistent/ca.pem",
            ),
            (&[("OPERATOR_CA_FILE", &junk)], "holds no PEM certificate"),
            (
                &[("OPERATOR_CLIENT_CERT", &cert)],
                "OPERATOR_CLIENT_CERT and OPERATOR_CLIENT_KEY must be set together",
            ),
            (
                &[
                    ("OPERATOR_CLIENT_CERT", &cert),
                    ("OPERATOR_CLIENT_KEY", &junk),
                ],
                "no PEM private key",
            ),
            (
                &[
                    ("OPERATOR_CLIENT_CERT", &key),
                    ("OPERATOR_CLIENT_KEY", &key),
                ],
                "no PEM certificate",
            ),
            (
                &[
                    ("OPERATOR_CLIENT_CERT", &cert),
                    ("OPERATOR_CLIENT_KEY", &other_key),
                ],
                "the key does not belong to the certificate",
            ),
        ];
        for (pairs, expected) in cases {
            let error = error_of(pairs);
            assert!(error.contains(expected), "{pairs:?}: {error}");
            assert!(!error.contains('\n'), "one line: {error}");
            assert!(!error.contains("PRIVATE KEY"), "no key material: {error}");
        }
    }

    #[test]
    fn debug_output_shows_the_paths_and_never_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, key_pem) = write_pair(dir.path(), "client");
        let env = Env::from_pairs([
            ("OPERATOR_CA_FILE", cert.as_str()),
            ("OPERATOR_CLIENT_CERT", cert.as_str()),
            ("OPERATOR_CLIENT_KEY", key.as_str()),
        ]);
        let tls = PeerTls::from_env(&env, "OPERATOR").unwrap();
        let shown = format!("{tls:?} {tls:#?}");
        assert!(shown.contains(&key), "{shown}");
        let key_body = key_pem.lines().nth(1).unwrap();
        assert!(!shown.contains(key_body), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }

    #[test]
    fn redis_tls_settings_need_a_rediss_url() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _, _) = write_pair(dir.path(), "ca");
        let env = Env::from_pairs([("REDIS_CA_FILE", cert.as_str())]);
        for url in [None, Some("redis://cache:6379")] {
            let error = redis_tls(&env, url).unwrap_err().to_string();
            assert!(error.contains("need a rediss:// REDIS_URL"), "{error}");
        }
        assert!(redis_tls(&env, Some("rediss://cache:6380"))
            .unwrap()
            .is_set());
    }
}
