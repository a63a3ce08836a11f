//! Usage metrics (`prometheusMetrics`), as returned by `GET …/stacks/{stack_id}/metrics`, and
//! the query that asks for them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StringMap;

/// A collection of metrics (`prometheusMetrics`), shaped like a Prometheus query result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MetricsStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<MetricsData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Metrics {
    /// Every series of the result, range (`matrix`) or instant (`vector`), as labels and
    /// samples, so callers need not care which shape the server chose.
    pub fn series(&self) -> Vec<(&StringMap, Vec<&DataValue>)> {
        let mut out = Vec::new();
        if let Some(data) = &self.data {
            if let Some(matrix) = &data.matrix {
                for r in &matrix.results {
                    out.push((&r.metric, r.values.iter().collect()));
                }
            }
            if let Some(vector) = &data.vector {
                for r in &vector.results {
                    out.push((&r.metric, r.value.iter().collect()));
                }
            }
        }
        out
    }

    /// The most recent sample of the series named `name` (its `__name__` label, e.g. `cpu` in
    /// cores or `memory` in bytes for `type=INSTANCE`), across all series of that name.
    pub fn latest(&self, name: &str) -> Option<f64> {
        self.series()
            .into_iter()
            .filter(|(labels, _)| labels.get("__name__").map(String::as_str) == Some(name))
            .flat_map(|(_, samples)| samples)
            .filter_map(|s| Some((s.unix_time.as_deref()?.parse::<f64>().ok()?, s.as_f64()?)))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, v)| v)
    }
}

/// `prometheusMetricsStatus`. Unknown values read as `Error`, so they are never taken for data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MetricsStatus {
    #[default]
    Success,
    #[serde(other)]
    Error,
}

/// `MetricsData`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<DataMatrix>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<DataVector>,
}

/// `DataMatrix`: series over a time range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataMatrix {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<DataMatrixResult>,
}

/// `DataMatrixResult`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataMatrixResult {
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub metric: StringMap,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<DataValue>,
}

/// `DataVector`: one sample per series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<DataVectorResult>,
}

/// `DataVectorResult`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVectorResult {
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    pub metric: StringMap,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<DataValue>,
}

/// One sample (`DataValue`): both fields are strings on the wire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataValue {
    /// Seconds since the Unix epoch, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl DataValue {
    /// The sample as a number, if it parses.
    pub fn as_f64(&self) -> Option<f64> {
        self.value.as_deref()?.trim().parse().ok()
    }
}

/// `v1GetMetricsRequestType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MetricsType {
    Bandwidth,
    Instance,
}

/// `v1GetMetricsRequestGranularity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MetricsGranularity {
    #[serde(rename = "DEFAULT")]
    Default,
    #[serde(rename = "PT1M")]
    OneMinute,
    #[serde(rename = "PT5M")]
    FiveMinutes,
    #[serde(rename = "PT1H")]
    OneHour,
    #[serde(rename = "P1D")]
    OneDay,
}

/// `GetMetricsRequestGroupBy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MetricsGroupBy {
    None,
    InstanceName,
}

/// The query parameters of `GetMetrics`. Serializes to the query string with the spec's
/// parameter names (`workload_id`, `start_date`, …); `grouping` repeats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsQuery {
    pub workload_id: Option<String>,
    pub instance_name: Option<String>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub metrics_type: Option<MetricsType>,
    pub granularity: Option<MetricsGranularity>,
    pub pop: Option<String>,
    /// A `v1GetMetricsRequestTrafficRegion` value such as `ALL` (bandwidth metrics only).
    pub region: Option<String>,
    pub group_by: Option<MetricsGroupBy>,
    pub grouping: Vec<String>,
}

impl MetricsQuery {
    /// CPU and memory of one instance of a workload, over `[start, end]`.
    pub fn instance(
        workload_id: impl Into<String>,
        instance_name: impl Into<String>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Self {
        Self {
            workload_id: Some(workload_id.into()),
            instance_name: Some(instance_name.into()),
            start_date: Some(start),
            end_date: Some(end),
            metrics_type: Some(MetricsType::Instance),
            ..Self::default()
        }
    }

    /// The query string pairs, in the spec's names.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        fn enum_str<T: Serialize>(v: &T) -> String {
            match serde_json::to_value(v) {
                Ok(serde_json::Value::String(s)) => s,
                _ => String::new(),
            }
        }
        let rfc3339 = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut q = Vec::new();
        if let Some(v) = &self.workload_id {
            q.push(("workload_id", v.clone()));
        }
        if let Some(v) = &self.start_date {
            q.push(("start_date", rfc3339(v)));
        }
        if let Some(v) = &self.end_date {
            q.push(("end_date", rfc3339(v)));
        }
        if let Some(v) = &self.metrics_type {
            q.push(("type", enum_str(v)));
        }
        if let Some(v) = &self.granularity {
            q.push(("granularity", enum_str(v)));
        }
        if let Some(v) = &self.instance_name {
            q.push(("instance_name", v.clone()));
        }
        if let Some(v) = &self.pop {
            q.push(("pop", v.clone()));
        }
        if let Some(v) = &self.region {
            q.push(("region", v.clone()));
        }
        if let Some(v) = &self.group_by {
            q.push(("group_by", enum_str(v)));
        }
        for g in &self.grouping {
            q.push(("grouping", g.clone()));
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_picks_the_newest_sample_of_the_named_series() {
        let m: Metrics = serde_json::from_value(serde_json::json!({
            "status": "SUCCESS",
            "data": {"matrix": {"results": [
                {"metric": {"__name__": "cpu", "instance_name": "a"},
                 "values": [{"unixTime": "100", "value": "0.5"}, {"unixTime": "160", "value": "0.75"}]},
                {"metric": {"__name__": "memory", "instance_name": "a"},
                 "values": [{"unixTime": "160", "value": "1048576"}]}
            ]}}
        }))
        .expect("metrics");
        assert_eq!(m.latest("cpu"), Some(0.75));
        assert_eq!(m.latest("memory"), Some(1_048_576.0));
        assert_eq!(m.latest("disk"), None);
    }

    #[test]
    fn query_uses_spec_parameter_names() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .expect("t")
            .to_utc();
        let mut q = MetricsQuery::instance("w", "i", t, t);
        q.granularity = Some(MetricsGranularity::OneMinute);
        q.group_by = Some(MetricsGroupBy::InstanceName);
        q.grouping = vec!["a".into(), "b".into()];
        let pairs: Vec<String> = q
            .to_query()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            pairs,
            [
                "workload_id=w",
                "start_date=2026-11-25T10:00:00Z",
                "end_date=2026-11-25T10:00:00Z",
                "type=INSTANCE",
                "granularity=PT1M",
                "instance_name=i",
                "group_by=INSTANCE_NAME",
                "grouping=a",
                "grouping=b"
            ]
        );
    }
}
