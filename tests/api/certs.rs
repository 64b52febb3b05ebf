//! A certificate authority of the test's own, for every TLS test (Postgres, Redis, the
//! operator, the RGS): it issues server certificates for 127.0.0.1/localhost and client
//! certificates, and writes each as PEM files into its temporary directory.

use std::path::{Path, PathBuf};

use hub::config::Env;
use hub::outbound::tls::PeerTls;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TestCa {
    dir: tempfile::TempDir,
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as files and as DER.
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Issued {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key.clone()).into()
    }
}

impl TestCa {
    /// A new CA named `name`; its certificate is [`Self::ca_file`].
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca = Self {
            dir: tempfile::tempdir().unwrap(),
            name: name.to_owned(),
            issuer,
        };
        std::fs::write(ca.ca_file(), ca.issuer.pem()).unwrap();
        ca
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir().join(format!("{}-ca.pem", self.name))
    }

    pub fn ca_cert(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self, name: &str) -> Issued {
        self.issue(
            name,
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate whose common name is `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(name, vec![], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Issued {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued {
            cert_file: self.dir().join(format!("{name}.crt")),
            key_file: self.dir().join(format!("{name}.key")),
            cert: cert.der().clone(),
            key: key.serialize_der(),
        };
        std::fs::write(&issued.cert_file, cert.pem()).unwrap();
        std::fs::write(&issued.key_file, key.serialize_pem()).unwrap();
        issued
    }
}

/// `PeerTls` as `<peer>_CA_FILE` (`trusted`'s certificate), `<peer>_CLIENT_CERT` and
/// `<peer>_CLIENT_KEY` (`client`'s files) give it to the hub.
pub fn tls_settings(peer: &str, trusted: &TestCa, client: Option<&Issued>) -> PeerTls {
    let path = |p: &Path| p.display().to_string();
    let mut pairs = vec![(format!("{peer}_CA_FILE"), path(&trusted.ca_file()))];
    if let Some(client) = client {
        pairs.push((format!("{peer}_CLIENT_CERT"), path(&client.cert_file)));
        pairs.push((format!("{peer}_CLIENT_KEY"), path(&client.key_file)));
    }
    let env = Env::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    PeerTls::from_env(&env, peer).expect("the test's certificates are valid")
}
