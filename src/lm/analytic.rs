//! Analytic sentence-level models written directly in a script.
//!
//! Their next-sentence distributions are finite tables, so every measurement on them (and on
//! mixtures of them) is exact. They are the embedded default of beb and the ground truth that
//! the Monte Carlo estimators are tested against.
//!
//! Probabilities are stored both as given (after normalisation) and as natural logs, with
//! ln 0 = -inf; zero-probability sentences are kept (they have a score, but are not in the
//! support).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use rand::{Rng, RngCore};
use rand_chacha::ChaCha20Rng;

use super::{LanguageModel, ModelError, ModelResult, Scored, Unit, Vocabulary};

/// How far the probabilities of a row may sum away from one before they are rejected.
pub const SUM_TOLERANCE: f64 = 1e-9;

/// One next-sentence distribution: sentences in declaration order with their probabilities.
#[derive(Clone, Debug)]
struct Row {
    units: Vec<Unit>,
    probs: Vec<f64>,
    logprobs: Vec<f64>,
    index: HashMap<Rc<str>, usize>,
}

impl Row {
    /// Validate and build a row. `owner` names the model (and row) in messages.
    fn new(owner: &str, entries: &[(String, f64)], normalize: bool) -> ModelResult<Row> {
        if entries.is_empty() {
            return Err(ModelError::Invalid(format!(
                "{owner}: needs at least one sentence"
            )));
        }
        let mut index = HashMap::with_capacity(entries.len());
        let mut units = Vec::with_capacity(entries.len());
        for (i, (sentence, p)) in entries.iter().enumerate() {
            if !p.is_finite() || *p < 0.0 {
                return Err(ModelError::Invalid(format!(
                    "{owner}: probability of {sentence:?} is {}; probabilities must be finite and >= 0",
                    crate::format::number(*p)
                )));
            }
            let key: Rc<str> = Rc::from(sentence.as_str());
            if index.insert(key.clone(), i).is_some() {
                return Err(ModelError::Invalid(format!(
                    "{owner}: sentence {sentence:?} is listed twice"
                )));
            }
            units.push(Unit::Sentence(key));
        }
        let total: f64 = entries.iter().map(|(_, p)| p).sum();
        if total == 0.0 {
            return Err(ModelError::Invalid(format!(
                "{owner}: all probabilities are zero, so nothing can be drawn"
            )));
        }
        if !total.is_finite() {
            return Err(ModelError::Invalid(format!(
                "{owner}: probabilities sum to {}, which cannot be normalised",
                crate::format::number(total)
            )));
        }
        if !normalize && (total - 1.0).abs() > SUM_TOLERANCE {
            return Err(ModelError::Invalid(format!(
                "{owner}: probabilities sum to {}, not 1; fix them or ask for normalisation",
                crate::format::number(total)
            )));
        }
        // Dividing by a sum within 1e-9 of one makes every row an exact distribution, so that
        // measurements such as KL >= 0 hold to rounding rather than to the declared precision.
        let probs: Vec<f64> = entries.iter().map(|(_, p)| p / total).collect();
        let logprobs = probs.iter().map(|p| p.ln()).collect();
        Ok(Row {
            units,
            probs,
            logprobs,
            index,
        })
    }

    fn logprob(&self, unit: &Unit) -> f64 {
        match unit {
            Unit::Sentence(s) => self
                .index
                .get(s)
                .map_or(f64::NEG_INFINITY, |&i| self.logprobs[i]),
            Unit::Tokens(_) => f64::NEG_INFINITY,
        }
    }

    fn support(&self) -> Vec<(Unit, f64)> {
        self.units
            .iter()
            .zip(&self.logprobs)
            .filter(|(_, lp)| **lp > f64::NEG_INFINITY)
            .map(|(u, lp)| (u.clone(), *lp))
            .collect()
    }

    /// Inverse CDF over declaration order with a single uniform draw.
    fn sample(&self, rng: &mut dyn RngCore) -> Unit {
        self.units[self.sample_index(rng)].clone()
    }

