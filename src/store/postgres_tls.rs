//! TLS of the `LISTEN` connection, with libpq's `sslmode` semantics.
//!
//! The pool and the migrations connect through libpq, which reads `sslmode`, `sslrootcert`,
//! `sslcert` and `sslkey` from `DATABASE_URL` itself. The listener connects through
//! tokio-postgres, which only knows `disable`, `prefer` and `require` and never verifies
//! anything; so those parameters are taken out of the URL it is handed and reproduced here
//! with OpenSSL, the library libpq is built with, so that both connections verify alike:
//!
//! | `sslmode` | encrypted | server certificate checked against `sslrootcert` | host name checked |
//! |---|---|---|---|
//! | `disable` | no | no | no |
//! | `allow`, `prefer` (default) | if the server offers it | no | no |
//! | `require` | yes | only if `sslrootcert` is set (as libpq does) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! The verifying modes need `sslrootcert` set to a PEM file: libpq's fallback,
//! `~/.postgresql/root.crt`, is refused at start rather than looked for.

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::config::SslMode;

use crate::settings::redact_url;

/// What the listener shows in `pg_stat_activity` unless `DATABASE_URL` names another one.
pub const LISTENER_APPLICATION_NAME: &str = "hub-outbox-listener";

#[derive(Debug, thiserror::Error)]
#[error("DATABASE_URL {url}: {message}")]
pub struct PostgresTlsError {
    /// Without its password.
    url: String,
    message: String,
}

/// Where and how the listener connects; built (and its files read) once, at start.
#[derive(Clone)]
pub struct ListenTarget {
    pub config: tokio_postgres::Config,
    pub tls: MakeTlsConnector,
}

