//! Exact computations: depth-first enumeration of continuations, and dynamic programming over
//! states for models whose next unit depends on at most the previous one.

use std::collections::HashMap;

use super::relative::log_ratio_divergence;
use super::{ENUMERATION_LIMIT, MeasureError};
use crate::lm::{LanguageModel, Unit};

/// Called with each enumerated continuation and its log-probability.
pub(crate) type Visitor<'a> = dyn FnMut(&[Unit], f64) -> Result<Flow, MeasureError> + 'a;

/// Continuations arriving at each state: (state, [(weight, mean, variance)]).
type Arrivals = Vec<(Unit, Vec<(f64, f64, f64)>)>;

/// Whether to keep enumerating after a visited continuation.
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// Visit every continuation y of `horizon` units with P(y | given) > 0, depth-first over
/// `p.support` (so in a deterministic order), passing y and log P(y | given) accumulated
/// along the path. `what` names the measurement in a `NeedsSamples` error.
pub(crate) fn enumerate(
    p: &dyn LanguageModel,
    given: &[Unit],
    horizon: usize,
    what: &str,
    visit: &mut Visitor<'_>,
) -> Result<(), MeasureError> {
    let mut context = given.to_vec();
    let root = next_support(p, &context, what)?;
    // Refuse early when even a uniform branching of the first step's size is too much.
    let estimate = (root.len() as u128).saturating_pow(horizon.min(u32::MAX as usize) as u32);
    if estimate > ENUMERATION_LIMIT as u128 {
        return Err(MeasureError::NeedsSamples {
            what: what.to_string(),
            reason: format!(
                "enumerating {horizon} units of {} means about {}^{horizon} = {estimate} sequences \
                 (the limit is {ENUMERATION_LIMIT})",
                p.name(),
                root.len()
            ),
        });
    }
    let mut leaves: u64 = 0;
    let mut state = Walk {
        p,
        given_len: given.len(),
        horizon,
        what,
        leaves: &mut leaves,
        visit,
    };
    state.descend(&mut context, root, 0.0)?;
    Ok(())
}

struct Walk<'a> {
    p: &'a dyn LanguageModel,
    given_len: usize,
    horizon: usize,
    what: &'a str,
    leaves: &'a mut u64,
    visit: &'a mut Visitor<'a>,
}

impl Walk<'_> {
    /// Returns `Flow::Stop` when the visitor asked to stop.
    fn descend(
        &mut self,
        context: &mut Vec<Unit>,
        support: Vec<(Unit, f64)>,
        logprob: f64,
    ) -> Result<Flow, MeasureError> {
        for (unit, lp) in support {
            context.push(unit);
            let total = logprob + lp;
            let depth = context.len() - self.given_len;
            let flow = if depth == self.horizon {
                *self.leaves += 1;
                if *self.leaves > ENUMERATION_LIMIT {
                    return Err(MeasureError::NeedsSamples {
                        what: self.what.to_string(),
                        reason: format!(
                            "enumerating {} units of {} visits more than {ENUMERATION_LIMIT} sequences",
                            self.horizon,
                            self.p.name()
                        ),
                    });
                }
                (self.visit)(&context[self.given_len..], total)?
            } else {
                let next = next_support(self.p, context, self.what)?;
                self.descend(context, next, total)?
            };
            context.pop();
            if let Flow::Stop = flow {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }
}

fn next_support(
    p: &dyn LanguageModel,
    context: &[Unit],
    what: &str,
) -> Result<Vec<(Unit, f64)>, MeasureError> {
    match p.support(context)? {
        Some(list) => Ok(list),
        None => Err(MeasureError::NeedsSamples {
            what: what.to_string(),
            reason: format!(
                "the next-unit distribution of {} cannot be enumerated",
                p.name()
            ),
        }),
    }
}

/// Mean and variance of a log-ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Moments {
    pub mean: f64,
    pub var: f64,
}

