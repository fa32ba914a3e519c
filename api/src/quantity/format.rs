//! Canonical formatting of quantities, as `k8s.io/apimachinery` writes them.
//!
//! The largest suffix that keeps the number whole is chosen, in the notation the
//! quantity was written in; binary values that are fractional or smaller than 1024
//! in magnitude fall back to decimal SI, as in Kubernetes.

use super::QuantityFormat;

const DECIMAL_SUFFIXES: [(u32, &str); 7] = [
    (18, "E"),
    (15, "P"),
    (12, "T"),
    (9, "G"),
    (6, "M"),
    (3, "k"),
    (0, ""),
];

const BINARY_SUFFIXES: [(u32, &str); 6] = [
    (60, "Ei"),
    (50, "Pi"),
    (40, "Ti"),
    (30, "Gi"),
    (20, "Mi"),
    (10, "Ki"),
];

/// The canonical text of `millis` thousandths of a unit written in `format`.
pub(super) fn canonical(millis: i128, format: QuantityFormat) -> String {
    if millis == 0 {
        return "0".to_string();
    }
    let whole = millis % 1000 == 0;
    let units = millis / 1000;
    match format {
        QuantityFormat::BinarySi if whole && units.abs() >= 1024 => {
            for (shift, suffix) in BINARY_SUFFIXES {
                let factor = 1i128 << shift;
                if units % factor == 0 {
                    return format!("{}{suffix}", units / factor);
                }
            }
            units.to_string()
        }
        QuantityFormat::DecimalExponent => decimal(millis, |e| match e {
            0 => String::new(),
            -3 => "e-3".to_string(),
            e => format!("e{e}"),
        }),
        _ => decimal(millis, |e| {
            DECIMAL_SUFFIXES
                .iter()
                .find(|(exp, _)| i64::from(*exp) == e)
                .map_or("m", |(_, suffix)| suffix)
                .to_string()
        }),
    }
}

/// Writes `millis` with the largest power-of-1000 exponent that keeps it whole.
fn decimal(millis: i128, suffix: impl Fn(i64) -> String) -> String {
    if millis % 1000 != 0 {
        return format!("{millis}{}", suffix(-3));
    }
    let units = millis / 1000;
    for (exp, _) in DECIMAL_SUFFIXES {
        let factor = 10i128.pow(exp);
        if units % factor == 0 {
            return format!("{}{}", units / factor, suffix(i64::from(exp)));
        }
    }
    units.to_string()
}
