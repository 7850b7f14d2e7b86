//! Where a model path leads: a Hugging Face hub id resolves from the local hub cache
//! (`HF_HOME` / `HF_HUB_CACHE`, `models--ORG--NAME/snapshots/REV`), offline; when it is not
//! there, or a plain path does not exist, the diagnostic says where it looked and what to do.

mod common;

use std::path::Path;

/// A cached repo `acme/tiny` under `hub` with two snapshots told apart by their
/// architecture; `refs/main` names the first.
fn cached_repo(hub: &Path) {
    let repo = hub.join("models--acme--tiny");
    common::write(
        &repo.join("snapshots/aaa111/config.json"),
        r#"{"model_type": "gpt_neox", "hidden_size": 8}"#,
    );
    common::write(
        &repo.join("snapshots/zzz999/config.json"),
        r#"{"model_type": "bloom", "hidden_size": 8}"#,
    );
    common::write(&repo.join("refs/main"), "aaa111\n");
}

fn run(dir: &Path, script: &str, env: &[(&str, &Path)]) -> common::Output {
    common::write(&dir.join("s.beb"), script);
    let mut beb = common::beb_in(dir, &["run", "--seed", "1", "s.beb"]);
    for (name, value) in env {
        beb = beb.env(name, value);
    }
    beb.env("HOME", dir).run()
}

#[test]
fn a_hub_id_loads_the_snapshot_refs_main_names() {
    let dir = common::scratch("hub-cache");
    cached_repo(&dir.join("hf/hub"));
    let o = run(
        &dir,
        "load(\"acme/tiny\")\n",
        &[("HF_HOME", &dir.join("hf"))],
    );
    // The folder was found and read: its architecture is what the loader refuses.
    assert!(o.stderr.contains("gpt_neox"), "{}", o.stderr);
    assert!(!o.stderr.contains("bloom"), "{}", o.stderr);
    // HF_HUB_CACHE names the hub folder itself.
    let o = run(
        &dir,
        "load(\"acme/tiny\")\n",
        &[("HF_HUB_CACHE", &dir.join("hf/hub"))],
    );
    assert!(o.stderr.contains("gpt_neox"), "{}", o.stderr);
}

#[test]
fn a_hub_id_not_cached_says_where_it_looked_and_how_to_download() {
    let dir = common::scratch("hub-cache");
    let o = run(
        &dir,
        "load(\"meta-llama/Llama-2-7b-chat-hf\")\n",
        &[("HF_HOME", &dir.join("empty"))],
    );
    assert_eq!(o.code, Some(2));
    for needle in [
        "huggingface-cli download meta-llama/Llama-2-7b-chat-hf",
        "models--meta-llama--Llama-2-7b-chat-hf",
        "HF_HOME",
    ] {
        assert!(o.stderr.contains(needle), "{needle:?} in {}", o.stderr);
    }
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
}

#[test]
fn a_missing_model_path_mentions_beb_shared() {
    let dir = common::scratch("hub-cache");
    let o = run(&dir, "load(\"nowhere/model.gguf\")\n", &[]);
    assert_eq!(o.code, Some(2));
    assert!(o.stderr.contains("does not exist"), "{}", o.stderr);
    assert!(o.stderr.contains("BEB_SHARED"), "{}", o.stderr);
}
