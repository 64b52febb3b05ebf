//! HTTPS in front of a test's mock operator or mock RGS: a TLS terminator on an ephemeral
//! port that presents a certificate of the test's CA, may require a client certificate of
//! it, and passes the plaintext on to the real mock, so the mock's behaviour is unchanged.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::certs::{Issued, TestCa};

pub struct TlsFront {
    addr: SocketAddr,
    waiting: Option<(TcpListener, TlsAcceptor)>,
    task: Option<JoinHandle<()>>,
}

impl TlsFront {
    /// Binds a port that serves `server`'s certificate once [`Self::forward_to`] is called
    /// (connections wait in the backlog until then); with `clients_of`, only clients holding
    /// a certificate that CA issued complete the handshake.
    pub async fn bind(server: &Issued, clients_of: Option<&TestCa>) -> Self {
        let builder = rustls::ServerConfig::builder();
        let builder = match clients_of {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.ca_cert()).unwrap();
                builder.with_client_cert_verifier(
                    WebPkiClientVerifier::builder(Arc::new(roots))
                        .build()
                        .unwrap(),
                )
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(vec![server.cert.clone()], server.key())
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self {
            addr: listener.local_addr().unwrap(),
            waiting: Some((listener, TlsAcceptor::from(Arc::new(config)))),
            task: None,
        }
    }

    /// Starts passing every accepted connection's plaintext on to `backend`.
    pub fn forward_to(&mut self, backend: SocketAddr) {
        let (listener, acceptor) = self.waiting.take().expect("forwarding starts once");
        self.task = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A refused handshake simply ends the connection, as a real server's does.
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        }));
    }

    /// `https://127.0.0.1:<port>`, matching the server certificate's address.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
