//! Cron schedules as Kubernetes reads them (robfig/cron's standard parser): five fields
//! `minute hour day-of-month month day-of-week` with `*`, `?`, lists, ranges, steps and
//! names (`JAN`-`DEC`, `SUN`-`SAT`, 7 = Sunday), or a macro (`@yearly`, `@annually`,
//! `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`). When both day fields are
//! restricted a day matches either of them, as in cron.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;

/// A parsed schedule: the allowed values of each field as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    any_day_of_month: bool,
    any_day_of_week: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    names_from: u32,
}

impl Field {
    fn value(&self, s: &str) -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            return Ok(self.names_from + i as u32);
        }
        let v: u32 = s
            .parse()
            .map_err(|_| format!("{}: {s:?} is not a number or a name", self.name))?;
        // Day-of-week 7 is Sunday, as in cron.
        let v = if self.name == "day of week" && v == 7 {
            0
        } else {
            v
        };
        if v < self.min || v > self.max {
            return Err(format!(
                "{}: {v} is outside {}-{}",
                self.name, self.min, self.max
            ));
        }
        Ok(v)
    }

    /// The bit set of `expr`, and whether it started with `*` or `?` without a step.
    fn parse(&self, expr: &str) -> Result<(u64, bool), String> {
        let mut bits = 0u64;
        let mut star = false;
        for item in expr.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("{}: step {s:?} must be a positive number", self.name)
                    })?;
                    (r, Some(step))
                }
                None => (item, None),
            };
            let (start, end) = if range == "*" || range == "?" {
                star |= step.is_none_or(|s| s == 1);
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                (self.value(a)?, self.value(b)?)
            } else {
                let v = self.value(range)?;
                // `N/step` means `N-max/step`.
                (v, if step.is_some() { self.max } else { v })
            };
            if start > end {
                return Err(format!("{}: range {range:?} runs backwards", self.name));
            }
            let step = step.unwrap_or(1);
            let mut v = start;
            while v <= end {
                bits |= 1 << v;
                v += step;
            }
        }
        Ok((bits, star))
    }
}

impl Schedule {
    /// Parses `expr`; the error names the part at fault.
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let expr = expr.trim();
        let expanded = match expr.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(format!("unknown macro {expr:?}"));
            }
            _ => expr,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), got {}",
                fields.len()
            ));
        };
        let field = |name, min, max, names, names_from| Field {
            name,
            min,
            max,
            names,
            names_from,
        };
        let (minutes, _) = field("minute", 0, 59, &[], 0).parse(minute)?;
        let (hours, _) = field("hour", 0, 23, &[], 0).parse(hour)?;
        let (days_of_month, any_dom) = field("day of month", 1, 31, &[], 0).parse(dom)?;
        let (months, _) = field("month", 1, 12, &MONTHS, 1).parse(month)?;
        let (days_of_week, any_dow) = field("day of week", 0, 7, &DAYS, 0).parse(dow)?;
        let days_of_week = (days_of_week | (days_of_week >> 7)) & 0x7f;
        Ok(Schedule {
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            any_day_of_month: any_dom,
            any_day_of_week: any_dow,
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.any_day_of_month || self.any_day_of_week {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `after`, reading the fields in `tz`; `None`
    /// when there is none in the next five years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = tz.to_datetime(after);
        let mut dt = DateTime::from_parts(
            start.date(),
            Time::new(start.hour(), start.minute(), 0, 0).ok()?,
        )
        .checked_add(jiff::SignedDuration::from_mins(1))
        .ok()?;
        let limit = start.date().checked_add(jiff::Span::new().years(5)).ok()?;
        while dt.date() <= limit {
            if self.months & (1 << dt.month()) == 0 {
                let first = dt
                    .date()
                    .first_of_month()
                    .checked_add(jiff::Span::new().months(1))
                    .ok()?;
                dt = first.to_datetime(Time::midnight());
                continue;
            }
            if !self.day_matches(dt.date()) {
                dt = dt.date().tomorrow().ok()?.to_datetime(Time::midnight());
                continue;
            }
            if self.hours & (1 << dt.hour()) == 0 {
                dt = DateTime::from_parts(dt.date(), Time::new(dt.hour(), 0, 0, 0).ok()?)
                    .checked_add(jiff::SignedDuration::from_hours(1))
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << dt.minute()) == 0 {
                dt = dt.checked_add(jiff::SignedDuration::from_mins(1)).ok()?;
                continue;
            }
            let at = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
            if at > after {
                return Some(at);
            }
            dt = dt.checked_add(jiff::SignedDuration::from_mins(1)).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn fields_ranges_steps_and_names() {
        let s = Schedule::parse("*/15 9-17 * JAN-mar mon-fri").unwrap();
        // Friday 2026-01-02 17:50 UTC -> Monday 09:00.
        assert_eq!(
            s.next_after(ts("2026-01-02T17:50:00Z"), &TimeZone::UTC),
            Some(ts("2026-01-05T09:00:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-01-05T09:00:00Z"), &TimeZone::UTC),
            Some(ts("2026-01-05T09:15:00Z"))
        );
        // March 31 -> next January.
        assert_eq!(
            s.next_after(ts("2026-03-31T17:45:00Z"), &TimeZone::UTC),
            Some(ts("2027-01-01T09:00:00Z"))
        );
    }

    #[test]
    fn macros_and_day_or_rule() {
        let hourly = Schedule::parse("@hourly").unwrap();
        assert_eq!(
            hourly.next_after(ts("2026-05-01T10:00:00Z"), &TimeZone::UTC),
            Some(ts("2026-05-01T11:00:00Z"))
        );
        // Day 13 OR a Friday.
        let s = Schedule::parse("0 0 13 * 5").unwrap();
        assert_eq!(
            s.next_after(ts("2026-02-01T00:00:00Z"), &TimeZone::UTC),
            Some(ts("2026-02-06T00:00:00Z")) // a Friday, before the 13th
        );
        assert_eq!(Schedule::parse("0 0 * * 7"), Schedule::parse("0 0 * * SUN"));
        assert_eq!(
            Schedule::parse("0 0 30 2 *")
                .unwrap()
                .next_after(ts("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }

    #[test]
    fn time_zones_shift_the_schedule() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let s = Schedule::parse("0 9 * * *").unwrap();
        // 09:00 EST is 14:00 UTC; after the March change, 09:00 EDT is 13:00 UTC.
        assert_eq!(
            s.next_after(ts("2026-03-06T00:00:00Z"), &tz),
            Some(ts("2026-03-06T14:00:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-03-09T00:00:00Z"), &tz),
            Some(ts("2026-03-09T13:00:00Z"))
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (expr, want) in [
            ("* * * *", "expected 5 fields"),
            ("60 * * * *", "minute: 60 is outside 0-59"),
            ("* * * FOO *", "month: \"FOO\""),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("@every 5m", "unknown macro"),
        ] {
            let err = Schedule::parse(expr).unwrap_err();
            assert!(err.contains(want), "{expr}: {err}");
        }
    }
}