impl Moments {
    const INFINITE: Moments = Moments {
        mean: f64::INFINITY,
        var: f64::INFINITY,
    };
}

/// Exact mean and variance of R = log P(Y | given) - log Q(Y | given) for Y ~ P(. | given)
/// of `horizon` units, when both models have Markov order <= 1 (`None` otherwise).
///
/// The state is the last unit. For each state x we carry its probability m_x and the
/// conditional mean and variance of R given that the path ends in x; paths merging into a
/// state are pooled with the law of total variance. This costs O(horizon · states²) instead
/// of states^horizon and never subtracts large second moments (no cancellation).
/// Both moments are `+inf` when Q gives probability zero to a path P can take.
pub(crate) fn markov_moments(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    horizon: usize,
) -> Result<Option<Moments>, MeasureError> {
    let (Some(op), Some(oq)) = (p.markov_order(), q.markov_order()) else {
        return Ok(None);
    };
    if op > 1 || oq > 1 {
        return Ok(None);
    }
    let Some(first) = p.support(given)? else {
        return Ok(None);
    };
    // Step 1 from the given context.
    let mut states: Vec<(Unit, f64, f64, f64)> = Vec::with_capacity(first.len());
    for (unit, lp) in first {
        let lq = q.logprob_next(given, &unit)?;
        let r = lp - lq;
        if r == f64::INFINITY {
            return Ok(Some(Moments::INFINITE));
        }
        states.push((unit, lp.exp(), r, 0.0));
    }
    if op == 0 && oq == 0 {
        // Independent units: R is a sum of `horizon` i.i.d. copies of the one-step ratio.
        let one = pool(states.iter().map(|(_, m, mu, v)| (*m, *mu, *v)));
        let h = horizon as f64;
        return Ok(Some(Moments {
            mean: h * one.mean,
            var: h * one.var,
        }));
    }
    for _ in 1..horizon {
        let mut index: HashMap<Unit, usize> = HashMap::new();
        let mut incoming: Arrivals = Vec::new();
        for (x, m, mu, v) in &states {
            let context = std::slice::from_ref(x);
            let Some(row) = p.support(context)? else {
                return Ok(None);
            };
            for (y, lp) in row {
                let weight = m * lp.exp();
                if weight == 0.0 {
                    // Underflowed: the path carries no representable probability.
                    continue;
                }
                let lq = q.logprob_next(context, &y)?;
                let r = lp - lq;
                if r == f64::INFINITY {
                    return Ok(Some(Moments::INFINITE));
                }
                let slot = match index.get(&y) {
                    Some(&i) => i,
                    None => {
                        index.insert(y.clone(), incoming.len());
                        incoming.push((y, Vec::new()));
                        incoming.len() - 1
                    }
                };
                incoming[slot].1.push((weight, mu + r, *v));
            }
        }
        states = incoming
            .into_iter()
            .map(|(y, parts)| {
                let mass: f64 = parts.iter().map(|t| t.0).sum();
                let pooled = pool(parts.into_iter());
                (y, mass, pooled.mean, pooled.var)
            })
            .collect();
    }
    Ok(Some(pool(states.iter().map(|(_, m, mu, v)| (*m, *mu, *v)))))
}

