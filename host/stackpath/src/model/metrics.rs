//! Usage metrics (`prometheusMetrics`), as returned by `GET …/stacks/{stack_id}/metrics`, and
//! the query that asks for them.

use std::collections::BTreeMap;

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
        newest(self.named(name).flat_map(|(_, samples)| samples)).map(|(_, v)| v)
    }

    /// The most recent sample of the series named `name`, per workload, instance and
    /// container: for a stack-wide answer ([`MetricsQuery::stack`]), one entry per instance
    /// (or per container, where StackPath reports containers). Series without a readable
    /// sample are left out.
    pub fn latest_by_owner(&self, name: &str) -> BTreeMap<SeriesOwner, f64> {
        let mut newest_by: BTreeMap<SeriesOwner, (f64, f64)> = BTreeMap::new();
        for (labels, samples) in self.named(name) {
            let Some(sample) = newest(samples.into_iter()) else {
                continue;
            };
            newest_by
                .entry(SeriesOwner::of(labels))
                .and_modify(|kept| {
                    if sample.0 > kept.0 {
                        *kept = sample;
                    }
                })
                .or_insert(sample);
        }
        newest_by.into_iter().map(|(k, (_, v))| (k, v)).collect()
    }

    fn named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a StringMap, Vec<&'a DataValue>)> + 'a {
        self.series()
            .into_iter()
            .filter(move |(labels, _)| labels.get(LABEL_NAME).map(String::as_str) == Some(name))
    }
}

/// The (time, value) of the newest sample with a readable time and value.
fn newest<'a>(samples: impl Iterator<Item = &'a DataValue>) -> Option<(f64, f64)> {
    samples
        .filter_map(|s| Some((s.unix_seconds()?, s.as_f64()?)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// The label naming the metric (`cpu`, `memory`, `receive_bytes`, …).
pub const LABEL_NAME: &str = "__name__";
/// The label holding the workload's id on instance series.
pub const LABEL_WORKLOAD_ID: &str = "workload_id";
/// The label holding the instance's name on instance series.
pub const LABEL_INSTANCE_NAME: &str = "instance_name";
/// The label holding the container's name, on series StackPath reports per container.
pub const LABEL_CONTAINER_NAME: &str = "container_name";

/// Which workload, instance and container a series is about, read from its labels
/// ([`LABEL_WORKLOAD_ID`], [`LABEL_INSTANCE_NAME`], [`LABEL_CONTAINER_NAME`]). A field is
/// `None` when the series does not carry that label: no container for a series that covers
/// the whole instance, nothing at all for a series summed over the stack.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesOwner {
    pub workload_id: Option<String>,
    pub instance_name: Option<String>,
    pub container_name: Option<String>,
}

impl SeriesOwner {
    /// The owner named by a series' labels.
    pub fn of(labels: &StringMap) -> Self {
        let get = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
        Self {
            workload_id: get(LABEL_WORKLOAD_ID),
            instance_name: get(LABEL_INSTANCE_NAME),
            container_name: get(LABEL_CONTAINER_NAME),
        }
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
    /// The sample as a number, if it parses to a finite one (a `NaN` or `Inf` from the server
    /// would poison any sum or rate a caller keeps).
    pub fn as_f64(&self) -> Option<f64> {
        finite(self.value.as_deref()?)
    }

    /// The sample's time in seconds since the Unix epoch, if it parses to a finite number.
    pub fn unix_seconds(&self) -> Option<f64> {
        finite(self.unix_time.as_deref()?)
    }
}

fn finite(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
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

    /// CPU and memory of every instance of the stack over `[start, end]`: no `workload_id`
    /// (the whole stack, in one unpaged answer) and grouped by instance, so each series
    /// carries the labels that attribute it ([`SeriesOwner`]).
    pub fn stack(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self {
            start_date: Some(start),
            end_date: Some(end),
            metrics_type: Some(MetricsType::Instance),
            group_by: Some(MetricsGroupBy::InstanceName),
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
    fn stack_answer_is_attributed_per_instance_and_container() {
        let m: Metrics = serde_json::from_value(serde_json::json!({
            "status": "SUCCESS",
            "data": {"matrix": {"results": [
                {"metric": {"__name__": "cpu", "workload_id": "w1", "instance_name": "a-0"},
                 "values": [{"unixTime": "100", "value": "0.5"}, {"unixTime": "160", "value": "0.25"}]},
                {"metric": {"__name__": "cpu", "workload_id": "w2", "instance_name": "b-0",
                            "container_name": "app"},
                 "values": [{"unixTime": "160", "value": "1.5"}]},
                {"metric": {"__name__": "cpu", "workload_id": "w2", "instance_name": "b-0",
                            "container_name": "side"},
                 "values": [{"unixTime": "160", "value": "NaN"}, {"unixTime": "100", "value": "0.1"}]},
                {"metric": {"__name__": "cpu", "workload_id": "w3", "instance_name": "c-0"},
                 "values": [{"unixTime": "x", "value": "1"}]},
                {"metric": {"__name__": "memory", "workload_id": "w1", "instance_name": "a-0"},
                 "values": [{"unixTime": "160", "value": "1048576"}]}
            ]}}
        }))
        .expect("metrics");
        let owner = |w: &str, i: &str, c: Option<&str>| SeriesOwner {
            workload_id: Some(w.into()),
            instance_name: Some(i.into()),
            container_name: c.map(Into::into),
        };
        let cpu = m.latest_by_owner("cpu");
        assert_eq!(
            cpu,
            BTreeMap::from([
                (owner("w1", "a-0", None), 0.25),
                (owner("w2", "b-0", Some("app")), 1.5),
                // The NaN sample is skipped, not taken as the newest.
                (owner("w2", "b-0", Some("side")), 0.1),
            ])
        );
        assert_eq!(
            m.latest_by_owner("memory")[&owner("w1", "a-0", None)],
            1_048_576.0
        );
        assert_eq!(m.latest("cpu"), Some(1.5));
    }

    #[test]
    fn stack_query_has_no_workload_and_groups_by_instance() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .expect("t")
            .to_utc();
        let pairs: Vec<String> = MetricsQuery::stack(t, t)
            .to_query()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            pairs,
            [
                "start_date=2026-11-25T10:00:00Z",
                "end_date=2026-11-25T10:00:00Z",
                "type=INSTANCE",
                "group_by=INSTANCE_NAME"
            ]
        );
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
