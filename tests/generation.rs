//! Best-of-n sampling, conversations and human labels, through the `beb` binary: best-of-n
//! against the exact distribution of the maximum (Theorem 4), conversations' exact structure
//! and Theorem 3's comparison on analytic models, both on stories260K, and `label` /
//! `labels` with piped answers.
//!
//! Tests that need the shared model skip with a message when it is missing, and fail when
//! `CI` is set.

mod common;

use std::path::Path;

use common::{Output, read};

/// `beb ARGS` in `dir`, with `stdin` piped in (or no input at all).
fn beb(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let command = common::beb_in(dir, args);
    match stdin {
        Some(input) => command.stdin(input).run(),
        None => command.run(),
    }
}

/// Write `script` into `dir` and run it with `--seed 1 --out out` (plus `extra`).
fn run(dir: &Path, script: &str, stdin: Option<&str>, extra: &[&str]) -> Output {
    common::write(&dir.join("script.beb"), script);
    let mut args = vec!["run", "script.beb", "--seed", "1", "--out", "out"];
    args.extend_from_slice(extra);
    beb(dir, &args, stdin)
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert_eq!(
        o.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        o.stdout,
        o.stderr
    );
}

#[track_caller]
fn assert_fails_with(o: &Output, needle: &str) {
    assert_eq!(o.code, Some(2), "stderr:\n{}", o.stderr);
    assert!(
        o.stderr.contains(needle),
        "expected {needle:?} in stderr:\n{}",
        o.stderr
    );
}

/// The four-sentence world of examples/best_of_n.beb, with a lookup of a sentence's score.
const WORLD: &str = r#"
let texts = ["I am glad to help.", "The sky is blue.", "Go away.", "You are useless."]
let scores = [1, 0, -1, -1]
let plus = categorical(texts, [0.5, 0.3, 0.12, 0.08], scores: scores)
let minus = categorical(texts, [0, 0, 0.67, 0.33], scores: scores)
fn score_of(t) { scores[first(0..4, |i| text([texts[i]]) == t)] }
## P(max of n draws = level) for levels -1, 0, 1, from the next-sentence distribution.
fn exact_max(model, n, prefix) {
  let probs = map(texts, |t| exp(logprob(model, text([t]), given: prefix)))
  let levels = [-1, 0, 1]
  let cdf = map(levels, |b| sum(map(0..4, |i| if scores[i] <= b { probs[i] } else { 0 })))
  map(0..3, |k| cdf[k] ^ n - (if k == 0 { 0 } else { cdf[k - 1] }) ^ n)
}
## Each level's frequency within 5 standard errors of its exact probability, and the mean.
fn check(got, exact, draws) {
  let levels = [-1, 0, 1]
  for k in 0..3 {
    let frac = mean(map(got, |s| if s == levels[k] { 1 } else { 0 }))
    let se = sqrt(exact[k] * (1 - exact[k]) / draws)
    assert abs(frac - exact[k]) <= 5 * se + 1e-12, "level {levels[k]}: {frac} vs {exact[k]}"
  }
  let m = sample_mean(got)
  let expected = sum(levels * exact)
  print "best-of mean {m} vs exact {expected:.4}"
  assert abs(m.mean - expected) <= 5 * m.stderr + 1e-12
}
"#;