/// Exact KL(P || Q) over `horizon` units when both models have Markov order <= 1, by the
/// chain rule: the sum over steps of the one-step divergence at the previous unit, averaged
/// over P's distribution of that unit. Each one-step divergence is a sum of non-negative
/// terms (`relative.rs`), so the total is never negative and keeps its relative precision
/// when P and Q are close. `None` when the models promise no such order or cannot list
/// their supports.
pub(crate) fn markov_kl(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    given: &[Unit],
    horizon: usize,
) -> Result<Option<f64>, MeasureError> {
    let (Some(op), Some(oq)) = (p.markov_order(), q.markov_order()) else {
        return Ok(None);
    };
    if op > 1 || oq > 1 {
        return Ok(None);
    }
    let Some(first) = one_step_kl(p, q, given)? else {
        return Ok(None);
    };
    if op == 0 && oq == 0 {
        return Ok(Some(horizon as f64 * first));
    }
    let Some(start) = p.support(given)? else {
        return Ok(None);
    };
    let mut total = first;
    let mut states: Vec<(Unit, f64)> = start.into_iter().map(|(u, lp)| (u, lp.exp())).collect();
    let mut step_kl: HashMap<Unit, f64> = HashMap::new();
    for _ in 1..horizon {
        let mut next: Vec<(Unit, f64)> = Vec::new();
        let mut index: HashMap<Unit, usize> = HashMap::new();
        for (x, mass) in &states {
            let context = std::slice::from_ref(x);
            let kl = match step_kl.get(x) {
                Some(kl) => *kl,
                None => {
                    let Some(kl) = one_step_kl(p, q, context)? else {
                        return Ok(None);
                    };
                    step_kl.insert(x.clone(), kl);
                    kl
                }
            };
            total += mass * kl;
            let Some(row) = p.support(context)? else {
                return Ok(None);
            };
            for (y, lp) in row {
                let weight = mass * lp.exp();
                match index.get(&y) {
                    Some(&i) => next[i].1 += weight,
                    None => {
                        index.insert(y.clone(), next.len());
                        next.push((y, weight));
                    }
                }
            }
        }
        states = next;
    }
    Ok(Some(total))
}

/// KL(P(. | context) || Q(. | context)) for one unit: sum_y P(y) (u - log1p u) with
/// u = expm1(log Q(y) - log P(y)), plus the mass Q gives to units P cannot produce. `None`
/// when either support cannot be listed.
fn one_step_kl(
    p: &dyn LanguageModel,
    q: &dyn LanguageModel,
    context: &[Unit],
) -> Result<Option<f64>, MeasureError> {
    let (Some(ps), Some(qs)) = (p.support(context)?, q.support(context)?) else {
        return Ok(None);
    };
    let q_of: HashMap<&Unit, f64> = qs.iter().map(|(u, lq)| (u, *lq)).collect();
    let mut total = 0.0;
    for (unit, lp) in &ps {
        let Some(lq) = q_of.get(unit) else {
            return Ok(Some(f64::INFINITY));
        };
        total += lp.exp() * log_ratio_divergence(lq - lp);
    }
    let p_units: std::collections::HashSet<&Unit> = ps.iter().map(|(u, _)| u).collect();
    let outside: f64 = qs
        .iter()
        .filter(|(u, _)| !p_units.contains(u))
        .map(|(_, lq)| lq.exp())
        .sum();
    Ok(Some(total + outside))
}

/// Pool groups given as (weight, mean, variance) into the mean and variance of the whole
/// (law of total variance), normalising by the total weight.
fn pool(parts: impl Iterator<Item = (f64, f64, f64)> + Clone) -> Moments {
    let mass: f64 = parts.clone().map(|t| t.0).sum();
    let mean = parts.clone().map(|(w, mu, _)| w * mu).sum::<f64>() / mass;
    let var = parts
        .map(|(w, mu, v)| w * (v + (mu - mean) * (mu - mean)))
        .sum::<f64>()
        / mass;
    Moments { mean, var }
}

/// Running weighted mean and variance (West's update), for enumerated continuations.
#[derive(Default)]
pub(crate) struct WeightedMoments {
    weight: f64,
    mean: f64,
    scatter: f64,
}

impl WeightedMoments {
    pub fn push(&mut self, weight: f64, x: f64) {
        if weight == 0.0 {
            return;
        }
        let total = self.weight + weight;
        let delta = x - self.mean;
        let r = delta * weight / total;
        self.mean += r;
        self.scatter += self.weight * delta * r;
        self.weight = total;
    }

    pub fn finish(&self) -> Moments {
        Moments {
            mean: self.mean,
            var: (self.scatter / self.weight).max(0.0),
        }
    }
}
