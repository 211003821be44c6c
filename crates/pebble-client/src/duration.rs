//! Go-syntax durations (`"1m30s"`, `"500ms"`), as Pebble reads and writes them in layers.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A [`Duration`] that serialises the way Go's `time.Duration.String()` does and parses what
/// Go's `time.ParseDuration` accepts (non-negative values only), so a plan read back from
/// Pebble compares equal to the layer that was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        GoDuration(Duration::from_secs(secs))
    }

    /// Milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        GoDuration(Duration::from_millis(ms))
    }

    /// The wrapped duration.
    pub const fn as_duration(self) -> Duration {
        self.0
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        GoDuration(d)
    }
}

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Self {
        d.0
    }
}

/// Why a string is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

const NANOS_PER: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000), // U+00B5 micro sign
    ("μs", 1_000), // U+03BC Greek mu
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

impl FromStr for GoDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseDurationError {
            input: input.to_owned(),
            reason,
        };
        let mut s = input.strip_prefix('+').unwrap_or(input);
        if s.starts_with('-') {
            // std::time::Duration cannot be negative, and Pebble rejects them anyway.
            return Err(err("negative durations are not supported"));
        }
        if s == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        if s.is_empty() {
            return Err(err("empty"));
        }
        let mut total: u128 = 0;
        while !s.is_empty() {
            let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
            let (int_part, rest) = s.split_at(int_len);
            let (frac_part, rest) = match rest.strip_prefix('.') {
                Some(r) => {
                    let n = r.bytes().take_while(u8::is_ascii_digit).count();
                    r.split_at(n)
                }
                None => ("", rest),
            };
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(err("expected a number"));
            }
            let unit_len = rest
                .char_indices()
                .find(|(_, c)| c.is_ascii_digit() || *c == '.')
                .map_or(rest.len(), |(i, _)| i);
            let (unit, rest) = rest.split_at(unit_len);
            let per = NANOS_PER
                .iter()
                .find(|(u, _)| *u == unit)
                .map(|(_, n)| *n)
                .ok_or_else(|| {
                    err(if unit.is_empty() {
                        "missing unit"
                    } else {
                        "unknown unit"
                    })
                })?;
            let int: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| err("number too large"))?
            };
            let mut nanos = int.checked_mul(per).ok_or_else(|| err("overflow"))?;
            // Fraction: scale digit by digit so no precision is lost to floats.
            let mut scale = per;
            for d in frac_part.bytes() {
                scale /= 10;
                if scale == 0 {
                    break;
                }
                nanos += u128::from(d - b'0') * scale;
            }
            total = total.checked_add(nanos).ok_or_else(|| err("overflow"))?;
            s = rest;
        }
        // Go's Duration is an int64 of nanoseconds.
        if total > i64::MAX as u128 {
            return Err(err("overflow"));
        }
        Ok(GoDuration(Duration::from_nanos(total as u64)))
    }
}

impl fmt::Display for GoDuration {
    /// Same text as Go's `time.Duration.String()`: `0s`, `1.5µs`, `500ms`, `1m30s`, `1h0m0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000_000_000 {
            let (unit, per) = if nanos < 1_000 {
                ("ns", 1)
            } else if nanos < 1_000_000 {
                ("µs", 1_000)
            } else {
                ("ms", 1_000_000)
            };
            write_fraction(f, nanos / per, nanos % per, per)?;
            return f.write_str(unit);
        }
        let hours = nanos / 3_600_000_000_000;
        let rem = nanos % 3_600_000_000_000;
        let minutes = rem / 60_000_000_000;
        let rem = rem % 60_000_000_000;
        if hours > 0 {
            write!(f, "{hours}h{minutes}m")?;
        } else if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        write_fraction(f, rem / 1_000_000_000, rem % 1_000_000_000, 1_000_000_000)?;
        f.write_str("s")
    }
}

/// Writes `whole[.frac]` with the fraction's trailing zeros trimmed.
fn write_fraction(f: &mut fmt::Formatter<'_>, whole: u128, frac: u128, per: u128) -> fmt::Result {
    write!(f, "{whole}")?;
    if frac == 0 {
        return Ok(());
    }
    let width = per.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    write!(f, ".{}", digits.trim_end_matches('0'))
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Duration {
        s.parse::<GoDuration>().unwrap().0
    }

    #[test]
    fn parses_go_syntax() {
        assert_eq!(p("0"), Duration::ZERO);
        assert_eq!(p("1s"), Duration::from_secs(1));
        assert_eq!(p("1.5s"), Duration::from_millis(1500));
        assert_eq!(p("500ms"), Duration::from_millis(500));
        assert_eq!(p("1m30s"), Duration::from_secs(90));
        assert_eq!(p("1h0m0s"), Duration::from_secs(3600));
        assert_eq!(p("2µs"), Duration::from_micros(2));
        assert_eq!(p("2us"), Duration::from_micros(2));
        assert_eq!(p(".5s"), Duration::from_millis(500));
        assert_eq!(p("4.000s"), Duration::from_secs(4));
        assert_eq!(p("1h2m3.004005006s"), Duration::new(3723, 4_005_006));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "s", "1", "1x", "-1s", "1.s.", "abc", "9999999999999h"] {
            assert!(
                bad.parse::<GoDuration>().is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn formats_like_go() {
        let f = |d: Duration| GoDuration(d).to_string();
        assert_eq!(f(Duration::ZERO), "0s");
        assert_eq!(f(Duration::from_nanos(3)), "3ns");
        assert_eq!(f(Duration::from_nanos(1500)), "1.5µs");
        assert_eq!(f(Duration::from_millis(500)), "500ms");
        assert_eq!(f(Duration::from_millis(1500)), "1.5s");
        assert_eq!(f(Duration::from_secs(10)), "10s");
        assert_eq!(f(Duration::from_secs(90)), "1m30s");
        assert_eq!(f(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(f(Duration::new(3723, 4_000_000)), "1h2m3.004s");
    }

    #[test]
    fn format_parse_round_trip() {
        for d in [
            1u64,
            999,
            1_000,
            1_234_567,
            1_000_000_000,
            61_500_000_000,
            7_322_000_000_001,
        ] {
            let g = GoDuration(Duration::from_nanos(d));
            assert_eq!(g.to_string().parse::<GoDuration>().unwrap(), g, "{g}");
        }
    }
}
