//! A model read under another prompt: `kl(p, q, given: s, given_q: s2)` compares P(. | s)
//! with Q(. | s2). The measurements condition both models on one `given`; this wrapper answers
//! every query about Q(. | given ⊕ rest) with Q(. | s2 ⊕ rest), so they need not know.

use std::fmt;

use rand::RngCore;
use rand_chacha::ChaCha20Rng;

use crate::lm::{
    LanguageModel, ModelError, ModelRef, ModelResult, Scored, TokenSteps, Unit, Vocabulary,
};

/// `model` with the prompt `from` replaced by `to` in every context it is asked about.
pub fn wrap(model: ModelRef, from: Vec<Unit>, to: Vec<Unit>) -> ModelRef {
    let name = format!("{}(.|given_q)", model.name());
    std::rc::Rc::new(Conditioned {
        inner: model,
        from,
        to,
        name,
    })
}

struct Conditioned {
    inner: ModelRef,
    from: Vec<Unit>,
    to: Vec<Unit>,
    name: String,
}

impl fmt::Debug for Conditioned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Conditioned({:?})", self.inner)
    }
}

impl Conditioned {
    /// `to ⊕ rest` for a context `from ⊕ rest`.
    fn context(&self, context: &[Unit]) -> ModelResult<Vec<Unit>> {
        let rest = context.strip_prefix(self.from.as_slice()).ok_or_else(|| {
            ModelError::Invalid(format!(
                "{} was asked about a context that does not start with its prompt",
                self.name
            ))
        })?;
        Ok(self.to.iter().chain(rest).cloned().collect())
    }
}

impl LanguageModel for Conditioned {
    fn name(&self) -> &str {
        &self.name
    }

    fn vocabulary(&self) -> Vocabulary {
        self.inner.vocabulary()
    }

    fn logprob_next(&self, context: &[Unit], unit: &Unit) -> ModelResult<f64> {
        self.inner.logprob_next(&self.context(context)?, unit)
    }

    fn support(&self, context: &[Unit]) -> ModelResult<Option<Vec<(Unit, f64)>>> {
        self.inner.support(&self.context(context)?)
    }

    fn sample_next(&self, context: &[Unit], rng: &mut dyn RngCore) -> ModelResult<Unit> {
        self.inner.sample_next(&self.context(context)?, rng)
    }

    fn behavior(&self, unit: &Unit) -> Option<f64> {
        self.inner.behavior(unit)
    }

    // No Markov order, mixture or neural model is exposed: each would let a measurement
    // reach the inner model under the original prompt.

    fn sample_many(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Vec<Vec<Unit>>> {
        self.inner.sample_many(&self.context(given)?, units, rngs)
    }

    fn logprob_many(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<f64>> {
        self.inner.logprob_many(&self.context(given)?, texts)
    }

    fn sample_scored(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Scored> {
        self.inner.sample_scored(&self.context(given)?, units, rngs)
    }

    fn token_steps_unavailable(&self) -> Option<String> {
        self.inner.token_steps_unavailable()
    }

    fn token_steps(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<TokenSteps>> {
        self.inner.token_steps(&self.context(given)?, texts)
    }

    fn sample_with_steps(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<(Scored, Vec<TokenSteps>)> {
        self.inner
            .sample_with_steps(&self.context(given)?, units, rngs)
    }

    fn logprob(&self, given: &[Unit], text: &[Unit]) -> ModelResult<f64> {
        self.inner.logprob(&self.context(given)?, text)
    }
}
