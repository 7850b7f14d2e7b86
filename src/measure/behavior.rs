//! Behavior scorers: the B of eq. 2 when it is not a model's own sentence scores. A scorer
//! turns one unit of text into a number in [-1, 1]: by which of two models finds it more
//! likely, by keywords, or by a human's labels.

use std::collections::HashMap;

use crate::lm::{ModelRef, Unit};

/// Why a text could not be scored.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ScoreError {
    pub message: String,
    /// What to do about it, when there is something to do.
    pub help: Option<String>,
    /// Whether a model failed (e.g. the text does not fit its context window), rather than
    /// the text being one the scorer cannot score: reported as a model error.
    pub model: bool,
}

impl ScoreError {
    fn new(message: impl Into<String>) -> ScoreError {
        ScoreError {
            message: message.into(),
            help: None,
            model: false,
        }
    }
}

/// A scorer, built once when a script makes it and applied to many texts.
pub enum Scorer {
    /// +1 when `plus` finds the text more likely than `minus`, -1 when less (or
    /// tanh(d/2) of the log-ratio d when `soft`).
    LikelihoodRatio {
        plus: ModelRef,
        minus: ModelRef,
        soft: bool,
    },
    /// `hit` when any pattern matches the text, else `miss`.
    Keywords {
        words: Vec<String>,
        patterns: Vec<regex::Regex>,
        regex: bool,
        ignore_case: bool,
        hit: f64,
        miss: f64,
    },
    /// The label a human gave the text (by its trimmed text).
    Labels {
        file: String,
        texts: Vec<String>,
        labels: Vec<f64>,
        table: HashMap<String, f64>,
    },
}

impl Scorer {
    /// Keywords (literal, or regular expressions when `regex`), compiled now so a bad pattern
    /// is reported where the scorer is made.
    pub fn keywords(
        words: Vec<String>,
        regex: bool,
        ignore_case: bool,
        hit: f64,
        miss: f64,
    ) -> Result<Scorer, ScoreError> {
        let patterns = words
            .iter()
            .map(|w| {
                let source = if regex {
                    w.to_string()
                } else {
                    regex::escape(w)
                };
                regex::RegexBuilder::new(&source)
                    .case_insensitive(ignore_case)
                    .build()
                    .map_err(|e| ScoreError::new(format!("bad pattern {w:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scorer::Keywords {
            words,
            patterns,
            regex,
            ignore_case,
            hit,
            miss,
        })
    }

    /// Labels read from `file`: texts and their labels, in order.
    pub fn labels(file: String, texts: Vec<String>, labels: Vec<f64>) -> Scorer {
        let table = texts
            .iter()
            .zip(&labels)
            .map(|(t, l)| (label_key(t).to_string(), *l))
            .collect();
        Scorer::Labels {
            file,
            texts,
            labels,
            table,
        }
    }

    /// The scorer's kind, as scripts see it.
    pub fn kind(&self) -> &'static str {
        match self {
            Scorer::LikelihoodRatio { .. } => "likelihood_ratio",
            Scorer::Keywords { .. } => "keywords",
            Scorer::Labels { .. } => "labels",
        }
    }

    /// The behavior score of one unit of text.
    pub fn score(&self, unit: &Unit) -> Result<f64, ScoreError> {
        match self {
            Scorer::LikelihoodRatio { plus, minus, soft } => {
                let text = std::slice::from_ref(unit);
                let model = |e: crate::lm::ModelError| ScoreError {
                    model: true,
                    ..ScoreError::new(e.to_string())
                };
                let d = plus.logprob(&[], text).map_err(model)?
                    - minus.logprob(&[], text).map_err(model)?;
                if d.is_nan() {
                    return Err(ScoreError::new(
                        "the text has probability zero under both models; its likelihood ratio is undefined",
                    ));
                }
                Ok(if *soft {
                    (d / 2.0).tanh()
                } else if d > 0.0 {
                    1.0
                } else if d < 0.0 {
                    -1.0
                } else {
                    0.0
                })
            }
            Scorer::Keywords {
                patterns,
                hit,
                miss,
                ..
            } => {
                let text = unit.to_string();
                Ok(if patterns.iter().any(|p| p.is_match(&text)) {
                    *hit
                } else {
                    *miss
                })
            }
            Scorer::Labels { file, table, .. } => {
                let text = unit.to_string();
                table
                    .get(label_key(&text))
                    .copied()
                    .ok_or_else(|| ScoreError {
                        message: format!(
                            "the response {:?} is not labelled in {file} ({} labelled texts)",
                            excerpt(&text),
                            table.len()
                        ),
                        help: Some(format!(
                            "label it with label([...], file: ...) and add it to {file}"
                        )),
                        model: false,
                    })
            }
        }
    }
}

/// Labels are matched by the text without surrounding whitespace.
pub fn label_key(text: &str) -> &str {
    text.trim()
}

/// A long text shortened for a diagnostic.
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    let text = text.trim();
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}
