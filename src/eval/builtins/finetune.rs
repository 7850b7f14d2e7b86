//! Finetuning neural models (full or LoRA), PEFT adapters, and chat templates.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use serde_json::json;

use crate::builtin;
use crate::data::texts;
use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::builtins::neural::{neural, note_model_files};
use crate::eval::interp::Interp;
use crate::eval::natives::{Arg, Elements, FromArg, ModelPath, Native, Seed};
use crate::eval::value::Value;
use crate::lm::neural::train::{self, Method, Request, Schedule, Step, TrainOptions};
use crate::lm::neural::{NeuralLm, NeuralModel, chat, lora};
use crate::lm::{ModelRef, UnitSpec};
use crate::value_union;

pub const NATIVES: &[Native] = &[
    Finetune::NATIVE,
    Adapter::NATIVE,
    FinetuneInfo::NATIVE,
    Chat::NATIVE,
];

/// The neural network of a `model` argument.
fn neural_model(model: &Arg<ModelRef>) -> BebResult<Rc<NeuralModel>> {
    Ok(neural(model)?.model().clone())
}

fn wrap(
    interp: &mut Interp,
    name: String,
    base: &ModelRef,
    model: NeuralModel,
) -> BebResult<Value> {
    note_model_files(interp, &model);
    let unit = base
        .as_neural()
        .map(|lm| lm.unit().clone())
        .unwrap_or_default();
    Ok(Value::Model(Rc::new(NeuralLm::new(
        name,
        Rc::new(model),
        unit,
    ))))
}

/// Where finetunes are cached: `cache:` (confined to the run folder or an allowed folder),
/// else $BEB_FINETUNE_CACHE, else runs/.finetune.
fn cache_root(interp: &Interp, cache: &Arg<Option<Rc<str>>>) -> BebResult<PathBuf> {
    if let Some(folder) = &**cache {
        let probe = format!("{}/{}", folder.trim_end_matches('/'), train::MANIFEST);
        let (path, _) = crate::report::confine::confined_path(
            &probe,
            &interp.context().out_dir,
            &interp.context().allow_write,
        )
        .map_err(|e| e.at(cache.span))?;
        return Ok(path
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(&**folder)));
    }
    Ok(default_store())
}

/// The finetune store when `cache:` is not given: $BEB_FINETUNE_CACHE, else runs/.finetune.
pub fn default_store() -> PathBuf {
    match std::env::var_os("BEB_FINETUNE_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("runs").join(".finetune"),
    }
}

/// Progress of a training run: a bar on stderr when it is a terminal (nothing otherwise).
/// Returns false (stop) once Ctrl-C was pressed.
fn reporter(interp: &Interp) -> impl FnMut(&Step) -> bool {
    let stop = interp.interrupt_flag();
    let hub = interp.progress_hub().clone();
    let mut bar: Option<crate::report::progress::Progress> = None;
    move |step: &Step| {
        let bar = bar.get_or_insert_with(|| hub.bar(step.steps as u64, "finetune"));
        bar.inc(1);
        bar.set_message(&format!(
            "epoch {}/{}, loss {:.4}",
            step.epoch, step.epochs, step.loss
        ));
        !stop.load(Ordering::SeqCst)
    }
}

