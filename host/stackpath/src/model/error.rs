//! The API's error body (`stackpathapiStatus`): `{code, message, details}`, with `code` a gRPC
//! status code.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An error returned by the API (`stackpathapiStatus`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiStatus {
    /// A gRPC status code (5 not found, 6 already exists, 3 invalid argument, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ApiStatusDetail>,
}

/// One error detail (`apiStatusDetail`): an `@type` discriminator such as
/// `stackpath.rpc.BadRequest` plus that type's fields, kept as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiStatusDetail {
    #[serde(rename = "@type", default)]
    pub type_url: String,
    #[serde(flatten)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// A field violation of a `stackpath.rpc.BadRequest` detail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldViolation {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub description: String,
}

impl ApiStatusDetail {
    /// Applies `f` to every string of the detail, in place: its type, and each key and string
    /// value of its fields at any depth.
    pub(crate) fn map_strings(&mut self, f: &mut impl FnMut(&mut String)) {
        f(&mut self.type_url);
        self.fields = map_entries(std::mem::take(&mut self.fields), f);
    }

    /// The field violations, when this detail is a `stackpath.rpc.BadRequest`.
    pub fn field_violations(&self) -> Vec<FieldViolation> {
        if !self.type_url.ends_with("stackpath.rpc.BadRequest") {
            return Vec::new();
        }
        self.fields
            .get("fieldViolations")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

/// `f` over each key and each string value (at any depth) of a JSON object's entries.
fn map_entries<M>(entries: M, f: &mut impl FnMut(&mut String)) -> M
where
    M: IntoIterator<Item = (String, serde_json::Value)> + FromIterator<(String, serde_json::Value)>,
{
    fn value(v: &mut serde_json::Value, f: &mut impl FnMut(&mut String)) {
        match v {
            serde_json::Value::String(s) => f(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| value(v, f)),
            serde_json::Value::Object(map) => *map = map_entries(std::mem::take(map), f),
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
            }
        }
    }
    entries
        .into_iter()
        .map(|(mut k, mut v)| {
            f(&mut k);
            value(&mut v, f);
            (k, v)
        })
        .collect()
}

impl std::fmt::Display for ApiStatusDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let violations = self.field_violations();
        if violations.is_empty() {
            let body = serde_json::to_string(&self.fields).unwrap_or_default();
            write!(f, "{} {body}", self.type_url)
        } else {
            let parts: Vec<String> = violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect();
            f.write_str(&parts.join("; "))
        }
    }
}
