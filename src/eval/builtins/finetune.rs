//! Finetuning neural models (full or LoRA), PEFT adapters, and chat templates.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use serde_json::json;

use crate::data::texts;
use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::builtins::data::{string_list, text_options};
use crate::eval::builtins::models::model_name;
use crate::eval::builtins::neural::{resolve, unit_arg};
use crate::eval::interp::Interp;
use crate::eval::natives::{Args, Decl, Native};
use crate::eval::value::Value;
use crate::lm::ModelRef;
use crate::lm::neural::train::{self, Method, Request, Schedule, Step, TrainOptions};
use crate::lm::neural::{NeuralLm, NeuralModel, chat, lora};

pub const NATIVES: &[Native] = &[
    Native {
        decl: Decl::Legacy(
            "finetune(base: model, statements: list, method: string = \"lora\", rank: int = 8, alpha: number = 32, targets: list = [\"q_proj\", \"v_proj\"], epochs: int = 5, lr: number = 2e-5, batch: int = 8, weight_decay: number = 0.01, schedule: string = \"linear\", format: string = \"lines\", separator: string = \".\\n\", group: int = 3, seed: int | string = 0, cache: string = none, name: string = none) -> model",
        ),
        doc: "Finetune a copy of a neural model on statements by next-token loss (AdamW, linear learning-rate decay, gradients clipped to norm 1): method \"lora\" (an adapter of rank `rank` and scale alpha/rank on the `targets` modules; the base stays frozen) or \"full\" (every weight). Training texts are built as training_texts(statements, format, separator, group) shows (the paper's appendix J). Defaults are the paper's (5 epochs, lr 2e-5, batch 8, r 8, alpha 32). Deterministic from `seed` (a number: fixed across runs, so finetunes are reused; a string names a stream under the run's seed). The result is cached under the key sha256(base weights, texts, hyperparameters, seed) in `cache:` (a folder inside the run folder or one allowed with --allow-write), else $BEB_FINETUNE_CACHE, else runs/.finetune; the same call again loads it instead of training. LoRA results are PEFT adapter folders.",
        func: finetune_fn,
    },
    Native {
        decl: Decl::Legacy("adapter(base: model, path: string, name: string = none) -> model"),
        doc: "The base model with a LoRA adapter in the Hugging Face PEFT layout attached (a folder with adapter_config.json and adapter_model.safetensors; target modules q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj). A model that already has an adapter gets the old one merged into its weights first.",
        func: adapter_fn,
    },
    Native {
        decl: Decl::Legacy("finetune_info(model: model) -> record"),
        doc: "How a finetuned or adapted model was made: kind (full, lora or adapter), folder, key, cached, rank, alpha, targets, and from the finetune's record epochs, lr, batch, texts, trainable parameters, the mean loss per epoch and the training time in seconds.",
        func: finetune_info_fn,
    },
    Native {
        decl: Decl::Legacy(
            "chat(target: model | string, turns: list, system: string = none, template: string = none, unit: record = none) -> text | string",
        ),
        doc: "A conversation in a chat template: turns alternate user, assistant, user, ...; `system:` is a system prompt. With a model, the text as token ids (special tokens as ids), cut into the model's units (or `unit:`'s), e.g. sentence(until: \"[/INST]\"); template \"llama2\" (default: [INST] ... [/INST], <<SYS>> ... <</SYS>>), \"chatml\" or \"plain\". With a template name instead of a model, the same conversation as a string (<s> and </s> for the special tokens).",
        func: chat_fn,
    },
];

fn neural_model(args: &Args, name: &str) -> BebResult<(ModelRef, Rc<NeuralModel>)> {
    let model = args.model(name)?;
    let inner = model
        .as_neural()
        .map(|lm| lm.model().clone())
        .ok_or_else(|| {
            args.invalid(
                name,
                format!(
                    "{} is not a neural model (load one with load(...))",
                    model.name()
                ),
            )
        })?;
    Ok((model, inner))
}