builtin! {
    /// Finetune a copy of a neural model on statements by next-token loss (AdamW, linear
    /// learning-rate decay, gradients clipped to norm 1): method "lora" (an adapter of rank
    /// `rank` and scale alpha/rank on the `targets` modules; the base stays frozen) or "full"
    /// (every weight). Training texts are built as training_texts(statements, format,
    /// separator, group) shows (the paper's appendix J); format "model" puts them in the base
    /// model's own chat template. Defaults are the paper's (5 epochs, lr
    /// 2e-5, batch 8, r 8, alpha 32). Deterministic from `seed` (a number: fixed across runs,
    /// so finetunes are reused; a string names a stream under the run's seed). The result is
    /// cached under the key sha256(base weights, texts, hyperparameters, seed) in `cache:` (a
    /// folder inside the run folder or one allowed with --allow-write), else
    /// $BEB_FINETUNE_CACHE, else runs/.finetune; the same call again loads it instead of
    /// training. LoRA results are PEFT adapter folders.
    Finetune = finetune(
        base: ModelRef,
        statements: Elements,
        method: Rc<str> = "lora",
        rank: usize = 8,
        alpha: f64 = 32,
        targets: Elements = ["q_proj", "v_proj"],
        epochs: usize = 5,
        lr: f64 = 2e-5,
        batch: usize = 8,
        weight_decay: f64 = 0.01,
        schedule: Rc<str> = "linear",
        format: Rc<str> = "lines",
        separator: Rc<str> = ".\n",
        group: usize = 3,
        seed: Seed = 0,
        cache: Option<Rc<str>> = none,
        name: Option<Rc<str>> = none,
    ) -> "model"
}

/// A number >= 0.
fn non_negative(x: &Arg<f64>) -> BebResult<f64> {
    if x.is_finite() && **x >= 0.0 {
        Ok(**x)
    } else {
        Err(x.invalid(format!("`{}` must be a number >= 0", x.name)))
    }
}

impl Finetune {
    /// How the model is trained: a LoRA adapter or every weight.
    fn method(&self) -> BebResult<Method> {
        match &**self.method {
            "full" => Ok(Method::Full),
            "lora" => {
                if *self.rank == 0 {
                    return Err(self.rank.invalid("rank must be at least 1"));
                }
                let alpha = *self.alpha;
                if !(alpha.is_finite() && alpha > 0.0) {
                    return Err(self.alpha.invalid("alpha must be a positive number"));
                }
                let targets = self.targets.strings(&self.call)?;
                if targets.is_empty() {
                    return Err(self
                        .targets
                        .invalid("LoRA needs at least one target module"));
                }
                let mut unique: Vec<String> = Vec::new();
                for t in targets {
                    lora::check_target(&t).map_err(|e| BebError::from(e).at(self.targets.span))?;
                    if !unique.contains(&t) {
                        unique.push(t);
                    }
                }
                Ok(Method::Lora {
                    rank: *self.rank,
                    alpha,
                    targets: unique,
                })
            }
            other => Err(self
                .method
                .invalid(format!("method {other:?} is not one of lora, full"))),
        }
    }

    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let base = neural_model(&self.base)?;
        let statements = self.statements.strings(&self.call)?;
        let format = if &**self.format == chat::MODEL {
            texts::Format::Chat(
                base.chat_template(chat::MODEL)
                    .map_err(|e| BebError::from(e).at(self.format.span))?,
            )
        } else {
            texts::Format::parse(&self.format).ok_or_else(|| {
                self.format.invalid(format!(
                    "format {:?} is not one of lines, inst, {}",
                    &**self.format,
                    chat::names()
                ))
            })?
        };
        let separator = self.separator.to_string();
        let group = *self.group;
        if group == 0 {
            return Err(self.group.invalid("group must be at least 1"));
        }
        let method = self.method()?;
        let lr = non_negative(&self.lr)?;
        if lr == 0.0 {
            return Err(self.lr.invalid("the learning rate must be positive"));
        }
        for x in [&self.epochs, &self.batch] {
            if **x == 0 {
                return Err(x.invalid(format!("`{}` must be at least 1", x.name)));
            }
        }
        let schedule = Schedule::parse(&self.schedule).ok_or_else(|| {
            self.schedule.invalid(format!(
                "schedule {:?} is not one of linear, constant",
                &**self.schedule
            ))
        })?;
        // A number seed (default 0) does not depend on the run's root seed, so a finetune is
        // the same model, and is found in the cache, whatever seed the run has. (An argument
        // not given has the call's span; the default stream is not drawn from the run.)
        let stream = if self.seed.span == self.call.span {
            crate::seed::Stream::new(0, "finetune")
        } else {
            interp.seed_stream(&self.call, Some(&self.seed))
        };
        let options = TrainOptions {
            method,
            epochs: *self.epochs,
            lr,
            batch: *self.batch,
            weight_decay: non_negative(&self.weight_decay)?,
            schedule,
            seed: stream.seed(),
        };
        let built = texts::build(&statements, group, &format, &separator);
        if built.is_empty() {
            return Err(self.statements.invalid(format!(
                "{} statement(s) make no training text: a text is a group of {group}",
                statements.len()
            )));
        }
        let ids = train::encode_texts(&base, &built)
            .map_err(|e| BebError::from(e).at(self.statements.span))?;
        let request = Request {
            options,
            texts: ids,
            data: json!({
                "statements": statements,
                "format": format.name(),
                "separator": separator,
                "group": group,
                "seed_stream": {"root": stream.root(), "name": stream.name()},
            }),
            cache_root: cache_root(interp, &self.cache)?,
        };
        let name = interp.model_name(self.name.as_deref(), "finetuned");
        let mut report = reporter(interp);
        let result = train::finetune(&base, &request, &mut report);
        drop(report);
        let model = match result {
            Ok(m) => m,
            Err(_) if interp.interrupt_flag().swap(false, Ordering::SeqCst) => {
                return Err(BebError::new(ErrorKind::Interrupted, "interrupted").at(self.call.span));
            }
            Err(e) => return Err(BebError::from(e).at(self.call.span)),
        };
        wrap(interp, name, &self.base, model)
    }
}

