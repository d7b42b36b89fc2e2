//! Which of a lock's figures are exact and which estimated, written as one
//! pprof comment per lock name and mode, and read back: the one place that
//! knows the format.
//!
//! Comments, because every pprof reader keeps them and none interprets them
//! (`go tool pprof -raw` prints them, Datadog's intake accepts them), where a
//! sample type of its own would show up as a profile type in every viewer.
//!
//! ```text
//! comment = "lockprof accuracy: " field *(" " field) " lock=" label
//! field   = figure-key "=" figure | "contended=" digits | "mode=" ("read" | "write")
//! figure-key = "acquire" | "wait" | "release" | "hold"
//! figure  = "exact" | "se:" number | "unsampled"
//! ```
//!
//! - `acquire`, `wait`, `release`, `hold` are the lock's totals of
//!   `lock-acquire`, `lock-acquire-wait`, `lock-release`, `lock-release-hold`
//!   in this profile (all its samples with this `lock name` and `lock mode`).
//! - `exact`: the total is the true one. `se:X`: the total is estimated from
//!   sampled events, with standard error `X` in the sample type's unit
//!   (count or nanoseconds), rounded up. `unsampled`: none of the lock's
//!   events of that kind was sampled; the total written is 0 and its error
//!   unknown.
//! - `contended`: the exact number of acquisitions whose first try failed;
//!   absent when the profiler did not know it.
//! - `mode`: as the `lock mode` label; absent for mutexes (no such label).
//! - `lock`: the `lock name` label, last and to the end of the comment, since
//!   a name set at run time may hold spaces or `=`.
//!
//! A reader ignores fields it does not know, so fields can be added.

use std::fmt::Write as _;

const PREFIX: &str = "lockprof accuracy: ";
const LOCK: &str = " lock=";

/// How far one of a lock's totals can be trusted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Figure {
    /// The true total: every event counted or timed.
    Exact,
    /// Estimated from sampled events.
    Estimated {
        /// One standard error of the total, in the sample type's unit (count
        /// or nanoseconds). Independent estimates combine as the square root
        /// of the sum of squares ([`Figure::combine`]).
        standard_error: f64,
    },
    /// Nothing of this kind was sampled: the total written is 0, and its
    /// error unknown.
    Unsampled,
}

impl Figure {
    /// The figure of a sum of two independent totals: exact if both are,
    /// standard errors combined as `√(a² + b²)`, unsampled if either is.
    pub fn combine(self, other: Figure) -> Figure {
        match (self, other) {
            (Figure::Unsampled, _) | (_, Figure::Unsampled) => Figure::Unsampled,
            (Figure::Exact, f) | (f, Figure::Exact) => f,
            (Figure::Estimated { standard_error: a }, Figure::Estimated { standard_error: b }) => {
                Figure::Estimated {
                    standard_error: a.hypot(b),
                }
            }
        }
    }

    /// The standard error: 0 if exact, `None` if unsampled.
    pub fn standard_error(self) -> Option<f64> {
        match self {
            Figure::Exact => Some(0.0),
            Figure::Estimated { standard_error } => Some(standard_error),
            Figure::Unsampled => None,
        }
    }

    fn write(self, out: &mut String) {
        match self {
            Figure::Exact => out.push_str("exact"),
            Figure::Estimated { standard_error } => {
                // Rounded up, so that an estimate never reads as exact.
                let _ = write!(out, "se:{}", standard_error.max(0.0).ceil() as u64);
            }
            Figure::Unsampled => out.push_str("unsampled"),
        }
    }

    fn parse(s: &str) -> Option<Figure> {
        match s {
            "exact" => Some(Figure::Exact),
            "unsampled" => Some(Figure::Unsampled),
            _ => {
                let se: f64 = s.strip_prefix("se:")?.parse().ok()?;
                (se.is_finite() && se >= 0.0).then_some(Figure::Estimated { standard_error: se })
            }
        }
    }
}

/// What a profile says of one lock name and mode's totals.
#[derive(Debug, Clone, PartialEq)]
pub struct LockAccuracy {
    /// The `lock name` label.
    pub lock: String,
    /// The `lock mode` label (`read`, `write`); `None` for mutexes.
    pub mode: Option<String>,
    /// Of the `lock-acquire` total.
    pub acquire: Figure,
    /// Of the `lock-acquire-wait` total.
    pub wait: Figure,
    /// Of the `lock-release` total.
    pub release: Figure,
    /// Of the `lock-release-hold` total.
    pub hold: Figure,
    /// Acquisitions whose first try failed, exactly; `None` if not known.
    pub contended: Option<u64>,
}