impl ListenTarget {
    pub fn from_url(url: &str) -> Result<Self, PostgresTlsError> {
        let fail = |message: String| PostgresTlsError {
            url: redact_url(url),
            message,
        };
        let mut parsed =
            reqwest::Url::parse(url).map_err(|e| fail(format!("is not a URL: {e}")))?;
        let mut tls = TlsParameters::default();
        let mut kept = Vec::new();
        for (key, value) in parsed.query_pairs() {
            let value = value.into_owned();
            match key.as_ref() {
                "sslmode" => tls.mode = Some(value),
                "sslrootcert" => tls.root_cert = Some(value),
                "sslcert" => tls.cert = Some(value),
                "sslkey" => tls.key = Some(value),
                _ => kept.push((key.into_owned(), value)),
            }
        }
        parsed.set_query(None);
        if !kept.is_empty() {
            parsed.query_pairs_mut().extend_pairs(&kept);
        }
        let mut config: tokio_postgres::Config = parsed
            .as_str()
            .parse()
            .map_err(|e| fail(format!("is not usable by the listener: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name(LISTENER_APPLICATION_NAME);
        }
        let (mode, connector) = tls.connector().map_err(fail)?;
        config.ssl_mode(mode);
        Ok(Self {
            config,
            tls: connector,
        })
    }
}

#[derive(Default)]
struct TlsParameters {
    mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl TlsParameters {
    fn connector(&self) -> Result<(SslMode, MakeTlsConnector), String> {
        let mode = self.mode.as_deref().unwrap_or("prefer");
        let (ssl_mode, verify, verify_host) = match mode {
            "disable" => (SslMode::Disable, false, false),
            "allow" | "prefer" => (SslMode::Prefer, false, false),
            "require" => (SslMode::Require, self.root_cert.is_some(), false),
            "verify-ca" => (SslMode::Require, true, false),
            "verify-full" => (SslMode::Require, true, true),
            other => {
                return Err(format!(
                    "sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got {other:?}"
                ))
            }
        };
        let tls_error = |what: &str, e: openssl::error::ErrorStack| format!("{what}: {e}");
        let mut builder = SslConnector::builder(SslMethod::tls_client())
            .map_err(|e| tls_error("cannot set up TLS", e))?;
        if verify {
            let path = self
                .root_cert
                .as_deref()
                .ok_or_else(|| format!("sslmode={mode} needs sslrootcert=<CA file>"))?;
            builder.set_cert_store(ca_store(path)?);
            builder.set_verify(SslVerifyMode::PEER);
        } else {
            builder.set_verify(SslVerifyMode::NONE);
        }
        match (&self.cert, &self.key) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                builder
                    .set_certificate_chain_file(cert)
                    .map_err(|e| tls_error(&format!("sslcert {cert}"), e))?;
                builder
                    .set_private_key_file(key, SslFiletype::PEM)
                    .map_err(|e| tls_error(&format!("sslkey {key}"), e))?;
                builder
                    .check_private_key()
                    .map_err(|e| tls_error("sslkey does not belong to sslcert", e))?;
            }
            _ => return Err("sslcert and sslkey must be set together".into()),
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        connector.set_callback(move |connection, _| {
            connection.set_verify_hostname(verify_host);
            Ok(())
        });
        Ok((ssl_mode, connector))
    }
}

/// Only the certificates of `path`, as libpq trusts them (not the system's).
fn ca_store(path: &str) -> Result<openssl::x509::store::X509Store, String> {
    let pem = std::fs::read(path).map_err(|e| format!("sslrootcert {path}: cannot read: {e}"))?;
    let certs = X509::stack_from_pem(&pem)
        .ok()
        .filter(|certs| !certs.is_empty())
        .ok_or_else(|| format!("sslrootcert {path} holds no PEM certificate"))?;
    let mut store = X509StoreBuilder::new().map_err(|e| format!("cannot set up TLS: {e}"))?;
    for cert in certs {
        store
            .add_cert(cert)
            .map_err(|e| format!("sslrootcert {path}: {e}"))?;
    }
    Ok(store.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(url: &str) -> String {
        match ListenTarget::from_url(url) {
            Ok(_) => panic!("{url} was accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn libpq_parameters_are_taken_out_of_the_url_and_mapped_to_tokio_postgres_modes() {
        for (mode, expected) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Prefer),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
        ] {
            let url = format!("postgres://hub@db:5432/hub?sslmode={mode}&connect_timeout=5");
            let target = ListenTarget::from_url(&url).unwrap();
            assert_eq!(target.config.get_ssl_mode(), expected, "{mode}");
            assert_eq!(
                target.config.get_connect_timeout(),
                Some(&std::time::Duration::from_secs(5)),
                "other parameters are kept"
            );
            assert_eq!(
                target.config.get_application_name(),
                Some(LISTENER_APPLICATION_NAME)
            );
        }
        let default = ListenTarget::from_url("postgres://hub@db/hub").unwrap();
        assert_eq!(default.config.get_ssl_mode(), SslMode::Prefer, "as libpq");
    }

    #[test]
    fn verifying_modes_need_a_readable_ca_file_and_say_so_without_the_password() {
        let error = error_of("postgres://hub:pw-secret@db/hub?sslmode=verify-full");
        assert!(error.contains("DATABASE_URL"), "{error}");
        assert!(
            error.contains("sslmode=verify-full needs sslrootcert"),
            "{error}"
        );
        assert!(!error.contains("pw-secret"), "{error}");

        let error = error_of(
            "postgres://hub:pw-secret@db/hub?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
        );
        assert!(
            error.contains("sslrootcert /nonexistent/ca.pem: cannot read"),
            "{error}"
        );
        assert!(!error.contains("pw-secret"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");

        let not_pem = std::env::temp_dir().join(format!("not-a-ca-{}.pem", std::process::id()));
        std::fs::write(&not_pem, "hello").unwrap();
        let error = error_of(&format!(
            "postgres://hub@db/hub?sslmode=verify-full&sslrootcert={}",
            not_pem.display()
        ));
        let _ = std::fs::remove_file(&not_pem);
        assert!(error.contains("holds no PEM certificate"), "{error}");

        let error = error_of("postgres://hub@db/hub?sslmode=on");
        assert!(error.contains("sslmode must be disable, allow"), "{error}");
        let error = error_of("postgres://hub@db/hub?sslcert=/x.crt");
        assert!(
            error.contains("sslcert and sslkey must be set together"),
            "{error}"
        );
    }
}
