//! An operator in front of the test's mock operator: it forwards every call, except those a
//! test chooses to hold at a gate, either before they reach the mock (so that a later call
//! overtakes them there) or after the mock applied them (so that their answer is still on
//! its way while something else happens). The mock's books stay the truth to check.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::watch;

use crate::hostile::serve_every_request;

/// Where a held call waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Not yet forwarded: the mock has not seen it.
    BeforeOperator,
    /// Forwarded and applied by the mock; its answer waits.
    AfterOperator,
}

type Matcher = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

struct GateInner {
    hold: Hold,
    matches: Matcher,
    open: watch::Sender<bool>,
    /// Calls waiting at this gate right now.
    waiting: AtomicUsize,
}

/// A gate calls wait at until [`Gate::open`].
#[derive(Clone)]
pub struct Gate(Arc<GateInner>);

impl Gate {
    /// Lets every call held here go on, and every later matching call through.
    pub fn open(&self) {
        self.0.open.send_replace(true);
    }

    /// Calls waiting at the gate now.
    pub fn waiting(&self) -> usize {
        self.0.waiting.load(Ordering::SeqCst)
    }

    fn is_open(&self) -> bool {
        *self.0.open.borrow()
    }

    async fn pass(&self) {
        self.0.waiting.fetch_add(1, Ordering::SeqCst);
        // Counted down even if the hub gives up on the call and the wait is dropped.
        let _waiting = CountDown(&self.0.waiting);
        let mut open = self.0.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }
}

struct CountDown<'a>(&'a AtomicUsize);

impl Drop for CountDown<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Shared {
    target: Mutex<Option<String>>,
    gates: Mutex<Vec<Gate>>,
}

pub struct GatedOperator {
    pub base_url: String,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

impl GatedOperator {
    /// Starts with nowhere to forward to: point the hub at `base_url`, then call
    /// [`Self::forward_to`] with the mock operator's address.
    pub fn start() -> Self {
        let shared = Arc::new(Shared {
            target: Mutex::new(None),
            gates: Mutex::new(Vec::new()),
        });
        let (base_url, handle) = serve_every_request(shared.clone(), forward);
        Self {
            base_url,
            shared,
            handle,
        }
    }

    pub fn forward_to(&self, target: String) {
        *self.shared.target.lock().unwrap() = Some(target);
    }

    /// Holds every call whose path and body `matches` (until the gate opens) where `hold`
    /// says. A call is held by the first gate, still closed, that matches it.
    pub fn hold(
        &self,
        hold: Hold,
        matches: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> Gate {
        let gate = Gate(Arc::new(GateInner {
            hold,
            matches: Box::new(matches),
            open: watch::channel(false).0,
            waiting: AtomicUsize::new(0),
        }));
        self.shared.gates.lock().unwrap().push(gate.clone());
        gate
    }
}

impl Drop for GatedOperator {
    fn drop(&mut self) {
        for gate in self.shared.gates.lock().unwrap().iter() {
            gate.open();
        }
        drop(self.handle.stop(false));
    }
}

async fn forward(
    request: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path().to_owned(), |p| p.as_str().to_owned());
    let text = String::from_utf8_lossy(&body).into_owned();
    let gate = shared
        .gates
        .lock()
        .unwrap()
        .iter()
        .find(|gate| !gate.is_open() && (gate.0.matches)(&path, &text))
        .cloned();
    let held_at = |hold: Hold| gate.as_ref().filter(|gate| gate.0.hold == hold);
    if let Some(gate) = held_at(Hold::BeforeOperator) {
        gate.pass().await;
    }
    let target = shared
        .target
        .lock()
        .unwrap()
        .clone()
        .expect("forward_to names the mock operator");
    let method =
        reqwest::Method::from_bytes(request.method().as_str().as_bytes()).expect("an HTTP method");
    let mut outgoing = reqwest::Client::new()
        .request(method, format!("{target}{path}"))
        .body(body.to_vec());
    for name in ["content-type", "idempotency-key", "x-correlation-id"] {
        if let Some(value) = request.headers().get(name) {
            outgoing = outgoing.header(name, value.as_bytes());
        }
    }
    let Ok(answered) = outgoing.send().await else {
        return HttpResponse::BadGateway().finish();
    };
    let status = answered.status().as_u16();
    let content_type = answered
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let Ok(bytes) = answered.bytes().await else {
        return HttpResponse::BadGateway().finish();
    };
    if let Some(gate) = held_at(Hold::AfterOperator) {
        gate.pass().await;
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("a valid status"))
        .content_type(content_type)
        .body(bytes)
}
