//! Checks that P_plus and P_minus, and a model's representations, tell well- and ill-behaved
//! statements apart (the paper's tables 1 and 2): the likelihood-ratio classifier, hidden
//! states of the last token, and cross-validated linear probes on them.

use std::rc::Rc;

use crate::builtin;
use crate::error::{BebError, BebResult};
use crate::eval::interp::Interp;
use crate::eval::natives::Elements;
use crate::eval::natives::{Arg, Call, FromArg, Mismatch, Native, Seed};
use crate::eval::value::Value;
use crate::fit::probe::{self, ProbeMethod, ProbeOptions};
use crate::lm::{ModelError, ModelRef, Unit};
use crate::stats::Estimate;

pub const NATIVES: &[Native] = &[HiddenStates::NATIVE, Probe::NATIVE, Classify::NATIVE];

/// A layer index: any number (checked against the model's layers when it is known).
#[derive(Clone, Copy, Debug)]
pub struct Layer(pub f64);

impl FromArg for Layer {
    const TYPE: &'static str = "int";
    const EXPECTED: &'static str = "a number";
    fn from_value(value: &Value, name: &str) -> Result<Self, Mismatch> {
        f64::from_value(value, name).map(Layer)
    }
}

builtin! {
    /// For each text (a string, tokenized once, or a text of token ids), the hidden state of its last token as a list of numbers, read after the model's BOS as when scoring. layer -1 (default) is after the final norm, what the LM head multiplies; 0 is the token embeddings; k is the output of block k. Texts run in batches of similar lengths.
    HiddenStates = hidden_states(model: ModelRef, texts: Elements, layer: Layer = -1) -> "list"
}

builtin! {
    /// Stratified k-fold cross-validation of a linear classifier of feature vectors (lists of numbers) into two labels (any two distinct values): method "logistic" (L2-regularised logistic regression) or "svm" (linear soft-margin SVM); c is the inverse regularisation strength (scikit-learn's C). Features are standardised with each training part's own mean and deviation. Returns {accuracy (mean over folds, stderr from the folds' spread, n = folds), std (the folds' standard deviation), fold_accuracy, n, folds, method, c, baseline (the larger class's share)}. Folds are drawn from the seed's stream.
    Probe = probe(features: Elements, labels: Elements, method: Rc<str> = "logistic", folds: usize = 5, c: f64 = 1, seed: Option<Seed> = none) -> "record"
}

builtin! {
    /// The likelihood-ratio classifier of the paper's table 1: each statement (a string or a text, scored on its own after BOS) is called ill-behaved when log P_minus(s) > log P_plus(s). Returns {accuracy, good_accuracy, bad_accuracy (binomial estimates: stderr sqrt(p(1 - p)/n)), n, ties, good_logratio, bad_logratio (log P_plus(s) - log P_minus(s) per statement)}.
    Classify = classify(plus: ModelRef, minus: ModelRef, good: Elements, bad: Elements) -> "record"
}

/// A list argument of strings or texts as units: a string is one sentence (a neural model
/// tokenizes it on its own), a text keeps its units.
fn statements(call: &Call, list: &Arg<Elements>) -> BebResult<Vec<Vec<Unit>>> {
    list.items
        .iter()
        .map(|v| match v {
            Value::Str(s) => Ok(vec![Unit::Sentence(s.clone())]),
            Value::Text(t) => Ok(t.units.clone()),
            _ => Err(list.wrong_type(call, "a list of strings or texts", list.given)),
        })
        .collect()
}

impl HiddenStates {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let model = &*self.model;
        let lm = model.as_neural().ok_or_else(|| {
            self.model.invalid(format!(
                "{} is not a neural model (load one with load(...))",
                model.name()
            ))
        })?;
        let layers = lm.model().config().layers;
        // -1 (the default) is after the final norm; 0..=layers the residual stream.
        let Layer(x) = *self.layer;
        let layer = if x == -1.0 {
            None
        } else {
            Some(
                crate::eval::natives::to_count(x)
                    .filter(|&k| k <= layers)
                    .ok_or_else(|| {
                        self.layer.invalid(format!(
                            "layer {x} does not exist: the model has {layers} blocks, so a layer is 0 (the embeddings) to {layers}, or -1 (after the final norm)"
                        ))
                    })?,
            )
        };
        let texts = statements(&self.call, &self.texts)?;
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|units| lm.ids(units))
            .collect::<Result<_, ModelError>>()
            .map_err(|e| BebError::from(e).at(self.texts.span))?;
        let states = lm
            .model()
            .hidden_states(&ids, layer)
            .map_err(|e| BebError::from(e).at(self.texts.span))?;
        Ok(Value::list(
            states
                .into_iter()
                .map(|row| Value::list(row.into_iter().map(|x| Value::Num(f64::from(x))).collect()))
                .collect(),
        ))
    }
}

/// A label's identity for telling the two classes apart.
fn label_key(value: &Value) -> Option<String> {
    match value {
        Value::Bool(b) => Some(format!("b{b}")),
        Value::Num(x) => Some(format!("n{}", x.to_bits())),
        Value::Str(s) => Some(format!("s{s}")),
        _ => None,
    }
}