fn wrap(
    interp: &mut Interp,
    name: String,
    base: &ModelRef,
    model: NeuralModel,
) -> BebResult<Value> {
    crate::eval::builtins::neural::note_model_files(interp, &model);
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
fn cache_root(interp: &Interp, args: &Args) -> BebResult<PathBuf> {
    if args.get("cache").is_some() {
        let folder = args.string("cache")?;
        let probe = format!("{}/{}", folder.trim_end_matches('/'), train::MANIFEST);
        let (path, _) = crate::report::confine::confined_path(
            &probe,
            &interp.context().out_dir,
            &interp.context().allow_write,
        )
        .map_err(|e| e.at(args.span("cache")))?;
        return Ok(path
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(&*folder)));
    }
    Ok(match std::env::var_os("BEB_FINETUNE_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("runs").join(".finetune"),
    })
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

fn finetune_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let (base_ref, base) = neural_model(args, "base")?;
    let statements = string_list(args, "statements")?;
    let (format, separator, group) = text_options(args)?;
    let method_name = match args.get("method") {
        None => "lora".to_string(),
        Some(_) => args.string("method")?.to_string(),
    };
    let method = match method_name.as_str() {
        "full" => Method::Full,
        "lora" => {
            let rank = args.opt_count("rank")?.unwrap_or(8);
            if rank == 0 {
                return Err(args.invalid("rank", "rank must be at least 1"));
            }
            let alpha = args.opt_num("alpha")?.unwrap_or(32.0);
            if !(alpha.is_finite() && alpha > 0.0) {
                return Err(args.invalid("alpha", "alpha must be a positive number"));
            }
            let targets = match args.get("targets") {
                None => vec!["q_proj".to_string(), "v_proj".to_string()],
                Some(_) => string_list(args, "targets")?,
            };
            if targets.is_empty() {
                return Err(args.invalid("targets", "LoRA needs at least one target module"));
            }
            let mut unique: Vec<String> = Vec::new();
            for t in targets {
                lora::check_target(&t).map_err(|e| BebError::from(e).at(args.span("targets")))?;
                if !unique.contains(&t) {
                    unique.push(t);
                }
            }
            Method::Lora {
                rank,
                alpha,
                targets: unique,
            }
        }
        other => {
            return Err(args.invalid(
                "method",
                format!("method {other:?} is not one of lora, full"),
            ));
        }
    };
    let positive = |name: &str, default: f64| -> BebResult<f64> {
        let x = args.opt_num(name)?.unwrap_or(default);
        if x.is_finite() && x >= 0.0 {
            Ok(x)
        } else {
            Err(args.invalid(name, format!("`{name}` must be a number >= 0")))
        }
    };
    let lr = positive("lr", 2e-5)?;
    if lr == 0.0 {
        return Err(args.invalid("lr", "the learning rate must be positive"));
    }
    let epochs = args.opt_count("epochs")?.unwrap_or(5);
    let batch = args.opt_count("batch")?.unwrap_or(8);
    if epochs == 0 || batch == 0 {
        let which = if epochs == 0 { "epochs" } else { "batch" };
        return Err(args.invalid(which, format!("`{which}` must be at least 1")));
    }
    let schedule = match args.get("schedule") {
        None => Schedule::Linear,
        Some(_) => {
            let s = args.string("schedule")?;
            Schedule::parse(&s).ok_or_else(|| {
                args.invalid(
                    "schedule",
                    format!("schedule {s:?} is not one of linear, constant"),
                )
            })?
        }
    };
    // A number seed (default 0) does not depend on the run's root seed, so a finetune is
    // the same model, and is found in the cache, whatever seed the run has.
    let stream = match args.get("seed") {
        None => crate::seed::Stream::new(0, "finetune"),
        Some(_) => interp.stream(args)?,
    };
    let options = TrainOptions {
        method,
        epochs,
        lr,
        batch,
        weight_decay: positive("weight_decay", 0.01)?,
        schedule,
        seed: stream.seed(),
    };
    let built = texts::build(&statements, group, &format, &separator);
    if built.is_empty() {
        return Err(args.invalid(
            "statements",
            format!(
                "{} statement(s) make no training text: a text is a group of {group}",
                statements.len()
            ),
        ));
    }
    let ids = train::encode_texts(&base, &built)
        .map_err(|e| BebError::from(e).at(args.span("statements")))?;
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
        cache_root: cache_root(interp, args)?,
    };
    let name = model_name(interp, args, "finetuned")?;
    let mut report = reporter(interp);
    let result = train::finetune(&base, &request, &mut report);
    drop(report);
    let model = match result {
        Ok(m) => m,
        Err(_) if interp.interrupt_flag().swap(false, Ordering::SeqCst) => {
            return Err(BebError::new(ErrorKind::Interrupted, "interrupted").at(args.call_span));
        }
        Err(e) => return Err(BebError::from(e).at(args.call_span)),
    };
    wrap(interp, name, &base_ref, model)
}

