//! Linear probes (paper, appendix K and table 2): can a linear classifier tell two kinds of
//! statements apart from a model's hidden states? Stratified k-fold cross-validation of an
//! L2-regularised logistic regression (linfa-logistic: L-BFGS) or a linear SVM (linfa-svm:
//! SMO), each fold's features standardised with the statistics of its training part only, so
//! nothing of a held-out example leaks into the classifier that predicts it.

use linfa::prelude::{Dataset, Fit, Predict};
use linfa_logistic::LogisticRegression;
use linfa_svm::Svm;
use ndarray::{Array1, Array2};
use rand::Rng;
use rand::seq::SliceRandom;

use super::FitError;
use crate::stats::Estimate;

/// L-BFGS iterations a logistic fit may take (linfa's default of 100 can stop short on
/// hundreds of features).
const LOGISTIC_ITERATIONS: u64 = 1000;
/// SMO's stopping threshold on the maximal KKT violation (libsvm's default).
const SVM_EPS: f64 = 1e-3;

/// Which linear classifier a probe fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMethod {
    /// Logistic regression, loss `c · Σ log-loss + ½‖w‖²` (scikit-learn's C convention),
    /// intercept unpenalised.
    Logistic,
    /// Soft-margin linear SVM with penalty `c` on both classes.
    Svm,
}

impl ProbeMethod {
    pub fn parse(name: &str) -> Option<ProbeMethod> {
        match name {
            "logistic" => Some(ProbeMethod::Logistic),
            "svm" => Some(ProbeMethod::Svm),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProbeMethod::Logistic => "logistic",
            ProbeMethod::Svm => "svm",
        }
    }
}

/// How a probe is fitted and cross-validated.
#[derive(Clone, Copy, Debug)]
pub struct ProbeOptions {
    pub method: ProbeMethod,
    /// Number of folds k (at least 2; each class needs at least k examples).
    pub folds: usize,
    /// Inverse regularisation strength (larger: less regularised), > 0.
    pub c: f64,
}

/// The cross-validated accuracy of a probe.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    /// Accuracy on each held-out fold.
    pub fold_accuracy: Vec<f64>,
    /// Mean over folds; stderr = `std / sqrt(folds)`, n = folds.
    pub accuracy: Estimate,
    /// Sample standard deviation (n − 1) of the fold accuracies: the paper's "error".
    pub std: f64,
    /// Number of examples.
    pub n: usize,
    /// The held-out indices of each fold, ascending; together they partition 0..n.
    pub folds: Vec<Vec<usize>>,
    /// The accuracy of always answering the larger class.
    pub baseline: f64,
}

/// Assign 0..labels.len() to `k` folds, each class spread evenly: a class's indices are
/// shuffled by `rng` and dealt round-robin, the second class continuing where the first
/// stopped so that fold sizes differ by at most one. Each fold is sorted.
pub fn stratified_folds(labels: &[bool], k: usize, rng: &mut impl Rng) -> Vec<Vec<usize>> {
    let k = k.max(1);
    let mut folds = vec![Vec::new(); k];
    let mut next = 0;
    for class in [false, true] {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(rng);
        for i in members {
            folds[next % k].push(i);
            next += 1;
        }
    }
    for fold in &mut folds {
        fold.sort_unstable();
    }
    folds
}

fn degenerate(message: impl Into<String>) -> FitError {
    FitError::Degenerate(message.into())
}

/// Check that `features` are rows of one positive length, all finite, one per label, and
/// that each class has at least `folds` examples.
fn check_inputs(features: &[Vec<f64>], labels: &[bool], folds: usize) -> Result<usize, FitError> {
    if features.len() != labels.len() {
        return Err(degenerate(format!(
            "{} feature vectors for {} labels",
            features.len(),
            labels.len()
        )));
    }
    if folds < 2 {
        return Err(degenerate(format!(
            "cross-validation needs at least 2 folds, got {folds}"
        )));
    }
    let dim = features.first().map_or(0, Vec::len);
    if dim == 0 {
        return Err(degenerate(
            "a probe needs feature vectors of at least one number",
        ));
    }
    for (i, row) in features.iter().enumerate() {
        if row.len() != dim {
            return Err(degenerate(format!(
                "feature vector {i} has {} numbers, the first has {dim}",
                row.len()
            )));
        }
        if let Some(x) = row.iter().find(|x| !x.is_finite()) {
            return Err(degenerate(format!(
                "feature vector {i} holds {x}; features must be finite"
            )));
        }
    }
    let positives = labels.iter().filter(|&&y| y).count();
    let fewest = positives.min(labels.len() - positives);
    if fewest < folds {
        return Err(degenerate(format!(
            "each class needs at least {folds} examples for {folds}-fold stratified cross-validation; the smaller class has {fewest}"
        )));
    }
    Ok(dim)
}

/// Rows `idx` of `features` standardised with `mean` and `scale`.
fn matrix(features: &[Vec<f64>], idx: &[usize], mean: &[f64], scale: &[f64]) -> Array2<f64> {
    let dim = mean.len();
    Array2::from_shape_fn((idx.len(), dim), |(r, j)| {
        (features[idx[r]][j] - mean[j]) / scale[j]
    })
}

