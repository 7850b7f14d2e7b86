//! Mixtures of sequence distributions, P = sum_i a_i P_i (eq. 3 and A.1 of the paper).
//!
//! The mixture is over whole texts, not over next units: conditioned on a context s, each
//! component is reweighted by how well it explains s (eq. 10),
//!
//!   w_i(s) = a_i P_i(s) / sum_j a_j P_j(s),    P(x | s) = sum_i w_i(s) P_i(x | s).
//!
//! Everything is kept in log space, so priors like a = 1e-300 or log a = -2000 work, and a
//! component with posterior weight zero contributes `-inf`, never NaN. A mixture is itself a
//! [`LanguageModel`], so mixtures nest and every measurement applies to them unchanged.

use std::collections::HashMap;
use std::rc::Rc;

use rand::{Rng, RngCore};

use rand_chacha::ChaCha20Rng;

use super::{
    LanguageModel, ModelError, ModelRef, ModelResult, Sampling, Scored, TokenSteps, Unit, UnitSpec,
    Vocabulary,
};
use crate::stats::logspace::{logaddexp, logsumexp};

#[derive(Debug)]
struct Component {
    name: String,
    model: ModelRef,
    /// Normalised prior log-weight log a_i (may be `-inf`).
    log_weight: f64,
}

impl Component {
    /// log a_i + log P_i(context); `-inf` where either factor is zero (the model is not asked
    /// when a_i = 0).
    fn log_joint(&self, context: &[Unit]) -> ModelResult<f64> {
        if self.log_weight == f64::NEG_INFINITY {
            Ok(f64::NEG_INFINITY)
        } else {
            Ok(self.log_weight + self.model.logprob(&[], context)?)
        }
    }
}

/// A weighted mixture of language models over a shared vocabulary.
#[derive(Debug)]
pub struct Mixture {
    name: String,
    components: Vec<Component>,
    vocabulary: Vocabulary,
}

impl Mixture {
    /// A mixture of `(name, model, log prior weight)` components.
    ///
    /// Weights are given as logs so that the caller can pass `log_alpha = -2000` directly (or
    /// `ln(1e-300)`); they are normalised with logsumexp. A weight of zero (`-inf`) is allowed,
    /// but not all of them; NaN and `+inf` are rejected. Components must share a vocabulary.
    pub fn new(components: Vec<(String, ModelRef, f64)>) -> ModelResult<Mixture> {
        let Some(first) = components.first() else {
            return Err(ModelError::Invalid(
                "a mixture needs at least one component".into(),
            ));
        };
        let vocabulary = first.1.vocabulary();
        let first_name = first.0.clone();
        let mut seen: HashMap<&str, ()> = HashMap::new();
        for (name, model, log_weight) in &components {
            if seen.insert(name.as_str(), ()).is_some() {
                return Err(ModelError::Invalid(format!(
                    "mixture component {name:?} is listed twice"
                )));
            }
            if log_weight.is_nan() || *log_weight == f64::INFINITY {
                return Err(ModelError::Invalid(format!(
                    "mixture component {name:?} has log-weight {}; a log-weight must be a number below +inf (-inf is weight zero)",
                    crate::format::number(*log_weight)
                )));
            }
            let v = model.vocabulary();
            if v != vocabulary {
                return Err(super::vocabulary_mismatch(
                    &first_name,
                    &vocabulary,
                    name,
                    &v,
                ));
            }
        }
        let total = logsumexp(components.iter().map(|c| c.2));
        if total == f64::NEG_INFINITY {
            return Err(ModelError::Invalid(
                "every mixture weight is zero; at least one component needs a positive weight"
                    .into(),
            ));
        }
        let name = format!(
            "mixture({})",
            components
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let components = components
            .into_iter()
            .map(|(name, model, log_weight)| Component {
                name,
                model,
                // -inf - finite stays -inf.
                log_weight: log_weight - total,
            })
            .collect();
        Ok(Mixture {
            name,
            components,
            vocabulary,
        })
    }

    /// The same mixture under another display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Mixture {
        self.name = name.into();
        self
    }

    /// `(name, model, normalised prior log-weight)` of each component, in order.
    pub fn components(&self) -> impl Iterator<Item = (&str, &ModelRef, f64)> {
        self.components
            .iter()
            .map(|c| (c.name.as_str(), &c.model, c.log_weight))
    }

