//! Analysis gates: the rollout watches the fleet's own health. A query against Prometheus (PromQL) and a
//! condition every series it returns must meet, measured `count` times, `interval` apart, from the moment a
//! wave passes; more than `failure_limit` failed measurements trip the gate (pause or abort, as `on_failure`
//! says), and one that cannot be taken (no data, Prometheus unreachable, a query it refuses) pauses the rollout:
//! with no data, a rollout never advances.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::GateAction;

/// One analysis, as a rollout's gates (or a wave's) carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    /// A name for the audit log and the metrics; `analysis-1`, ... when the flag gave none.
    pub name: String,
    /// The PromQL query, evaluated as an instant query.
    pub query: String,
    /// What every series of the result must meet, e.g. `< 0.01`.
    pub success: Condition,
    /// Seconds between measurements; the first is this long after the wave passed.
    #[serde(default = "minute")]
    pub interval_secs: u64,
    /// Measurements per wave.
    #[serde(default = "one")]
    pub count: u32,
    /// Failed measurements tolerated; one more trips the gate.
    #[serde(default)]
    pub failure_limit: u32,
    #[serde(default = "pause")]
    pub on_failure: GateAction,
}

fn minute() -> u64 {
    60
}

fn one() -> u32 {
    1
}

fn pause() -> GateAction {
    GateAction::Pause
}

/// A comparison with a number: `< 0.01`, `>= 0.99`, `== 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub op: Op,
    pub threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    const ALL: [(Op, &'static str); 6] =
        [(Op::Le, "<="), (Op::Ge, ">="), (Op::Eq, "=="), (Op::Ne, "!="), (Op::Lt, "<"), (Op::Gt, ">")];

    fn text(self) -> &'static str {
        Op::ALL.iter().find(|(o, _)| *o == self).map_or("?", |(_, t)| t)
    }
}

impl Condition {
    /// Whether a measured value meets the condition (NaN never does).
    pub fn holds(&self, v: f64) -> bool {
        let t = self.threshold;
        match self.op {
            Op::Lt => v < t,
            Op::Le => v <= t,
            Op::Gt => v > t,
            Op::Ge => v >= t,
            Op::Eq => v == t,
            Op::Ne => v != t && !v.is_nan(),
        }
    }
}

impl std::str::FromStr for Condition {
    type Err = String;
    fn from_str(text: &str) -> Result<Condition, String> {
        let t = text.trim();
        let bad = || format!("condition {t:?}: write an operator and a number, e.g. \"< 0.01\" or \">= 0.99\"");
        let (op, rest) = Op::ALL.iter().find_map(|(op, s)| t.strip_prefix(s).map(|r| (*op, r))).ok_or_else(bad)?;
        let threshold: f64 = rest.trim().parse().map_err(|_| bad())?;
        if !threshold.is_finite() {
            return Err(bad());
        }
        Ok(Condition { op, threshold })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.text(), self.threshold)
    }
}

crate::text_serde::as_text!(
    Condition,
    "A comparison the query's value must pass: <, <=, >, >=, == or != and a number",
    "< 0.01"
);

