//! Language models as beb sees them: anything that can score and sample the next unit of text.
//!
//! Measurements are written once against [`LanguageModel`]; they are exact when a model can
//! enumerate its next-unit [`support`](LanguageModel::support) and Monte Carlo otherwise.

pub mod analytic;
pub mod mixture;
pub mod neural;
pub mod run_cache;
pub mod server;

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use rand::RngCore;
use rand_chacha::ChaCha20Rng;

pub use neural::{Sampling, UnitSpec};

/// One unit of text: a sentence of an analytic model, or a run of token ids of a neural model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    Sentence(Rc<str>),
    Tokens(TokenRun),
}

/// Turns token ids back into text (for printing and for text-based behavior scorers).
pub trait Detokenize {
    fn decode(&self, ids: &[u32]) -> String;
}

/// A run of token ids, with the tokenizer that can print it. Equality, ordering and hashing
/// look at the ids only: a prompt is its token ids, never re-encoded text.
#[derive(Clone)]
pub struct TokenRun {
    pub ids: Rc<[u32]>,
    pub decoder: Option<Rc<dyn Detokenize>>,
}

impl TokenRun {
    pub fn new(ids: impl Into<Rc<[u32]>>, decoder: Option<Rc<dyn Detokenize>>) -> TokenRun {
        TokenRun {
            ids: ids.into(),
            decoder,
        }
    }
}

impl fmt::Debug for TokenRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenRun({:?})", &self.ids[..])
    }
}

impl PartialEq for TokenRun {
    fn eq(&self, other: &TokenRun) -> bool {
        self.ids == other.ids
    }
}

impl Eq for TokenRun {}

impl Hash for TokenRun {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.ids.hash(state);
    }
}

impl PartialOrd for TokenRun {
    fn partial_cmp(&self, other: &TokenRun) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TokenRun {
    fn cmp(&self, other: &TokenRun) -> Ordering {
        self.ids.cmp(&other.ids)
    }
}

impl fmt::Display for TokenRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.decoder {
            Some(d) => f.write_str(&d.decode(&self.ids)),
            None => {
                let ids: Vec<String> = self.ids.iter().map(u32::to_string).collect();
                write!(f, "<{}>", ids.join(" "))
            }
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Sentence(s) => f.write_str(s),
            Unit::Tokens(run) => run.fmt(f),
        }
    }
}

/// A text for people: sentences joined by spaces; consecutive token runs decoded together
/// (so that a tokenizer's word boundaries come out right).
pub fn display_units(units: &[Unit]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < units.len() {
        match &units[i] {
            Unit::Tokens(run) if run.decoder.is_some() => {
                let mut ids: Vec<u32> = run.ids.to_vec();
                let mut j = i + 1;
                while let Some(Unit::Tokens(next)) = units.get(j) {
                    match (&run.decoder, &next.decoder) {
                        (Some(a), Some(b)) if Rc::ptr_eq(a, b) => ids.extend_from_slice(&next.ids),
                        _ => break,
                    }
                    j += 1;
                }
                if let Some(d) = &run.decoder {
                    parts.push(d.decode(&ids));
                }
                i = j;
            }
            other => {
                parts.push(other.to_string());
                i += 1;
            }
        }
    }
    parts.join(" ")
}

/// What a model's units are drawn from; models compared or mixed must agree on it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Vocabulary {
    /// Sentences named by their text (analytic models): any two such models are comparable.
    Sentences,
    /// Token ids of a tokenizer, identified by a digest of its vocabulary.
    Tokenizer { name: String, digest: String },
}

/// A vocabulary in words, for mismatch messages.
fn describe_vocabulary(vocabulary: &Vocabulary) -> String {
    match vocabulary {
        Vocabulary::Sentences => "sentences".to_string(),
        Vocabulary::Tokenizer { name, digest } => {
            let short: String = digest.chars().take(12).collect();
            format!("tokenizer {name} ({short})")
        }
    }
}