    /// log a_i + log P_i(context) for every component (`-inf` where either factor is zero).
    fn log_joint(&self, context: &[Unit]) -> ModelResult<Vec<f64>> {
        self.components
            .iter()
            .map(|c| c.log_joint(context))
            .collect()
    }

    /// Posterior log-weights log w_i(context) in component order (eq. 10).
    fn posterior_logs(&self, context: &[Unit]) -> ModelResult<Vec<f64>> {
        let joint = self.log_joint(context)?;
        let total = logsumexp(joint.iter().copied());
        if total == f64::NEG_INFINITY {
            return Err(ModelError::ImpossibleContext {
                model: self.name.clone(),
            });
        }
        Ok(joint.into_iter().map(|j| j - total).collect())
    }

    /// The component a uniform draw picks under posterior log-weights (one draw).
    fn choose(&self, weights: &[f64], rng: &mut dyn RngCore) -> ModelResult<usize> {
        let u: f64 = rng.random();
        let mut cumulative = 0.0;
        let mut chosen = None;
        for (i, &w) in weights.iter().enumerate() {
            if w == f64::NEG_INFINITY {
                continue;
            }
            cumulative += w.exp();
            chosen = Some(i);
            if u < cumulative {
                break;
            }
        }
        // posterior_logs succeeded, so some weight is positive and `chosen` is set; a draw
        // past a cumulative sum rounded below one falls to the last live component.
        chosen.ok_or_else(|| ModelError::ImpossibleContext {
            model: self.name.clone(),
        })
    }

    /// The components with positive posterior weight given `context`, as
    /// `(model, log w_i(context))` in component order (for measurements that need each
    /// component's own scores, e.g. a KL divergence to one of them without cancellation).
    pub fn posterior_components(&self, context: &[Unit]) -> ModelResult<Vec<(&ModelRef, f64)>> {
        let logs = self.posterior_logs(context)?;
        Ok(self
            .components
            .iter()
            .zip(logs)
            .filter(|(_, w)| *w > f64::NEG_INFINITY)
            .map(|(c, w)| (&c.model, w))
            .collect())
    }

    /// The posterior weights of the components given a context (eq. 10), as
    /// `(component name, log w_i(context))`; components that cannot have produced the
    /// context get `-inf`. Errors with `ImpossibleContext` when no component can.
    pub fn posterior(&self, context: &[Unit]) -> ModelResult<Vec<(String, f64)>> {
        let logs = self.posterior_logs(context)?;
        Ok(self
            .components
            .iter()
            .zip(logs)
            .map(|(c, w)| (c.name.clone(), w))
            .collect())
    }
}

impl LanguageModel for Mixture {
    fn as_mixture(&self) -> Option<&Mixture> {
        Some(self)
    }