/// Per-feature mean and standard deviation (population) of rows `idx`; a constant feature
/// gets scale 1, so it becomes 0 rather than NaN.
fn moments(features: &[Vec<f64>], idx: &[usize], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = idx.len().max(1) as f64;
    let mut mean = vec![0.0; dim];
    for &i in idx {
        for (m, x) in mean.iter_mut().zip(&features[i]) {
            *m += x / n;
        }
    }
    // Deviations are divided by the largest one before squaring, so that features of any
    // magnitude (1e200 and up) keep a finite standard deviation.
    let mut largest = vec![0.0f64; dim];
    for &i in idx {
        for ((l, x), m) in largest.iter_mut().zip(&features[i]).zip(&mean) {
            *l = l.max((x - m).abs());
        }
    }
    let mut var = vec![0.0; dim];
    for &i in idx {
        for (((v, x), m), l) in var.iter_mut().zip(&features[i]).zip(&mean).zip(&largest) {
            if *l > 0.0 {
                *v += ((x - m) / l).powi(2) / n;
            }
        }
    }
    let scale = var
        .into_iter()
        .zip(largest)
        .map(|(v, l)| {
            let s = l * v.sqrt();
            if s > 0.0 && s.is_finite() { s } else { 1.0 }
        })
        .collect();
    (mean, scale)
}

/// Fit `method` on (x, y) and predict the rows of `test`.
fn fit_predict(
    options: &ProbeOptions,
    x: Array2<f64>,
    y: Array1<bool>,
    test: &Array2<f64>,
) -> Result<Array1<bool>, FitError> {
    let data = Dataset::new(x, y);
    match options.method {
        ProbeMethod::Logistic => {
            let model = LogisticRegression::default()
                .alpha(1.0 / options.c)
                .max_iterations(LOGISTIC_ITERATIONS)
                .fit(&data)
                .map_err(|e| degenerate(format!("the logistic regression failed: {e}")))?;
            Ok(model.predict(test))
        }
        ProbeMethod::Svm => {
            let model = Svm::<f64, bool>::params()
                .pos_neg_weights(options.c, options.c)
                .linear_kernel()
                .eps(SVM_EPS)
                .fit(&data)
                .map_err(|e| degenerate(format!("the linear SVM failed: {e}")))?;
            Ok(model.predict(test))
        }
    }
}

/// Stratified k-fold cross-validation of a linear probe: for each fold, fit on the others
/// (standardised by their own mean and standard deviation) and count the held-out examples
/// it labels right. Folds come from `rng`, so the same generator gives the same result.
pub fn cross_validate(
    features: &[Vec<f64>],
    labels: &[bool],
    options: &ProbeOptions,
    rng: &mut impl Rng,
) -> Result<ProbeResult, FitError> {
    if !(options.c.is_finite() && options.c > 0.0) {
        return Err(degenerate(format!(
            "the regularisation constant c must be a positive number, got {}",
            options.c
        )));
    }
    let dim = check_inputs(features, labels, options.folds)?;
    let folds = stratified_folds(labels, options.folds, rng);
    let mut fold_accuracy = Vec::with_capacity(folds.len());
    for held in &folds {
        let mut in_fold = vec![false; labels.len()];
        for &i in held {
            in_fold[i] = true;
        }
        let train: Vec<usize> = (0..labels.len()).filter(|&i| !in_fold[i]).collect();
        let (mean, scale) = moments(features, &train, dim);
        let x = matrix(features, &train, &mean, &scale);
        let y: Array1<bool> = train.iter().map(|&i| labels[i]).collect();
        let test = matrix(features, held, &mean, &scale);
        if x.iter().chain(test.iter()).any(|v| !v.is_finite()) {
            return Err(degenerate(
                "the features are too large to standardise (they overflow double precision)",
            ));
        }
        let predicted = fit_predict(options, x, y, &test)?;
        let right = predicted
            .iter()
            .zip(held)
            .filter(|(p, i)| **p == labels[**i])
            .count();
        fold_accuracy.push(right as f64 / held.len() as f64);
    }
    let accuracy = Estimate::from_samples(&fold_accuracy);
    let std = accuracy.stderr * (fold_accuracy.len() as f64).sqrt();
    let positives = labels.iter().filter(|&&y| y).count();
    let baseline = positives.max(labels.len() - positives) as f64 / labels.len() as f64;
    Ok(ProbeResult {
        fold_accuracy,
        accuracy,
        std,
        n: labels.len(),
        folds,
        baseline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn folds_partition_and_stratify() {
        let labels: Vec<bool> = (0..23).map(|i| i % 3 == 0).collect();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let folds = stratified_folds(&labels, 5, &mut rng);
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, (0..23).collect::<Vec<_>>());
        for fold in &folds {
            assert!((4..=5).contains(&fold.len()), "{folds:?}");
            let pos = fold.iter().filter(|&&i| labels[i]).count();
            assert!((1..=2).contains(&pos), "{folds:?}");
        }
    }

    #[test]
    fn moments_leave_constant_features_finite() {
        let features = vec![vec![1.0, 5.0], vec![3.0, 5.0]];
        let (mean, scale) = moments(&features, &[0, 1], 2);
        assert_eq!(mean, vec![2.0, 5.0]);
        assert_eq!(scale, vec![1.0, 1.0]);
        let m = matrix(&features, &[0, 1], &mean, &scale);
        assert_eq!(m[[0, 0]], -1.0);
        assert_eq!(m[[1, 1]], 0.0);
    }

    #[test]
    fn moments_survive_huge_features() {
        let features = vec![vec![0.0], vec![-1e300], vec![0.0], vec![-1e300]];
        let (mean, scale) = moments(&features, &[0, 1, 2, 3], 1);
        assert_eq!((mean[0], scale[0]), (-5e299, 5e299));
    }
}