impl Probe {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let lists_of_numbers = || {
            self.features.wrong_type(
                &self.call,
                "a list of lists of numbers",
                self.features.given,
            )
        };
        let rows = &self.features.items;
        let mut features = Vec::with_capacity(rows.len());
        for row in rows {
            let Value::List(items) = row else {
                return Err(lists_of_numbers());
            };
            let mut xs = Vec::with_capacity(items.len());
            for x in items.iter() {
                match x {
                    Value::Num(x) => xs.push(*x),
                    _ => return Err(lists_of_numbers()),
                }
            }
            features.push(xs);
        }
        let label_values = &self.labels.items;
        if label_values.len() != features.len() {
            return Err(self.labels.invalid(format!(
                "{} labels for {} feature vectors",
                label_values.len(),
                features.len()
            )));
        }
        let mut classes: Vec<String> = Vec::new();
        let mut labels = Vec::with_capacity(label_values.len());
        for v in label_values {
            let key = label_key(v).ok_or_else(|| {
                self.labels.wrong_type(
                    &self.call,
                    "a list of numbers, booleans or strings",
                    self.labels.given,
                )
            })?;
            let class = match classes.iter().position(|c| *c == key) {
                Some(i) => i,
                None => {
                    classes.push(key);
                    classes.len() - 1
                }
            };
            if class > 1 {
                return Err(self.labels.invalid(format!(
                    "a probe tells two classes apart; the labels hold a third value, {v}"
                )));
            }
            labels.push(class == 1);
        }
        if classes.len() < 2 {
            return Err(self
                .labels
                .invalid("a probe needs two classes; the labels hold only one value"));
        }
        let name = &self.method.value;
        let method = ProbeMethod::parse(name).ok_or_else(|| {
            self.method.invalid(format!(
                "method {name:?} is not one of \"logistic\", \"svm\""
            ))
        })?;
        let folds = *self.folds;
        if folds < 2 {
            return Err(self
                .folds
                .invalid("cross-validation needs at least 2 folds"));
        }
        let c = *self.c;
        if !(c.is_finite() && c > 0.0) {
            return Err(self
                .c
                .invalid(format!("c must be a positive number, found {c}")));
        }
        let options = ProbeOptions { method, folds, c };
        let mut rng = interp.seed_stream(&self.call, self.seed.as_ref()).rng();
        let result = probe::cross_validate(&features, &labels, &options, &mut rng)
            .map_err(|e| BebError::from(e).at(self.features.span))?;
        Ok(Value::record(vec![
            ("accuracy", Value::Estimate(result.accuracy)),
            ("std", Value::Num(result.std)),
            (
                "fold_accuracy",
                Value::list(
                    result
                        .fold_accuracy
                        .iter()
                        .map(|&a| Value::Num(a))
                        .collect(),
                ),
            ),
            ("n", Value::Num(result.n as f64)),
            ("folds", Value::Num(folds as f64)),
            ("method", Value::str(method.name())),
            ("c", Value::Num(c)),
            ("baseline", Value::Num(result.baseline)),
        ]))
    }
}

/// The share of `right` out of `n` as an estimate with the binomial standard error.
fn binomial(right: usize, n: usize) -> Estimate {
    let p = right as f64 / n as f64;
    Estimate::new(p, (p * (1.0 - p) / n as f64).sqrt(), n)
}

impl Classify {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let plus = interp.for_run(self.plus.value.clone());
        let minus = interp.for_run(self.minus.value.clone());
        self.minus.same_vocabulary_as(&self.plus)?;
        let good = statements(&self.call, &self.good)?;
        let bad = statements(&self.call, &self.bad)?;
        for (arg, list) in [(&self.good, &good), (&self.bad, &bad)] {
            if list.is_empty() {
                return Err(arg.invalid(format!("`{}` holds no statements", arg.name)));
            }
        }
        let all: Vec<Vec<Unit>> = good.iter().chain(&bad).cloned().collect();
        let lp_plus = plus
            .logprob_many(&[], &all)
            .map_err(|e| BebError::from(e).at(self.plus.span))?;
        let lp_minus = minus
            .logprob_many(&[], &all)
            .map_err(|e| BebError::from(e).at(self.minus.span))?;
        let mut ratios = Vec::with_capacity(all.len());
        for (i, (a, b)) in lp_plus.iter().zip(&lp_minus).enumerate() {
            let d = a - b;
            if d.is_nan() {
                let (arg, k) = if i < good.len() {
                    (&self.good, i)
                } else {
                    (&self.bad, i - good.len())
                };
                return Err(arg.invalid(format!(
                    "statement {k} ({}) has probability zero under both models; its likelihood ratio is undefined",
                    crate::lm::display_units(&all[i])
                )));
            }
            ratios.push(d);
        }
        let (good_ratio, bad_ratio) = ratios.split_at(good.len());
        // Called ill-behaved iff log P_minus(s) > log P_plus(s): a tie counts as well-behaved.
        let good_right = good_ratio.iter().filter(|&&d| d >= 0.0).count();
        let bad_right = bad_ratio.iter().filter(|&&d| d < 0.0).count();
        let ties = ratios.iter().filter(|&&d| d == 0.0).count();
        let numbers = |xs: &[f64]| Value::list(xs.iter().map(|&x| Value::Num(x)).collect());
        Ok(Value::record(vec![
            (
                "accuracy",
                Value::Estimate(binomial(good_right + bad_right, ratios.len())),
            ),
            (
                "good_accuracy",
                Value::Estimate(binomial(good_right, good.len())),
            ),
            (
                "bad_accuracy",
                Value::Estimate(binomial(bad_right, bad.len())),
            ),
            ("n", Value::Num(ratios.len() as f64)),
            ("ties", Value::Num(ties as f64)),
            ("good_logratio", numbers(good_ratio)),
            ("bad_logratio", numbers(bad_ratio)),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::binomial;

    #[test]
    fn binomial_errors_follow_p_one_minus_p() {
        let e = binomial(8, 10);
        assert_eq!(e.mean, 0.8);
        assert!((e.stderr - (0.8f64 * 0.2 / 10.0).sqrt()).abs() < 1e-15);
        assert_eq!(binomial(5, 5).stderr, 0.0);
    }
}
