//! Models and measurements: analytic models, mixtures, sampling, scoring, KL, log-ratio
//! variance, behavior expectation and fits. Exact on finite support, Monte Carlo otherwise.

use std::rc::Rc;

use crate::error::BebResult;
use crate::eval::natives::Native;
use crate::eval::value::Value;
use crate::lm::analytic::Categorical;
use crate::syntax::ast::Name;

pub const NATIVES: &[Native] = &[];

/// A categorical model from `(sentence, probability, score)` entries, named after its variable.
pub fn categorical(name: Option<Name>, entries: Vec<(String, f64, f64)>, normalize: bool) -> BebResult<Value> {
    let name = name.map(|n| n.to_string()).unwrap_or_else(|| "sentences".into());
    let model = Categorical::new(name, entries, normalize)?;
    Ok(Value::Model(Rc::new(model)))
}
