//! Table tests for quantity parsing, rounding, formatting and comparison.

use super::*;

fn millis(text: &str) -> i128 {
    match ParsedQuantity::parse(text) {
        Ok(q) => q.millis(),
        Err(e) => panic!("{text:?} failed to parse: {e}"),
    }
}

#[test]
fn parses_to_exact_millis() {
    let table: &[(&str, i128)] = &[
        ("0", 0),
        ("500m", 500),
        ("2", 2_000),
        ("1.5", 1_500),
        ("+1.5", 1_500),
        ("-1.5", -1_500),
        (".5", 500),
        ("5.", 5_000),
        ("16Gi", 16 * (1 << 30) * 1000),
        ("1Ki", 1_024_000),
        ("1.5Gi", 1_610_612_736_000),
        ("1e3", 1_000_000),
        ("1E3", 1_000_000),
        ("1e-3", 1),
        ("2.5e+2", 250_000),
        ("100M", 100_000_000_000),
        ("128974848", 128_974_848_000),
        ("1k", 1_000_000),
        ("1E", 1_000_000_000_000_000_000_000),
        ("0.1m", 1),
        ("0.0001", 1),
        ("-0.1m", -1),
        ("1.0001", 1_001),
        ("0.0001Ki", 103),
        ("0000001", 1_000),
        ("1.000000000000000000000000000000000000", 1_000),
        ("9223372036854775807", MAX_MILLIS),
        ("1e-999999999999", 1),
    ];
    for (text, expected) in table {
        assert_eq!(millis(text), *expected, "{text}");
    }
}

#[test]
fn rejects_malformed_quantities() {
    let table: &[(&str, &str)] = &[
        ("", "quantity is empty"),
        ("abc", "must match"),
        ("m", "must match"),
        ("1.2.3", "must match"),
        ("--1", "must match"),
        (" 1", "must match"),
        ("1 ", "unknown suffix"),
        ("1x", "unknown suffix \"x\""),
        ("1KI", "unknown suffix"),
        ("1ki", "unknown suffix"),
        ("1e", "unknown suffix"),
        ("1e+", "unknown suffix"),
        ("1Gib", "unknown suffix"),
        ("9223372036854775808", "too large"),
        ("10E", "too large"),
        ("8Ei", "too large"),
        ("1e999999999999", "too large"),
        ("1234567890123456789012345", "significant digits"),
    ];
    for (text, message) in table {
        match ParsedQuantity::parse(text) {
            Ok(q) => panic!("{text:?} parsed as {q:?}"),
            Err(e) => assert!(e.to_string().contains(message), "{text:?}: {e}"),
        }
    }
}

#[test]
fn formats_canonically() {
    let table: &[(&str, &str)] = &[
        ("0", "0"),
        ("0Gi", "0"),
        ("500m", "500m"),
        ("1.5", "1500m"),
        ("1000", "1k"),
        ("1500", "1500"),
        ("100M", "100M"),
        ("128974848", "128974848"),
        ("16Gi", "16Gi"),
        ("1.5Gi", "1536Mi"),
        ("1024", "1024"),
        ("0.5Ki", "512"),
        ("1025Ki", "1025Ki"),
        ("1e3", "1e3"),
        ("1.5e3", "1500"),
        ("1e-3", "1e-3"),
        ("-2k", "-2k"),
        ("-1Ki", "-1Ki"),
    ];
    for (text, canonical) in table {
        let parsed = ParsedQuantity::parse(text).map(|q| q.to_string());
        assert_eq!(parsed.as_deref(), Ok(*canonical), "{text}");
        let again = ParsedQuantity::parse(canonical).map(|q| q.millis());
        assert_eq!(again, Ok(millis(text)), "{canonical} must parse back");
    }
}

#[test]
fn compares_by_value() {
    let q = |t: &str| ParsedQuantity::parse(t).expect("valid quantity");
    assert_eq!(q("1Ki"), q("1024"));
    assert_eq!(q("1k"), q("1e3"));
    assert!(q("500m") < q("1"));
    assert!(q("1Gi") > q("1G"));
    assert!(q("-1") < q("0"));
    assert_eq!(q("1.5").max(q("1600m")), q("1.6"));
}

#[test]
fn converts_to_whole_units() {
    let q = |t: &str| ParsedQuantity::parse(t).expect("valid quantity");
    assert_eq!(q("16Gi").ceil_units(), 17_179_869_184);
    assert_eq!(q("1500m").ceil_units(), 2);
    assert_eq!(q("-1500m").ceil_units(), -1);
    assert!(q("2").is_whole());
    assert!(!q("2.5").is_whole());
    assert_eq!(q("2").checked_add(&q("500m")), Some(q("2.5")));
    assert_eq!(q("2Gi").checked_mul(4), Some(q("8Gi")));
    assert_eq!(q("9223372036854775807").checked_add(&q("1")), None);
    assert_eq!(ParsedQuantity::from_units(3).to_quantity().0, "3");
}

#[test]
fn serde_uses_the_canonical_string() {
    let q: ParsedQuantity = serde_json::from_str("\"1.5Gi\"").expect("parses");
    assert_eq!(
        serde_json::to_string(&q).ok().as_deref(),
        Some("\"1536Mi\"")
    );
    let err = serde_json::from_str::<ParsedQuantity>("\"1x\"").expect_err("bad suffix");
    assert!(err.to_string().contains("unknown suffix"), "{err}");
}