    /// The components' identities and exact weights; `None` if a component has none.
    fn cache_identity(&self) -> Option<String> {
        let parts: Option<Vec<String>> = self
            .components
            .iter()
            .map(|c| {
                let id = c.model.cache_identity()?;
                Some(format!("{:016x} {id}", c.log_weight.to_bits()))
            })
            .collect();
        Some(format!("mixture [{}]", parts?.join("; ")))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn vocabulary(&self) -> Vocabulary {
        self.vocabulary.clone()
    }

    fn logprob_next(&self, context: &[Unit], unit: &Unit) -> ModelResult<f64> {
        self.logprob(context, std::slice::from_ref(unit))
    }

    fn support(&self, context: &[Unit]) -> ModelResult<Option<Vec<(Unit, f64)>>> {
        let weights = self.posterior_logs(context)?;
        let mut merged: Vec<(Unit, f64)> = Vec::new();
        let mut index: HashMap<Unit, usize> = HashMap::new();
        for (c, w) in self.components.iter().zip(weights) {
            if w == f64::NEG_INFINITY {
                continue;
            }
            let Some(list) = c.model.support(context)? else {
                return Ok(None);
            };
            for (unit, lp) in list {
                let term = w + lp;
                match index.get(&unit) {
                    Some(&i) => merged[i].1 = logaddexp(merged[i].1, term),
                    None => {
                        index.insert(unit.clone(), merged.len());
                        merged.push((unit, term));
                    }
                }
            }
        }
        Ok(Some(merged))
    }

    /// Exact: a component is drawn from the posterior, then a unit from that component.
    fn sample_next(&self, context: &[Unit], rng: &mut dyn RngCore) -> ModelResult<Unit> {
        let weights = self.posterior_logs(context)?;
        let i = self.choose(&weights, rng)?;
        self.components[i].model.sample_next(context, rng)
    }

    /// One unit per generator: each row draws its component exactly as `sample_next` does,
    /// then each component samples its rows together (batched where it can).
    fn sample_many(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Vec<Vec<Unit>>> {
        if units != 1 {
            return super::sample_one_by_one(self, given, units, rngs);
        }
        let weights = self.posterior_logs(given)?;
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.components.len()];
        for (r, rng) in rngs.iter_mut().enumerate() {
            groups[self.choose(&weights, rng)?].push(r);
        }
        let mut out: Vec<Vec<Unit>> = vec![Vec::new(); rngs.len()];
        for (c, rows) in self.components.iter().zip(&groups) {
            if rows.is_empty() {
                continue;
            }
            let mut sub: Vec<ChaCha20Rng> = rows.iter().map(|&r| rngs[r].clone()).collect();
            let texts = c.model.sample_many(given, 1, &mut sub)?;
            for ((&r, text), rng) in rows.iter().zip(texts).zip(sub) {
                out[r] = text;
                rngs[r] = rng;
            }
        }
        Ok(out)
    }

    /// One unit per generator, drawn as `sample_many` draws it; each component draws its rows
    /// with their log-probabilities, so only the other components score them. More units are
    /// drawn unit by unit (the component is drawn afresh at each), then scored.
    fn sample_scored(
        &self,
        given: &[Unit],
        units: usize,
        rngs: &mut [ChaCha20Rng],
    ) -> ModelResult<Scored> {
        if units != 1 {
            let texts = self.sample_many(given, units, rngs)?;
            let logprobs = self.logprob_many(given, &texts)?;
            return Ok(Scored { texts, logprobs });
        }
        let weights = self.posterior_logs(given)?;
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.components.len()];
        for (r, rng) in rngs.iter_mut().enumerate() {
            groups[self.choose(&weights, rng)?].push(r);
        }
        let mut texts: Vec<Vec<Unit>> = vec![Vec::new(); rngs.len()];
        // own[r]: the log-probability of text r under the component that drew it.
        let mut own: Vec<f64> = vec![0.0; rngs.len()];
        for (c, rows) in self.components.iter().zip(&groups) {
            if rows.is_empty() {
                continue;
            }
            let mut sub: Vec<ChaCha20Rng> = rows.iter().map(|&r| rngs[r].clone()).collect();
            let drawn = c.model.sample_scored(given, 1, &mut sub)?;
            for (((&r, text), lp), rng) in rows.iter().zip(drawn.texts).zip(drawn.logprobs).zip(sub)
            {
                texts[r] = text;
                own[r] = lp;
                rngs[r] = rng;
            }
        }
        // Each live component's log-probability of every text: its own draws from the draw,
        // the others' from scoring them.
        let mut parts: Vec<(f64, Vec<f64>)> = Vec::with_capacity(self.components.len());
        for (c, rows) in self.components.iter().zip(&groups) {
            let prefix = c.log_joint(given)?;
            if prefix == f64::NEG_INFINITY {
                continue;
            }
            let mine = {
                let mut mark = vec![false; texts.len()];
                rows.iter().for_each(|&r| mark[r] = true);
                mark
            };
            let others: Vec<usize> = (0..texts.len()).filter(|&r| !mine[r]).collect();
            let todo: Vec<Vec<Unit>> = others.iter().map(|&r| texts[r].clone()).collect();
            let scored = if todo.is_empty() {
                Vec::new()
            } else {
                c.model.logprob_many(given, &todo)?
            };
            let mut lps = own.clone();
            for (&r, lp) in others.iter().zip(scored) {
                lps[r] = lp;
            }
            parts.push((prefix, lps));
        }
        let total = logsumexp(parts.iter().map(|p| p.0));
        if total == f64::NEG_INFINITY {
            return Err(ModelError::ImpossibleContext {
                model: self.name.clone(),
            });
        }
        let logprobs = (0..texts.len())
            .map(|j| logsumexp(parts.iter().map(|(prefix, s)| prefix + s[j])) - total)
            .collect();
        Ok(Scored { texts, logprobs })
    }

