//! The standard error of the estimator's totals: the sums it needs beyond an
//! aggregate's weight and weighted total, and the formulas (derived in
//! `report`'s module doc, "Standard errors").
//!
//! The sums are made on the profiler thread as it records each event (four
//! multiply-adds), so the event a locking thread sends stays one cache line.

/// Sums over sampled events, beside [`Aggregate`](super::recorder::Aggregate)'s
/// `weight` (`Σw`) and `total_ns` (`Σw·v`), with `w` an event's weight
/// (`2^shift`) and `v` its value. Floating point: `w²·v²` overflows `u64`
/// for a one-second hold drawn under the budget.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Spread {
    /// `Σ w·v²`
    pub(crate) wvv: f64,
    /// `Σ w²`
    pub(crate) ww: f64,
    /// `Σ w²·v`
    pub(crate) wwv: f64,
    /// `Σ w²·v²`
    pub(crate) wwvv: f64,
}

impl Spread {
    /// Adds one event of weight `w` and value `v`.
    #[inline]
    pub(crate) fn add(&mut self, w: u64, v: u64) {
        let (w, v) = (w as f64, v as f64);
        let wv = w * v;
        self.wvv += wv * v;
        self.ww += w * w;
        self.wwv += w * wv;
        self.wwvv += wv * wv;
    }

    pub(crate) fn merge(&mut self, other: &Spread) {
        self.wvv += other.wvv;
        self.ww += other.ww;
        self.wwv += other.wwv;
        self.wwvv += other.wwvv;
    }

    /// The same sums with every value multiplied by `k` (ticks to
    /// nanoseconds).
    pub(crate) fn scaled(self, k: f64) -> Spread {
        Spread {
            wvv: self.wvv * k * k,
            ww: self.ww,
            wwv: self.wwv * k,
            wwvv: self.wwvv * k * k,
        }
    }
}

/// One group's sampled events (a lock name, mode and kind): `Σw`, `Σw·v`
/// and the [`Spread`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sums {
    pub(crate) w: f64,
    pub(crate) wv: f64,
    pub(crate) spread: Spread,
}

impl Sums {
    /// Whether these are every event of a population of `n`: all drawn with
    /// weight 1 at 100 % capture, none lost.
    pub(crate) fn are_all_of(&self, n: u64, capture_pct: f64) -> bool {
        capture_pct >= 100.0 && self.spread.ww == self.w && self.w == n as f64
    }
}

/// The standard error of the ratio estimate `N·Σw·v/Σw` of a total over `N`
/// events (`N` exact): `√(c²·Σw²(v−R)² − c·Σw(v−R)²)` with `c = N/Σw` and
/// `R = Σw·v/Σw`. 0 when nothing was sampled.
pub(crate) fn ratio_se(n: u64, s: &Sums) -> f64 {
    if s.w <= 0.0 {
        return 0.0;
    }
    let c = n as f64 / s.w;
    let r = s.wv / s.w;
    let sp = &s.spread;
    // Σw²(v−R)² and Σw(v−R)², expanded; rounding may leave them just below 0.
    let ww_dev = (sp.wwvv - 2.0 * r * sp.wwv + r * r * sp.ww).max(0.0);
    let w_dev = (sp.wvv - r * s.wv).max(0.0);
    (c * c * ww_dev - c * w_dev).max(0.0).sqrt()
}

/// The standard error of the Horvitz–Thompson estimate `Σw·v/p` of a total:
/// `√(Σw²v²/p² − Σw·v²/p)`.
pub(crate) fn ht_se(inverse_p: f64, s: &Sums) -> f64 {
    let sp = &s.spread;
    (inverse_p * inverse_p * sp.wwvv - inverse_p * sp.wvv)
        .max(0.0)
        .sqrt()
}

