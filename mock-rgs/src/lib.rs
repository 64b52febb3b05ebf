//! A mock RGS: receives the hub's webhooks, verifies both signature schemes (a bad signature
//! is answered 401 and recorded as such), counts duplicate event ids, and fails on demand.

mod http;
mod state;
pub mod verify;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

use state::SharedInbox;
pub use state::{Delivery, Fault};

#[derive(Debug, Clone)]
pub struct MockRgsConfig {
    /// The HMAC key both schemes are verified with (see [`verify::key_from_secret`]).
    pub key: Vec<u8>,
    pub workers: usize,
}

/// A running mock RGS; dropping it stops the server.
pub struct MockRgs {
    addr: SocketAddr,
    inbox: Arc<SharedInbox>,
    handle: ServerHandle,
}

impl MockRgs {
    pub fn start(listener: TcpListener, config: MockRgsConfig) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let inbox = Arc::new(SharedInbox::default());
        let app_inbox = web::Data::from(inbox.clone());
        let key = web::Data::new(http::Key(config.key));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_inbox.clone())
                .app_data(key.clone())
                .configure(http::routes)
        })
        .workers(config.workers)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            addr,
            inbox,
            handle,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the hub should deliver: `http://addr/webhooks`.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhooks", self.addr)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inbox.lock().deliveries.clone()
    }

    /// Event ids of the deliveries answered 2xx, in arrival order, duplicates included.
    pub fn accepted_event_ids(&self) -> Vec<String> {
        self.inbox
            .lock()
            .accepted()
            .filter_map(|d| d.event_id.clone())
            .collect()
    }

    pub fn duplicates(&self) -> usize {
        self.inbox.lock().duplicates()
    }

    /// Answers the next `count` deliveries with `status` (after `delay`).
    pub fn fail_next(&self, count: u32, status: u16, delay: Duration) {
        let fault = Fault {
            status,
            delay,
            retry_after_seconds: None,
        };
        self.inbox.lock().inject(fault, count);
    }

    pub fn inject(&self, fault: Fault, count: u32) {
        self.inbox.lock().inject(fault, count);
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

impl Drop for MockRgs {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}
