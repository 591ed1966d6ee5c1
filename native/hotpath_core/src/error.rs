//! The error type shared by every area of the core.
//!
//! The NIF layer maps each variant to one Elixir convention:
//!
//! | variant                    | Elixir                                 |
//! |----------------------------|----------------------------------------|
//! | [`Error::InvalidArgument`] | raises `ArgumentError` with the message |
//! | [`Error::Malformed`]       | returns `{:error, {:malformed, msg}}`  |
//! | [`Error::Incompatible`]    | returns `{:error, {:incompatible, msg}}` |
//!
//! `InvalidArgument` is a caller bug (a wrong option, a NaN, a negative count); the others are
//! expected failures a correct program must handle (hostile bytes, mismatched layouts).

use std::fmt;

/// An error from the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An argument outside what the operation accepts. Raised as `ArgumentError`.
    #[error("{0}")]
    InvalidArgument(String),
    /// Input data (for example a serialized histogram) that cannot be decoded.
    #[error("malformed input: {0}")]
    Malformed(String),
    /// Two values that cannot be combined (for example histograms of different layouts).
    #[error("incompatible: {0}")]
    Incompatible(String),
}

impl Error {
    /// Builds an [`Error::InvalidArgument`] from anything printable.
    pub fn invalid(message: impl fmt::Display) -> Self {
        Error::InvalidArgument(message.to_string())
    }

    /// Builds an [`Error::Malformed`] from anything printable.
    pub fn malformed(message: impl fmt::Display) -> Self {
        Error::Malformed(message.to_string())
    }

    /// Builds an [`Error::Incompatible`] from anything printable.
    pub fn incompatible(message: impl fmt::Display) -> Self {
        Error::Incompatible(message.to_string())
    }

    /// True when the error is the caller's bug rather than an expected failure.
    pub fn is_argument_error(&self) -> bool {
        matches!(self, Error::InvalidArgument(_))
    }
}

/// `Result` with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that a float is finite, naming the argument in the error.
///
/// ```
/// use hotpath_core::error::finite;
/// assert_eq!(finite("value", 1.5), Ok(1.5));
/// assert!(finite("value", f64::NAN).unwrap_err().is_argument_error());
/// ```
pub fn finite(name: &str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Error::invalid(format!(
            "{name} must be a finite number, got {value}"
        )))
    }
}

/// Checks that an integer is positive (> 0), naming the argument in the error.
///
/// ```
/// use hotpath_core::error::positive;
/// assert_eq!(positive("limit", 3), Ok(3));
/// assert!(positive("limit", 0).is_err());
/// ```
pub fn positive(name: &str, value: i64) -> Result<u64> {
    if value > 0 {
        Ok(value as u64)
    } else {
        Err(Error::invalid(format!(
            "{name} must be a positive integer, got {value}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem() {
        assert_eq!(
            Error::invalid("limit must be > 0").to_string(),
            "limit must be > 0"
        );
        assert_eq!(
            Error::malformed("truncated header").to_string(),
            "malformed input: truncated header"
        );
        assert_eq!(
            Error::incompatible("different layouts").to_string(),
            "incompatible: different layouts"
        );
    }

    #[test]
    fn only_invalid_argument_is_an_argument_error() {
        assert!(Error::invalid("x").is_argument_error());
        assert!(!Error::malformed("x").is_argument_error());
        assert!(!Error::incompatible("x").is_argument_error());
    }

    #[test]
    fn finite_rejects_nan_and_infinities() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = finite("v", bad).unwrap_err();
            assert!(err.to_string().starts_with("v must be a finite number"));
        }
    }

    #[test]
    fn positive_rejects_zero_and_negatives() {
        assert!(positive("n", 0).is_err());
        assert!(positive("n", -5).is_err());
        assert_eq!(positive("n", i64::MAX), Ok(i64::MAX as u64));
    }
}
