//! Python-compatible scalar formatting and parsing.
//!
//! The upstream charm renders values with Python's `str()` (Jinja's `{{ value }}`, f-strings)
//! and parses numbers with Python's `int()`. Other units, Patroni and the PostgreSQL server see
//! the resulting text, so the Rust port reproduces those conversions exactly instead of using
//! Rust's own formatting (which, for example, prints `2.0_f64` as `2` and `true` as `true`).

/// Python's `str(bool)`: `True` or `False`.
pub fn bool_str(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// Python's `repr(float)` / `str(float)` (identical since Python 3.2).
///
/// Python prints the shortest digit string that round-trips, in fixed notation when the
/// decimal exponent is in `-4..16` (always with a fractional part, `2.0`), and otherwise in
/// scientific notation with a signed, at least two-digit exponent (`1e-05`, `1e+16`).
pub fn float_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        }
        .to_owned();
    }
    // In Python's fixed range, Rust's `{}` prints the same shortest round-trip digits, without
    // an exponent: only the `.0` of an integral value is missing. One format instead of the
    // general path's several (it runs for every float in `patroni.yml` and the config hash).
    // The bounds are exact: a double below 1e-4 (or 1e16) has its shortest digits below too.
    if (1e-4..1e16).contains(&value.abs()) {
        let mut fixed = format!("{value}");
        if !fixed.contains('.') {
            fixed.push_str(".0");
        }
        return fixed;
    }
    scientific_repr(value)
}

/// [`float_repr`] from `{:e}`'s digits and exponent: every finite non-zero value, in either
/// notation.
fn scientific_repr(value: f64) -> String {
    // Rust's `{:e}` also yields the shortest round-trip digits, e.g. `1.2345e3`, `5e-3`.
    let sci = format!("{:e}", value.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if value < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let body = if exp < 0 {
            // 0.000ddd
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        } else if exp + 1 >= n {
            // integral: ddd000.0
            format!("{}{}.0", digits, "0".repeat((exp + 1 - n) as usize))
        } else {
            let (int_part, frac) = digits.split_at((exp + 1) as usize);
            format!("{int_part}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let mantissa = if digits.len() == 1 {
            digits
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

/// Python's `int(text)` for base-10 strings: surrounding whitespace, an optional sign and
/// single underscores between digits are accepted (`" 1_000 "` is 1000). Returns `None` where
/// Python raises `ValueError`, and also when the value does not fit an `i64`.
pub fn parse_int(text: &str) -> Option<i64> {
    let trimmed = text.trim();
    let (negative, digits) = match trimmed.as_bytes().first()? {
        b'-' => (true, &trimmed[1..]),
        b'+' => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut value: i64 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(10)? as i64;
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(d)?
        } else {
            value.checked_add(d)?
        };
    }
    Some(value)
}

/// Python's `float(text)` for the forms a config value can take: surrounding whitespace,
/// decimal or scientific notation, `inf`/`nan`. Returns `None` where Python raises.
pub fn parse_float(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.contains('_') {
        // Python allows `1_0.5`; config values never use it, so reject rather than guess.
        return None;
    }
    let lower = trimmed.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    match unsigned {
        "inf" | "infinity" | "nan" => {}
        _ if unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {}
        _ => return None,
    }
    trimmed.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        // Expected strings are what CPython prints for repr(x).
        let cases: &[(f64, &str)] = &[
            (0.005, "0.005"),
            (0.0025, "0.0025"),
            (2.0, "2.0"),
            (100000.0, "100000.0"),
            (500000.0, "500000.0"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e16, "1e+16"),
            (1.0e15, "1000000000000000.0"),
            (123456789.125, "123456789.125"),
            (-1.0, "-1.0"),
            (f64::INFINITY, "inf"),
            (0.0, "0.0"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (2.5e-7, "2.5e-07"),
        ];
        for (value, expected) in cases {
            assert_eq!(float_repr(*value), *expected, "repr({value:?})");
        }
    }

    /// The fixed-range shortcut prints what the general path prints, at the range's edges and
    /// across magnitudes, signs and digit counts.
    #[test]
    // The largest f64 below 1e16, written out: the digits are the point.
    #[allow(clippy::excessive_precision)]
    fn the_fixed_range_shortcut_agrees_with_the_general_path() {
        let mut values = vec![1e-4, 1e16, 9.999999999999999e15, 0.3 - 0.2, 0.1 + 0.2];
        values.push(f64::from_bits(1e-4f64.to_bits() - 1));
        values.push(f64::from_bits(1e-4f64.to_bits() + 1));
        values.push(f64::from_bits(1e16f64.to_bits() - 1));
        // A fixed xorshift walk over doubles between 1e-6 and 1e18.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mantissa = (x >> 11) as f64 / (1u64 << 53) as f64;
            let exp = (x % 25) as i32 - 6;
            values.push(mantissa * 10f64.powi(exp));
            values.push(((x >> 40) as f64) * 10f64.powi(exp - 8));
        }
        for v in values {
            for v in [v, -v] {
                if v != 0.0 {
                    assert_eq!(float_repr(v), scientific_repr(v), "repr({v:?})");
                }
            }
        }
    }

    #[test]
    fn parse_int_follows_python_int() {
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int(" -7 "), Some(-7));
        assert_eq!(parse_int("+3"), Some(3));
        assert_eq!(parse_int("1_000"), Some(1000));
        assert_eq!(parse_int("1__0"), None);
        assert_eq!(parse_int("_1"), None);
        assert_eq!(parse_int("500m"), None);
        assert_eq!(parse_int("1.5"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("-"), None);
        assert_eq!(parse_int("99999999999999999999"), None);
        assert_eq!(parse_int("-9223372036854775808"), Some(i64::MIN));
    }

    #[test]
    fn parse_float_follows_python_float() {
        assert_eq!(parse_float("0.5"), Some(0.5));
        assert_eq!(parse_float(" 2 "), Some(2.0));
        assert_eq!(parse_float("1e3"), Some(1000.0));
        assert_eq!(parse_float(".5"), Some(0.5));
        assert_eq!(parse_float("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("abc"), None);
        assert_eq!(parse_float(""), None);
    }

    #[test]
    fn bool_str_is_python_capitalised() {
        assert_eq!(bool_str(true), "True");
        assert_eq!(bool_str(false), "False");
    }
}