    /// Every live component's reason, the first one that has one.
    fn token_steps_unavailable(&self) -> Option<String> {
        self.components
            .iter()
            .filter(|c| c.log_weight > f64::NEG_INFINITY)
            .find_map(|c| c.model.token_steps_unavailable())
    }

    /// The true next-token distribution of the mixture given `given` and the text so far:
    /// sum_i w_i(given ++ y<t) P_i(. | given ++ y<t), with the posterior weights carried
    /// along the text from each component's own steps, all in log space.
    fn token_steps(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<TokenSteps>> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| super::text_token_ids(&self.name, t))
            .collect::<ModelResult<_>>()?;
        let mut parts: Vec<(f64, Vec<TokenSteps>)> = Vec::with_capacity(self.components.len());
        for c in &self.components {
            let prefix = c.log_joint(given)?;
            if prefix == f64::NEG_INFINITY {
                continue;
            }
            parts.push((prefix, c.model.token_steps(given, texts)?));
        }
        if logsumexp(parts.iter().map(|p| p.0)) == f64::NEG_INFINITY {
            return Err(ModelError::ImpossibleContext {
                model: self.name.clone(),
            });
        }
        let mut out = Vec::with_capacity(texts.len());
        for (j, text) in ids.iter().enumerate() {
            // log a_i P_i(given ++ y<t), updated token by token.
            let mut joint: Vec<f64> = parts.iter().map(|p| p.0).collect();
            let mut steps: TokenSteps = Vec::with_capacity(text.len());
            for (t, &token) in text.iter().enumerate() {
                let rows: Vec<&Rc<Vec<f64>>> = parts
                    .iter()
                    .map(|p| {
                        p.1[j].get(t).ok_or_else(|| {
                            ModelError::Invalid(format!(
                                "{}: a component gave fewer token steps than the text has tokens",
                                self.name
                            ))
                        })
                    })
                    .collect::<ModelResult<_>>()?;
                let norm = logsumexp(joint.iter().copied());
                let size = rows.iter().map(|r| r.len()).max().unwrap_or(0);
                let dist: Vec<f64> = (0..size)
                    .map(|v| {
                        logsumexp(
                            joint
                                .iter()
                                .zip(&rows)
                                .map(|(w, r)| w + r.get(v).copied().unwrap_or(f64::NEG_INFINITY)),
                        ) - norm
                    })
                    .collect();
                for (w, r) in joint.iter_mut().zip(&rows) {
                    *w += r.get(token as usize).copied().unwrap_or(f64::NEG_INFINITY);
                }
                steps.push(Rc::new(dist));
            }
            out.push(steps);
        }
        Ok(out)
    }

    /// Exact, batched: log P(y | given) = logsumexp_i(log a_i P_i(given) + log P_i(y | given))
    /// - logsumexp_i(log a_i P_i(given)), each component scoring all texts at once.
    fn logprob_many(&self, given: &[Unit], texts: &[Vec<Unit>]) -> ModelResult<Vec<f64>> {
        let mut parts: Vec<(f64, Vec<f64>)> = Vec::with_capacity(self.components.len());
        for c in &self.components {
            let prefix = c.log_joint(given)?;
            if prefix == f64::NEG_INFINITY {
                continue;
            }
            parts.push((prefix, c.model.logprob_many(given, texts)?));
        }
        let total = logsumexp(parts.iter().map(|p| p.0));
        if total == f64::NEG_INFINITY {
            return Err(ModelError::ImpossibleContext {
                model: self.name.clone(),
            });
        }
        Ok((0..texts.len())
            .map(|j| logsumexp(parts.iter().map(|(prefix, s)| prefix + s[j])) - total)
            .collect())
    }

    fn view(
        &self,
        unit: Option<&UnitSpec>,
        sampling: Option<&Sampling>,
    ) -> ModelResult<Option<ModelRef>> {
        if sampling.is_some_and(|s| !s.is_ancestral()) {
            return Err(ModelError::Unsupported(format!(
                "temperature, top_k and top_p change one neural model's sampling, not a mixture's ({})",
                self.name
            )));
        }
        let mut components = Vec::with_capacity(self.components.len());
        for c in &self.components {
            match c.model.view(unit, None)? {
                Some(m) => components.push((c.name.clone(), m, c.log_weight)),
                None => return Ok(None),
            }
        }
        Ok(Some(Rc::new(
            Mixture::new(components)?.with_name(self.name.clone()),
        )))
    }

    fn behavior(&self, unit: &Unit) -> Option<f64> {
        self.components.iter().find_map(|c| c.model.behavior(unit))
    }

    /// log P(text | given) = logsumexp_i(log a_i P_i(given ++ text)) - logsumexp_i(log a_i P_i(given)),
    /// computed directly rather than by chaining next-unit conditionals, for accuracy.
    fn logprob(&self, given: &[Unit], text: &[Unit]) -> ModelResult<f64> {
        let mut numerator = Vec::with_capacity(self.components.len());
        let mut denominator = Vec::with_capacity(self.components.len());
        for c in &self.components {
            let prefix = c.log_joint(given)?;
            if prefix == f64::NEG_INFINITY {
                // a_i = 0 or P_i(given) = 0: the component is out of the running, and its conditional
                // may not even be defined.
                continue;
            }
            denominator.push(prefix);
            numerator.push(prefix + c.model.logprob(given, text)?);
        }
        let total = logsumexp(denominator.iter().copied());
        if total == f64::NEG_INFINITY {
            return Err(ModelError::ImpossibleContext {
                model: self.name.clone(),
            });
        }
        Ok(logsumexp(numerator.iter().copied()) - total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::analytic::Categorical;
    use std::rc::Rc;

    fn s(text: &str) -> Unit {
        Unit::Sentence(Rc::from(text))
    }

    /// A two-sentence world: P_minus says "bad" with 0.9, P_plus with 0.1.
    fn world() -> ModelResult<(ModelRef, ModelRef)> {
        let minus = Categorical::new(
            "minus",
            vec![("bad".into(), 0.9, -1.0), ("good".into(), 0.1, 1.0)],
            false,
        )?;
        let plus = Categorical::new(
            "plus",
            vec![("bad".into(), 0.1, -1.0), ("good".into(), 0.9, 1.0)],
            false,
        )?;
        Ok((Rc::new(minus), Rc::new(plus)))
    }

    #[test]
    fn tiny_prior_survives_in_log_space() -> ModelResult<()> {
        let (minus, plus) = world()?;
        for log_alpha in [1e-300f64.ln(), -2000.0] {
            let log_rest = (-log_alpha.exp()).ln_1p();
            let mix = Mixture::new(vec![
                ("minus".into(), minus.clone(), log_alpha),
                ("plus".into(), plus.clone(), log_rest),
            ])?;
            // After k "bad" sentences: log w_minus = log a + k log 9 - logsumexp(...).
            let k = 50;
            let context: Vec<Unit> = (0..k).map(|_| s("bad")).collect();
            let post = mix.posterior(&context)?;
            let a = log_alpha + k as f64 * 0.9f64.ln();
            let b = log_rest + k as f64 * 0.1f64.ln();
            let z = logsumexp([a, b]);
            assert!((post[0].1 - (a - z)).abs() < 1e-9, "{post:?}");
            assert!((post[1].1 - (b - z)).abs() < 1e-9, "{post:?}");
            let p_bad = mix.logprob_next(&context, &s("bad"))?;
            let expected = logsumexp([a - z + 0.9f64.ln(), b - z + 0.1f64.ln()]);
            assert!(p_bad.is_finite() && (p_bad - expected).abs() < 1e-12);
            let support = mix.support(&context)?.unwrap_or_default();
            let total = logsumexp(support.iter().map(|x| x.1));
            assert!(total.abs() < 1e-12);
            assert!(support.iter().all(|x| !x.1.is_nan()));
        }
        Ok(())
    }

    #[test]
    fn posterior_by_hand() -> ModelResult<()> {
        let (minus, plus) = world()?;
        let mix = Mixture::new(vec![
            ("minus".into(), minus, 0.25f64.ln()),
            ("plus".into(), plus, 0.75f64.ln()),
        ])?;
        // After "bad": w_minus = 0.25*0.9 / (0.25*0.9 + 0.75*0.1) = 0.225 / 0.3 = 0.75.
        let post = mix.posterior(&[s("bad")])?;
        assert!((post[0].1.exp() - 0.75).abs() < 1e-15);
        // P(bad | bad) = 0.75*0.9 + 0.25*0.1 = 0.7.
        assert!((mix.logprob_next(&[s("bad")], &s("bad"))?.exp() - 0.7).abs() < 1e-15);
        // Exact joint form: P(bad bad) / P(bad) = 0.21 / 0.3.
        let lp = mix.logprob(&[], &[s("bad"), s("bad")])?;
        assert!((lp.exp() - 0.21).abs() < 1e-15);
        assert_eq!(mix.behavior(&s("good")), Some(1.0));
        Ok(())
    }

    #[test]
    fn zero_weight_and_impossible_contexts() -> ModelResult<()> {
        let only_bad: ModelRef = Rc::new(Categorical::new(
            "only_bad",
            vec![("bad".into(), 1.0, -1.0), ("good".into(), 0.0, 1.0)],
            false,
        )?);
        let (_, plus) = world()?;
        let mix = Mixture::new(vec![
            ("only_bad".into(), only_bad.clone(), 0.5f64.ln()),
            ("plus".into(), plus.clone(), f64::NEG_INFINITY),
        ])?;
        let post = mix.posterior(&[s("bad")])?;
        assert_eq!(post[0].1, 0.0);
        assert_eq!(post[1].1, f64::NEG_INFINITY);
        assert!(matches!(
            mix.posterior(&[s("good")]),
            Err(ModelError::ImpossibleContext { .. })
        ));
        assert!(matches!(
            mix.logprob_next(&[s("good")], &s("bad")),
            Err(ModelError::ImpossibleContext { .. })
        ));
        assert_eq!(
            mix.logprob_next(&[s("bad")], &s("good"))?,
            f64::NEG_INFINITY
        );
        // Zero weight for every component is an error; so is NaN.
        assert!(Mixture::new(vec![("x".into(), plus.clone(), f64::NEG_INFINITY)]).is_err());
        assert!(Mixture::new(vec![("x".into(), plus.clone(), f64::NAN)]).is_err());
        assert!(Mixture::new(Vec::new()).is_err());
        Ok(())
    }

    #[test]
    fn mixtures_nest() -> ModelResult<()> {
        let (minus, plus) = world()?;
        let inner: ModelRef = Rc::new(Mixture::new(vec![
            ("minus".into(), minus.clone(), 0.5f64.ln()),
            ("plus".into(), plus.clone(), 0.5f64.ln()),
        ])?);
        let outer = Mixture::new(vec![
            ("inner".into(), inner, 0.5f64.ln()),
            ("plus".into(), plus.clone(), 0.5f64.ln()),
        ])?;
        let flat = Mixture::new(vec![
            ("minus".into(), minus, 0.25f64.ln()),
            ("plus".into(), plus, 0.75f64.ln()),
        ])?;
        let ctx = [s("bad"), s("good"), s("bad")];
        for x in ["bad", "good"] {
            let a = outer.logprob_next(&ctx, &s(x))?;
            let b = flat.logprob_next(&ctx, &s(x))?;
            assert!((a - b).abs() < 1e-14);
        }
        Ok(())
    }

    #[test]
    fn vocabulary_mismatch_names_both() {
        #[derive(Debug)]
        struct Tok;
        impl LanguageModel for Tok {
            fn name(&self) -> &str {
                "tok"
            }
            fn vocabulary(&self) -> Vocabulary {
                Vocabulary::Tokenizer {
                    name: "llama".into(),
                    digest: "abcdef0123456789".into(),
                }
            }
            fn logprob_next(&self, _: &[Unit], _: &Unit) -> ModelResult<f64> {
                Ok(0.0)
            }
            fn support(&self, _: &[Unit]) -> ModelResult<Option<Vec<(Unit, f64)>>> {
                Ok(None)
            }
            fn sample_next(&self, _: &[Unit], _: &mut dyn RngCore) -> ModelResult<Unit> {
                Ok(Unit::Tokens(crate::lm::TokenRun::new(vec![1u32], None)))
            }
            fn behavior(&self, _: &Unit) -> Option<f64> {
                None
            }
        }
        let (minus, _) = world().unwrap_or_else(|e| panic!("{e}"));
        let err = Mixture::new(vec![
            ("minus".into(), minus, 0.0),
            ("tok".into(), Rc::new(Tok), 0.0),
        ]);
        match err {
            Err(e @ ModelError::VocabularyMismatch { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("minus") && msg.contains("tok"), "{msg}");
            }
            other => panic!("expected a vocabulary mismatch, got {other:?}"),
        }
    }
}