impl LockAccuracy {
    /// The comment that states this.
    pub(crate) fn to_comment(&self) -> String {
        let mut out = String::with_capacity(PREFIX.len() + 80 + self.lock.len());
        out.push_str(PREFIX);
        for (i, (key, figure)) in [
            ("acquire", self.acquire),
            ("wait", self.wait),
            ("release", self.release),
            ("hold", self.hold),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(key);
            out.push('=');
            figure.write(&mut out);
        }
        if let Some(n) = self.contended {
            let _ = write!(out, " contended={n}");
        }
        if let Some(mode) = &self.mode {
            let _ = write!(out, " mode={mode}");
        }
        out.push_str(LOCK);
        out.push_str(&self.lock);
        out
    }

    /// Reads a comment written by [`to_comment`](Self::to_comment); `None`
    /// for any other comment, or one missing a figure.
    pub fn from_comment(comment: &str) -> Option<LockAccuracy> {
        let rest = comment.strip_prefix(PREFIX)?;
        let (fields, lock) = rest.split_once(LOCK)?;
        let (mut acquire, mut wait, mut release, mut hold) = (None, None, None, None);
        let (mut contended, mut mode) = (None, None);
        for field in fields.split(' ') {
            let (key, value) = field.split_once('=')?;
            match key {
                "acquire" => acquire = Some(Figure::parse(value)?),
                "wait" => wait = Some(Figure::parse(value)?),
                "release" => release = Some(Figure::parse(value)?),
                "hold" => hold = Some(Figure::parse(value)?),
                "contended" => contended = Some(value.parse().ok()?),
                "mode" => mode = Some(value.to_owned()),
                _ => {}
            }
        }
        Some(LockAccuracy {
            lock: lock.to_owned(),
            mode,
            acquire: acquire?,
            wait: wait?,
            release: release?,
            hold: hold?,
            contended,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_reads_back_as_written() {
        let a = LockAccuracy {
            lock: "app.rs:12:queue of = spaces".to_owned(),
            mode: Some("read".to_owned()),
            acquire: Figure::Exact,
            wait: Figure::Estimated { standard_error: 12.2 },
            release: Figure::Exact,
            hold: Figure::Unsampled,
            contended: Some(7),
        };
        let c = a.to_comment();
        assert_eq!(
            c,
            "lockprof accuracy: acquire=exact wait=se:13 release=exact hold=unsampled contended=7 mode=read lock=app.rs:12:queue of = spaces"
        );
        let back = LockAccuracy::from_comment(&c).unwrap();
        assert_eq!(back.wait, Figure::Estimated { standard_error: 13.0 });
        assert_eq!(back, LockAccuracy { wait: back.wait, ..a });
        let plain = LockAccuracy {
            mode: None,
            contended: None,
            ..back
        };
        assert_eq!(LockAccuracy::from_comment(&plain.to_comment()), Some(plain));
    }

    #[test]
    fn other_comments_and_unknown_fields() {
        assert_eq!(LockAccuracy::from_comment("lockprof 0.1.0: capture_pct=1"), None);
        assert_eq!(
            LockAccuracy::from_comment("lockprof accuracy: acquire=exact wait=exact hold=exact lock=a"),
            None,
            "a figure missing"
        );
        assert_eq!(
            LockAccuracy::from_comment(
                "lockprof accuracy: acquire=exact wait=se:-1 release=exact hold=exact lock=a"
            ),
            None
        );
        let later = LockAccuracy::from_comment(
            "lockprof accuracy: acquire=exact wait=exact release=exact hold=se:2.5 p99=3 lock=a",
        )
        .unwrap();
        assert_eq!(later.hold, Figure::Estimated { standard_error: 2.5 });
    }

    #[test]
    fn figures_combine_as_independent_errors() {
        let se = |standard_error| Figure::Estimated { standard_error };
        assert_eq!(Figure::Exact.combine(Figure::Exact), Figure::Exact);
        assert_eq!(Figure::Exact.combine(se(3.0)), se(3.0));
        assert_eq!(se(3.0).combine(se(4.0)), se(5.0));
        assert_eq!(se(3.0).combine(Figure::Unsampled), Figure::Unsampled);
    }
}
