//! `valueFrom.instanceFieldRef.fieldPath`: an environment variable taken from the instance.
//!
//! The spec: "a json path expression to an instance field. For example: `.name`,
//! `.location.cityCode`, `.ipAddress`, `.containers[0].image`,
//! `.networkInterfaces[?(@.network=="default")].gateway`. Dots inside of map keys need to be
//! escaped: `.metadata.labels['workload\.platform\.stackpath\.net/workload-slug']`. Recursive
//! descent, union operators, and range/end are not allowed."
//!
//! So a path is a chain of `.name` (a field, or a map key), `['key']` / `["key"]` (a map key,
//! `\.` for a dot), `[n]` (the n-th item of a list, or of a map in key order, as the spec's
//! `.containers[0]` indexes the containers map) and `[?(@.field=="value")]` (the first list item
//! whose field is, or with `!=` is not, the value). A path is valid when every step names a
//! field of the spec's `workloadv1Instance` model (checked at create/update, a 400 otherwise);
//! it resolves against the instance as the emulator renders it when the container starts.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The vendor spec, for the instance model's field names.
const SPEC: &str = include_str!("../../../docs/stackpath/workload-api.oas2.json");
const INSTANCE_MODEL: &str = "workloadv1Instance";

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// `.name` or `['name']`.
    Key(String),
    /// `[n]`.
    Index(usize),
    /// `[?(@.field=="value")]` (`negate` for `!=`).
    Filter {
        field: String,
        negate: bool,
        value: String,
    },
}

/// Parses a field path into its steps; the error says what is wrong and where.
pub(crate) fn parse(path: &str) -> Result<Vec<Step>, String> {
    let p: Vec<char> = path.trim().chars().collect();
    let mut i = 0;
    if p.first() == Some(&'$') {
        i = 1;
    }
    let mut steps = Vec::new();
    if i >= p.len() {
        return Err("the path is empty; start it with '.', e.g. .ipAddress".into());
    }
    while i < p.len() {
        match p[i] {
            '.' => {
                if p.get(i + 1) == Some(&'.') {
                    return Err(format!(
                        "recursive descent ('..' at character {}) is not allowed",
                        i + 1
                    ));
                }
                i += 1;
                let mut name = String::new();
                while i < p.len() && p[i] != '.' && p[i] != '[' {
                    if p[i] == '\\' && i + 1 < p.len() {
                        name.push(p[i + 1]);
                        i += 2;
                        continue;
                    }
                    name.push(p[i]);
                    i += 1;
                }
                if name.is_empty() {
                    return Err(format!("a '.' at character {i} names no field"));
                }
                if name == "*" {
                    return Err("wildcards ('*') select several values; name one field".into());
                }
                steps.push(Step::Key(name));
            }
            '[' => {
                let close = bracket_end(&p, i)?;
                let inner: String = p[i + 1..close].iter().collect();
                steps.push(bracket(inner.trim(), i + 1)?);
                i = close + 1;
            }
            c => {
                return Err(format!(
                    "unexpected {c:?} at character {}; steps start with '.' or '['",
                    i + 1
                ));
            }
        }
    }
    Ok(steps)
}

/// Index of the `]` closing the bracket opened at `open`, skipping quoted text.
fn bracket_end(p: &[char], open: usize) -> Result<usize, String> {
    let mut quote: Option<char> = None;
    let mut i = open + 1;
    while i < p.len() {
        let c = p[i];
        match quote {
            Some(_) if c == '\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == ']' => return Ok(i),
            None => {}
        }
        i += 1;
    }
    Err(format!("the '[' at character {} is never closed", open + 1))
}