fn adapter_fn(interp: &mut Interp, args: &Args) -> BebResult<Value> {
    let (base_ref, base) = neural_model(args, "base")?;
    let dir = resolve(&args.string("path")?);
    let model =
        train::with_adapter(&base, &dir).map_err(|e| BebError::from(e).at(args.span("path")))?;
    let name = model_name(interp, args, "adapted")?;
    wrap(interp, name, &base_ref, model)
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

fn finetune_info_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let (model, inner) = neural_model(args, "model")?;
    let origin = inner.origin().ok_or_else(|| {
        args.invalid(
            "model",
            format!(
                "{} was loaded as is: it is neither finetuned nor adapted",
                model.name()
            ),
        )
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

fn chat_fn(_: &mut Interp, args: &Args) -> BebResult<Value> {
    let turns = string_list(args, "turns")?;
    let system = match args.get("system") {
        None => None,
        Some(_) => Some(args.string("system")?.to_string()),
    };
    let template_of = |name: &str, arg: &str| {
        chat::Template::parse(name).ok_or_else(|| {
            args.invalid(
                arg,
                format!(
                    "chat template {name:?} is not one of {}",
                    chat::TEMPLATES.join(", ")
                ),
            )
        })
    };
    let pieces = |template| {
        chat::render(template, system.as_deref(), &turns)
            .map_err(|e| BebError::from(e).at(args.span("turns")))
    };
    match args.get("target") {
        Some(Value::Str(name)) => {
            if args.get("template").is_some() {
                return Err(args.invalid(
                    "template",
                    "the template is already named by the first argument",
                ));
            }
            let template = template_of(name, "target")?;
            Ok(Value::str(&chat::to_string(&pieces(template)?)))
        }
        Some(Value::Model(_)) => {
            let (model, inner) = neural_model(args, "target")?;
            let template = match args.get("template") {
                None => chat::Template::Llama2,
                Some(_) => template_of(&args.string("template")?, "template")?,
            };
            let ids = chat::to_ids(
                &pieces(template)?,
                inner.tokenizer(),
                inner.bos(),
                inner.eos().first().copied(),
            )
            .map_err(|e| BebError::from(e).at(args.span("turns")))?;
            let model = match unit_arg(args, "unit")? {
                Some(u) => model.view(Some(&u), None)?.unwrap_or(model),
                None => model,
            };
            let lm = model
                .as_neural()
                .ok_or_else(|| args.invalid("target", "not a neural model"))?;
            let units = lm
                .split_ids(&ids)
                .map_err(|e| BebError::from(e).at(args.span("turns")))?;
            Ok(Value::text(units))
        }
        _ => Err(args.wrong_type("target", "a model or a chat template name")),
    }
}
