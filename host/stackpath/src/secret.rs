//! A string that must never be printed: client secrets, bearer tokens, registry passwords and
//! Secret-sourced environment values.

use std::cell::RefCell;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A sensitive string. `Debug` and `Display` print `***`; the value is reachable only through
/// [`Secret::expose`], so a secret cannot end up in a log line or an error message by accident.
///
/// It serializes as the plain string, because it has to reach StackPath on the wire
/// (`secretValue`, registry `password`).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a sensitive value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The sensitive value itself. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (an empty secret is a configuration mistake worth reporting).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        COLLECTED.with_borrow_mut(|c| {
            if let Some(c) = c {
                c.push(self.clone());
            }
        });
        serializer.serialize_str(&self.0)
    }
}

thread_local! {
    /// The secrets serialized on this thread inside [`serialize_collecting`].
    static COLLECTED: RefCell<Option<Vec<Secret>>> = const { RefCell::new(None) };
}

/// Runs `serialize` and returns, with its result, every [`Secret`] it serialized: the values a
/// request body carries, to be masked if the server echoes them in an error. A thread-local
/// rather than a walk over the model, so no `Secret` field added to the model can be missed
/// (serialization is synchronous, so the thread is the call).
pub(crate) fn serialize_collecting<R>(serialize: impl FnOnce() -> R) -> (R, Vec<Secret>) {
    // Restores the outer collection even if `serialize` panics, so nesting stays correct.
    struct Restore(Option<Vec<Secret>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            COLLECTED.with_borrow_mut(|c| *c = outer);
        }
    }
    let outer = COLLECTED.with_borrow_mut(|c| c.replace(Vec::new()));
    let restore = Restore(outer);
    let result = serialize();
    let collected = COLLECTED.with_borrow_mut(|c| c.take()).unwrap_or_default();
    drop(restore);
    (result, collected)
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn collects_the_secrets_a_serialization_wrote() {
        #[derive(Serialize)]
        struct Body {
            plain: String,
            secret: Secret,
            nested: Vec<Option<Secret>>,
        }
        let body = Body {
            plain: "p".into(),
            secret: Secret::new("s1"),
            nested: vec![None, Some(Secret::new("s2"))],
        };
        let (json, secrets) = serialize_collecting(|| serde_json::to_string(&body).unwrap());
        assert_eq!(json, r#"{"plain":"p","secret":"s1","nested":[null,"s2"]}"#);
        let values: Vec<&str> = secrets.iter().map(Secret::expose).collect();
        assert_eq!(values, ["s1", "s2"]);
        // Outside a collection nothing is kept.
        let (_, none) = serialize_collecting(|| ());
        assert!(none.is_empty());
        serde_json::to_string(&body).unwrap();
        assert!(COLLECTED.with_borrow(Option::is_none));
    }

    #[test]
    fn serializes_as_plain_string() {
        let s = Secret::new("hunter2");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"hunter2\"");
        let back: Secret = serde_json::from_str("\"x\"").unwrap();
        assert_eq!(back.expose(), "x");
    }
}
