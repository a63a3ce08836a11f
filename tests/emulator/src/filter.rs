//! `page_request.filter`: a small SQL-style subset, `field = "value"` clauses joined by `and`.
//!
//! Fields are dotted JSON paths (`slug`, `name`, `status`, `id`); `metadata.labels.<key>` and
//! `metadata.annotations.<key>` take the whole remainder as the key, since label keys may hold
//! dots. Operators: `=`, `!=`. Values may be quoted with `"` or `'`.

use serde_json::Value;

#[derive(Debug, Clone)]
pub(crate) struct Clause {
    field: String,
    negate: bool,
    value: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Filter(Vec<Clause>);

impl Filter {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self(out));
        }
        for part in split_and(s) {
            let part = part.trim();
            let (field, negate, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, false, v)
            } else {
                return Err(format!(
                    "cannot read filter clause {part:?}; use field = \"value\" joined by 'and'"
                ));
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(format!("filter clause {part:?} has no field"));
            }
            let v = value.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            out.push(Clause {
                field: field.to_string(),
                negate,
                value: v.to_string(),
            });
        }
        Ok(Self(out))
    }

    pub(crate) fn matches(&self, w: &Value) -> bool {
        self.0.iter().all(|c| {
            let got = lookup(w, &c.field);
            let eq = match got {
                Some(Value::String(s)) => *s == c.value,
                Some(Value::Number(n)) => n.to_string() == c.value,
                Some(Value::Bool(b)) => b.to_string() == c.value,
                _ => false,
            };
            eq != c.negate
        })
    }
}

fn split_and(s: &str) -> Vec<String> {
    // Split on the word AND outside quotes.
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            cur.push(c);
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
            cur.push(c);
            i += 1;
            continue;
        }
        if c.is_whitespace() && i + 4 < chars.len() {
            let word: String = chars[i + 1..i + 4].iter().collect();
            if word.eq_ignore_ascii_case("and") && chars[i + 4].is_whitespace() {
                parts.push(std::mem::take(&mut cur));
                i += 5;
                continue;
            }
        }
        cur.push(c);
        i += 1;
    }
    parts.push(cur);
    parts
}

pub(crate) fn lookup<'a>(w: &'a Value, field: &str) -> Option<&'a Value> {
    for map in ["metadata.labels.", "metadata.annotations."] {
        if let Some(key) = field.strip_prefix(map) {
            let m = &map[..map.len() - 1];
            let key = key.trim_matches(|c| c == '"' || c == '\'');
            let mut v = w;
            for seg in m.split('.') {
                v = v.get(seg)?;
            }
            return v.get(key);
        }
    }
    let mut v = w;
    for seg in field.split('.') {
        v = v.get(seg)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn clauses_and_labels() {
        let w =
            json!({"slug": "a-b", "metadata": {"labels": {"vk-node-name": "n1", "x.y/z": "q"}}});
        assert!(Filter::parse("slug = \"a-b\"").unwrap().matches(&w));
        assert!(!Filter::parse("slug=\"a\"").unwrap().matches(&w));
        assert!(
            Filter::parse("metadata.labels.vk-node-name='n1' AND slug != 'zz'")
                .unwrap()
                .matches(&w)
        );
        assert!(
            Filter::parse("metadata.labels.x.y/z = q")
                .unwrap()
                .matches(&w)
        );
        assert!(
            !Filter::parse("metadata.labels.vk-node-name = \"n2\"")
                .unwrap()
                .matches(&w)
        );
        assert!(Filter::parse("slug").is_err());
        assert!(Filter::parse("name = \"has and inside\"").unwrap().0.len() == 1);
    }
}