impl Analysis {
    /// `QUERY OP NUMBER`, as `--analysis` takes it: the query is everything before the last comparison outside
    /// brackets, braces, parentheses and quotes (so label matchers such as `{code!="200"}` stay in the query).
    pub fn parse_inline(name: &str, text: &str) -> Result<Analysis, String> {
        let hint = "write QUERY OP NUMBER, e.g. 'sum(rate(pbx_call_failures_total[5m])) < 0.01'";
        let bytes = text.as_bytes();
        let (mut depth, mut quote, mut last) = (0i32, None::<u8>, None);
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match (quote, b) {
                (Some(q), _) if b == q => quote = None,
                (Some(_), b'\\') => i += 1,
                (Some(_), _) => {}
                (None, b'"' | b'\'' | b'`') => quote = Some(b),
                (None, b'(' | b'[' | b'{') => depth += 1,
                (None, b')' | b']' | b'}') => depth -= 1,
                (None, b'<' | b'>' | b'=' | b'!') if depth == 0 => {
                    last = Some(i);
                    // A two-character operator counts from its first.
                    if i + 1 < bytes.len() && bytes[i + 1] == b'=' {
                        i += 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let at = last.ok_or_else(|| format!("analysis {text:?}: no comparison; {hint}"))?;
        let (query, condition) = text.split_at(at);
        let query = query.trim();
        if query.is_empty() {
            return Err(format!("analysis {text:?}: no query before the comparison; {hint}"));
        }
        let success = condition.parse().map_err(|e| format!("analysis {text:?}: {e}"))?;
        Ok(Analysis {
            name: name.to_string(),
            query: query.to_string(),
            success,
            interval_secs: minute(),
            count: one(),
            failure_limit: 0,
            on_failure: GateAction::Pause,
        })
    }

    /// Checks the values make sense; the message names the analysis.
    pub fn validate(&self) -> Result<(), String> {
        let max = bindwave_settings::duration::MAX_SECS;
        if self.name.trim().is_empty() {
            return Err("an analysis needs a name".into());
        }
        if self.query.trim().is_empty() {
            return Err(format!("analysis {:?}: its query is empty", self.name));
        }
        if !(1..=max).contains(&self.interval_secs) {
            return Err(format!("analysis {:?}: interval_secs must be from 1 to {max}", self.name));
        }
        if !(1..=10_000).contains(&self.count) {
            return Err(format!("analysis {:?}: count must be from 1 to 10000", self.name));
        }
        if self.failure_limit >= self.count {
            return Err(format!(
                "analysis {:?}: failure_limit ({}) must be below count ({}), or no measurement could fail it",
                self.name, self.failure_limit, self.count
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inline_analysis_splits_at_its_last_comparison_outside_brackets() {
        let a =
            Analysis::parse_inline("a", r#"sum(rate(pbx_call_failures_total{site="munich",code!="200"}[5m])) < 0.01"#)
                .unwrap();
        assert_eq!(a.query, r#"sum(rate(pbx_call_failures_total{site="munich",code!="200"}[5m]))"#);
        assert_eq!(a.success, Condition { op: Op::Lt, threshold: 0.01 });
        let b = Analysis::parse_inline("b", "avg(up) >= 0.99").unwrap();
        assert_eq!((b.query.as_str(), b.success.to_string()), ("avg(up)", ">= 0.99".to_string()));
        let c = Analysis::parse_inline("c", r#"count(x{l=">"}) == 0"#).unwrap();
        assert_eq!(c.query, r#"count(x{l=">"})"#, "a comparison inside quotes is the query's");
        for (bad, says) in
            [("sum(x)", "no comparison"), ("< 3", "no query"), ("sum(x) < lots", "write an operator and a number")]
        {
            let e = Analysis::parse_inline("x", bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn conditions_compare_and_nan_never_holds() {
        let c = |s: &str| s.parse::<Condition>().unwrap();
        assert!(c("< 1").holds(0.5) && !c("< 1").holds(1.0) && c("<= 1").holds(1.0));
        assert!(c("> 1").holds(2.0) && c(">= 1").holds(1.0) && c("== 0").holds(0.0) && c("!= 0").holds(1.0));
        for cond in ["< 1", "> 1", "== 0", "!= 0", "<= 1", ">= 1"] {
            assert!(!c(cond).holds(f64::NAN), "{cond}");
        }
        assert_eq!(c(">=0.99").to_string(), ">= 0.99");
    }

    #[test]
    fn a_file_analysis_reads_with_defaults_and_is_checked() {
        let a: Analysis = toml::from_str("name = \"calls\"\nquery = \"sum(x)\"\nsuccess = \"< 0.01\"\n").unwrap();
        assert_eq!((a.interval_secs, a.count, a.failure_limit, a.on_failure), (60, 1, 0, GateAction::Pause));
        let a = Analysis { count: 3, failure_limit: 3, ..a };
        assert!(a.validate().unwrap_err().contains("failure_limit (3) must be below count (3)"));
    }
}
