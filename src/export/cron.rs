//! A `cron_restart` expression as a systemd calendar event (`OnCalendar=`, systemd.time(7)).
//!
//! Cron has 5 fields (minute, hour, day of month, month, day of week), or 6 with seconds
//! first; each is `*`, a number or name, a range `a-b`, a step `*/n` or `a-b/n` or `a/n`, or a
//! list of those. Every restricted field is written as the explicit list of the values it
//! matches (runs of three or more as `a..b`), which systemd reads for every component.
//!
//! What cannot be converted is an error naming why: cron's extensions (`L`, `W`, `#`, `?`
//! with a value), and a day of month together with a day of week, which cron matches when
//! *either* does and systemd only when both do.

/// Field bounds: (name, lowest, highest).
const SECOND: (&str, u32, u32) = ("second", 0, 59);
const MINUTE: (&str, u32, u32) = ("minute", 0, 59);
const HOUR: (&str, u32, u32) = ("hour", 0, 23);
const DAY: (&str, u32, u32) = ("day of month", 1, 31);
const MONTH: (&str, u32, u32) = ("month", 1, 12);
/// Day of week: 0 and 7 are both Sunday.
const WEEKDAY: (&str, u32, u32) = ("day of week", 0, 7);

const MONTHS: [&str; 12] =
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const CRON_DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
/// systemd's day names, Monday first, with cron's numbers (Sunday 0).
const SYSTEMD_DAYS: [(&str, u32); 7] =
    [("Mon", 1), ("Tue", 2), ("Wed", 3), ("Thu", 4), ("Fri", 5), ("Sat", 6), ("Sun", 0)];

/// `expr` as an `OnCalendar=` value, or why it cannot be one.
pub fn on_calendar(expr: &str) -> Result<String, String> {
    // The shorthands cron readers take.
    let expr = match expr.trim().to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => expr,
    };
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let (sec, rest) = match fields.len() {
        5 => ("0", &fields[..]),
        6 => (fields[0], &fields[1..]),
        n => return Err(format!("has {n} fields where cron has 5, or 6 with seconds first")),
    };
    let second = field(sec, SECOND, &[])?;
    let minute = field(rest[0], MINUTE, &[])?;
    let hour = field(rest[1], HOUR, &[])?;
    let day = field(rest[2], DAY, &[])?;
    let month = field(rest[3], MONTH, &MONTHS)?;
    let weekday = field(rest[4], WEEKDAY, &CRON_DAYS)?;
    if day.is_some() && weekday.is_some() {
        return Err(
            "restricts both the day of month and the day of week, which cron matches when either does and systemd only when both do"
                .into(),
        );
    }
    let list = |values: &Option<Vec<u32>>| match values {
        None => "*".to_string(),
        Some(v) => numbers(v),
    };
    let mut out = String::new();
    if let Some(days) = &weekday {
        // Monday first, runs of three or more as `Mon..Fri`, as systemd normalizes them.
        let picked: Vec<usize> =
            (0..SYSTEMD_DAYS.len()).filter(|&i| days.contains(&SYSTEMD_DAYS[i].1)).collect();
        let mut parts: Vec<String> = Vec::new();
        for (from, to) in runs(&picked) {
            if to >= from + 2 {
                parts.push(format!("{}..{}", SYSTEMD_DAYS[from].0, SYSTEMD_DAYS[to].0));
            } else {
                parts.extend((from..=to).map(|i| SYSTEMD_DAYS[i].0.to_string()));
            }
        }
        out.push_str(&parts.join(","));
        out.push(' ');
    }
    out.push_str(&format!(
        "*-{}-{} {}:{}:{}",
        list(&month),
        list(&day),
        list(&hour),
        list(&minute),
        list(&second)
    ));
    Ok(out)
}

