//! Each bound in stdlib/bounds.beb against a value computed by hand from the paper's formula.

mod common;

use beb::eval::Value;

fn eval(expr: &str) -> f64 {
    let source = format!("import bounds.*\n{expr}");
    let run = common::run_script(
        &source,
        &common::Options {
            seed: 0,
            ..common::Options::default()
        },
    );
    match run.result {
        Ok(Value::Num(x)) => x,
        other => panic!("{expr} gave {other:?}"),
    }
}

fn close(expr: &str, expected: f64) {
    let got = eval(expr);
    let tolerance = 1e-12 * expected.abs().max(1.0);
    assert!(
        (got - expected).abs() <= tolerance,
        "{expr}: got {got}, expected {expected}"
    );
}

#[test]
fn theorem_lengths_match_hand_computation() {
    // Theorem 1: (log 1/a + log 1/eps + log 4)/beta with log 1/a = 20, beta = 5, eps = 0.1.
    close(
        "theorem1_length(20, 5, 0.1)",
        (20.0 + 10f64.ln() + 4f64.ln()) / 5.0,
    );
    // Theorem 2 adds (beta'/beta)|s0| + (sigma/beta) sqrt(|s0|/delta) + 1: beta' = 2, sigma = 1, delta = 0.25, |s0| = 9.
    let t1 = (20.0 + 10f64.ln() + 4f64.ln()) / 5.0;
    close(
        "theorem2_length(20, 5, 0.1, 2, 1, 0.25, 9)",
        t1 + 2.0 / 5.0 * 9.0 + 1.0 / 5.0 * 6.0 + 1.0,
    );
    // Theorem 3 per turn (n = 4 turns, replies of 3 sentences) and total (replies 3, 3, 3, 3).
    let per_turn = 2.0 / 5.0 * 3.0
        + 1.0 / 5.0 * (4.0f64 * 3.0 / 0.25).sqrt()
        + (20.0 + 10f64.ln() + 4f64.ln()) / (4.0 * 5.0)
        + 1.0;
    close(
        "theorem3_turn_length(20, 5, 0.1, 2, 1, 0.25, 3, 4)",
        per_turn,
    );
    close(
        "theorem3_total_length(20, 5, 0.1, 2, 1, 0.25, [3, 3, 3, 3])",
        4.0 * per_turn,
    );
    // Theorem 4 adds log(n)/beta.
    close(
        "theorem4_length(20, 5, 0.1, 16)",
        (20.0 + 10f64.ln() + 4f64.ln() + 16f64.ln()) / 5.0,
    );
    // Theorem 5 (eq. 11): max((2/beta)(...), 4 sigma^2/(beta^2 delta)).
    close(
        "theorem5_length(20, 5, 0.1, 1, 0.25)",
        (2.0 / 5.0 * (20.0 + 10f64.ln() + 4f64.ln())).max(4.0 / (25.0 * 0.25)),
    );
    close(
        "theorem5_length(20, 5, 0.1, 30, 0.01)",
        4.0 * 900.0 / (25.0 * 0.01),
    );
    close("onset_length(20, 5)", 4.0);
}

#[test]
fn lemma_bounds_match_hand_computation() {
    // Lemma 5: log(1 + e^(9.2 - 1.5*2)).
    close("lemma5_kl_bound(9.2, 1.5, 2)", (1.0 + 6.2f64.exp()).ln());
    // Far past the onset the bound is tiny but not zero (no underflow to 0 from 1 + tiny).
    close("lemma5_kl_bound(9.2, 1.5, 40)", (-50.8f64).exp());
    close("lemma6_zero_shot_kl(18.4)", 18.4);
    // Lemma 7: 1/(1 + e^(beta n - log 1/a)).
    close(
        "lemma7_behavior_bound(9.2, 1.5, 2)",
        1.0 / (1.0 + (-6.2f64).exp()),
    );
    // Eq. 99-100 with a = 0.5, r = 0: log(1 + 1) = log 2.
    close("pointwise_kl_bound(0, alpha: 0.5)", 2f64.ln());
    // With log a = -2000 and r = 1990: log(1 + e^(2000 - 1990)), no underflow.
    close(
        "pointwise_kl_bound(1990, log_alpha: -2000)",
        (1.0 + 10f64.exp()).ln(),
    );
    // Lemma 2 (eq. 29): 2 (1-a)/a e^(-r) with a = 0.2, r = 1.
    close(
        "lemma2_behavior_bound(1, alpha: 0.2)",
        2.0 * 4.0 * (-1f64).exp(),
    );
    close(
        "posterior_plus(1, alpha: 0.2)",
        1.0 / (1.0 + 0.25 * 1f64.exp()),
    );
}
