//! The analytic worlds the numerical tests measure: the README's quickstart world and a
//! two-sentence world with a rare sentence, built through the library.

use std::rc::Rc;

use beb::lm::ModelRef;
use beb::lm::analytic::Categorical;
use beb::lm::mixture::Mixture;

/// A categorical model from (sentence, probability, behavior) entries.
pub fn categorical(label: &str, entries: &[(&str, f64, f64)]) -> ModelRef {
    let entries = entries
        .iter()
        .map(|(s, p, b)| (s.to_string(), *p, *b))
        .collect();
    match Categorical::new(label, entries, false) {
        Ok(m) => Rc::new(m),
        Err(e) => panic!("{label}: {e}"),
    }
}

/// The README's world: (P_minus, P_plus).
pub fn quickstart() -> (ModelRef, ModelRef) {
    (
        categorical(
            "minus",
            &[("Go away.", 0.7, -1.0), ("You are useless.", 0.3, -1.0)],
        ),
        categorical(
            "plus",
            &[
                ("I am glad to help.", 0.5, 1.0),
                ("The sky is blue.", 0.3, 0.0),
                ("Go away.", 0.12, -1.0),
                ("You are useless.", 0.08, -1.0),
            ],
        ),
    )
}

/// Two sentences, one rare under the first model: a two-point log-ratio.
pub fn ab() -> (ModelRef, ModelRef) {
    (
        categorical("a", &[("A.", 0.9, 1.0), ("B.", 0.1, -1.0)]),
        categorical("b", &[("A.", 0.5, 1.0), ("B.", 0.5, -1.0)]),
    )
}

/// P = alpha P_minus + (1 - alpha) P_plus, with both weights exact in log space.
pub fn mixture(minus: &ModelRef, plus: &ModelRef, alpha: f64) -> Mixture {
    Mixture::new(vec![
        ("minus".into(), minus.clone(), alpha.ln()),
        ("plus".into(), plus.clone(), (-alpha).ln_1p()),
    ])
    .unwrap_or_else(|e| panic!("{e}"))
}