fn unquote(s: &str) -> Option<String> {
    let q = s.chars().next()?;
    if (q != '\'' && q != '"') || s.len() < 2 || !s.ends_with(q) {
        return None;
    }
    let mut out = String::new();
    let mut it = s[1..s.len() - 1].chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn bracket(inner: &str, at: usize) -> Result<Step, String> {
    if let Some(key) = unquote(inner) {
        return Ok(Step::Key(key));
    }
    if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let (lhs, negate, rhs) = if let Some((l, r)) = f.split_once("!=") {
            (l, true, r)
        } else if let Some((l, r)) = f.split_once("==") {
            (l, false, r)
        } else {
            return Err(format!(
                "the filter at character {at} must compare with == or !=, e.g. [?(@.network==\"default\")]"
            ));
        };
        let field = lhs
            .trim()
            .strip_prefix("@.")
            .filter(|f| !f.is_empty() && !f.contains(['.', '[']))
            .ok_or_else(|| {
                format!(
                    "the filter at character {at} must test one field of the item, as @.network"
                )
            })?;
        let rhs = rhs.trim();
        let value = unquote(rhs).unwrap_or_else(|| rhs.to_string());
        return Ok(Step::Filter {
            field: field.to_string(),
            negate,
            value,
        });
    }
    if inner == "*" {
        return Err("wildcards ('[*]') select several values; name one item".into());
    }
    if inner.contains(',') {
        return Err(format!(
            "union operators ('[{inner}]' at character {at}) are not allowed"
        ));
    }
    if inner.contains(':') || inner.starts_with('-') {
        return Err(format!(
            "ranges and counting from the end ('[{inner}]' at character {at}) are not allowed"
        ));
    }
    inner.parse::<usize>().map(Step::Index).map_err(|_| {
        format!(
            "cannot read '[{inner}]' at character {at}; use [n], ['key'] or [?(@.field==\"value\")]"
        )
    })
}

fn spec() -> &'static Value {
    static SPEC_JSON: OnceLock<Value> = OnceLock::new();
    SPEC_JSON.get_or_init(|| serde_json::from_str(SPEC).unwrap_or(Value::Null))
}

fn resolve_ref<'a>(spec: &'a Value, mut s: &'a Value) -> &'a Value {
    while let Some(r) = s.get("$ref").and_then(Value::as_str) {
        s = &spec["definitions"][r.trim_start_matches("#/definitions/")];
    }
    s
}

fn properties(spec: &Value, s: &Value) -> Map<String, Value> {
    let s = resolve_ref(spec, s);
    let mut m = s
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for part in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.extend(properties(spec, part));
    }
    m
}

fn describe(steps: &[Step]) -> String {
    let mut s = String::new();
    for st in steps {
        match st {
            Step::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::Index(n) => s.push_str(&format!("[{n}]")),
            Step::Filter { field, .. } => s.push_str(&format!("[?(@.{field}…)]")),
        }
    }
    if s.is_empty() {
        "the instance".into()
    } else {
        s
    }
}

/// Checks that every step names a field of the spec's instance model.
pub(crate) fn check(steps: &[Step]) -> Result<(), String> {
    let spec = spec();
    let mut s = &spec["definitions"][INSTANCE_MODEL];
    if s.is_null() {
        // The build embeds the spec; a missing model would be a broken build, not bad input.
        return Ok(());
    }
    for (n, step) in steps.iter().enumerate() {
        let here = resolve_ref(spec, s);
        let map_values = here.get("additionalProperties").filter(|a| a.is_object());
        let is_list = here.get("type").and_then(Value::as_str) == Some("array");
        s = match step {
            Step::Key(k) => {
                if let Some(v) = map_values {
                    v
                } else if let Some(p) = find_property(spec, here, k) {
                    p
                } else {
                    let props = properties(spec, here);
                    let mut known: Vec<&str> = props.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    return Err(if known.is_empty() {
                        format!(
                            "{} has no fields; {k:?} cannot follow it",
                            describe(&steps[..n])
                        )
                    } else {
                        format!(
                            "{} has no field {k:?}; it has: {}",
                            describe(&steps[..n]),
                            known.join(", ")
                        )
                    });
                }
            }
            Step::Index(_) => match (is_list, map_values) {
                (true, _) => &here["items"],
                (false, Some(v)) => v,
                _ => {
                    return Err(format!(
                        "{} is not a list or map, so it cannot be indexed",
                        describe(&steps[..n])
                    ));
                }
            },
            Step::Filter { field, .. } => {
                if !is_list {
                    return Err(format!(
                        "{} is not a list, so it cannot be filtered",
                        describe(&steps[..n])
                    ));
                }
                let items = &here["items"];
                if !properties(spec, items).contains_key(field) {
                    return Err(format!(
                        "the items of {} have no field {field:?}",
                        describe(&steps[..n])
                    ));
                }
                items
            }
        };
    }
    Ok(())
}