builtin! {
    /// The base model with a LoRA adapter in the Hugging Face PEFT layout attached (a folder
    /// with adapter_config.json and adapter_model.safetensors; target modules q_proj, k_proj,
    /// v_proj, o_proj, gate_proj, up_proj, down_proj). A model that already has an adapter gets
    /// the old one merged into its weights first.
    Adapter = adapter(base: ModelRef, path: ModelPath, name: Option<Rc<str>> = none) -> "model"
}

impl Adapter {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let base = neural_model(&self.base)?;
        interp.readable(&self.path, self.path.span)?;
        let model = train::with_adapter(&base, &self.path.0)
            .map_err(|e| BebError::from(e).at(self.path.span))?;
        let name = interp.model_name(self.name.as_deref(), "adapted");
        wrap(interp, name, &self.base, model)
    }
}

/// A JSON value of a finetune record as a beb value.
fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::None,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Num(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::str(s),
        serde_json::Value::Array(items) => Value::list(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::record(
            map.iter()
                .map(|(k, v)| (k.as_str(), from_json(v)))
                .collect(),
        ),
    }
}

builtin! {
    /// How a finetuned or adapted model was made: kind (full, lora or adapter), folder, key,
    /// cached, rank, alpha, targets, and from the finetune's record epochs, lr, batch, texts,
    /// trainable parameters, the mean loss per epoch and the training time in seconds.
    FinetuneInfo = finetune_info(model: ModelRef) -> "record"
}

impl FinetuneInfo {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let inner = neural_model(&self.model)?;
        let origin = inner.origin().ok_or_else(|| {
            self.model.invalid(format!(
                "{} was loaded as is: it is neither finetuned nor adapted",
                self.model.value.name()
            ))
        })?;
        let num = |x: Option<f64>| x.map(Value::Num).unwrap_or(Value::None);
        let mut fields: Vec<(&str, Value)> = vec![
            ("kind", Value::str(&origin.kind)),
            ("folder", Value::str(&origin.folder.display().to_string())),
            (
                "key",
                origin.key.as_deref().map(Value::str).unwrap_or(Value::None),
            ),
            ("cached", Value::Bool(origin.cached)),
            ("rank", num(origin.rank.map(|r| r as f64))),
            ("alpha", num(origin.alpha)),
            (
                "targets",
                Value::list(origin.targets.iter().map(|t| Value::str(t)).collect()),
            ),
        ];
        let m = origin.manifest.as_ref();
        let get = |k: &str| {
            m.and_then(|m| m.get(k))
                .map(from_json)
                .unwrap_or(Value::None)
        };
        for (field, key) in [
            ("epochs", "epochs"),
            ("lr", "lr"),
            ("batch", "batch"),
            ("texts", "texts"),
            ("tokens_per_epoch", "tokens_per_epoch"),
            ("trainable", "trainable_parameters"),
            ("losses", "losses"),
            ("seconds", "seconds"),
        ] {
            fields.push((field, get(key)));
        }
        Ok(Value::record(fields))
    }
}

