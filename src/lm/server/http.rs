//! The HTTP side of a server model: JSON requests with a timeout, retries with exponential
//! backoff on connection errors, 429 and 5xx, many requests in flight on worker threads, and
//! errors that name the URL, the status and an excerpt of the body (never the API key).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value as Json;

/// How a client talks to one server.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Seconds one request may take (connecting, sending and reading the answer).
    pub timeout_s: f64,
    /// Further tries after a connection error, 429 or 5xx.
    pub retries: u32,
    /// Seconds before the first retry; doubled for each further one.
    pub backoff_s: f64,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            concurrency: 16,
            timeout_s: 120.0,
            retries: 4,
            backoff_s: 0.5,
        }
    }
}

/// Why a request failed, in words fit for a diagnostic.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpError {
    pub url: String,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{}: HTTP {s}: {}", self.url, self.message),
            None => write!(f, "{}: {}", self.url, self.message),
        }
    }
}

/// At most `n` characters of a body, on one line, for messages.
pub fn excerpt(body: &str, n: usize) -> String {
    let flat: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() > n {
        format!("{}...", flat.chars().take(n).collect::<String>())
    } else {
        flat.to_string()
    }
}

/// A JSON-over-HTTP client for one server.
pub struct Client {
    agent: ureq::Agent,
    api_key: Option<String>,
    pub options: HttpOptions,
}

/// One try's outcome: an answer, or an error that may be worth retrying.
enum Try {
    Done(Json),
    Retry(HttpError),
    Fail(HttpError),
}

impl Client {
    pub fn new(options: HttpOptions, api_key: Option<String>) -> Client {
        let timeout = Duration::from_secs_f64(options.timeout_s.max(0.001));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // A redirect could lead to a host that --allow-net did not name.
            .max_redirects(0)
            // Proxies from the environment would send the request somewhere unnamed too.
            .proxy(None)
            .build()
            .into();
        Client {
            agent,
            api_key,
            options,
        }
    }

    fn once(&self, url: &str, body: Option<&Json>) -> Try {
        let result = match body {
            Some(b) => {
                let mut req = self.agent.post(url).content_type("application/json");
                if let Some(k) = &self.api_key {
                    req = req.header("Authorization", &format!("Bearer {k}"));
                }
                req.send(b.to_string())
            }
            None => {
                let mut req = self.agent.get(url);
                if let Some(k) = &self.api_key {
                    req = req.header("Authorization", &format!("Bearer {k}"));
                }
                req.call()
            }
        };
        let error = |status: Option<u16>, message: String| HttpError {
            url: url.to_string(),
            status,
            message,
        };
        let mut response = match result {
            Ok(r) => r,
            Err(ureq::Error::Timeout(_)) => {
                return Try::Fail(error(
                    None,
                    format!(
                        "no answer within the timeout of {} s (raise it with timeout:)",
                        self.options.timeout_s
                    ),
                ));
            }
            Err(
                e @ (ureq::Error::Io(_)
                | ureq::Error::ConnectionFailed
                | ureq::Error::HostNotFound
                | ureq::Error::Protocol(_)),
            ) => return Try::Retry(error(None, format!("cannot connect: {e}"))),
            Err(e) => return Try::Fail(error(None, e.to_string())),
        };
        let status = response.status().as_u16();
        let text = match response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
        {
            Ok(t) => t,
            Err(ureq::Error::Timeout(_)) => {
                return Try::Fail(error(
                    Some(status),
                    format!(
                        "the answer did not arrive within the timeout of {} s (raise it with timeout:)",
                        self.options.timeout_s
                    ),
                ));
            }
            Err(e) => {
                return Try::Retry(error(Some(status), format!("the answer broke off: {e}")));
            }
        };
        if status == 429 || (500..600).contains(&status) {
            return Try::Retry(error(Some(status), excerpt(&text, 300)));
        }
        if !(200..300).contains(&status) {
            return Try::Fail(error(Some(status), excerpt(&text, 300)));
        }
        match serde_json::from_str(&text) {
            Ok(json) => Try::Done(json),
            Err(e) => Try::Fail(error(
                Some(status),
                format!("the answer is not JSON ({e}): {}", excerpt(&text, 200)),
            )),
        }
    }

    /// GET (no body) or POST (a JSON body) with retries.
    pub fn request(&self, url: &str, body: Option<&Json>) -> Result<Json, HttpError> {
        let mut wait = self.options.backoff_s;
        let mut tries = 0;
        loop {
            match self.once(url, body) {
                Try::Done(json) => return Ok(json),
                Try::Fail(e) => return Err(e),
                Try::Retry(mut e) => {
                    if tries >= self.options.retries {
                        if tries > 0 {
                            e.message = format!("{} (after {} tries)", e.message, tries + 1);
                        }
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_secs_f64(wait));
                    wait *= 2.0;
                    tries += 1;
                }
            }
        }
    }

    /// POST every body to `url`, `concurrency` at a time; answers in the order of `bodies`,
    /// or the first failure (no new request is sent after one).
    pub fn post_all(&self, url: &str, bodies: &[Json]) -> Result<Vec<Json>, HttpError> {
        if bodies.len() <= 1 || self.options.concurrency <= 1 {
            return bodies.iter().map(|b| self.request(url, Some(b))).collect();
        }
        let next = AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let slots: Mutex<Vec<Option<Result<Json, HttpError>>>> =
            Mutex::new(vec![None; bodies.len()]);
        let workers = self.options.concurrency.min(bodies.len());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        if failed.load(Ordering::SeqCst) {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= bodies.len() {
                            return;
                        }
                        let r = self.request(url, Some(&bodies[i]));
                        if r.is_err() {
                            failed.store(true, Ordering::SeqCst);
                        }
                        // A poisoned lock only means another worker panicked; keep its slots.
                        let mut guard = slots.lock().unwrap_or_else(|p| p.into_inner());
                        guard[i] = Some(r);
                    }
                });
            }
        });
        let slots = slots.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(Some(Err(e))) = slots.iter().find(|s| matches!(s, Some(Err(_)))) {
            return Err(e.clone());
        }
        // Without a failure every request was sent and answered.
        slots
            .into_iter()
            .map(|s| {
                s.unwrap_or_else(|| {
                    Err(HttpError {
                        url: url.to_string(),
                        status: None,
                        message: "a request was never sent".into(),
                    })
                })
            })
            .collect()
    }
}
