//! Kubernetes resource quantities (`500m`, `16Gi`, `1e3`) as exact integers.
//!
//! A [`ParsedQuantity`] holds the value in thousandths of a unit ("milli-units"), which
//! is Kubernetes' own precision: `cpu: 500m` is 500 milli-units, `memory: 16Gi` is
//! 17,179,869,184,000 milli-units (use [`ParsedQuantity::ceil_units`] for bytes). Parsing
//! follows `k8s.io/apimachinery/pkg/api/resource`: digits beyond the third decimal place
//! are rounded up (away from zero), and [`ParsedQuantity`]'s `Display` writes the same
//! canonical form Kubernetes does (`1.5Gi` → `1536Mi`, `1.5` → `1500m`). Unlike Kubernetes,
//! values whose magnitude exceeds 2^63-1 units are rejected with an error instead of being
//! silently capped.

mod format;
mod parse;

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use parse::QuantityError;

/// Largest magnitude a quantity may have, in milli-units ((2^63-1) units).
pub const MAX_MILLIS: i128 = i64::MAX as i128 * 1000;

/// Which notation a quantity was written in; canonical formatting keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// Decimal SI suffixes: `m`, none, `k`, `M`, `G`, `T`, `P`, `E`.
    DecimalSi,
    /// Binary SI suffixes: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`.
    BinarySi,
    /// A decimal exponent: `1e3`, `5E-3`.
    DecimalExponent,
}

/// An exactly represented resource quantity.
///
/// Equality, ordering and hashing compare values only: `1Ki == 1024`.
#[derive(Debug, Clone, Copy)]
pub struct ParsedQuantity {
    millis: i128,
    format: QuantityFormat,
}

impl ParsedQuantity {
    /// Zero, written `0`.
    pub const ZERO: ParsedQuantity = ParsedQuantity {
        millis: 0,
        format: QuantityFormat::DecimalSi,
    };

    /// Parses a quantity string such as `500m`, `2`, `1.5`, `16Gi`, `1e3` or `100M`.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        parse::parse(text)
    }

    /// A quantity of `millis` thousandths of a unit, written in `format`.
    pub fn from_millis(millis: i128, format: QuantityFormat) -> Result<Self, QuantityError> {
        if millis.abs() > MAX_MILLIS {
            return Err(QuantityError::TooLarge);
        }
        Ok(Self { millis, format })
    }

    /// A whole number of units (cores, bytes, GPUs), written in decimal SI.
    pub fn from_units(units: i64) -> Self {
        Self {
            millis: i128::from(units) * 1000,
            format: QuantityFormat::DecimalSi,
        }
    }

    /// The value in thousandths of a unit.
    pub fn millis(&self) -> i128 {
        self.millis
    }

    /// The value in whole units, rounded up (towards positive infinity): bytes for memory.
    pub fn ceil_units(&self) -> i128 {
        self.millis.div_euclid(1000) + i128::from(self.millis.rem_euclid(1000) != 0)
    }

    /// Whether the value is a whole number of units.
    pub fn is_whole(&self) -> bool {
        self.millis % 1000 == 0
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.millis < 0
    }

    /// The notation the quantity was written in.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// The sum of two quantities, keeping this one's format; `None` when out of range.
    pub fn checked_add(&self, other: &Self) -> Option<Self> {
        let millis = self.millis.checked_add(other.millis)?;
        Self::from_millis(millis, self.format).ok()
    }

    /// This quantity times a whole factor; `None` when out of range.
    pub fn checked_mul(&self, factor: i64) -> Option<Self> {
        let millis = self.millis.checked_mul(i128::from(factor))?;
        Self::from_millis(millis, self.format).ok()
    }

    /// The canonical `k8s-openapi` quantity string for this value.
    pub fn to_quantity(&self) -> Quantity {
        Quantity(self.to_string())
    }
}

/// Parses a `k8s-openapi` [`Quantity`].
pub fn parse_quantity(quantity: &Quantity) -> Result<ParsedQuantity, QuantityError> {
    ParsedQuantity::parse(&quantity.0)
}

impl FromStr for ParsedQuantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl TryFrom<&Quantity> for ParsedQuantity {
    type Error = QuantityError;

    fn try_from(quantity: &Quantity) -> Result<Self, Self::Error> {
        parse_quantity(quantity)
    }
}

impl fmt::Display for ParsedQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format::canonical(self.millis, self.format))
    }
}

impl serde::Serialize for ParsedQuantity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ParsedQuantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl PartialEq for ParsedQuantity {
    fn eq(&self, other: &Self) -> bool {
        self.millis == other.millis
    }
}

impl Eq for ParsedQuantity {}

impl PartialOrd for ParsedQuantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ParsedQuantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.millis.cmp(&other.millis)
    }
}

impl Hash for ParsedQuantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.millis.hash(state);
    }
}

#[cfg(test)]
mod tests;
