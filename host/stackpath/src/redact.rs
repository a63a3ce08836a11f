//! Keeping a call's secrets out of the errors it produces. A server may echo the request in an
//! error (`message`, `details`), and error text becomes logs, Events and pod status; so every
//! secret the request carried (client secret, bearer token, `Secret` values of the body) is
//! replaced by `***` in every text of the error, in the forms an echo may take, and each text
//! is capped in length.

use crate::error::Error;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// The most characters of one error text (a message, a string in `details`) that are kept.
pub(crate) const MAX_FIELD_CHARS: usize = 1024;

const MASK: &str = "***";

/// Fewest base64 characters of a secret worth matching inside a longer base64 text: shorter
/// runs would mask unrelated text by chance.
const MIN_BASE64_RUN: usize = 8;

/// The texts to mask for one call: each secret in every form an echo may show it in.
#[derive(Debug, Default)]
pub(crate) struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    needles: Vec<String>,
}

impl Redactor {
    /// A redactor for these secret values (empty ones, and ones made only of `*`, are skipped).
    pub(crate) fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles = Vec::new();
        for secret in secrets.into_iter() {
            // A secret of only `*` reads like the mask itself; there is nothing to hide it with.
            needles.extend(
                forms(secret)
                    .into_iter()
                    .filter(|f| f.chars().any(|c| c != '*')),
            );
        }
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Self { needles }
    }

    /// `err` with every secret masked and every text capped: one mapping over all its texts.
    pub(crate) fn apply(&self, err: Error) -> Error {
        err.map_text(|text| self.clean(text))
    }

    /// Masks every secret in `text`, then caps it to [`MAX_FIELD_CHARS`] (in that order, so a
    /// cut can never leave part of a secret readable).
    pub(crate) fn clean(&self, text: &mut String) {
        self.mask(text);
        cap(text, MAX_FIELD_CHARS);
    }

    /// Masks every secret in `text`, without capping (for a whole error body before it is
    /// parsed and quoted).
    pub(crate) fn mask(&self, text: &mut String) {
        // Until nothing is left: a mask next to a secret's `*` can form it anew ("aa*" with
        // secret "a*" becomes "a***"). Ends, since each replacement removes characters other
        // than `*` (needles made only of `*` are not kept).
        let mut changed = true;
        while changed {
            changed = false;
            for needle in &self.needles {
                if text.contains(needle.as_str()) {
                    *text = text.replace(needle.as_str(), MASK);
                    changed = true;
                }
            }
        }
    }

    /// Masks a body that was cut short at `limit` bytes: besides whole secrets, a secret's
    /// beginning at the very end (the rest of it was never read) is masked too.
    pub(crate) fn mask_truncated(&self, text: &mut String) {
        // A character cut in half reads as U+FFFD; what came before it may be a secret's start.
        while text.ends_with(char::REPLACEMENT_CHARACTER) {
            text.pop();
        }
        self.mask(text);
        let tail = self
            .needles
            .iter()
            .filter_map(|n| {
                // The longest proper prefix of this needle that `text` ends with.
                (1..n.len())
                    .rev()
                    .filter(|&i| n.is_char_boundary(i))
                    .find(|&i| text.ends_with(&n[..i]))
            })
            .max();
        if let Some(len) = tail {
            text.truncate(text.len() - len);
            text.push_str(MASK);
        }
    }
}

/// The forms a secret takes in an echo: as sent; JSON-escaped (once: the request body quoted
/// as text; twice: that text quoted again); form-urlencoded (the token request); and base64
/// (e.g. a registry `auth`), at each of the three alignments it can have inside a longer
/// base64 text.
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_owned()];
    let once = json_escape(secret);
    out.push(json_escape(&once));
    out.push(once);
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    out.push(form.replace('+', "%20"));
    out.push(form);
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for pad in 0..3usize {
            let mut bytes = vec![0u8; pad];
            bytes.extend_from_slice(secret.as_bytes());
            let encoded = engine.encode(&bytes);
            // Base64 character i covers bits [6i, 6i + 6); the secret covers bits
            // [8 pad, 8 (pad + len)). Keep only the characters that depend on the secret alone.
            let first = (8 * pad).div_ceil(6);
            let end = (8 * (pad + secret.len())) / 6;
            if end >= first + MIN_BASE64_RUN {
                out.push(encoded[first..end].to_owned());
            }
        }
    }
    out.retain(|f| !f.is_empty());
    out
}

