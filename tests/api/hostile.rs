//! A peer that answers whatever its test scripts: a hostile operator or a hostile RGS on an
//! ephemeral port. It records every request it receives, so a test can tell what the hub
//! sent, and to which path (a followed redirect would show up as a request to its target).

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// One request as the peer received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A field of the JSON body, if the body is JSON and has it as a string.
    pub fn json_text(&self, field: &str) -> Option<String> {
        let body: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        body[field].as_str().map(str::to_owned)
    }
}

/// What the peer answers, after `delay`.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self::new(status, body.to_string()).header("Content-Type", "application/json")
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The operator's SUCCESS for the wallet call `seen`, as the real one words it.
    pub fn wallet_success(seen: &Seen) -> Self {
        Self::json(
            200,
            serde_json::json!({
                "status": "SUCCESS", "transactionId": seen.json_text("transactionId"),
                "balance": 90.00, "currency": "USD",
            }),
        )
    }
}

/// The test's script: given the request (and every earlier one), what to answer.
pub type Script = Arc<dyn Fn(&Seen, &[Seen]) -> Reply + Send + Sync>;

struct Shared {
    script: Script,
    seen: Mutex<Vec<Seen>>,
}

pub struct Hostile {
    pub base_url: String,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

/// Serves every request on an ephemeral port to `handler`, with `shared` as its app data;
/// returns the base URL and the handle that stops the server.
pub fn serve_every_request<S, F, Args>(shared: Arc<S>, handler: F) -> (String, ServerHandle)
where
    S: Send + Sync + 'static,
    F: actix_web::Handler<Args> + Send + Clone,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let data = web::Data::from(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(1 << 20))
            .default_service(web::to(handler.clone()))
    })
    .workers(2)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (base_url, handle)
}

impl Hostile {
    pub fn start(script: impl Fn(&Seen, &[Seen]) -> Reply + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            script: Arc::new(script),
            seen: Mutex::new(Vec::new()),
        });
        let (base_url, handle) = serve_every_request(shared.clone(), answer);
        Self {
            base_url,
            shared,
            handle,
        }
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The requests received on `path`.
    pub fn seen_on(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn answer(request: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let seen = Seen {
        method: request.method().to_string(),
        path: request.path().to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
        headers: request
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
    };
    let reply = {
        let mut all = shared.seen.lock().unwrap();
        let reply = (shared.script)(&seen, &all);
        all.push(seen);
        reply
    };
    tokio::time::sleep(reply.delay).await;
    let status = actix_web::http::StatusCode::from_u16(reply.status).expect("a valid status");
    let mut response = HttpResponse::build(status);
    for (name, value) in reply.headers {
        response.insert_header((name, value));
    }
    response.body(reply.body)
}