/// The error for two models (named as the caller knows them) that read different units.
fn vocabulary_mismatch(left: &str, lv: &Vocabulary, right: &str, rv: &Vocabulary) -> ModelError {
    ModelError::VocabularyMismatch {
        left: format!("{left} uses {}", describe_vocabulary(lv)),
        right: format!("{right} uses {}", describe_vocabulary(rv)),
    }
}

/// An error unless the two models draw their units from one vocabulary, as models compared,
/// mixed or continued by one another must; the message names both and their vocabularies.
pub fn check_same_vocabulary(
    left: &dyn LanguageModel,
    right: &dyn LanguageModel,
) -> ModelResult<()> {
    let (lv, rv) = (left.vocabulary(), right.vocabulary());
    if lv == rv {
        Ok(())
    } else {
        Err(vocabulary_mismatch(left.name(), &lv, right.name(), &rv))
    }
}

/// Whether two handles are the same model: one object, or two wrappers of the same weights
/// and settings (equal cache identities).
pub fn same_model(a: &dyn LanguageModel, b: &dyn LanguageModel) -> bool {
    let (a, b) = (innermost(a), innermost(b));
    std::ptr::addr_eq(a as *const dyn LanguageModel, b as *const dyn LanguageModel)
        || matches!((a.cache_identity(), b.cache_identity()), (Some(x), Some(y)) if x == y)
}

