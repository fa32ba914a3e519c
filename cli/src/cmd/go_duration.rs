//! Go's duration syntax (`time.ParseDuration`), which Kubernetes' flags take: a sequence
//! of decimal numbers, each with a unit — `30s`, `10m`, `8760h`, `1h30m`, `1.5h`, `500ms`.

use std::time::Duration;

/// Units Go accepts, in nanoseconds.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3600 * 1_000_000_000),
];

/// Parses a non-negative Go duration; the message says what was wrong.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("invalid duration {text:?}: {why} (e.g. 30s, 10m, 8760h)");
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    if rest.starts_with('-') {
        return Err(bad("negative"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| bad("a number needs a unit (ns, us, ms, s, m, h)"))?;
        let (number, after) = rest.split_at(digits);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(bad("expected a number"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| bad(&format!("unknown unit {unit:?}")))?;
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad("too large"))?
        };
        let mut nanos = whole.checked_mul(scale).ok_or_else(|| bad("too large"))?;
        // The fraction's digits, each a tenth of the one before (beyond 1 ns they vanish).
        let mut place = scale;
        for digit in fraction.bytes() {
            place /= 10;
            nanos += u128::from(digit - b'0') * place;
        }
        total = total.checked_add(nanos).ok_or_else(|| bad("too large"))?;
        rest = next;
    }
    let seconds = u64::try_from(total / 1_000_000_000).map_err(|_| bad("too large"))?;
    Ok(Duration::new(seconds, (total % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_go_parses_them() {
        let s = Duration::from_secs;
        assert_eq!(parse("30s"), Ok(s(30)));
        assert_eq!(parse("10m"), Ok(s(600)));
        assert_eq!(parse("8760h"), Ok(s(8760 * 3600)));
        assert_eq!(parse("1h30m"), Ok(s(5400)));
        assert_eq!(parse("1.5h"), Ok(s(5400)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "1y", "-5m", "s", "1..5s", "h1", "1.2.3m"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("invalid duration"), "{bad:?}: {e}");
        }
    }
}