value_union!(
    /// What chat(...) formats for: a model, or a chat template by name.
    ChatTarget = "model | string",
    "a model or a chat template name",
    Model(_) | Str(_)
);

/// The built-in chat template named by argument `at` (no model to take its own from).
fn template_of<T>(name: &str, at: &Arg<T>) -> BebResult<chat::Template> {
    if name == chat::MODEL {
        return Err(at.invalid(
            "the model's own template needs the model: chat(model, turns, template: \"model\")",
        ));
    }
    chat::Template::parse(name).ok_or_else(|| {
        at.invalid(format!(
            "chat template {name:?} is not one of {}",
            chat::names()
        ))
    })
}

builtin! {
    /// A conversation in a chat template: turns alternate user, assistant, user, ...; `system:`
    /// is a system prompt. With a model, the text as token ids (special tokens as ids), cut
    /// into the model's units (or `unit:`'s), e.g. sentence(until: "[/INST]"); template
    /// "llama2" (default: [INST] ... [/INST], <<SYS>> ... <</SYS>>), "chatml", "plain" or
    /// "model" (the model's own Jinja template, from its tokenizer_config.json or GGUF file). With
    /// a template name instead of a model, the same conversation as a string (<s> and </s> for
    /// the special tokens).
    Chat = chat(
        target: ChatTarget,
        turns: Elements,
        system: Option<Rc<str>> = none,
        template: Option<Rc<str>> = none,
        unit: Option<UnitSpec> = none,
    ) -> "text | string"
}

impl Chat {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let turns = self.turns.strings(&self.call)?;
        let pieces = |template: &chat::Template| {
            chat::render(template, self.system.as_deref(), &turns)
                .map_err(|e| BebError::from(e).at(self.turns.span))
        };
        match &self.target.0 {
            Value::Str(name) => {
                if self.template.is_some() {
                    return Err(self
                        .template
                        .invalid("the template is already named by the first argument"));
                }
                let template = template_of(name, &self.target)?;
                Ok(Value::str(&chat::to_string(&pieces(&template)?)))
            }
            Value::Model(model) => {
                let target = self.target.clone().map(|_| model.clone());
                let inner = neural_model(&target)?;
                let template = match &*self.template {
                    None => chat::Template::Llama2,
                    Some(name) => inner
                        .chat_template(name)
                        .map_err(|e| BebError::from(e).at(self.template.span))?,
                };
                let ids = chat::to_ids(
                    &pieces(&template)?,
                    inner.tokenizer(),
                    inner.bos(),
                    inner.eos().first().copied(),
                )
                .map_err(|e| BebError::from(e).at(self.turns.span))?;
                let model = match &*self.unit {
                    Some(u) => model.view(Some(u), None)?.unwrap_or_else(|| model.clone()),
                    None => model.clone(),
                };
                let lm = model
                    .as_neural()
                    .ok_or_else(|| self.target.invalid("not a neural model"))?;
                let units = lm
                    .split_ids(&ids)
                    .map_err(|e| BebError::from(e).at(self.turns.span))?;
                Ok(Value::text(units))
            }
            other => {
                Err(self
                    .target
                    .wrong_type(&self.call, ChatTarget::EXPECTED, other.type_name()))
            }
        }
    }
}
