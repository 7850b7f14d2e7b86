//! Ctrl-C inside a long model computation: a model wrapper that checks the interrupt flag on
//! every query, and splits batched sampling and scoring into slices so a Monte Carlo estimate
//! of millions of draws stops within one slice. The measurements themselves know nothing of
//! it: the first query after Ctrl-C fails, and the call site reports the interruption.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::RngCore;
use rand_chacha::ChaCha20Rng;

use crate::lm::neural::NeuralLm;
use crate::lm::{
    LanguageModel, ModelError, ModelRef, ModelResult, Sampling, Scored, TokenSteps, Unit, UnitSpec,
    Vocabulary, mixture,
};

/// Draws and scores per slice between two looks at the flag.
const SLICE: usize = 256;

/// The message of the error a query fails with once the flag is raised.
pub const INTERRUPTED: &str = "interrupted";

/// `model`, failing its next query once `flag` is raised.
pub fn wrap(model: ModelRef, flag: Arc<AtomicBool>) -> ModelRef {
    std::rc::Rc::new(Interruptible { inner: model, flag })
}

struct Interruptible {
    inner: ModelRef,
    flag: Arc<AtomicBool>,
}

impl fmt::Debug for Interruptible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Interruptible {
    fn check(&self) -> ModelResult<()> {
        if self.flag.load(Ordering::SeqCst) {
            Err(ModelError::Invalid(INTERRUPTED.to_string()))
        } else {
            Ok(())
        }
    }
}

impl LanguageModel for Interruptible {
    fn unwrapped(&self) -> Option<&dyn LanguageModel> {
        Some(self.inner.as_ref())
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn vocabulary(&self) -> Vocabulary {
        self.inner.vocabulary()
    }

    fn logprob_next(&self, context: &[Unit], unit: &Unit) -> ModelResult<f64> {
        self.check()?;
        self.inner.logprob_next(context, unit)
    }

    fn support(&self, context: &[Unit]) -> ModelResult<Option<Vec<(Unit, f64)>>> {
        self.check()?;
        self.inner.support(context)
    }

    fn sample_next(&self, context: &[Unit], rng: &mut dyn RngCore) -> ModelResult<Unit> {
        self.check()?;
        self.inner.sample_next(context, rng)
    }

    fn behavior(&self, unit: &Unit) -> Option<f64> {
        self.inner.behavior(unit)
    }

    fn markov_order(&self) -> Option<usize> {
        self.inner.markov_order()
    }

    fn as_mixture(&self) -> Option<&mixture::Mixture> {
        self.inner.as_mixture()
    }

    fn as_neural(&self) -> Option<&NeuralLm> {
        self.inner.as_neural()
    }

    fn describe(&self) -> Option<String> {
        self.inner.describe()
    }

    fn cache_identity(&self) -> Option<String> {
        self.inner.cache_identity()
    }

    fn view(
        &self,
        unit: Option<&UnitSpec>,
        sampling: Option<&Sampling>,
    ) -> ModelResult<Option<ModelRef>> {
        Ok(self
            .inner
            .view(unit, sampling)?
            .map(|view| wrap(view, self.flag.clone())))
    }

    /// Slice by slice: text i is still drawn with `rngs[i]` alone, so the texts are the same.
    fn sample_many(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Vec<Vec<Unit>>> {
        let mut texts = Vec::with_capacity(rngs.len());
        for slice in rngs.chunks_mut(SLICE) {
            self.check()?;
            texts.extend(self.inner.sample_many(given, units, slice)?);
        }
        Ok(texts)
    }

    /// Slice by slice, like `sample_many`.
    fn sample_scored(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Scored> {
        let mut out = Scored::default();
        for slice in rngs.chunks_mut(SLICE) {
            self.check()?;
            let got = self.inner.sample_scored(given, units, slice)?;
            out.texts.extend(got.texts);
            out.logprobs.extend(got.logprobs);
        }
        Ok(out)
    }

    fn token_steps_unavailable(&self) -> Option<String> {
        self.inner.token_steps_unavailable()
    }

    fn token_steps(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<TokenSteps>> {
        let mut out = Vec::with_capacity(texts.len());
        for slice in texts.chunks(SLICE) {
            self.check()?;
            out.extend(self.inner.token_steps(given, slice)?);
        }
        Ok(out)
    }

    fn sample_with_steps(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<(Scored, Vec<TokenSteps>)> {
        let (mut scored, mut steps) = (Scored::default(), Vec::new());
        for slice in rngs.chunks_mut(SLICE) {
            self.check()?;
            let (got, st) = self.inner.sample_with_steps(given, units, slice)?;
            scored.texts.extend(got.texts);
            scored.logprobs.extend(got.logprobs);
            steps.extend(st);
        }
        Ok((scored, steps))
    }

    fn logprob_many(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<f64>> {
        let mut out = Vec::with_capacity(texts.len());
        for slice in texts.chunks(SLICE) {
            self.check()?;
            out.extend(self.inner.logprob_many(given, slice)?);
        }
        Ok(out)
    }

    fn logprob(&self, given: &[Unit], text: &[Unit]) -> ModelResult<f64> {
        self.check()?;
        self.inner.logprob(given, text)
    }
}