    /// The index of a drawn sentence (its log-probability is `logprobs[index]`).
    fn sample_index(&self, rng: &mut dyn RngCore) -> usize {
        let u: f64 = rng.random();
        let mut cumulative = 0.0;
        let mut last = 0;
        for (i, &p) in self.probs.iter().enumerate() {
            if p > 0.0 {
                cumulative += p;
                last = i;
                if u < cumulative {
                    return i;
                }
            }
        }
        // The cumulative sum can end a rounding error below one; such a draw belongs to the
        // last sentence with positive probability (a row always has one: checked in `new`).
        last
    }

    fn sentences(&self) -> impl Iterator<Item = (&str, f64)> {
        self.units.iter().zip(&self.probs).map(|(u, p)| match u {
            Unit::Sentence(s) => (&**s, *p),
            // Rows are built from sentences only.
            Unit::Tokens(_) => ("", *p),
        })
    }
}

fn check_score(owner: &str, sentence: &str, score: f64) -> ModelResult<()> {
    if !score.is_finite() || !(-1.0..=1.0).contains(&score) {
        return Err(ModelError::Invalid(format!(
            "{owner}: behavior score of {sentence:?} is {}; scores must be finite and lie in [-1, 1]",
            crate::format::number(score)
        )));
    }
    Ok(())
}

/// `units` sentences per generator drawn from the row `row_for` gives for the text so far,
/// each text's log-probability summed as `logprob` sums it (from 0, unit by unit), so the two
/// agree bit for bit; the generators are used as `sample_next` uses them.
fn sample_scored_rows<'a>(
    given: &[Unit],
    units: usize,
    rngs: &mut [ChaCha20Rng],
    row_for: impl Fn(Option<&Unit>) -> ModelResult<&'a Row>,
) -> ModelResult<Scored> {
    let mut scored = Scored::default();
    for rng in rngs.iter_mut() {
        let mut text: Vec<Unit> = Vec::with_capacity(units);
        let mut total = 0.0;
        for _ in 0..units {
            let row = row_for(text.last().or(given.last()))?;
            let i = row.sample_index(rng);
            total += row.logprobs[i];
            text.push(row.units[i].clone());
        }
        scored.texts.push(text);
        scored.logprobs.push(total);
    }
    Ok(scored)
}

/// Sentence-level i.i.d. model: every step draws a sentence from one fixed distribution.
#[derive(Clone, Debug)]
pub struct Categorical {
    name: String,
    row: Row,
    scores: Vec<Option<f64>>,
}

impl Categorical {
    /// A model from `(sentence, probability, behavior score)` entries.
    ///
    /// Probabilities must be finite, >= 0 and sum to one within 1e-9, unless `normalize` is
    /// set, in which case they are divided by their (non-zero) sum.
    pub fn new(
        name: impl Into<String>,
        entries: Vec<(String, f64, f64)>,
        normalize: bool,
    ) -> ModelResult<Categorical> {
        let entries = entries
            .into_iter()
            .map(|(s, p, b)| (s, p, Some(b)))
            .collect();
        Categorical::with_optional_scores(name, entries, normalize)
    }

    /// Like [`Categorical::new`], for scripts where some sentences carry no behavior score.
    pub fn with_optional_scores(
        name: impl Into<String>,
        entries: Vec<(String, f64, Option<f64>)>,
        normalize: bool,
    ) -> ModelResult<Categorical> {
        let name = name.into();
        let owner = format!("categorical {name:?}");
        let probs: Vec<(String, f64)> = entries.iter().map(|(s, p, _)| (s.clone(), *p)).collect();
        let row = Row::new(&owner, &probs, normalize)?;
        for (sentence, _, score) in &entries {
            if let Some(b) = score {
                check_score(&owner, sentence, *b)?;
            }
        }
        let scores = entries.into_iter().map(|(_, _, b)| b).collect();
        Ok(Categorical { name, row, scores })
    }

