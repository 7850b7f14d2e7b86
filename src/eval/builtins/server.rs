//! Models served over HTTP by an OpenAI-compatible inference server (vLLM,
//! llama-cpp-python): `server(url, model: ..., tokenizer: ...)`. Connecting is allowed only to
//! hosts named with `--allow-net`, so a run stays hermetic unless asked.

use std::rc::Rc;

use crate::builtin;
use crate::error::{BebError, BebResult};
use crate::eval::interp::Interp;
use crate::eval::natives::{ModelPath, Native};
use crate::eval::value::Value;
use crate::lm::UnitSpec;
use crate::lm::server::http::HttpOptions;
use crate::lm::server::{self, RemoteLm, Server, ServerOptions};

pub const NATIVES: &[Native] = &[Serve::NATIVE];

builtin! {
    /// A model served by an OpenAI-compatible completions server at `url` (ending in /v1):
    /// vLLM, or llama-cpp-python's server started with --logits_all true. `model:` is the
    /// served name, `tokenizer:` the tokenizer.json of the served model (checked against the
    /// server's at load). Scores come from echoed prompt log-probs, samples from the server
    /// at temperature 1 with a seed per draw. `concurrency:` requests in flight, `timeout:`
    /// seconds per request, `retries:` on connection errors, 429 and 5xx (exponential
    /// backoff). `api_key_env:` names the environment variable holding the API key. The run
    /// needs `--allow-net HOST[:PORT]`. See docs/servers.md.
    Serve = server(
        url: Rc<str>,
        model: Rc<str>,
        tokenizer: ModelPath,
        unit: Option<UnitSpec> = none,
        concurrency: usize = 16,
        timeout: f64 = 120,
        retries: usize = 4,
        api_key_env: Option<Rc<str>> = none,
        name: Option<Rc<str>> = none,
    ) -> "model"
}

impl Serve {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let url = self.url.trim_end_matches('/').to_string();
        let (host, port) =
            server::host_port(&url).map_err(|e| BebError::from(e).at(self.url.span))?;
        if url.starts_with("https://") {
            return Err(self
                .url
                .invalid("https is not built in: reach the server over http (an SSH tunnel or the cluster's network)"));
        }
        if !server::net_allowed(&interp.context().allow_net, &host, port) {
            let shown = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            return Err(self
                .url
                .invalid(format!("this run may not connect to {shown}"))
                .with_help(format!(
                    "runs reach no network unless allowed: pass --allow-net {shown} (or list it under allow_net: in a study file)"
                )));
        }
        if *self.concurrency == 0 {
            return Err(self.concurrency.invalid("concurrency must be at least 1"));
        }
        let timeout = *self.timeout;
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(self
                .timeout
                .invalid("timeout must be a number of seconds > 0"));
        }
        let api_key = match &*self.api_key_env {
            Some(var) => match std::env::var(&**var) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => {
                    return Err(self
                        .api_key_env
                        .invalid(format!("the environment variable {var} is not set")));
                }
            },
            None => None,
        };
        let options = ServerOptions {
            url: url.clone(),
            model: self.model.to_string(),
            http: HttpOptions {
                concurrency: *self.concurrency,
                timeout_s: timeout,
                retries: (*self.retries).min(20) as u32,
                ..HttpOptions::default()
            },
            api_key,
        };
        interp.readable(&self.tokenizer, self.tokenizer.span)?;
        let served = Server::connect(options, &self.tokenizer.0)
            .map_err(|e| BebError::from(e).at(self.url.span))?;
        let name = interp.model_name(self.name.as_deref(), "server");
        interp.note_input(&self.tokenizer.0);
        let unit = self.unit.value.clone().unwrap_or_default();
        let lm = RemoteLm::new(name, Rc::new(served), unit);
        interp.note_server(lm.server().record_line());
        Ok(Value::Model(Rc::new(lm)))
    }
}