fn json_escape(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
pub(crate) fn cap(text: &mut String, max: usize) {
    if let Some((at, _)) = text.char_indices().nth(max) {
        text.truncate(at);
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cleaned(r: &Redactor, s: &str) -> String {
        let mut s = s.to_owned();
        r.clean(&mut s);
        s
    }

    #[test]
    fn masks_raw_json_form_and_base64_forms() {
        let secret = "pa\"ss\\word/+ 1";
        let r = Redactor::new([secret]);
        let json = serde_json::to_string(secret).unwrap();
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for text in [
            format!("raw {secret} end"),
            format!("json {json} end"),
            format!("twice {}", serde_json::to_string(&json).unwrap()),
            format!("form client_secret={form}&x"),
            format!("b64 {}", STANDARD_NO_PAD.encode(format!("user:{secret}"))),
            format!("b64 {}", STANDARD_NO_PAD.encode(format!("us:{secret}"))),
            format!("b64 {}", URL_SAFE_NO_PAD.encode(format!("u:{secret}"))),
        ] {
            let out = cleaned(&r, &text);
            assert!(out.contains(MASK), "{text} -> {out}");
            assert!(!out.contains(secret) && !out.contains(&json[1..json.len() - 1]));
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                assert!(!out.contains(&engine.encode(secret)[1..10]), "{out}");
            }
        }
    }

    #[test]
    fn a_mask_cannot_rebuild_a_secret() {
        let r = Redactor::new(["a*"]);
        assert_eq!(cleaned(&r, "aa*"), "*****");
        assert_eq!(cleaned(&Redactor::new(["**"]), "a**b"), "a**b");
    }

    #[test]
    fn longest_secret_first_and_empty_ignored() {
        let r = Redactor::new(["abc", "abcdef", ""]);
        assert_eq!(cleaned(&r, "xabcdefx abc"), "x***x ***");
        assert_eq!(cleaned(&Redactor::new([""]), "text"), "text");
    }

    #[test]
    fn caps_after_masking() {
        let r = Redactor::new(["s3cr3t"]);
        let mut text = "a".repeat(MAX_FIELD_CHARS - 3);
        text.push_str("s3cr3t and more");
        let out = cleaned(&r, &text);
        assert_eq!(out.chars().count(), MAX_FIELD_CHARS + 1);
        assert!(out.ends_with('…') && !out.contains("s3c"), "{out}");
    }

    #[test]
    fn truncated_body_masks_a_cut_secret() {
        let r = Redactor::new(["s3cr3t-value"]);
        let mut text = "body ... s3cr".to_owned();
        r.mask_truncated(&mut text);
        assert_eq!(text, "body ... ***");
        let mut text = "nothing here".to_owned();
        r.mask_truncated(&mut text);
        assert_eq!(text, "nothing here");
    }

    proptest! {
        #[test]
        fn no_form_of_the_secret_survives(
            secret in "[ -~\\t\\n\u{e9}\u{1f512}]{1,40}",
            before in "[ -~]{0,50}",
            after in "[ -~]{0,50}",
            which in 0usize..4,
        ) {
            // A secret made only of `*` reads as the mask itself and is left (see `new`).
            prop_assume!(secret.chars().any(|c| c != '*'));
            let r = Redactor::new([secret.as_str()]);
            let json = serde_json::to_string(&secret).unwrap();
            let shown = match which {
                0 => secret.clone(),
                1 => json[1..json.len() - 1].to_owned(),
                2 => url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
                _ => serde_json::to_string(&json).unwrap(),
            };
            let out = cleaned(&r, &format!("{before}{shown}{after}"));
            prop_assert!(!out.contains(&shown), "{:?} survived in {:?}", shown, out);
            prop_assert!(out.chars().count() <= MAX_FIELD_CHARS + 1);
        }

        #[test]
        fn cap_never_panics_and_bounds(text in "\\PC{0,3000}", max in 0usize..2000) {
            let mut t = text.clone();
            cap(&mut t, max);
            prop_assert!(t.chars().count() <= max + 1);
            prop_assert!(text.starts_with(t.trim_end_matches('…')));
        }
    }
}