    /// `(sentence, probability, score)` in declaration order, zero-probability ones included.
    pub fn entries(&self) -> impl Iterator<Item = (&str, f64, Option<f64>)> {
        self.row
            .sentences()
            .zip(&self.scores)
            .map(|((s, p), b)| (s, p, *b))
    }
}

impl LanguageModel for Categorical {
    fn name(&self) -> &str {
        &self.name
    }

    fn vocabulary(&self) -> Vocabulary {
        Vocabulary::Sentences
    }

    fn logprob_next(&self, _context: &[Unit], unit: &Unit) -> ModelResult<f64> {
        Ok(self.row.logprob(unit))
    }

    fn support(&self, _context: &[Unit]) -> ModelResult<Option<Vec<(Unit, f64)>>> {
        Ok(Some(self.row.support()))
    }

    fn sample_next(&self, _context: &[Unit], rng: &mut dyn RngCore) -> ModelResult<Unit> {
        Ok(self.row.sample(rng))
    }

    fn behavior(&self, unit: &Unit) -> Option<f64> {
        match unit {
            Unit::Sentence(s) => self.row.index.get(s).and_then(|&i| self.scores[i]),
            Unit::Tokens(_) => None,
        }
    }

    fn logprob(&self, _given: &[Unit], text: &[Unit]) -> ModelResult<f64> {
        // Independent units: the sum of the per-unit log-probabilities, whatever the context.
        let mut total = 0.0;
        for unit in text {
            total += self.row.logprob(unit);
            if total == f64::NEG_INFINITY {
                break;
            }
        }
        Ok(total)
    }

    fn markov_order(&self) -> Option<usize> {
        Some(0)
    }

    fn sample_scored(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Scored> {
        sample_scored_rows(given, units, rngs, |_| Ok(&self.row))
    }
}

/// Sentence-level Markov chain: the next sentence depends on the last one only.
///
/// Given a context, the next-sentence distribution is the transition row of the context's
/// last sentence (the initial distribution for an empty context), whether or not the context
/// itself is probable: that is the chain's kernel, and mixtures weight it by P(context).
#[derive(Clone, Debug)]
pub struct Markov {
    name: String,
    initial: Row,
    rows: Vec<(Rc<str>, Row)>,
    row_index: HashMap<Rc<str>, usize>,
    scores: HashMap<Rc<str>, f64>,
}

impl Markov {
    /// A chain from its initial distribution, one transition row per sentence that can occur,
    /// and behavior scores (sentences without a score have none).
    ///
    /// Every sentence with positive probability in the initial distribution or in any row must
    /// have its own row; rows are validated like [`Categorical`] entries.
    pub fn new(
        name: impl Into<String>,
        initial: Vec<(String, f64)>,
        transitions: Vec<(String, Vec<(String, f64)>)>,
        scores: Vec<(String, f64)>,
        normalize: bool,
    ) -> ModelResult<Markov> {
        let name = name.into();
        let owner = format!("markov {name:?}");
        let initial = Row::new(
            &format!("{owner}, initial distribution"),
            &initial,
            normalize,
        )?;
        let mut rows = Vec::with_capacity(transitions.len());
        let mut row_index = HashMap::with_capacity(transitions.len());
        for (from, row) in &transitions {
            let key: Rc<str> = Rc::from(from.as_str());
            if row_index.insert(key.clone(), rows.len()).is_some() {
                return Err(ModelError::Invalid(format!(
                    "{owner}: sentence {from:?} has two transition rows"
                )));
            }
            let built = Row::new(&format!("{owner}, row of {from:?}"), row, normalize)?;
            rows.push((key, built));
        }
        // Closure: whatever can be drawn must know how to continue.
        let mut known: HashSet<&str> = HashSet::new();
        let check = |row: &Row, from: Option<&str>| -> ModelResult<()> {
            for (sentence, p) in row.sentences() {
                if p > 0.0 && !row_index.contains_key(sentence) {
                    let place = match from {
                        None => "can start the text".to_string(),
                        Some(f) => format!("can follow {f:?}"),
                    };
                    return Err(ModelError::Invalid(format!(
                        "{owner}: sentence {sentence:?} {place} but has no transition row"
                    )));
                }
            }
            Ok(())
        };
        check(&initial, None)?;
        for (from, row) in &rows {
            check(row, Some(from))?;
        }
        for (sentence, _) in initial.sentences() {
            known.insert(sentence);
        }
        for (from, row) in &rows {
            known.insert(from);
            for (sentence, _) in row.sentences() {
                known.insert(sentence);
            }
        }
        let mut score_map = HashMap::with_capacity(scores.len());
        for (sentence, score) in &scores {
            if !known.contains(sentence.as_str()) {
                return Err(ModelError::Invalid(format!(
                    "{owner}: a behavior score is given for {sentence:?}, which the chain never mentions"
                )));
            }
            check_score(&owner, sentence, *score)?;
            if score_map
                .insert(Rc::<str>::from(sentence.as_str()), *score)
                .is_some()
            {
                return Err(ModelError::Invalid(format!(
                    "{owner}: sentence {sentence:?} has two behavior scores"
                )));
            }
        }
        Ok(Markov {
            name,
            initial,
            rows,
            row_index,
            scores: score_map,
        })
    }

