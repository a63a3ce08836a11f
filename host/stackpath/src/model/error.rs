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
