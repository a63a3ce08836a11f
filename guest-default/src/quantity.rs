//! Kubernetes resource quantities, parsed exactly.
//!
//! Grammar (k8s.io/apimachinery/pkg/api/resource): `<sign?><digits>[.<digits>]<suffix>` where the
//! suffix is a binary SI one (`Ki` … `Ei`), a decimal SI one (`n u m "" k M G T P E`) or a decimal
//! exponent (`e3`, `E-2`). A value is kept as `mantissa × 10^exp10 × 2^exp2` with an integer
//! mantissa, so comparisons against sizes never round (`0.1` cpu is not 0.1000000000000000055).

use crate::prelude::*;

use core::cmp::Ordering;
use core::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityError(pub String);

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Beyond these the value is astronomically larger or smaller than any size we compare with;
/// limits keep all arithmetic inside u128.
const MAX_DIGITS: usize = 30;
const MAX_EXP10: i32 = 60;

impl Quantity {
    /// A whole number of units (cores, bytes).
    pub const fn units(n: u128) -> Self {
        Quantity {
            mantissa: n,
            exp10: 0,
            exp2: 0,
        }
    }

    /// `n × 2^30` (GiB).
    pub const fn gib(n: u128) -> Self {
        Quantity {
            mantissa: n,
            exp10: 0,
            exp2: 30,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        let bad = |why: &str| {
            QuantityError(format!(
                "`{input}` is not a Kubernetes quantity ({why}); use a number with an optional \
                 suffix, e.g. `500m`, `1.5`, `512Mi`, `2G` or `1e3`"
            ))
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (negative, s) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        // Split the number from the suffix: digits and at most one dot.
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(num_end);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if frac_part.contains('.') {
            return Err(bad("more than one decimal point"));
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad("no digits"));
        }
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let significant = digits.trim_end_matches('0');
        let trailing_zeros = digits.len() - significant.len();
        if significant.len() > MAX_DIGITS {
            return Err(bad("too many significant digits"));
        }
        let mantissa: u128 = if significant.is_empty() {
            0
        } else {
            significant.parse().map_err(|_| bad("invalid digits"))?
        };
        let mut exp10 = trailing_zeros as i32 - frac_part.len() as i32;
        let mut exp2 = 0u32;
        match suffix {
            "" => {}
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            other if other.starts_with(['e', 'E']) => {
                let exp: i32 = other[1..].parse().map_err(|_| bad("invalid exponent"))?;
                if !(-1000..=1000).contains(&exp) {
                    return Err(bad("exponent out of range"));
                }
                exp10 += exp;
            }
            _ => return Err(bad("unknown suffix")),
        }
        if negative && mantissa != 0 {
            return Err(QuantityError(format!(
                "`{input}` is negative; resource quantities must be zero or more"
            )));
        }
        if mantissa == 0 {
            return Ok(Quantity::units(0));
        }
        if exp10 > MAX_EXP10 {
            return Err(bad("too large"));
        }
        Ok(Quantity {
            mantissa,
            exp10: exp10.max(-MAX_EXP10 - MAX_DIGITS as i32),
            exp2,
        })
    }

    /// `⌈value × 10^exp10⌉`, or `None` beyond u128: Kubernetes' `Value()` (`exp10` 0) and
    /// `MilliValue()` (`exp10` 3), which both round up.
    pub fn ceil_scaled(&self, exp10: i32) -> Option<u128> {
        if self.mantissa == 0 {
            return Some(0);
        }
        let e = self.exp10.checked_add(exp10)?;
        if e >= 0 {
            return scale(self.mantissa, e.unsigned_abs(), self.exp2);
        }
        let numerator = scale(self.mantissa, 0, self.exp2)?;
        // A divisor beyond u128 leaves less than 1: the value rounds up to 1.
        match 10u128.checked_pow(e.unsigned_abs()) {
            Some(d) => Some(numerator.div_ceil(d)),
            None => Some(1),
        }
    }

    /// Exact comparison: both sides are brought to a common integer scale.
    pub fn cmp_exact(&self, other: &Quantity) -> Ordering {
        if self.mantissa == 0 || other.mantissa == 0 {
            return self.mantissa.cmp(&other.mantissa);
        }
        // a = ma × 10^ea × 2^ba ; b = mb × 10^eb × 2^bb. Move the smaller exponents to the
        // other side so that all exponents are non-negative.
        let e = self.exp10.min(other.exp10);
        let b2 = self.exp2.min(other.exp2);
        let lhs = scale(self.mantissa, (self.exp10 - e) as u32, self.exp2 - b2);
        let rhs = scale(other.mantissa, (other.exp10 - e) as u32, other.exp2 - b2);
        match (lhs, rhs) {
            (Some(l), Some(r)) => l.cmp(&r),
            // Overflow means "beyond u128": decide by magnitude (number of decimal digits).
            _ => magnitude(self).total_cmp(&magnitude(other)),
        }
    }
}

fn scale(m: u128, p10: u32, p2: u32) -> Option<u128> {
    let m = m.checked_mul(10u128.checked_pow(p10)?)?;
    m.checked_mul(1u128.checked_shl(p2)?)
}

/// log10 of the value; only used to order values that do not fit u128, which differ by many
/// orders of magnitude from anything they are compared with.
fn magnitude(q: &Quantity) -> f64 {
    // libm: no_std has no float log.
    libm::log10(q.mantissa as f64)
        + f64::from(q.exp10)
        + f64::from(q.exp2) * core::f64::consts::LOG10_2
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp_exact(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn millis_and_decimals_compare_exactly() {
        assert_eq!(q("500m").cmp_exact(&q("0.5")), Ordering::Equal);
        assert_eq!(q("1500m").cmp_exact(&q("1.5")), Ordering::Equal);
        assert_eq!(q("1001m").cmp_exact(&Quantity::units(1)), Ordering::Greater);
        assert_eq!(q("1e3").cmp_exact(&q("1k")), Ordering::Equal);
        assert_eq!(q("1E-3").cmp_exact(&q("1m")), Ordering::Equal);
        assert_eq!(q("0.1").cmp_exact(&q("100m")), Ordering::Equal);
    }

    #[test]
    fn binary_and_decimal_si_differ() {
        assert_eq!(q("2Gi").cmp_exact(&Quantity::gib(2)), Ordering::Equal);
        assert_eq!(q("2G").cmp_exact(&Quantity::gib(2)), Ordering::Less);
        assert_eq!(q("2147483648").cmp_exact(&q("2Gi")), Ordering::Equal);
        assert_eq!(q("2147483649").cmp_exact(&q("2Gi")), Ordering::Greater);
        assert_eq!(q("2048Mi").cmp_exact(&q("2Gi")), Ordering::Equal);
        assert_eq!(q("1.5Gi").cmp_exact(&q("1536Mi")), Ordering::Equal);
    }

    #[test]
    fn rejects_garbage_with_a_helpful_message() {
        for bad in ["", "abc", "1.2.3", "1Zi", "--1", "1e", "1ee3", ".", "1 Gi"] {
            let err = Quantity::parse(bad).unwrap_err();
            assert!(err.0.contains("Kubernetes quantity"), "{bad}: {err}");
        }
        assert!(Quantity::parse("-1").unwrap_err().0.contains("negative"));
        assert!(Quantity::parse("-0").is_ok());
    }

    #[test]
    fn values_and_millis_round_up_as_kubernetes_does() {
        assert_eq!(q("500m").ceil_scaled(0), Some(1));
        assert_eq!(q("500m").ceil_scaled(3), Some(500));
        assert_eq!(q("0.1m").ceil_scaled(3), Some(1));
        assert_eq!(q("1.5Gi").ceil_scaled(0), Some(1_610_612_736));
        assert_eq!(q("1Ki").ceil_scaled(3), Some(1_024_000));
        assert_eq!(q("1e-50").ceil_scaled(0), Some(1));
        assert_eq!(q("0").ceil_scaled(3), Some(0));
        assert_eq!(q("9e50").ceil_scaled(0), None);
    }

    #[test]
    fn huge_and_tiny_values_order_without_overflow() {
        assert_eq!(q("9e50").cmp_exact(&Quantity::gib(256)), Ordering::Greater);
        assert_eq!(q("1e-50").cmp_exact(&Quantity::units(1)), Ordering::Less);
        assert_eq!(q("8Ei").cmp_exact(&Quantity::gib(256)), Ordering::Greater);
    }
}