    /// The distribution of the next sentence after `context`.
    fn row_for(&self, context: &[Unit]) -> ModelResult<&Row> {
        match context.last() {
            None => Ok(&self.initial),
            Some(Unit::Sentence(s)) => match self.row_index.get(s) {
                Some(&i) => Ok(&self.rows[i].1),
                None => Err(ModelError::ImpossibleContext {
                    model: self.name.clone(),
                }),
            },
            Some(Unit::Tokens(_)) => Err(ModelError::ImpossibleContext {
                model: self.name.clone(),
            }),
        }
    }

    /// The initial distribution as `(sentence, probability)` in declaration order.
    pub fn initial(&self) -> impl Iterator<Item = (&str, f64)> {
        self.initial.sentences()
    }

    /// The transition rows as `(from, [(to, probability)])` in declaration order.
    pub fn transitions(&self) -> impl Iterator<Item = (&str, Vec<(&str, f64)>)> {
        self.rows
            .iter()
            .map(|(from, row)| (&**from, row.sentences().collect()))
    }
}

impl LanguageModel for Markov {
    fn name(&self) -> &str {
        &self.name
    }

    fn vocabulary(&self) -> Vocabulary {
        Vocabulary::Sentences
    }

    fn logprob_next(&self, context: &[Unit], unit: &Unit) -> ModelResult<f64> {
        Ok(self.row_for(context)?.logprob(unit))
    }

    fn support(&self, context: &[Unit]) -> ModelResult<Option<Vec<(Unit, f64)>>> {
        Ok(Some(self.row_for(context)?.support()))
    }

    fn sample_next(&self, context: &[Unit], rng: &mut dyn RngCore) -> ModelResult<Unit> {
        Ok(self.row_for(context)?.sample(rng))
    }

    fn behavior(&self, unit: &Unit) -> Option<f64> {
        match unit {
            Unit::Sentence(s) => self.scores.get(s).copied(),
            Unit::Tokens(_) => None,
        }
    }

    fn logprob(&self, given: &[Unit], text: &[Unit]) -> ModelResult<f64> {
        // Walk the chain without copying the context: only the previous unit matters.
        let mut total = 0.0;
        let mut previous: Option<&Unit> = given.last();
        for unit in text {
            let row = match previous {
                None => self.row_for(&[])?,
                Some(p) => self.row_for(std::slice::from_ref(p))?,
            };
            total += row.logprob(unit);
            if total == f64::NEG_INFINITY {
                break;
            }
            previous = Some(unit);
        }
        Ok(total)
    }