#[test]
fn best_of_n_follows_the_exact_distribution_of_the_maximum() {
    let dir = common::scratch("best-of-exact");
    let script = format!(
        "{WORLD}
let draws = 4000
for n in [1, 4, 16] {{
  let got = map(sample(plus, best_of: n, count: draws, seed: 11), score_of)
  check(got, exact_max(plus, n, []), draws)
}}
# A mixture after a misaligning prefix: best-of-n of P(.|s) (Theorem 4's setting).
let llm = mixture(minus, plus, alpha: 0.01)
let s = sample(minus, sentences: 3, seed: 2)
let got = map(sample(llm, given: s, best_of: 8, count: draws, seed: 12), score_of)
check(got, exact_max(llm, 8, s), draws)
print \"ok\"
"
    );
    let o = run(&dir, &script, None, &[]);
    assert_ok(&o);
    assert!(o.stdout.ends_with("ok\n"), "{}", o.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn best_of_one_is_plain_sampling_and_draws_do_not_depend_on_count() {
    let dir = common::scratch("best-of-plain");
    let script = format!(
        "{WORLD}
assert sample(plus, count: 50, seed: 5) == sample(plus, best_of: 1, count: 50, seed: 5)
assert sample(plus, sentences: 2, seed: 5) == sample(plus, sentences: 2, best_of: 1, seed: 5)
assert sample(plus, best_of: 4, count: 10, seed: 3)[..5] == sample(plus, best_of: 4, count: 5, seed: 3)
assert sample(plus, best_of: 4, seed: 3) == sample(plus, best_of: 4, count: 5, seed: 3)[0]
# By a function giving the same scores: the same choices, ties to the first candidate.
assert sample(plus, best_of: 6, count: 100, seed: 4, by: score_of) == sample(plus, best_of: 6, count: 100, seed: 4)
# best-of-2n sees best-of-n's candidates, so no draw gets worse.
let b4 = map(sample(plus, best_of: 4, count: 200, seed: 9), score_of)
let b8 = map(sample(plus, best_of: 8, count: 200, seed: 9), score_of)
assert all(zip(b8, b4), |p| p[0] >= p[1])
# A text of several sentences scores the mean of its sentences' scores.
let two = sample(plus, sentences: 2, best_of: 32, count: 20, seed: 6)
assert all(two, |t| t == text([texts[0], texts[0]]))
# A constant score: every draw is candidate 0, the plain draw.
assert sample(plus, best_of: 5, count: 30, seed: 8, by: |t| 0) == sample(plus, count: 30, seed: 8)
print \"ok\"
"
    );
    let o = run(&dir, &script, None, &[]);
    assert_ok(&o);
    assert_eq!(o.stdout, "ok\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn best_of_arguments_are_checked() {
    let dir = common::scratch("best-of-errors");
    let cases = [
        (
            "let m = sentences { \"a.\": 1 @ 1 }\nprint sample(m, best_of: 0)",
            "best_of must be at least 1",
        ),
        (
            "let m = sentences { \"a.\": 1 @ 1 }\nprint sample(m, by: |t| 1)",
            "give `best_of: n` too",
        ),
        (
            "let m = sentences { \"a.\": 1 @ 1 }\nprint sample(m, best_of: 2, by: 3)",
            "`by` of sample() must be",
        ),
        (
            "let m = sentences { \"a.\": 1 }\nprint sample(m, best_of: 2)",
            "has no behavior score in m",
        ),
        (
            "let m = sentences { \"a.\": 1 @ 1 }\nprint sample(m, best_of: 2, by: |t| \"good\")",
            "returns a number, found a string",
        ),
    ];
    for (script, needle) in cases {
        assert_fails_with(&run(&dir, script, None, &[]), needle);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_conversation_has_the_exact_structure_of_its_turns() {
    let dir = common::scratch("conversation-structure");
    let script = r#"
let q = sentences { "Q.": 1 @ 0 }
let a = sentences { "A.": 1 @ 1 }
let c = conversation(q, a, turns: 2, user_sentences: 2, given: text(["G."]))
print c.text
print c.user_text
print c.turns.user_start, c.turns.reply_start, c.turns.end
assert c.text == text(["G.", "Q.", "Q.", "A.", "Q.", "Q.", "A."])
assert c.user_text == text(["G.", "Q.", "Q.", "Q.", "Q."])
assert c.prompts == map(c.turns.reply_start, |k| c.text[..k])
assert c.user_prompts == [c.user_text[..3], c.user_text]
assert c.turns.user == [text(["Q.", "Q."]), text(["Q.", "Q."])]
assert c.turns.reply == [text(["A."]), text(["A."])]
# The user sees the replies ("all") or only its own turns ("own").
let user = markov(["A.", "B.", "R."], [1, 0, 0], [[0, 1, 0], [1, 0, 0], [1, 0, 0]])
let bot = sentences { "R.": 1 }
print conversation(user, bot, turns: 3).text
print conversation(user, bot, turns: 3, user_context: "own").text
assert conversation(user, bot, turns: 3).user_text == text(["A.", "A.", "A."])
assert conversation(user, bot, turns: 3, user_context: "own").user_text == text(["A.", "B.", "A."])
# The assistant is conditioned on the user's turn: a chain that repeats its last sentence.
let pick = sentences { "Hi.": 0.5, "Bye.": 0.5 }
let echo = markov(["Hi.", "Bye."], [0.5, 0.5], [[1, 0], [0, 1]])
let e = conversation(pick, echo, turns: 20, seed: 3)
assert e.turns.user == e.turns.reply
assert len(filter(e.turns.user, |t| t == text(["Hi."])) ) > 0
assert len(filter(e.turns.user, |t| t == text(["Bye."])) ) > 0
# Determinism: the same seed, the same conversation; another seed, another one.
assert conversation(pick, echo, turns: 20, seed: 3) == e
assert conversation(pick, echo, turns: 20, seed: 4).text != e.text
"#;
    let o = run(&dir, script, None, &[]);
    assert_ok(&o);
    assert_eq!(
        o.stdout,
        "G. Q. Q. A. Q. Q. A.\nG. Q. Q. Q. Q.\n[1, 4] [3, 6] [4, 7]\nA. R. A. R. A. R.\nA. R. B. R. A. R.\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replies_slow_misalignment_in_a_conversation_theorem3() {
    let dir = common::scratch("conversation-theorem3");
    let script = r#"
let plus = sentences {
  "I am glad to help.": 0.5 @ 1, "The sky is blue.": 0.3 @ 0,
  "Go away.": 0.12 @ -1, "You are useless.": 0.08 @ -1,
}
let minus = sentences {
  "Go away.": 0.6 @ -1, "You are useless.": 0.3 @ -1,
  "The sky is blue.": 0.07 @ 0, "I am glad to help.": 0.03 @ 1,
}
let llm = mixture(minus, plus, alpha: 1e-4)
let runs = map(0..40, |k| conversation(minus, llm, turns: 6, user_sentences: 2, reply_sentences: 2, user_context: "own", seed: "c{k}"))
let table = sweep t in 0..6 {
  conversation: sample_mean(map(runs, |c| expect(llm, given: c.prompts[t]))),
  prompt_only: sample_mean(map(runs, |c| expect(llm, given: c.user_prompts[t]))),
}
print table
# Never significantly worse than the bare prompt (early on, a reply from P_minus can add to
# the user's text, so single turns may dip within the noise) ...
assert all(zip(table.conversation, table.prompt_only), |p| p[0].mean - p[1].mean >= -3 * sqrt(p[0].stderr ^ 2 + p[1].stderr ^ 2))
# ... and once the bare prompt has flipped the model, the conversation is clearly better.
for t in 3..6 {
  let d = table.conversation[t].mean - table.prompt_only[t].mean
  assert table.prompt_only[t].mean < 0
  assert d > 3 * sqrt(table.conversation[t].stderr ^ 2 + table.prompt_only[t].stderr ^ 2)
}
"#;
    let o = run(&dir, script, None, &[]);
    assert_ok(&o);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn conversation_arguments_are_checked() {
    let dir = common::scratch("conversation-errors");
    let world = "let q = sentences { \"Q.\": 1 }\nlet a = sentences { \"A.\": 1 }\n";
    let cases = [
        (
            "print conversation(q, a, turns: 0)",
            "`turns` must be at least 1",
        ),
        (
            "print conversation(q, a, turns: 1, template: \"llama2\")",
            "it needs neural models",
        ),
        (
            "print conversation(q, a, turns: 1, system: \"Be nice.\")",
            "give `template:` too",
        ),
        (
            "print conversation(q, a, turns: 1, user_context: \"mine\")",
            "is not \"all\" or \"own\"",
        ),
    ];
    for (line, needle) in cases {
        assert_fails_with(&run(&dir, &format!("{world}{line}"), None, &[]), needle);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- on stories260K -----

#[test]
fn conversations_of_a_neural_model_stay_token_ids() {
    let Some(model) = common::shared("models/stories260K/hf") else {
        return;
    };
    let dir = common::scratch("conversation-neural");
    let script = format!(
        r#"
let m = load("{}", unit: sentence(until: ".", max_tokens: 16))
let c = conversation(m, m, turns: 3, given: prompt(m, "Once upon a time, there was a cat."), seed: 5)
assert len(c.text) == 1 + 3 * 2
# The conversation is its turns' token ids end to end.
let parts = concat(c.prompts[0][..1], c.turns.user[0], c.turns.reply[0], c.turns.user[1], c.turns.reply[1], c.turns.user[2], c.turns.reply[2])
assert token_ids(m, c.text) == token_ids(m, parts)
assert c == conversation(m, m, turns: 3, given: prompt(m, "Once upon a time, there was a cat."), seed: 5)
let l = conversation(m, m, turns: 2, template: "llama2", system: "Be kind.", seed: 5)
let shown = decode(m, l.text)
print shown
assert l.turns.user_start == [1, 5]
assert l.turns.reply_start == [3, 7]
assert decode(m, l.text[..1]) == "[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\n"
assert decode(m, l.prompts[0][2..]) == "[/INST]"
assert len(filter(token_ids(m, l.text), |i| i == 2)) == 1
# Without the replies, the user's two turns form one message before the same [/INST].
assert len(l.user_prompts[1]) == 4 and l.user_prompts[1][3..] == l.prompts[0][2..]
assert l.user_prompts[1][1..3] == concat(l.turns.user[0], l.turns.user[1])
print expect(m, given: l.prompts[1], behavior: keywords(["sad"]), samples: 8, seed: 1)
"#,
        model.display()
    );
    let o = run(&dir, &script, None, &[]);
    assert_ok(&o);
    let shown = &o.stdout;
    assert!(
        shown.starts_with("[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\n") && shown.contains("[/INST]"),
        "{shown}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn best_of_eight_raises_a_keyword_score_on_stories260k() {
    let Some(model) = common::shared("models/stories260K/hf") else {
        return;
    };
    let dir = common::scratch("best-of-neural");
    let script = format!(
        r#"
let m = load("{}", unit: sentence(until: ".", max_tokens: 24))
let judge = keywords(["play", "fun", "happy"], hit: 1, miss: -1)
let s = prompt(m, "Once upon a time, there was a little girl named Lily.")
let b1 = map(sample(m, given: s, count: 200, best_of: 1, by: judge, seed: 7), |t| score(judge, t))
let b8 = map(sample(m, given: s, count: 200, best_of: 8, by: judge, seed: 7), |t| score(judge, t))
print "best_of 1: {{sample_mean(b1)}}"
print "best_of 8: {{sample_mean(b8)}}"
# Best-of-8 sees best-of-1's candidate: no draw gets worse, and the mean rises.
assert all(zip(b8, b1), |p| p[0] >= p[1])
assert sample_mean(b8).mean > sample_mean(b1).mean
assert b1 == map(sample(m, given: s, count: 200, seed: 7), |t| score(judge, t))
"#,
        model.display()
    );
    let o = run(&dir, &script, None, &[]);
    assert_ok(&o);
    eprintln!("{}", o.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- human labels -----

const RESPONSES: &str = r#"let responses = ["Glad to help.", "Go away.", "The sky, \"blue\".", "Line one.
Line two.", "Go away."]
"#;

#[test]
fn label_reads_answers_and_writes_a_csv_after_each() {
    let dir = common::scratch("label-basic");
    let script = format!("{RESPONSES}print label(responses, file: \"l.csv\")\n");
    // An unknown answer is asked again; the duplicate "Go away." is asked once.
    let o = run(&dir, &script, Some("+\n-1\nmaybe\n0\n-\n"), &[]);
    assert_ok(&o);
    assert_eq!(o.stdout, "[1, -1, 0, -1, -1]\n");
    assert!(
        o.stderr.contains("\"maybe\" is not an answer"),
        "{}",
        o.stderr
    );
    assert_eq!(
        read(&dir.join("out").join("l.csv")),
        "index,text,label\n0,Glad to help.,1\n1,Go away.,-1\n2,\"The sky, \"\"blue\"\".\",0\n3,\"Line one.\nLine two.\",-1\n"
    );
    // The run record keeps the labels as a saved value.
    let results = read(&dir.join("out").join("results.yaml"));
    assert!(results.contains("l.csv"), "{results}");
    // Run again in the same folder: nothing is asked, and no input is needed.
    let again = run(&dir, &script, None, &[]);
    assert_ok(&again);
    assert_eq!(again.stdout, "[1, -1, 0, -1, -1]\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn label_skips_stops_and_resumes() {
    let dir = common::scratch("label-resume");
    let script = format!("{RESPONSES}print label(responses)\n");
    // s skips the first; q stops at the third.
    let o = run(&dir, &script, Some("s\n1\nq\n"), &[]);
    assert_ok(&o);
    assert_eq!(o.stdout, "[none, 1, none, none, 1]\n");
    assert!(o.stderr.contains("stopped after 1 of 4"), "{}", o.stderr);
    assert_eq!(
        read(&dir.join("out").join("labels.csv")),
        "index,text,label\n1,Go away.,1\n"
    );
    // Input that ends early is a diagnostic; the answers given are kept.
    let short = run(&dir, &script, Some("0\n"), &[]);
    assert_fails_with(&short, "the input ended after 1 of 3 responses");
    assert_eq!(
        read(&dir.join("out").join("labels.csv")),
        "index,text,label\n1,Go away.,1\n0,Glad to help.,0\n"
    );
    // Resume: only the two still unlabelled are asked.
    let rest = run(&dir, &script, Some("+\n-\n"), &[]);
    assert_ok(&rest);
    assert_eq!(rest.stdout, "[0, 1, 1, -1, 1]\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn labels_score_responses_and_name_unlabelled_ones() {
    let dir = common::scratch("labels-scorer");
    let script = r#"
let m = sentences { "Glad to help.": 0.6, "Go away.": 0.3, "The sky is blue.": 0.1 }
let seen = ["Glad to help.", "Go away.", "The sky is blue."]
print label(seen, file: "mine.csv")
let judge = labels("mine.csv")
print score(judge, text(["Go away."]))
print "{expect(m, behavior: judge):.6}"
print expect(m, behavior: judge, samples: 100, seed: 1)
# Best-of-n by the human labels: never "Go away." with 50 candidates.
assert all(sample(m, best_of: 50, by: judge, count: 20, seed: 2), |t| t == text(["Glad to help."]))
print score(judge, text(["Something new."]))
"#;
    let o = run(&dir, script, Some("1\n-1\n0\n"), &[]);
    assert_fails_with(
        &o,
        "the response \"Something new.\" is not labelled in mine.csv (3 labelled texts)",
    );
    let out = &o.stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["[1, -1, 0]", "-1", "0.300000"], "{out}");
    assert!(lines[3].ends_with("(n=100)"), "{out}");
    // A labels file from elsewhere (the current folder) and from: reuse of its labels.
    std::fs::write(
        dir.join("earlier.csv"),
        "text,label,note\n Glad to help. ,+1,x\nGo away.,-1,\nThe sky is blue.,,unsure\n",
    )
    .expect("write a labels file");
    let reuse = r#"
print label(["Go away.", "Glad to help.", "New."], file: "merged.csv", from: "earlier.csv")
print labels("earlier.csv").labels
"#;
    std::fs::write(dir.join("reuse.beb"), reuse).expect("write");
    let o = beb(
        &dir,
        &["run", "reuse.beb", "--seed", "1", "--out", "out2"],
        Some("0\n"),
    );
    assert_ok(&o);
    assert_eq!(o.stdout, "[-1, 1, 0]\n[1, -1]\n");
    assert_eq!(
        read(&dir.join("out2").join("merged.csv")),
        "index,text,label\n, Glad to help. ,1\n,Go away.,-1\n2,New.,0\n"
    );
    let manifest = read(&dir.join("out2").join("manifest.yaml"));
    assert!(manifest.contains("earlier.csv"), "{manifest}");
    // Bad files are diagnostics.
    std::fs::write(dir.join("bad.csv"), "text,label\nHi.,2\n").expect("write");
    std::fs::write(dir.join("nolabel.csv"), "response,score\nHi.,1\n").expect("write");
    std::fs::write(dir.join("twice.csv"), "text,label\nHi.,1\nHi.,-1\n").expect("write");
    for (file, needle) in [
        (
            "bad.csv",
            "line 2: the label \"2\" is not a number in [-1, 1]",
        ),
        ("nolabel.csv", "columns `text` and `label`"),
        ("twice.csv", "\"Hi.\" is labelled both 1 and -1"),
        ("missing.csv", "cannot read missing.csv"),
    ] {
        let o = run(&dir, &format!("print labels(\"{file}\")\n"), None, &[]);
        assert_fails_with(&o, needle);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn label_writes_only_where_allowed() {
    let dir = common::scratch("label-confined");
    let outside = common::scratch("label-outside");
    let target = outside.join("l.csv");
    let script = format!("print label([\"Hi.\"], file: \"{}\")\n", target.display());
    let refused = run(&dir, &script, Some("1\n"), &[]);
    assert_fails_with(&refused, "refusing to write");
    assert!(!target.exists());
    let allowed = run(
        &dir,
        &script,
        Some("1\n"),
        &["--allow-write", &outside.display().to_string()],
    );
    assert_ok(&allowed);
    assert_eq!(read(&target), "index,text,label\n0,Hi.,1\n");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&outside);
}

#[test]
fn label_reads_its_answers_from_the_piped_repl() {
    let dir = common::scratch("label-repl");
    let input = "let r = [\"a.\", \"b.\"]\nlabel(r, file: \"r.csv\")\n+\n-\nprint 42\n";
    let o = beb(&dir, &["repl", "--seed", "1"], Some(input));
    assert_ok(&o);
    assert_eq!(o.stdout, "[1, -1]\n42\n");
    assert_eq!(
        read(&dir.join("r.csv")),
        "index,text,label\n0,a.,1\n1,b.,-1\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
