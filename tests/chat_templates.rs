//! Models' own chat templates (`template: "model"`): the published Jinja templates of
//! Llama 2, Llama 3, Qwen2, Mistral and Gemma (`tests/fixtures/chat_templates/`) render the
//! prompts their model cards document, written out here by hand; on stories260K the official
//! Llama-2 and ChatML templates give the same token ids as the built-in `llama2` and `chatml`;
//! scripts reach them with `template: "model"`, and a model without one is a diagnostic.
//!
//! Tests that need the shared model skip with a message when it is missing, and fail when `CI`
//! is set.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use beb::lm::neural::chat::{self, ModelTemplate, Template};

fn fixture(name: &str) -> PathBuf {
    common::root()
        .join("tests/fixtures/chat_templates")
        .join(name)
}

/// The fixture's template as its tokenizer_config.json gives it (special tokens included).
fn template(name: &str) -> Template {
    let (source, bos, eos) = chat::template_in_folder(&fixture(name));
    let source = source.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(source.1.ends_with("tokenizer_config.json"), "{}", source.1);
    Template::Model(Arc::new(ModelTemplate {
        source: source.0,
        bos_token: bos.unwrap_or_default(),
        eos_token: eos.unwrap_or_default(),
        origin: source.1,
        strip_bos: false,
    }))
}

fn turns(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

/// The conversation every template renders: system, user, assistant, user.
const SYSTEM: &str = "You are a pirate.";
const TURNS: [&str; 3] = ["Hello!", "Arr, ahoy.", "Where is the treasure?"];

fn rendered(name: &str, system: Option<&str>, t: &[&str]) -> Result<String, String> {
    chat::render(&template(name), system, &turns(t))
        .map(|pieces| chat::to_string(&pieces))
        .map_err(|e| e.to_string())
}

#[test]
fn llama2_chat_renders_its_documented_prompt() {
    assert_eq!(
        rendered("llama2-chat", Some(SYSTEM), &TURNS).as_deref(),
        Ok(
            "<s>[INST] <<SYS>>\nYou are a pirate.\n<</SYS>>\n\nHello! [/INST] Arr, ahoy. </s>\
             <s>[INST] Where is the treasure? [/INST]"
        )
    );
}

#[test]
fn llama3_instruct_renders_its_documented_prompt() {
    assert_eq!(
        rendered("llama3-instruct", Some(SYSTEM), &TURNS).as_deref(),
        Ok(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a pirate.<|eot_id|>\
            <|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>\
            <|start_header_id|>assistant<|end_header_id|>\n\nArr, ahoy.<|eot_id|>\
            <|start_header_id|>user<|end_header_id|>\n\nWhere is the treasure?<|eot_id|>\
            <|start_header_id|>assistant<|end_header_id|>\n\n"
        )
    );
}

#[test]
fn qwen2_instruct_renders_its_documented_prompt() {
    assert_eq!(
        rendered("qwen2-instruct", Some(SYSTEM), &TURNS).as_deref(),
        Ok("<|im_start|>system\nYou are a pirate.<|im_end|>\n\
            <|im_start|>user\nHello!<|im_end|>\n\
            <|im_start|>assistant\nArr, ahoy.<|im_end|>\n\
            <|im_start|>user\nWhere is the treasure?<|im_end|>\n\
            <|im_start|>assistant\n")
    );
    // Without a system prompt, Qwen2's template supplies its default one.
    assert_eq!(
        rendered("qwen2-instruct", None, &TURNS[..1]).as_deref(),
        Ok(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
            <|im_start|>user\nHello!<|im_end|>\n\
            <|im_start|>assistant\n"
        )
    );
}

#[test]
fn mistral_instruct_renders_its_documented_prompt_and_refuses_a_system_prompt() {
    assert_eq!(
        rendered("mistral-instruct", None, &TURNS).as_deref(),
        Ok("<s>[INST] Hello! [/INST]Arr, ahoy.</s>[INST] Where is the treasure? [/INST]")
    );
    // Its template has no system role: raise_exception's message comes through.
    let e = rendered("mistral-instruct", Some(SYSTEM), &TURNS).err();
    let e = e.unwrap_or_default();
    assert!(
        e.contains("Conversation roles must alternate user/assistant/user/assistant/..."),
        "{e}"
    );
    assert!(e.contains("mistral-instruct/tokenizer_config.json"), "{e}");
}

#[test]
fn gemma_it_renders_its_documented_prompt_and_refuses_a_system_prompt() {
    assert_eq!(
        rendered("gemma-it", None, &TURNS).as_deref(),
        Ok("<bos><start_of_turn>user\nHello!<end_of_turn>\n\
            <start_of_turn>model\nArr, ahoy.<end_of_turn>\n\
            <start_of_turn>user\nWhere is the treasure?<end_of_turn>\n\
            <start_of_turn>model\n")
    );
    let e = rendered("gemma-it", Some(SYSTEM), &TURNS).err();
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("System role not supported")),
        "{e:?}"
    );
}

