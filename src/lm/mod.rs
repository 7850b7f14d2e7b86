//! Language models as beb sees them: anything that can score and sample the next unit of text.
//!
//! Measurements are written once against [`LanguageModel`]; they are exact when a model can
//! enumerate its next-unit [`support`](LanguageModel::support) and Monte Carlo otherwise.

pub mod analytic;
pub mod mixture;

use std::fmt;
use std::rc::Rc;

use rand::RngCore;

/// One unit of text: a sentence of an analytic model, or a run of token ids of a neural model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    Sentence(Rc<str>),
    Tokens(Rc<[u32]>),
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Sentence(s) => f.write_str(s),
            Unit::Tokens(ids) => {
                let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
                write!(f, "<{}>", ids.join(" "))
            }
        }
    }
}

/// What a model's units are drawn from; models compared or mixed must agree on it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Vocabulary {
    /// Sentences named by their text (analytic models): any two such models are comparable.
    Sentences,
    /// Token ids of a tokenizer, identified by a digest of its vocabulary.
    Tokenizer { name: String, digest: String },
}

/// Why a model could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Invalid(String),
    #[error("models use different vocabularies: {left} and {right}")]
    VocabularyMismatch { left: String, right: String },
    #[error("the text has probability zero under {model}: no continuation can be sampled")]
    ImpossibleContext { model: String },
    #[error("{0}")]
    Unsupported(String),
}

pub type ModelResult<T> = Result<T, ModelError>;

/// A distribution over sequences of units, queried one unit at a time.
pub trait LanguageModel: fmt::Debug {
    /// A short human name (shown in diagnostics and tables).
    fn name(&self) -> &str;

    fn vocabulary(&self) -> Vocabulary;

    /// log P(unit | context); `f64::NEG_INFINITY` for an impossible unit.
    fn logprob_next(&self, context: &[Unit], unit: &Unit) -> ModelResult<f64>;

    /// The whole next-unit distribution as (unit, log P(unit | context)) with every listed
    /// probability > 0, or `None` when the support is too large to enumerate.
    fn support(&self, context: &[Unit]) -> ModelResult<Option<Vec<(Unit, f64)>>>;

    /// Draw one next unit from P(. | context).
    fn sample_next(&self, context: &[Unit], rng: &mut dyn RngCore) -> ModelResult<Unit>;

    /// The behavior score in [-1, 1] this model attaches to a unit, if it defines one.
    fn behavior(&self, unit: &Unit) -> Option<f64>;

    /// `Some(k)` when P(next | context) depends only on the last `k` units of the context
    /// (`Some(0)`: units are independent), so measurements can use exact dynamic programming
    /// over states instead of enumerating whole sequences. `None` (the default) promises nothing.
    fn markov_order(&self) -> Option<usize> {
        None
    }

    /// The mixture behind this model, if it is one (for posterior weights).
    fn as_mixture(&self) -> Option<&mixture::Mixture> {
        None
    }

    /// log P(text | given), the sum of the per-unit conditionals.
    fn logprob(&self, given: &[Unit], text: &[Unit]) -> ModelResult<f64> {
        let mut context: Vec<Unit> = given.to_vec();
        let mut total = 0.0;
        for unit in text {
            total += self.logprob_next(&context, unit)?;
            if total == f64::NEG_INFINITY {
                return Ok(total);
            }
            context.push(unit.clone());
        }
        Ok(total)
    }
}

/// Shared handle to a model: mixtures and script values hold models this way.
pub type ModelRef = Rc<dyn LanguageModel>;
