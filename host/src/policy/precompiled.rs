//! A precompiled policy (`.cwasm`) is native code: the daemon maps it and jumps into it, with no
//! sandbox between it and the process that holds the StackPath credentials. So one is loaded
//! only when the operator named its SHA-256 (`--precompiled-policy-sha256`): whoever can change
//! the policy file (a ConfigMap, which live reload reads every 10 s) can swap in a `.wasm`, which
//! runs sandboxed, but not native code.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::error::PolicyError;

/// The SHA-256 of a file, as `sha256sum` prints it (64 hex digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

impl FromStr for Sha256Digest {
    type Err = String;

    /// 64 hex digits, optionally after `sha256:`.
    fn from_str(s: &str) -> Result<Self, String> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        let bad = || {
            format!(
                "`{s}` is not a SHA-256: give the 64 hex digits `sha256sum FILE.cwasm` prints \
                 (or `vk-stackpath policy compile` printed)"
            )
        };
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Sha256Digest(digest))
    }
}

/// Refuses native code the operator did not name.
pub(super) fn check(
    policy: &str,
    bytes: &[u8],
    trusted: &[Sha256Digest],
) -> Result<(), PolicyError> {
    let digest = Sha256Digest::of(bytes);
    if trusted.contains(&digest) {
        return Ok(());
    }
    Err(PolicyError::Load {
        policy: policy.to_string(),
        reason: format!(
            "it is a precompiled policy (.cwasm: native code, which runs outside the sandbox) \
             and its SHA-256 {digest} is not one the operator allowed; if you built this file \
             with `vk-stackpath policy compile`, pass --precompiled-policy-sha256={digest}, or \
             give the .wasm component instead"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_and_names_bad_input() {
        let d = Sha256Digest::of(b"policy");
        assert_eq!(d.to_string().parse::<Sha256Digest>().unwrap(), d);
        assert_eq!(format!("sha256:{d}").parse::<Sha256Digest>().unwrap(), d);
        assert_eq!(
            d.to_string()
                .to_uppercase()
                .parse::<Sha256Digest>()
                .unwrap(),
            d
        );
        for bad in [
            "",
            "abc",
            &"g".repeat(64),
            &"é".repeat(32),
            &d.to_string()[1..],
        ] {
            let err = bad.parse::<Sha256Digest>().unwrap_err();
            assert!(err.contains("sha256sum"), "{err}");
        }
    }

    #[test]
    fn only_named_native_code_passes() {
        let bytes = b"native code";
        let err = check("p.cwasm", bytes, &[Sha256Digest::of(b"other")]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("policy p.cwasm: cannot load it"), "{msg}");
        assert!(
            msg.contains(&format!(
                "--precompiled-policy-sha256={}",
                Sha256Digest::of(bytes)
            )),
            "{msg}"
        );
        check("p.cwasm", bytes, &[Sha256Digest::of(bytes)]).unwrap();
    }
}