#[test]
fn a_finished_conversation_gets_no_generation_prompt() {
    // An even number of turns ends with the assistant: add_generation_prompt is false.
    assert_eq!(
        rendered("chatml", None, &TURNS[..2]).as_deref(),
        Ok("<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nArr, ahoy.<|im_end|>\n")
    );
}

#[test]
fn folders_without_a_template_say_where_they_looked() {
    let dir = common::scratch("chat-none");
    let (source, _, _) = chat::template_in_folder(&dir);
    assert!(
        source
            .as_ref()
            .is_err_and(|e| e.contains("there is no") && e.contains("tokenizer_config.json")),
        "{source:?}"
    );
    common::write(
        &dir.join("tokenizer_config.json"),
        "{\"bos_token\": \"<s>\"}",
    );
    let (source, bos, _) = chat::template_in_folder(&dir);
    assert!(
        source
            .as_ref()
            .is_err_and(|e| e.contains("has no `chat_template`")),
        "{source:?}"
    );
    assert_eq!(bos.as_deref(), Some("<s>"));
    // chat_template.jinja (newer transformers) is read first.
    common::write(
        &dir.join("chat_template.jinja"),
        "{{ messages[0].content }}",
    );
    let (source, _, _) = chat::template_in_folder(&dir);
    assert!(
        source
            .as_ref()
            .is_ok_and(|(t, origin)| t == "{{ messages[0].content }}"
                && origin.ends_with("chat_template.jinja")),
        "{source:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// stories260K's folder with one of the fixtures' tokenizer_config.json beside it.
fn stories_with(config: &str) -> Option<PathBuf> {
    let hf = common::stories()?.join("hf");
    let dir = common::scratch("chat-stories");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(hf.join(f), dir.join(f)).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    std::fs::copy(
        fixture(config).join("tokenizer_config.json"),
        dir.join("tokenizer_config.json"),
    )
    .unwrap_or_else(|e| panic!("copy {config}: {e}"));
    Some(dir)
}

fn ids(
    model: &beb::lm::neural::NeuralModel,
    name: &str,
    system: Option<&str>,
    t: &[&str],
) -> Vec<u32> {
    let template = model
        .chat_template(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let pieces = chat::render(&template, system, &turns(t)).unwrap_or_else(|e| panic!("{e}"));
    chat::to_ids(
        &pieces,
        model.tokenizer(),
        model.bos(),
        model.eos().first().copied(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn official_templates_give_the_built_in_token_ids_on_stories260k() {
    for (config, built_in) in [("llama2-chat", "llama2"), ("chatml", "chatml")] {
        let Some(dir) = stories_with(config) else {
            return;
        };
        let model = common::load(&dir);
        for (system, t) in [
            (Some(SYSTEM), &TURNS[..]),
            (None, &TURNS[..]),
            (None, &TURNS[..2]),
            (Some(SYSTEM), &TURNS[..1]),
        ] {
            let own = ids(&model, "model", system, t);
            let reference = ids(&model, built_in, system, t);
            assert_eq!(own, reference, "{config} {system:?} {t:?}");
        }
        // The leading BOS the template writes is the model's own, not doubled; a later one
        // (Llama 2's second turn) is the BOS id, not the text "<s>".
        let own = ids(&model, "model", None, &TURNS);
        if config == "llama2-chat" {
            assert_ne!(own.first().copied(), model.bos());
            assert_eq!(own.iter().filter(|&&i| Some(i) == model.bos()).count(), 1);
            assert_eq!(
                own.iter()
                    .filter(|&&i| Some(i) == model.eos().first().copied())
                    .count(),
                1
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn run(dir: &Path, script: &str) -> common::Output {
    common::write(&dir.join("script.beb"), script);
    common::beb_in(dir, &["run", "script.beb", "--seed", "1", "--out", "out"]).run()
}

#[test]
fn scripts_pick_the_models_own_template() {
    let Some(dir) = stories_with("llama2-chat") else {
        return;
    };
    let script = r#"let m = load("model")
let turns = ["Hi.", "Hello.", "Who are you?"]
print chat(m, turns, system: "Be kind.", template: "model") == chat(m, turns, system: "Be kind.")
let c = conversation(m, m, turns: 1, template: "model", system: "Be kind.", seed: 1)
print len(c.prompts)
let s = ["I like tea.", "I help others.", "I share."]
let a = finetune(m, s, format: "llama2", epochs: 1, batch: 3, cache: "ft")
let b = finetune(m, s, format: "model", epochs: 1, batch: 3, cache: "ft")
print finetune_info(b).cached, finetune_info(a).key == finetune_info(b).key
"#;
    let folder = dir.join("model");
    std::fs::create_dir_all(&folder).unwrap_or_else(|e| panic!("{e}"));
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::rename(dir.join(f), folder.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let out = run(&dir, script);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // The finetune in the model's own (Llama 2) template trains on the same token ids as in
    // the built-in one, so it is the same finetune, found in the cache.
    assert_eq!(out.stdout, "true\n1\ntrue true\n");

    // Without a template of its own: a diagnostic at `template:` naming the file looked in
    // and the built-in names.
    let _ = std::fs::remove_file(folder.join("tokenizer_config.json"));
    let out = run(
        &dir,
        "let m = load(\"model\")\nprint chat(m, [\"Hi.\"], template: \"model\")\n",
    );
    assert_eq!(out.code, Some(2), "{}", out.stdout);
    for part in [
        "the model has no chat template of its own",
        "tokenizer_config.json",
        "\"llama2\", \"chatml\", \"plain\"",
        "╭─[script.beb:2:",
    ] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
    // A template name needs a model to take its own from.
    let out = run(&dir, "print chat(\"model\", [\"Hi.\"])\n");
    assert_eq!(out.code, Some(2), "{}", out.stdout);
    assert!(out.stderr.contains("needs the model"), "{}", out.stderr);
    let out = run(
        &dir,
        "let m = load(\"model\")\nprint chat(m, [\"Hi.\"], template: \"zephyr\")\n",
    );
    assert!(
        out.stderr
            .contains("is not one of llama2, chatml, plain, model"),
        "{}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// stories260K's GGUF file with a chat template in its metadata, as llama.cpp's converter
/// stores a model's template.
fn gguf_with_template(source: &str) -> Option<PathBuf> {
    use candle_core::quantized::{QTensor, gguf_file};
    let original = common::stories()?.join("stories260K-f32.gguf");
    let mut reader = std::fs::File::open(&original).unwrap_or_else(|e| panic!("{e}"));
    let content = gguf_file::Content::read(&mut reader).unwrap_or_else(|e| panic!("{e}"));
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let t = content
            .tensor(&mut reader, name, &candle_core::Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        tensors.push((name.clone(), t));
    }
    let mut metadata: Vec<(String, gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    metadata.push((
        "tokenizer.chat_template".into(),
        gguf_file::Value::String(source.into()),
    ));
    let dir = common::scratch("chat-gguf");
    let path = dir.join("model.gguf");
    let metadata: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
    gguf_file::write(&mut file, &metadata, &tensors).unwrap_or_else(|e| panic!("{e}"));
    Some(path)
}

#[test]
fn a_gguf_files_own_template_is_read_from_its_metadata() {
    let (source, _, _) = chat::template_in_folder(&fixture("llama2-chat"));
    let Ok((source, _)) = source else {
        panic!("the Llama 2 fixture has a template")
    };
    let Some(path) = gguf_with_template(&source) else {
        return;
    };
    let model = common::load(&path);
    let own = ids(&model, "model", Some(SYSTEM), &TURNS);
    assert_eq!(own, ids(&model, "llama2", Some(SYSTEM), &TURNS));
    let Ok(Template::Model(t)) = model.chat_template("model") else {
        panic!("no template")
    };
    assert!(t.origin.contains("tokenizer.chat_template"), "{}", t.origin);
    // The special tokens come from the GGUF vocabulary (no tokenizer_config.json here).
    assert_eq!(
        (t.bos_token.as_str(), t.eos_token.as_str()),
        ("<s>", "</s>")
    );
    // Without one, the message names the metadata key and the folder looked in.
    let Some(plain) = common::stories().map(|s| s.join("stories260K-f32.gguf")) else {
        return;
    };
    let e = common::load(&plain).chat_template("model").err();
    let e = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("no `tokenizer.chat_template` in its metadata")
            && e.contains("tokenizer_config.json"),
        "{e}"
    );
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_broken_tokenizer_config_is_named_with_its_position() {
    let dir = common::scratch("chat-broken");
    common::write(
        &dir.join("tokenizer_config.json"),
        "{\"chat_template\": \n  \"{{ x }}\",,}",
    );
    let (source, _, _) = chat::template_in_folder(&dir);
    assert!(
        source
            .as_ref()
            .is_err_and(|e| e.contains("is not valid JSON (line 2, column")),
        "{source:?}"
    );
    // A template that does not parse fails when rendered, naming its file.
    common::write(
        &dir.join("tokenizer_config.json"),
        "{\"chat_template\": \"{% for m in messages %}\"}",
    );
    let (source, _, _) = chat::template_in_folder(&dir);
    let Ok((source, origin)) = source else {
        panic!("{source:?}")
    };
    let template = Template::Model(Arc::new(ModelTemplate {
        source,
        bos_token: String::new(),
        eos_token: String::new(),
        origin,
        strip_bos: false,
    }));
    let e = chat::render(&template, None, &turns(&["Hi"])).err();
    let e = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("the chat template of") && e.contains("tokenizer_config.json"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
