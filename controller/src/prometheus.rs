//! Analysis measurements: an instant query against the configured Prometheus (`/api/v1/query`), its answer read
//! into what the engine judges ([`Measured`]). The IO edge of the analysis gates; what a result means is the
//! engine's.

use std::time::Duration;

use serde::Deserialize;

use crate::engine::Measured;

/// How long a query may take before it counts as unanswered.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A Prometheus server's query API.
#[derive(Clone)]
pub struct Prometheus {
    base: String,
    client: reqwest::Client,
}

/// `/api/v1/query`'s answer.
#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Sample>),
    Scalar((f64, String)),
    // Only the kind of these matters: they are no number to judge.
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

impl Prometheus {
    pub fn new(base: &str) -> Result<Prometheus, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(QUERY_TIMEOUT).build()?;
        Ok(Prometheus { base: base.trim_end_matches('/').to_string(), client })
    }

    /// Measures `query` now.
    pub async fn measure(&self, query: &str) -> Measured {
        let url = format!("{}/api/v1/query", self.base);
        let response = match self.client.get(&url).query(&[("query", query)]).send().await {
            Ok(r) => r,
            Err(e) => return Measured::Failed(format!("{url}: {}", crate::error_chain(&e))),
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Measured::Failed(format!("{url}: {}", crate::error_chain(&e))),
        };
        read_answer(status.as_u16(), &body)
    }
}

/// What an answer says: the values of its series (a scalar is one), no data, or why it is no answer.
fn read_answer(status: u16, body: &[u8]) -> Measured {
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(_) => return Measured::Failed(format!("HTTP {status}, not a Prometheus answer")),
    };
    if answer.status != "success" {
        return Measured::Failed(format!("HTTP {status}: {}", answer.error.unwrap_or_else(|| answer.status.clone())));
    }
    let values: Vec<&str> = match &answer.data {
        Some(Data::Vector(samples)) => samples.iter().map(|s| s.value.1.as_str()).collect(),
        Some(Data::Scalar((_, v))) => vec![v.as_str()],
        Some(Data::Matrix(_)) => {
            return Measured::Failed("the query returns a range vector: use an instant query".into())
        }
        Some(Data::String(_)) | None => return Measured::Failed("the query returns no number".into()),
    };
    let parsed: Vec<f64> = values.iter().filter_map(|v| v.parse::<f64>().ok()).filter(|v| !v.is_nan()).collect();
    if parsed.is_empty() {
        return Measured::NoData;
    }
    Measured::Values(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_values_no_data_or_a_reason() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"site":"a"},"value":[1.5,"0.25"]},{"metric":{},"value":[1.5,"2"]}]}}"#;
        assert_eq!(read_answer(200, vector), Measured::Values(vec![0.25, 2.0]));
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"7"]}}"#;
        assert_eq!(read_answer(200, scalar), Measured::Values(vec![7.0]));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(read_answer(200, empty), Measured::NoData);
        let nan = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert_eq!(read_answer(200, nan), Measured::NoData, "NaN is no data");
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        assert_eq!(read_answer(400, bad), Measured::Failed("HTTP 400: parse error at char 4".into()));
        assert!(matches!(read_answer(502, b"<html>bad gateway</html>"), Measured::Failed(m) if m.contains("502")));
    }
}