    fn markov_order(&self) -> Option<usize> {
        Some(1)
    }

    fn sample_scored(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Scored> {
        sample_scored_rows(given, units, rngs, |previous| match previous {
            None => self.row_for(&[]),
            Some(p) => self.row_for(std::slice::from_ref(p)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::sample_rng;

    fn s(text: &str) -> Unit {
        Unit::Sentence(Rc::from(text))
    }

    fn entries(list: &[(&str, f64, f64)]) -> Vec<(String, f64, f64)> {
        list.iter()
            .map(|(t, p, b)| (t.to_string(), *p, *b))
            .collect()
    }

    fn invalid_message(result: ModelResult<impl std::fmt::Debug>) -> String {
        match result {
            Err(ModelError::Invalid(m)) => m,
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn categorical_scores_and_samples() -> ModelResult<()> {
        let m = Categorical::new(
            "plus",
            entries(&[("a", 0.5, 1.0), ("b", 0.0, -1.0), ("c", 0.5, 0.0)]),
            false,
        )?;
        assert_eq!(m.logprob_next(&[], &s("a"))?, 0.5f64.ln());
        assert_eq!(m.logprob_next(&[], &s("b"))?, f64::NEG_INFINITY);
        assert_eq!(m.logprob_next(&[], &s("zzz"))?, f64::NEG_INFINITY);
        let support = m.support(&[s("a")])?.unwrap_or_default();
        assert_eq!(support.len(), 2);
        assert_eq!(support[0].0, s("a"));
        assert_eq!(support[1].0, s("c"));
        assert_eq!(m.behavior(&s("b")), Some(-1.0));
        assert_eq!(m.behavior(&s("zzz")), None);
        assert_eq!(m.logprob(&[], &[s("a"), s("c")])?, 2.0 * 0.5f64.ln());
        let mut count_a = 0;
        for i in 0..2000 {
            let u = m.sample_next(&[], &mut sample_rng(1, "t", i))?;
            assert_ne!(u, s("b"));
            if u == s("a") {
                count_a += 1;
            }
        }
        assert!((900..1100).contains(&count_a), "{count_a}");
        Ok(())
    }

    #[test]
    fn categorical_validation_names_the_entry() {
        let msg = invalid_message(Categorical::new(
            "m",
            entries(&[("a", -0.1, 0.0), ("b", 1.1, 0.0)]),
            false,
        ));
        assert!(msg.contains("\"a\"") && msg.contains("-0.1"), "{msg}");
        let msg = invalid_message(Categorical::new(
            "m",
            entries(&[("a", f64::NAN, 0.0)]),
            true,
        ));
        assert!(msg.contains("\"a\"") && msg.contains("nan"), "{msg}");
        let msg = invalid_message(Categorical::new(
            "m",
            entries(&[("a", 0.5, 0.0), ("b", 0.4, 0.0)]),
            false,
        ));
        assert!(msg.contains("sum to 0.9"), "{msg}");
        let msg = invalid_message(Categorical::new(
            "m",
            entries(&[("a", 0.0, 0.0), ("b", 0.0, 0.0)]),
            true,
        ));
        assert!(msg.contains("all probabilities are zero"), "{msg}");
        let msg = invalid_message(Categorical::new(
            "m",
            entries(&[("a", 0.5, 0.0), ("b", 0.5, 1.5)]),
            false,
        ));
        assert!(msg.contains("\"b\"") && msg.contains("1.5"), "{msg}");
        let msg = invalid_message(Categorical::new(
            "m",
            entries(&[("a", 0.5, 0.0), ("b", 0.5, f64::INFINITY)]),
            false,
        ));
        assert!(msg.contains("\"b\"") && msg.contains("inf"), "{msg}");
        let msg = invalid_message(Categorical::new(
            "m",
            entries(&[("a", 0.5, 0.0), ("a", 0.5, 0.0)]),
            false,
        ));
        assert!(msg.contains("\"a\" is listed twice"), "{msg}");
        let msg = invalid_message(Categorical::new("m", Vec::new(), false));
        assert!(msg.contains("at least one"), "{msg}");
    }

    #[test]
    fn categorical_normalises_on_request() -> ModelResult<()> {
        let m = Categorical::new("m", entries(&[("a", 2.0, 0.0), ("b", 6.0, 0.0)]), true)?;
        assert!((m.logprob_next(&[], &s("a"))? - 0.25f64.ln()).abs() < 1e-15);
        // Within tolerance without normalisation.
        Categorical::new(
            "m",
            entries(&[("a", 0.5 + 4e-10, 0.0), ("b", 0.5, 0.0)]),
            false,
        )?;
        Ok(())
    }

    fn chain() -> ModelResult<Markov> {
        Markov::new(
            "chain",
            vec![("a".into(), 1.0), ("b".into(), 0.0)],
            vec![
                ("a".into(), vec![("a".into(), 0.25), ("b".into(), 0.75)]),
                ("b".into(), vec![("a".into(), 1.0)]),
            ],
            vec![("a".into(), 1.0), ("b".into(), -1.0)],
            false,
        )
    }

    #[test]
    fn markov_follows_its_rows() -> ModelResult<()> {
        let m = chain()?;
        assert_eq!(m.logprob_next(&[], &s("b"))?, f64::NEG_INFINITY);
        assert_eq!(m.logprob_next(&[s("a")], &s("b"))?, 0.75f64.ln());
        let lp = m.logprob(&[], &[s("a"), s("b"), s("a"), s("a")])?;
        let expected = 0.75f64.ln() + 0.25f64.ln();
        assert!((lp - expected).abs() < 1e-15);
        assert_eq!(m.support(&[s("b")])?.map(|v| v.len()), Some(1));
        assert!(matches!(
            m.support(&[s("nowhere")]),
            Err(ModelError::ImpossibleContext { .. })
        ));
        assert_eq!(m.behavior(&s("b")), Some(-1.0));
        Ok(())
    }

    #[test]
    fn markov_validation_names_the_problem() {
        let msg = invalid_message(Markov::new(
            "c",
            vec![("a".into(), 1.0)],
            vec![("a".into(), vec![("a".into(), 0.5), ("b".into(), 0.5)])],
            vec![],
            false,
        ));
        assert!(
            msg.contains("\"b\" can follow \"a\" but has no transition row"),
            "{msg}"
        );
        let msg = invalid_message(Markov::new(
            "c",
            vec![("x".into(), 1.0)],
            vec![("a".into(), vec![("a".into(), 1.0)])],
            vec![],
            false,
        ));
        assert!(msg.contains("\"x\" can start the text"), "{msg}");
        let msg = invalid_message(Markov::new(
            "c",
            vec![("a".into(), 1.0)],
            vec![("a".into(), vec![("a".into(), 0.7)])],
            vec![],
            false,
        ));
        assert!(msg.contains("row of \"a\"") && msg.contains("0.7"), "{msg}");
        let msg = invalid_message(Markov::new(
            "c",
            vec![("a".into(), 1.0)],
            vec![
                ("a".into(), vec![("a".into(), 1.0)]),
                ("a".into(), vec![("a".into(), 1.0)]),
            ],
            vec![],
            false,
        ));
        assert!(msg.contains("two transition rows"), "{msg}");
        let msg = invalid_message(Markov::new(
            "c",
            vec![("a".into(), 1.0)],
            vec![("a".into(), vec![("a".into(), 1.0)])],
            vec![("q".into(), 0.0)],
            false,
        ));
        assert!(msg.contains("\"q\""), "{msg}");
        let msg = invalid_message(Markov::new(
            "c",
            vec![("a".into(), 1.0)],
            vec![("a".into(), vec![("a".into(), 1.0)])],
            vec![("a".into(), -2.0)],
            false,
        ));
        assert!(msg.contains("\"a\"") && msg.contains("-2"), "{msg}");
    }
}
