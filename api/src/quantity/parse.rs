//! Parsing of the Kubernetes quantity grammar into exact milli-units.
//!
//! `<quantity> ::= <sign>? <digits> [ "." <digits> ] <suffix>`, where the suffix is a
//! decimal SI suffix, a binary SI suffix or a decimal exponent (`e3`, `E-3`). A lone `E`
//! is the exa suffix; `E` followed by a number is an exponent.

use thiserror::Error;

use super::{MAX_MILLIS, ParsedQuantity, QuantityFormat};

/// Significant digits accepted in a quantity's number; more cannot be meaningful.
const MAX_SIGNIFICANT_DIGITS: usize = 24;

/// Why a string is not a valid quantity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// The string is empty.
    #[error("quantity is empty")]
    Empty,
    /// The number part is missing or malformed.
    #[error(
        "quantity {0:?} must match the regular expression \
         '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (e.g. 500m, 2, 1.5, 16Gi, 1e3)"
    )]
    Malformed(String),
    /// The suffix is not one Kubernetes knows.
    #[error(
        "quantity {quantity:?} has unknown suffix {suffix:?} (use m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent like e3)"
    )]
    UnknownSuffix {
        /// The whole quantity.
        quantity: String,
        /// The suffix that was not recognised.
        suffix: String,
    },
    /// The magnitude exceeds 2^63-1 units.
    #[error("quantity is too large (the limit is 2^63-1 units)")]
    TooLarge,
    /// More significant digits than can be meaningful.
    #[error("quantity has more than {MAX_SIGNIFICANT_DIGITS} significant digits")]
    TooPrecise,
}

/// How the suffix scales the number: `value = number × 10^ten × 2^two`.
struct Scale {
    ten: i64,
    two: u32,
    format: QuantityFormat,
}

pub(super) fn parse(text: &str) -> Result<ParsedQuantity, QuantityError> {
    if text.is_empty() {
        return Err(QuantityError::Empty);
    }
    let malformed = || QuantityError::Malformed(text.to_string());
    let (negative, rest) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(malformed());
    }
    let scale = parse_suffix(text, suffix)?;

    // digits = whole ++ fraction, value = digits × 10^(ten - len(fraction)) milli-units
    // once the milli scale (3) is added.
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    let trimmed = digits.trim_start_matches('0');
    let significant = trimmed.trim_end_matches('0');
    if significant.is_empty() {
        return ParsedQuantity::from_millis(0, scale.format);
    }
    if significant.len() > MAX_SIGNIFICANT_DIGITS {
        return Err(QuantityError::TooPrecise);
    }
    let trailing_zeros = (trimmed.len() - significant.len()) as i64;
    let exponent = scale.ten - fraction.len() as i64 + trailing_zeros + 3;
    let mantissa: i128 = significant.parse().map_err(|_| malformed())?;
    let millis = scale_millis(mantissa, exponent, scale.two)?;
    let millis = if negative { -millis } else { millis };
    ParsedQuantity::from_millis(millis, scale.format)
}

/// `mantissa × 10^exponent × 2^two`, rounded up to a whole milli-unit.
fn scale_millis(mantissa: i128, exponent: i64, two: u32) -> Result<i128, QuantityError> {
    let numerator = mantissa
        .checked_mul(1i128 << two)
        .ok_or(QuantityError::TooLarge)?;
    if exponent >= 0 {
        let factor = u32::try_from(exponent)
            .ok()
            .and_then(|e| 10i128.checked_pow(e))
            .ok_or(QuantityError::TooLarge)?;
        let millis = numerator
            .checked_mul(factor)
            .ok_or(QuantityError::TooLarge)?;
        if millis > MAX_MILLIS {
            return Err(QuantityError::TooLarge);
        }
        return Ok(millis);
    }
    let divisor = u32::try_from(-exponent)
        .ok()
        .and_then(|e| 10i128.checked_pow(e));
    match divisor {
        // The divisor exceeds any numerator: a positive value below one milli-unit.
        None => Ok(1),
        Some(divisor) => {
            let millis = numerator / divisor + i128::from(numerator % divisor != 0);
            if millis > MAX_MILLIS {
                return Err(QuantityError::TooLarge);
            }
            Ok(millis)
        }
    }
}

fn parse_suffix(text: &str, suffix: &str) -> Result<Scale, QuantityError> {
    use QuantityFormat::{BinarySi, DecimalExponent, DecimalSi};
    let decimal = |ten| Scale {
        ten,
        two: 0,
        format: DecimalSi,
    };
    let binary = |two| Scale {
        ten: 0,
        two,
        format: BinarySi,
    };
    let scale = match suffix {
        "" => decimal(0),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix
                .strip_prefix(['e', 'E'])
                .filter(|e| {
                    let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                })
                .ok_or_else(|| QuantityError::UnknownSuffix {
                    quantity: text.to_string(),
                    suffix: suffix.to_string(),
                })?;
            // Exponents beyond ±10^6 are meaningless; clamp so arithmetic cannot overflow.
            let ten = exponent
                .parse::<i64>()
                .unwrap_or(if exponent.starts_with('-') {
                    i64::from(i32::MIN)
                } else {
                    i64::from(i32::MAX)
                })
                .clamp(-1_000_000, 1_000_000);
            Scale {
                ten,
                two: 0,
                format: DecimalExponent,
            }
        }
    };
    Ok(scale)
}
