//! A run's view of an expensive model: samples and scores go through the on-disk cache and
//! show progress bars, so a rerun or a resumed study reads them back instead of recomputing.
//!
//! Only models with a [`cache_identity`](LanguageModel::cache_identity) (neural models and
//! mixtures of them) are wrapped: analytic models are exact and cheap. Everything else is
//! delegated, so a wrapped model is the same distribution, bit for bit.
//!
//! Keys (see `crate::cache` for the encoding):
//! - `sample`: the model identity, the `given` units, the number of units, and the full state
//!   of the draw's generator (its 256-bit seed, which is derived from the root seed, the seed
//!   stream's name and the sample index, its stream and its word position). The entry holds
//!   the sampled units' token ids and the generator's position afterwards, so a hit leaves the
//!   generator exactly where a recomputation would.
//! - `sample_scored`: the key of `sample`; the entry holds what a `sample` entry holds and
//!   the text's log-probability under the model that drew it (its f64 bits), so a hit needs
//!   no scoring either.
//! - `logprob`: the model identity, the `given` units and the scored units.
//!
//! Draws made together with their next-token distributions (`sample_with_steps`, for exact
//! per-step divergences) are not stored: the distributions are too large to keep, and
//! recomputing them for a stored text costs the pass that drawing it costs.

use std::rc::Rc;

use rand::RngCore;
use rand_chacha::ChaCha20Rng;

use super::{
    LanguageModel, ModelError, ModelRef, ModelResult, Scored, TokenSteps, TokenText, Unit,
    Vocabulary,
};
use crate::cache::{Cache, CacheKey, Cacheable};
use crate::lm::neural::NeuralLm;

/// Where a run's long calls report their progress: `lm` draws nothing itself (the report
/// layer implements this), so models stay free of terminal concerns.
pub trait ProgressSink {
    /// A bar for `total` steps of work called `label`.
    fn bar(&self, total: u64, label: &str) -> Box<dyn ProgressBar>;
}

/// One bar of a [`ProgressSink`]; dropping it without `finish` also clears it.
pub trait ProgressBar {
    fn inc(&self, steps: u64);
    fn finish(&self);
}

/// `inner` with its expensive calls cached and metered.
pub struct Cached {
    inner: ModelRef,
    identity: String,
    cache: Rc<Cache>,
    progress: Rc<dyn ProgressSink>,
}

impl std::fmt::Debug for Cached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cached({:?})", self.inner)
    }
}

/// `model` wrapped for a run, or `model` itself when it has no identity to key a cache by.
pub fn for_run<P: ProgressSink + Clone + 'static>(
    model: ModelRef,
    cache: &Rc<Cache>,
    progress: &P,
) -> ModelRef {
    wrap(
        model,
        cache,
        &(Rc::new(progress.clone()) as Rc<dyn ProgressSink>),
    )
}

fn wrap(model: ModelRef, cache: &Rc<Cache>, progress: &Rc<dyn ProgressSink>) -> ModelRef {
    let Some(identity) = model.cache_identity() else {
        return model;
    };
    // The token runs a hit is rebuilt into need a tokenizer to print themselves.
    if token_owner(model.as_ref()).is_none() {
        return model;
    }
    Rc::new(Cached {
        inner: model,
        identity,
        cache: cache.clone(),
        progress: progress.clone(),
    })
}

/// The model (neural or served) whose tokenizer decodes this model's units.
fn token_owner(model: &dyn LanguageModel) -> Option<&dyn TokenText> {
    if let Some(lm) = model.as_tokens() {
        return Some(lm);
    }
    let (_, first, _) = model.as_mixture()?.components().next()?;
    token_owner(first.as_ref())
}