/// The standard error of the Horvitz–Thompson estimate `Σw/p` of a count:
/// `√(Σw²/p² − Σw/p)`.
pub(crate) fn ht_count_se(inverse_p: f64, s: &Sums) -> f64 {
    (inverse_p * inverse_p * s.spread.ww - inverse_p * s.w)
        .max(0.0)
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(events: &[(u64, u64)]) -> Sums {
        let mut s = Sums::default();
        for &(w, v) in events {
            s.w += w as f64;
            s.wv += (w * v) as f64;
            s.spread.add(w, v);
        }
        s
    }

    #[test]
    fn equal_weights_give_the_textbook_ratio_variance() {
        // 4 of N = 40 sampled, values 1, 2, 3, 6 (mean 3, Σ(v−3)² = 14):
        // c = 10, variance c(c−1)·14 = 1260, i.e. N²(1−f)·s²/n with
        // s² = 14/n instead of 14/(n−1).
        let s = sums(&[(1, 1), (1, 2), (1, 3), (1, 6)]);
        assert!((ratio_se(40, &s) - 1260f64.sqrt()).abs() < 1e-9);
        // Every event sampled: no error.
        assert_eq!(ratio_se(4, &s), 0.0);
        // Equal values: no error, however few were sampled.
        assert_eq!(ratio_se(1000, &sums(&[(1, 5), (1, 5)])), 0.0);
    }

    #[test]
    fn weights_are_inverse_inclusion_probabilities() {
        // Two events at weight 1 and one at weight 4 (drawn at p/4), N = 60:
        // Σw = 6, c = 10, R = (10 + 20 + 4·30)/6 = 25.
        let s = sums(&[(1, 10), (1, 20), (4, 30)]);
        let (c, r) = (10.0f64, 25.0f64);
        let ww_dev = (10.0 - r).powi(2) + (20.0 - r).powi(2) + 16.0 * (30.0 - r).powi(2);
        let w_dev = (10.0 - r).powi(2) + (20.0 - r).powi(2) + 4.0 * (30.0 - r).powi(2);
        let expected = (c * c * ww_dev - c * w_dev).sqrt();
        assert!((ratio_se(60, &s) - expected).abs() < 1e-9);
        // Σ W(W−1)v² with W = w/p, p = 1/10.
        let ht: f64 = [(10.0, 10.0), (10.0, 20.0), (40.0, 30.0)]
            .iter()
            .map(|(big_w, v): &(f64, f64)| big_w * (big_w - 1.0) * v * v)
            .sum();
        assert!((ht_se(10.0, &s) - ht.sqrt()).abs() < 1e-9);
        assert!((ht_count_se(10.0, &s) - (10.0f64 * 9.0 * 2.0 + 40.0 * 39.0).sqrt()).abs() < 1e-9);
    }

    #[test]
    fn ticks_scale_to_nanoseconds() {
        let s = sums(&[(1, 10), (2, 20), (1, 70)]);
        let mut ns = sums(&[(1, 25), (2, 50), (1, 175)]);
        ns.spread.wvv -= s.spread.scaled(2.5).wvv;
        ns.spread.wwv -= s.spread.scaled(2.5).wwv;
        ns.spread.wwvv -= s.spread.scaled(2.5).wwvv;
        assert!(ns.spread.wvv.abs() < 1e-6 && ns.spread.wwv.abs() < 1e-6 && ns.spread.wwvv.abs() < 1e-6);
    }

    /// The variance of the estimate over many Bernoulli samplings of one
    /// heavy-tailed population, against the mean estimated variance.
    #[test]
    fn the_standard_error_matches_the_spread_of_repeated_estimates() {
        let mut rng = fastrand::Rng::with_seed(14);
        // 20,000 holds: mostly 1 µs, 2 % of them 200 µs.
        let population: Vec<u64> = (0..20_000)
            .map(|_| if rng.f64() < 0.02 { 200_000 } else { 1_000 })
            .collect();
        let n = population.len() as u64;
        let truth: f64 = population.iter().map(|&v| v as f64).sum();
        // Capture 1 %; a quarter of the events drawn under a budget of
        // shift 1 (probability p/2, weight 2).
        let p = 0.01;
        let runs = 2000;
        let (mut sq_err, mut est_var) = (0.0, 0.0);
        for _ in 0..runs {
            let mut s = Sums::default();
            for (i, &v) in population.iter().enumerate() {
                let w = if i % 4 == 0 { 2 } else { 1 };
                if rng.f64() < p / w as f64 {
                    s.w += w as f64;
                    s.wv += (w * v) as f64;
                    s.spread.add(w, v);
                }
            }
            let estimate = if s.w > 0.0 { n as f64 * s.wv / s.w } else { 0.0 };
            sq_err += (estimate - truth).powi(2);
            est_var += ratio_se(n, &s).powi(2);
        }
        let (actual, estimated) = ((sq_err / runs as f64).sqrt(), (est_var / runs as f64).sqrt());
        assert!(
            (estimated / actual - 1.0).abs() < 0.1,
            "estimated s.e. {estimated:.0}, actual {actual:.0}"
        );
    }
}