/// The values `text` matches, in order, or `None` when it matches every value.
fn field(text: &str, (what, lo, hi): (&str, u32, u32), names: &[&str]) -> Result<Option<Vec<u32>>, String> {
    if text == "*" || text == "?" {
        return Ok(None);
    }
    let bad = |why: &str| Err(format!("{what} `{text}`: {why}"));
    let value = |s: &str| -> Option<u32> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            // Month names count from 1, day names from 0 (Sunday).
            return u32::try_from(i).ok().map(|i| if lo == 1 { i + 1 } else { i });
        }
        s.parse::<u32>().ok().filter(|n| (lo..=hi).contains(n))
    };
    let mut out: Vec<u32> = Vec::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(s) if s > 0 => (r, s),
                _ => return bad("a step must be a positive number"),
            },
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            match (value(a), value(b)) {
                (Some(a), Some(b)) if a <= b => (a, b),
                _ => return bad("not a range of this field"),
            }
        } else {
            match value(range) {
                // `a/n` runs from a to the end of the field.
                Some(a) if part.contains('/') => (a, hi),
                Some(a) => (a, a),
                None => {
                    return bad(
                        "not a value of this field (cron's extensions such as L, W and # are not converted)",
                    );
                }
            }
        };
        let mut v = from;
        while v <= to {
            out.push(v);
            v += step;
        }
    }
    if what == WEEKDAY.0 {
        // Sunday is 0 or 7.
        for v in &mut out {
            if *v == 7 {
                *v = 0;
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    let everything = u32::try_from(out.len()).is_ok_and(|n| n == hi - lo + 1 - u32::from(what == WEEKDAY.0));
    Ok(if everything { None } else { Some(out) })
}

/// Values as a systemd list, in the normalized form `systemd-analyze calendar` gives back:
/// `1,2,3,5` → `01..03,05`.
fn numbers(v: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (from, to) in runs(v) {
        if to >= from + 2 {
            parts.push(format!("{from:02}..{to:02}"));
        } else {
            parts.extend((from..=to).map(|n| format!("{n:02}")));
        }
    }
    parts.join(",")
}

/// The runs of consecutive values of the sorted `v`, as (first, last).
fn runs<T: Copy + PartialEq + std::ops::Add<Output = T> + From<u8>>(v: &[T]) -> Vec<(T, T)> {
    let mut out: Vec<(T, T)> = Vec::new();
    for &x in v {
        match out.last_mut() {
            Some((_, last)) if *last + T::from(1) == x => *last = x,
            _ => out.push((x, x)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_fields_become_explicit_calendar_lists() {
        let cases = [
            ("0 * * * *", "*-*-* *:00:00"),
            ("*/15 * * * *", "*-*-* *:00,15,30,45:00"),
            (
                "*/2 * * * * *",
                "*-*-* *:*:00,02,04,06,08,10,12,14,16,18,20,22,24,26,28,30,32,34,36,38,40,42,44,46,48,50,52,54,56,58",
            ),
            ("30 4 1,15 * *", "*-*-01,15 04:30:00"),
            ("0 9-17/4 * * mon-fri", "Mon..Fri *-*-* 09,13,17:00:00"),
            ("0 0 * * 0", "Sun *-*-* 00:00:00"),
            ("0 0 * * 7,6", "Sat,Sun *-*-* 00:00:00"),
            ("0 0 * JAN-MAR,dec *", "*-01..03,12-* 00:00:00"),
            ("5 0 1/10 * *", "*-*-01,11,21,31 00:05:00"),
            ("0 12 * * 0-7", "*-*-* 12:00:00"),
            ("0 0 1-3 * ?", "*-*-01..03 00:00:00"),
            ("0-4 0 * * *", "*-*-* 00:00..04:00"),
            ("@weekly", "Sun *-*-* 00:00:00"),
            ("@Hourly", "*-*-* *:00:00"),
            ("@annually", "*-01-01 00:00:00"),
        ];
        for (cron, want) in cases {
            assert_eq!(on_calendar(cron).as_deref(), Ok(want), "{cron}");
        }
    }

    #[test]
    fn what_systemd_cannot_say_is_an_error_naming_why() {
        for (cron, why) in [
            ("0 0 1 * mon", "either"),
            ("0 0 L * *", "extensions"),
            ("0 0 * * 5#2", "extensions"),
            ("0 0 * *", "5, or 6"),
            ("60 * * * *", "minute `60`"),
            ("*/0 * * * *", "step"),
            ("0 5-2 * * *", "range"),
        ] {
            let err = on_calendar(cron).expect_err(cron);
            assert!(err.contains(why), "{cron}: {err}");
        }
    }
}