/// The model under every distribution-preserving wrapper.
fn innermost(mut model: &dyn LanguageModel) -> &dyn LanguageModel {
    while let Some(inner) = model.unwrapped() {
        model = inner;
    }
    model
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

/// What a model whose units are token runs offers besides its distribution: turning strings
/// into its units and ids back into text (prompts, decoding, the run cache's rebuilt units).
/// Local neural models and served models both have it.
pub trait TokenText {
    /// The token ids of a text (plain sentences are tokenized on their own).
    fn ids(&self, units: &[Unit]) -> ModelResult<Vec<u32>>;
    /// A string as a text of units: tokenized once, then cut by the unit rule.
    fn prompt(&self, text: &str) -> ModelResult<Vec<Unit>>;
    fn decode(&self, ids: &[u32]) -> String;
    /// A unit of these token ids, printable with this model's tokenizer.
    fn token_run(&self, ids: Vec<u32>) -> Unit;
    /// How many texts are sampled or scored together (a progress and cache-write step).
    fn batch(&self) -> usize;
}

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

    /// The neural model behind this one, if it is one.
    fn as_neural(&self) -> Option<&neural::NeuralLm> {
        None
    }

    /// The model this one wraps without changing its distribution (a run-cache or interrupt
    /// wrapper), so that identity checks see through it.
    fn unwrapped(&self) -> Option<&dyn LanguageModel> {
        None
    }

    /// The tokenizer side of this model, if its units are token runs (neural and served
    /// models).
    fn as_tokens(&self) -> Option<&dyn TokenText> {
        self.as_neural().map(|n| n as &dyn TokenText)
    }

    /// A one-line identity for printing (architecture, size, weights digest...), if the model
    /// has more of one than its name.
    fn describe(&self) -> Option<String> {
        None
    }

    /// Everything that determines this model's samples and scores (weights' sha256, adapter,
    /// dtype, device, tokenizer, unit, sampling), for keying the on-disk cache; `None` for
    /// models too cheap to cache.
    fn cache_identity(&self) -> Option<String> {
        None
    }

    /// The same distribution over token streams, cut into units by `unit` and sampled with
    /// `sampling` (neural models, and mixtures of them); `Ok(None)` for models without tokens.
    fn view(
        &self,
        unit: Option<&UnitSpec>,
        sampling: Option<&Sampling>,
    ) -> ModelResult<Option<ModelRef>> {
        let _ = (unit, sampling);
        Ok(None)
    }

    /// `units` units after `given` for each generator: text i is drawn with `rngs[i]` alone,
    /// whatever the other generators, so results do not depend on how draws are batched.
    /// Models that draw unit by unit draw it exactly as repeated
    /// [`sample_next`](LanguageModel::sample_next) calls would (this default); a served model
    /// draws a text's units as one stream from one seed, and its `sample_next` is this with
    /// one unit.
    fn sample_many(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Vec<Vec<Unit>>> {
        sample_one_by_one(self, given, units, rngs)
    }

    /// Texts drawn exactly as [`sample_many`](LanguageModel::sample_many) draws them, each
    /// with log P(text | given) under this model, what [`logprob`](LanguageModel::logprob)
    /// computes. This default draws, then scores; a model whose draw already computes its
    /// log-probabilities returns them (one pass over the text instead of two).
    fn sample_scored(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Scored> {
        let texts = self.sample_many(given, units, rngs)?;
        let logprobs = self.logprob_many(given, &texts)?;
        Ok(Scored { texts, logprobs })
    }

    /// `None` when [`token_steps`](LanguageModel::token_steps) answers; otherwise why this
    /// model cannot give whole next-token distributions (for the diagnostic that refuses a
    /// Rao-Blackwellized estimate).
    fn token_steps_unavailable(&self) -> Option<String> {
        Some(format!(
            "{} has no next-token distributions over a vocabulary of tokens",
            self.name()
        ))
    }

    /// For each text, the exact next-token distribution (natural logs, dense over the
    /// vocabulary) before each of its tokens, given `given` and the text's earlier tokens:
    /// one vector per token of the text. An error for models without token distributions.
    fn token_steps(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<TokenSteps>> {
        let _ = (given, texts);
        Err(ModelError::Unsupported(
            self.token_steps_unavailable()
                .unwrap_or_else(|| format!("{} gives no token steps", self.name())),
        ))
    }

    /// [`sample_scored`](LanguageModel::sample_scored) with each text's
    /// [`token_steps`](LanguageModel::token_steps); a model whose draw computed them returns
    /// those (this default computes them again).
    fn sample_with_steps(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<(Scored, Vec<TokenSteps>)> {
        let scored = self.sample_scored(given, units, rngs)?;
        let steps = self.token_steps(given, &scored.texts)?;
        Ok((scored, steps))
    }

    /// log P(text | given) for each text (batched by models that can).
    fn logprob_many(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<f64>> {
        texts.iter().map(|t| self.logprob(given, t)).collect()
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

/// Drawn texts with log P(text | given) under the model that drew them, index for index.
#[derive(Clone, Debug, Default)]
pub struct Scored {
    pub texts: Vec<Vec<Unit>>,
    pub logprobs: Vec<f64>,
}

/// A text's next-token distributions, one per token (natural logs over the vocabulary).
pub type TokenSteps = Vec<Rc<Vec<f64>>>;

/// The token ids of a text whose units are all token runs; an error naming `model` for a
/// sentence (a plain string has no token steps of its own until a tokenizer reads it).
pub fn text_token_ids(model: &str, text: &[Unit]) -> ModelResult<Vec<u32>> {
    let mut ids = Vec::new();
    for unit in text {
        match unit {
            Unit::Tokens(run) => ids.extend_from_slice(&run.ids),
            Unit::Sentence(_) => {
                return Err(ModelError::Unsupported(format!(
                    "{model}: token steps need texts of token runs, not sentences"
                )));
            }
        }
    }
    Ok(ids)
}

/// `units` units after `given` per generator, one `sample_next` call at a time: the reference
/// that batched [`LanguageModel::sample_many`] implementations must reproduce.
pub fn sample_one_by_one<M: LanguageModel + ?Sized>(
    model: &M,
    given: &[Unit],
    units: usize,
    rngs: &mut [ChaCha20Rng],
) -> ModelResult<Vec<Vec<Unit>>> {
    let mut texts = Vec::with_capacity(rngs.len());
    for rng in rngs.iter_mut() {
        let mut context = given.to_vec();
        for _ in 0..units {
            let unit = model.sample_next(&context, rng)?;
            context.push(unit);
        }
        texts.push(context.split_off(given.len()));
    }
    Ok(texts)
}

/// Shared handle to a model: mixtures and script values hold models this way.
pub type ModelRef = Rc<dyn LanguageModel>;