/// Units in a canonical byte form: token runs as ids, sentences as text.
fn units_bytes(units: &[Unit]) -> Vec<u8> {
    let mut out = Vec::new();
    for unit in units {
        match unit {
            Unit::Tokens(run) => {
                out.push(b'T');
                out.extend_from_slice(&(run.ids.len() as u64).to_le_bytes());
                out.extend(run.ids.iter().flat_map(|t| t.to_le_bytes()));
            }
            Unit::Sentence(s) => {
                out.push(b'S');
                out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    out
}

/// A sampled text as stored: the generator's word position afterwards, then the units' ids.
struct Drawn {
    word_pos: u128,
    units: Vec<Vec<u32>>,
}

impl Cacheable for Drawn {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.word_pos.to_le_bytes().to_vec();
        out.extend(self.units.encode());
        out
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (pos, rest) = bytes.split_at_checked(16)?;
        Some(Drawn {
            word_pos: u128::from_le_bytes(pos.try_into().ok()?),
            units: <Vec<Vec<u32>>>::decode(rest)?,
        })
    }
}

/// A sampled text stored with its log-probability: the `Drawn` entry, then the f64 bits.
struct DrawnScored {
    drawn: Drawn,
    logprob: f64,
}

impl Cacheable for DrawnScored {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.logprob.to_bits().to_le_bytes().to_vec();
        out.extend(self.drawn.encode());
        out
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (lp, rest) = bytes.split_at_checked(8)?;
        Some(DrawnScored {
            logprob: f64::from_bits(u64::from_le_bytes(lp.try_into().ok()?)),
            drawn: Drawn::decode(rest)?,
        })
    }
}

impl Cached {
    fn enabled(&self) -> bool {
        self.cache.dir().is_some()
    }

    /// Texts per progress-bar step: the model's batch, so chunking never splits a batch.
    fn chunk(&self) -> usize {
        token_owner(self.inner.as_ref()).map_or(64, |lm| lm.batch().max(1))
    }

    fn key(&self, operation: &str, given: &[Unit]) -> CacheKey {
        CacheKey::new(operation)
            .text("model", &self.identity)
            .bytes("given", &units_bytes(given))
    }

    fn sample_key(&self, op: &str, given: &[Unit], units: usize, rng: &ChaCha20Rng) -> CacheKey {
        self.key(op, given)
            .uint("units", units as u64)
            .bytes("rng_seed", &rng.get_seed())
            .uint("rng_stream", rng.get_stream())
            .bytes("rng_word_pos", &rng.get_word_pos().to_le_bytes())
    }

    /// Draw the texts of `rngs` (all misses) in chunks, with a progress bar; `done` sees each
    /// chunk as it finishes (its first row's index, generators and texts), so a run that
    /// fails later keeps what was drawn.
    fn draw(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
        done: impl FnMut(usize, &[ChaCha20Rng], &Vec<Vec<Unit>>),
    ) -> ModelResult<Vec<Vec<Unit>>> {
        let chunks = self.in_chunks(rngs, done, |chunk| {
            self.inner.sample_many(given, units, chunk)
        })?;
        Ok(chunks.into_iter().flatten().collect())
    }

    /// `each` on the generators in chunks of the model's batch, results in order, with a
    /// sampling progress bar; `done` sees each chunk's result (after its first row's index
    /// and its generators).
    fn in_chunks<T>(
        &self,
        rngs: &mut [ChaCha20Rng],
        mut done: impl FnMut(usize, &[ChaCha20Rng], &T),
        mut each: impl FnMut(&mut [ChaCha20Rng]) -> ModelResult<T>,
    ) -> ModelResult<Vec<T>> {
        let bar = self.progress.bar(
            rngs.len() as u64,
            &format!("sampling {}", self.inner.name()),
        );
        let mut out = Vec::new();
        let step = self.chunk();
        for (k, chunk) in rngs.chunks_mut(step).enumerate() {
            let n = chunk.len();
            let got = each(chunk)?;
            done(k * step, chunk, &got);
            out.push(got);
            bar.inc(n as u64);
        }
        bar.finish();
        Ok(out)
    }

    /// Score `texts` in chunks with a progress bar; `done` sees each chunk's scores as they
    /// come (its first text's index), so a run that fails later keeps them.
    fn score(
        &self,
        given: &[Unit],
        texts: &[Vec<Unit>],
        mut done: impl FnMut(usize, &[f64]),
    ) -> ModelResult<Vec<f64>> {
        let bar = self.progress.bar(
            texts.len() as u64,
            &format!("scoring {}", self.inner.name()),
        );
        let mut scores = Vec::with_capacity(texts.len());
        let step = self.chunk();
        for (k, chunk) in texts.chunks(step).enumerate() {
            let got = self.inner.logprob_many(given, chunk)?;
            done(k * step, &got);
            scores.extend(got);
            bar.inc(chunk.len() as u64);
        }
        bar.finish();
        Ok(scores)
    }
}

impl LanguageModel for Cached {
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
        self.inner.logprob_next(context, unit)
    }

    fn support(&self, context: &[Unit]) -> ModelResult<Option<Vec<(Unit, f64)>>> {
        self.inner.support(context)
    }

    fn sample_next(&self, context: &[Unit], rng: &mut dyn RngCore) -> ModelResult<Unit> {
        self.inner.sample_next(context, rng)
    }

    fn behavior(&self, unit: &Unit) -> Option<f64> {
        self.inner.behavior(unit)
    }

    fn markov_order(&self) -> Option<usize> {
        self.inner.markov_order()
    }

    fn as_mixture(&self) -> Option<&super::mixture::Mixture> {
        self.inner.as_mixture()
    }

    fn as_neural(&self) -> Option<&NeuralLm> {
        self.inner.as_neural()
    }

    fn as_tokens(&self) -> Option<&dyn TokenText> {
        self.inner.as_tokens()
    }

    fn describe(&self) -> Option<String> {
        self.inner.describe()
    }

    fn cache_identity(&self) -> Option<String> {
        Some(self.identity.clone())
    }

    fn view(
        &self,
        unit: Option<&super::UnitSpec>,
        sampling: Option<&super::Sampling>,
    ) -> ModelResult<Option<ModelRef>> {
        Ok(self
            .inner
            .view(unit, sampling)?
            .map(|m| wrap(m, &self.cache, &self.progress)))
    }

    fn sample_many(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Vec<Vec<Unit>>> {
        if !self.enabled() {
            return self.draw(given, units, rngs, |_, _, _| ());
        }
        let Some(owner) = token_owner(self.inner.as_ref()) else {
            return self.draw(given, units, rngs, |_, _, _| ());
        };
        let keys: Vec<CacheKey> = rngs
            .iter()
            .map(|rng| self.sample_key("sample", given, units, rng))
            .collect();
        let mut texts: Vec<Option<Vec<Unit>>> = Vec::with_capacity(rngs.len());
        let mut missing = Vec::new();
        for (i, (key, rng)) in keys.iter().zip(rngs.iter_mut()).enumerate() {
            match self.cache.get::<Drawn>(key) {
                Some(drawn) => {
                    rng.set_word_pos(drawn.word_pos);
                    texts.push(Some(
                        drawn
                            .units
                            .into_iter()
                            .map(|ids| owner.token_run(ids))
                            .collect(),
                    ));
                }
                None => {
                    missing.push(i);
                    texts.push(None);
                }
            }
        }
        if !missing.is_empty() {
            let mut todo: Vec<ChaCha20Rng> = missing.iter().map(|&i| rngs[i].clone()).collect();
            let drawn = self.draw(given, units, &mut todo, |start, chunk, texts| {
                for (k, (rng, text)) in chunk.iter().zip(texts).enumerate() {
                    if let Some(units) = text.iter().map(unit_ids).collect::<Option<Vec<_>>>() {
                        let stored = Drawn {
                            word_pos: rng.get_word_pos(),
                            units,
                        };
                        self.cache.put(&keys[missing[start + k]], &stored);
                    }
                }
            })?;
            for ((&i, rng), text) in missing.iter().zip(todo).zip(drawn) {
                rngs[i] = rng;
                texts[i] = Some(text);
            }
        }
        // Invariant: every slot was filled by a hit or by the batch of misses just drawn.
        Ok(texts.into_iter().flatten().collect())
    }

    /// Through the cache like `sample_many`, under the `sample_scored` key: a hit gives the
    /// text, the generator's position and the log-probability, with no model call.
    fn sample_scored(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Scored> {
        let draw = |rngs: &mut [ChaCha20Rng],
                    done: &mut dyn FnMut(usize, &[ChaCha20Rng], &Scored)|
         -> ModelResult<Scored> {
            let chunks = self.in_chunks(rngs, done, |chunk| {
                self.inner.sample_scored(given, units, chunk)
            })?;
            let mut all = Scored::default();
            for c in chunks {
                all.texts.extend(c.texts);
                all.logprobs.extend(c.logprobs);
            }
            Ok(all)
        };
        let owner = match token_owner(self.inner.as_ref()) {
            Some(owner) if self.enabled() => owner,
            _ => return draw(rngs, &mut |_, _, _| ()),
        };
        let keys: Vec<CacheKey> = rngs
            .iter()
            .map(|rng| self.sample_key("sample_scored", given, units, rng))
            .collect();
        let mut found: Vec<Option<(Vec<Unit>, f64)>> = Vec::with_capacity(rngs.len());
        let mut missing = Vec::new();
        for (i, (key, rng)) in keys.iter().zip(rngs.iter_mut()).enumerate() {
            match self.cache.get::<DrawnScored>(key) {
                Some(hit) => {
                    rng.set_word_pos(hit.drawn.word_pos);
                    let text = hit
                        .drawn
                        .units
                        .into_iter()
                        .map(|ids| owner.token_run(ids))
                        .collect();
                    found.push(Some((text, hit.logprob)));
                }
                None => {
                    missing.push(i);
                    found.push(None);
                }
            }
        }
        if !missing.is_empty() {
            let mut todo: Vec<ChaCha20Rng> = missing.iter().map(|&i| rngs[i].clone()).collect();
            let drawn = draw(&mut todo, &mut |start, chunk, got: &Scored| {
                for (k, ((rng, text), lp)) in
                    chunk.iter().zip(&got.texts).zip(&got.logprobs).enumerate()
                {
                    if let Some(units) = text.iter().map(unit_ids).collect::<Option<Vec<_>>>() {
                        let stored = DrawnScored {
                            drawn: Drawn {
                                word_pos: rng.get_word_pos(),
                                units,
                            },
                            logprob: *lp,
                        };
                        self.cache.put(&keys[missing[start + k]], &stored);
                    }
                }
            })?;
            for (((&i, rng), text), lp) in missing
                .iter()
                .zip(todo)
                .zip(drawn.texts)
                .zip(drawn.logprobs)
            {
                rngs[i] = rng;
                found[i] = Some((text, lp));
            }
        }
        // Invariant: every slot was filled by a hit or by the batch of misses just drawn.
        let mut scored = Scored::default();
        for (text, lp) in found.into_iter().flatten() {
            scored.texts.push(text);
            scored.logprobs.push(lp);
        }
        Ok(scored)
    }

    fn token_steps_unavailable(&self) -> Option<String> {
        self.inner.token_steps_unavailable()
    }

    /// Not stored (see the module docs); scored in chunks with a progress bar.
    fn token_steps(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<TokenSteps>> {
        let bar = self.progress.bar(
            texts.len() as u64,
            &format!("scoring {}", self.inner.name()),
        );
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.chunk()) {
            out.extend(self.inner.token_steps(given, chunk)?);
            bar.inc(chunk.len() as u64);
        }
        bar.finish();
        Ok(out)
    }

    /// Not stored (see the module docs): drawn by the model, with a progress bar.
    fn sample_with_steps(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<(Scored, Vec<TokenSteps>)> {
        let chunks = self.in_chunks(
            rngs,
            |_, _, _| (),
            |chunk| self.inner.sample_with_steps(given, units, chunk),
        )?;
        let mut scored = Scored::default();
        let mut steps = Vec::new();
        for (s, st) in chunks {
            scored.texts.extend(s.texts);
            scored.logprobs.extend(s.logprobs);
            steps.extend(st);
        }
        Ok((scored, steps))
    }

    fn logprob_many(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<f64>> {
        if !self.enabled() {
            return self.score(given, texts, |_, _| ());
        }
        let base = self.key("logprob", given);
        let keys: Vec<CacheKey> = texts
            .iter()
            .map(|t| base.clone().bytes("text", &units_bytes(t)))
            .collect();
        let mut scores: Vec<Option<f64>> = keys.iter().map(|k| self.cache.get(k)).collect();
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| scores[i].is_none()).collect();
        if !missing.is_empty() {
            let todo: Vec<Vec<Unit>> = missing.iter().map(|&i| texts[i].clone()).collect();
            let got = self.score(given, &todo, |start, chunk| {
                for (k, score) in chunk.iter().enumerate() {
                    self.cache.put(&keys[missing[start + k]], score);
                }
            })?;
            for (&i, score) in missing.iter().zip(got) {
                scores[i] = Some(score);
            }
        }
        Ok(scores.into_iter().flatten().collect())
    }

    fn logprob(&self, given: &[Unit], text: &[Unit]) -> ModelResult<f64> {
        let scores = self.logprob_many(given, &[text.to_vec()])?;
        scores.first().copied().ok_or_else(|| {
            ModelError::Invalid(format!("{} returned no score for a text", self.name()))
        })
    }
}

/// The token ids of a sampled unit (`None` for a sentence, which is not stored).
fn unit_ids(unit: &Unit) -> Option<Vec<u32>> {
    match unit {
        Unit::Tokens(run) => Some(run.ids.to_vec()),
        Unit::Sentence(_) => None,
    }
}