/// The schema of property `k` of `s` (directly or through `allOf`), borrowed from the spec.
fn find_property<'a>(spec: &'a Value, s: &'a Value, k: &str) -> Option<&'a Value> {
    let s = resolve_ref(spec, s);
    if let Some(p) = s.get("properties").and_then(|p| p.get(k)) {
        return Some(p);
    }
    s.get("allOf")
        .and_then(Value::as_array)?
        .iter()
        .find_map(|part| find_property(spec, part, k))
}

/// The value the path selects in `instance`, if it is there.
pub(crate) fn resolve<'a>(instance: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let mut v = instance;
    for step in steps {
        v = match step {
            Step::Key(k) => v.get(k)?,
            Step::Index(n) => match v {
                Value::Array(a) => a.get(*n)?,
                Value::Object(m) => {
                    let mut keys: Vec<&String> = m.keys().collect();
                    keys.sort();
                    m.get(*keys.get(*n)?)?
                }
                _ => return None,
            },
            Step::Filter {
                field,
                negate,
                value,
            } => v.as_array()?.iter().find(|item| {
                let got = match item.get(field) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                (got == *value) != *negate
            })?,
        };
    }
    Some(v)
}

/// An environment variable's text for a resolved value: strings as they are, other scalars
/// as JSON writes them, lists and maps as compact JSON.
pub(crate) fn env_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_spec_examples_parse_check_and_resolve() {
        let inst = json!({
            "name": "w-city-code-dfw-0",
            "ipAddress": "10.128.0.2",
            "location": {"cityCode": "DFW"},
            "containers": {"b": {"image": "img-b"}, "a": {"image": "img-a"}},
            "networkInterfaces": [{"network": "other", "gateway": "1"}, {"network": "default", "gateway": "10.128.0.1"}],
            "metadata": {"labels": {"workload.platform.stackpath.net/workload-slug": "w"}}
        });
        for (path, want) in [
            (".name", "w-city-code-dfw-0"),
            (".location.cityCode", "DFW"),
            (".ipAddress", "10.128.0.2"),
            (".containers[0].image", "img-a"),
            (
                ".networkInterfaces[?(@.network==\"default\")].gateway",
                "10.128.0.1",
            ),
            (
                ".metadata.labels['workload\\.platform\\.stackpath\\.net/workload-slug']",
                "w",
            ),
        ] {
            let steps = parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            check(&steps).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(
                resolve(&inst, &steps).map(env_text).as_deref(),
                Some(want),
                "{path}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_forbidden_forms_are_refused() {
        let e = check(&parse(".ipAdress").unwrap()).unwrap_err();
        assert!(e.contains("ipAddress"), "{e}");
        assert!(check(&parse(".location.nope").unwrap()).is_err());
        assert!(check(&parse(".name.first").unwrap()).is_err());
        assert!(check(&parse(".ipAddress[0]").unwrap()).is_err());
        for bad in [
            "..name",
            ".networkInterfaces[0,1]",
            ".networkInterfaces[0:2]",
            ".networkInterfaces[-1]",
            ".networkInterfaces[*]",
            "name",
            "",
            ".a[",
            ".networkInterfaces[?(@.network)]",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }
}
