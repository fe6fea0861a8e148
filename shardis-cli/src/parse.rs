//! Parsers of the command line's argument values: durations (`--duration 10s`) and sizes in
//! bytes (`--value-size 32`). They accept exactly what `humantime` and `usize`'s `FromStr`
//! accept; their errors are typed and short, and quote at most a few characters of the value.

use std::fmt;
use std::time::Duration;

/// The most characters of a value an error quotes.
const QUOTE_LIMIT: usize = 16;

/// Why an argument value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// The value is empty (or only spaces).
    Empty,
    /// A character with no place in a duration, at this character position (from 0).
    InvalidCharacter {
        /// Where.
        position: usize,
    },
    /// A number was expected at this character position.
    NumberExpected {
        /// Where.
        position: usize,
    },
    /// A number without a time unit.
    UnitNeeded,
    /// A word that is not a time unit.
    UnknownUnit {
        /// The word, at most [`QUOTE_LIMIT`] characters of it.
        unit: String,
    },
    /// The number is too large (or a duration finer than a nanosecond).
    OutOfRange,
    /// Not a whole number.
    NotAWholeNumber,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Empty => f.write_str("the value is empty"),
            ArgError::InvalidCharacter { position } => {
                write!(f, "invalid character at position {position}")
            }
            ArgError::NumberExpected { position } => {
                write!(f, "expected a number at position {position}")
            }
            ArgError::UnitNeeded => f.write_str("a time unit is needed, e.g. `10s` or `500ms`"),
            ArgError::UnknownUnit { unit } => write!(
                f,
                "unknown time unit `{unit}`; use ns, us, ms, s, min, h, d (e.g. `10s`, `500ms`)"
            ),
            ArgError::OutOfRange => f.write_str("the number is out of range"),
            ArgError::NotAWholeNumber => f.write_str("expected a whole number, e.g. `32`"),
        }
    }
}

impl std::error::Error for ArgError {}

/// A duration such as `10s`, `500ms`, `1min 30s` (as `humantime` reads it).
pub fn duration(value: &str) -> Result<Duration, ArgError> {
    use humantime::DurationError as E;
    humantime::parse_duration(value).map_err(|e| match e {
        E::InvalidCharacter(at) => ArgError::InvalidCharacter {
            position: char_position(value, at),
        },
        E::NumberExpected(at) => ArgError::NumberExpected {
            position: char_position(value, at),
        },
        E::UnknownUnit { unit, .. } if unit.is_empty() => ArgError::UnitNeeded,
        E::UnknownUnit { unit, .. } => ArgError::UnknownUnit {
            unit: excerpt(&unit),
        },
        E::NumberOverflow => ArgError::OutOfRange,
        E::Empty => ArgError::Empty,
    })
}

/// A size in bytes: a whole number such as `32`.
pub fn size(value: &str) -> Result<usize, ArgError> {
    use std::num::IntErrorKind as K;
    value.parse::<usize>().map_err(|e| match e.kind() {
        K::Empty => ArgError::Empty,
        K::PosOverflow | K::NegOverflow => ArgError::OutOfRange,
        _ => ArgError::NotAWholeNumber,
    })
}

/// The character position of byte offset `at` of `s`.
fn char_position(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s[..at].chars().count()
}

/// At most [`QUOTE_LIMIT`] characters of `s`, control characters escaped, `…` if cut.
fn excerpt(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(QUOTE_LIMIT)
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() || c == '`' {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    if s.chars().nth(QUOTE_LIMIT).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The longest message either parser may give.
    const MESSAGE_LIMIT: usize = 120;

    #[test]
    fn reads_what_it_always_read() {
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1min 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(size("32"), Ok(32));
        assert_eq!(size("+32"), Ok(32));
    }

    #[test]
    fn errors_are_typed_and_short() {
        assert_eq!(duration(""), Err(ArgError::Empty));
        assert_eq!(duration("10"), Err(ArgError::UnitNeeded));
        assert_eq!(
            duration("é10s!"),
            Err(ArgError::NumberExpected { position: 0 })
        );
        assert_eq!(
            duration("10parsecs"),
            Err(ArgError::UnknownUnit {
                unit: "parsecs".into()
            })
        );
        let long = format!("1{}", "x".repeat(100_000));
        let err = duration(&long).unwrap_err();
        assert!(err.to_string().len() < MESSAGE_LIMIT, "{err}");
        assert_eq!(
            duration("99999999999999999999999s"),
            Err(ArgError::OutOfRange)
        );
        assert_eq!(size(""), Err(ArgError::Empty));
        assert_eq!(size("-1"), Err(ArgError::NotAWholeNumber));
        assert_eq!(size("32k"), Err(ArgError::NotAWholeNumber));
        assert_eq!(size("99999999999999999999999"), Err(ArgError::OutOfRange));
    }

    proptest! {
        #[test]
        fn duration_accepts_what_humantime_does_and_errs_briefly(value in "\\PC{0,60}") {
            let ours = duration(&value);
            prop_assert_eq!(ours.clone().ok(), humantime::parse_duration(&value).ok());
            if let Err(e) = ours {
                prop_assert!(e.to_string().chars().count() <= MESSAGE_LIMIT, "{}", e);
            }
        }

        #[test]
        fn duration_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let value = String::from_utf8_lossy(&bytes);
            if let Err(e) = duration(&value) {
                prop_assert!(e.to_string().chars().count() <= MESSAGE_LIMIT, "{}", e);
            }
        }

        #[test]
        fn durations_with_units_parse(
            n in 0u64..1_000_000,
            unit in prop::sample::select(vec!["ns", "us", "ms", "s", "sec", "min", "m", "h", "d"]),
            space in prop::sample::select(vec!["", " "]),
        ) {
            let value = format!("{n}{space}{unit}");
            prop_assert!(duration(&value).is_ok(), "{}", value);
        }

        #[test]
        fn size_accepts_what_usize_does_and_errs_briefly(value in "\\PC{0,40}") {
            let ours = size(&value);
            prop_assert_eq!(ours.clone().ok(), value.parse::<usize>().ok());
            if let Err(e) = ours {
                let shown = e.to_string();
                prop_assert!(shown.chars().count() <= MESSAGE_LIMIT, "{}", shown);
                prop_assert!(value.chars().count() < 3 || !shown.contains(value.as_str()));
            }
        }

        #[test]
        fn sizes_round_trip(n in any::<usize>()) {
            prop_assert_eq!(size(&n.to_string()), Ok(n));
        }
    }
}
