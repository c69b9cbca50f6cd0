//! Restart triggers other than a crash: `cron_restart` schedules and `max_memory` limits. Each
//! is a pure helper here; the supervisor owns the timers.

use std::time::Duration;

use chrono::Local;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// How often the memory of an instance with `max_memory` is sampled.
pub const MEMORY_PERIOD: Duration = Duration::from_secs(3);

/// The next memory sample time. Every instance samples on the same grid, so 100 instances
/// with limits wake the daemon once per period, not 100 times at scattered moments.
pub fn next_memory_check() -> tokio::time::Instant {
    static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(tokio::time::Instant::now);
    let period = MEMORY_PERIOD.as_millis() as u64;
    let elapsed = tokio::time::Instant::now().duration_since(origin).as_millis() as u64;
    origin + Duration::from_millis((elapsed / period + 1) * period)
}

/// Parses a cron expression: 5 fields, or 6 with seconds first.
pub fn parse_cron(text: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(text)
        .map_err(|e| format!("invalid cron expression `{text}`: {e}"))
}

/// Time from now until the next time `cron` matches.
pub fn until_next(cron: &Cron) -> Option<Duration> {
    let now = Local::now();
    let next = cron.find_next_occurrence(&now, false).ok()?;
    (next - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_field_expressions() {
        assert!(parse_cron("0 3 * * *").is_ok());
        assert!(parse_cron("*/2 * * * * *").is_ok());
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every day").is_err());
        let every_2s = parse_cron("*/2 * * * * *").expect("valid");
        let d = until_next(&every_2s).expect("next");
        assert!(d <= Duration::from_secs(2), "{d:?}");
    }
}
