//! Recurring standard windows: "every Sunday 02:00 for 2 hours, Europe/Paris".
//!
//! A schedule names weekdays, a local start time and a duration of elapsed time. Each
//! listed weekday has one occurrence, starting at that local time in the window's zone and
//! lasting the duration. Daylight saving time follows jiff's `compatible` rule, the one
//! people expect from a calendar: a start time that does not exist that night (spring
//! forward) moves forward by the gap (02:30 in Paris becomes 03:30 summer time), and one
//! that happens twice (fall back) is the first of the two. The duration is elapsed time, so
//! a 2-hour slot is 2 hours on those nights too.
//!
//! Occurrences are never expanded: whether an instant falls in one is computed from the few
//! local dates whose occurrence could contain it, so an approval valid for a year costs the
//! matcher the same as one for a day.

use std::fmt;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// The longest occurrence: one day (a routine change is short; longer work is a normal window).
pub const MAX_DURATION_MINUTES: u32 = 24 * 60;
const DAY_MS: i64 = 86_400_000;
const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// As people write it (`POST /api/v1/windows`, stored as is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// `mon` … `sun`.
    pub weekdays: Vec<String>,
    /// Local time in the window's time zone, `HH:MM`.
    pub start: String,
    /// Elapsed minutes, 1 to 1440.
    pub duration_minutes: u32,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} for {} min",
            self.weekdays.join(","),
            self.start,
            self.duration_minutes
        )
    }
}

/// A checked schedule in its time zone, ready to answer "is this instant in an occurrence".
#[derive(Clone, Debug)]
pub struct Recurrence {
    /// Bit `n` set: weekday `n` (Monday = 0) has an occurrence.
    days: u8,
    at: Time,
    duration_ms: i64,
    tz: TimeZone,
}

impl Recurrence {
    /// Every problem of `schedule`, each a sentence for a person.
    pub fn compile(schedule: &Schedule, time_zone: &str) -> Result<Recurrence, Vec<String>> {
        let mut problems = Vec::new();
        let mut days = 0u8;
        if schedule.weekdays.is_empty() {
            problems.push("schedule.weekdays is empty: list days such as [\"sun\"]".to_owned());
        }
        for (i, name) in schedule.weekdays.iter().enumerate() {
            match WEEKDAYS.iter().position(|(short, _)| short == name) {
                Some(bit) if days & (1 << bit) != 0 => {
                    problems.push(format!("schedule.weekdays[{i}]: `{name}` is listed twice"));
                }
                Some(bit) => days |= 1 << bit,
                None => problems.push(format!(
                    "schedule.weekdays[{i}]: `{name}` is not a weekday, expected one of \
                     mon, tue, wed, thu, fri, sat, sun"
                )),
            }
        }
        let at = parse_hh_mm(&schedule.start)
            .map_err(|why| problems.push(format!("schedule.start: {why}")))
            .ok();
        if !(1..=MAX_DURATION_MINUTES).contains(&schedule.duration_minutes) {
            problems.push(format!(
                "schedule.duration_minutes is {}, expected 1 to {MAX_DURATION_MINUTES}",
                schedule.duration_minutes
            ));
        }
        let tz = TimeZone::get(time_zone)
            .map_err(|_| problems.push(format!("unknown time zone `{time_zone}`")))
            .ok();
        match (at, tz) {
            (Some(at), Some(tz)) if problems.is_empty() => Ok(Recurrence {
                days,
                at,
                duration_ms: i64::from(schedule.duration_minutes) * 60_000,
                tz,
            }),
            _ => Err(problems),
        }
    }

    /// The start of the occurrence on local `date`, if that weekday is scheduled.
    pub fn occurrence_on(&self, date: Date) -> Option<Millis> {
        let bit = date.weekday().to_monday_zero_offset();
        if self.days & (1 << bit) == 0 {
            return None;
        }
        self.tz
            .to_ambiguous_zoned(date.to_datetime(self.at))
            .compatible()
            .ok()
            .map(|zoned| zoned.timestamp().as_millisecond())
    }

    pub fn duration_ms(&self) -> i64 {
        self.duration_ms
    }

    /// Whether an occurrence, cut to the validity `[valid_from, valid_until]`, meets
    /// `[from, to]`.
    pub fn overlaps(
        &self,
        from: Millis,
        to: Millis,
        valid_from: Millis,
        valid_until: Millis,
    ) -> bool {
        let (from, to) = (from.max(valid_from), to.min(valid_until));
        if from > to {
            return false;
        }
        // Occurrences meeting [from, to] start in [from - duration, to]; their local dates
        // lie within a day of those instants' UTC dates (offsets are under a day).
        let (Some(first), Some(last)) = (
            self.local_date(from - self.duration_ms - DAY_MS),
            self.local_date(to + DAY_MS),
        ) else {
            return false;
        };
        let mut date = first;
        while date <= last {
            if let Some(start) = self.occurrence_on(date)
                && start <= to
                && start + self.duration_ms >= from
            {
                return true;
            }
            match date.checked_add(1.day()) {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        false
    }

    /// Whether one occurrence, cut to the validity `[valid_from, valid_until]` and widened
    /// by `tolerance` on both sides, holds the whole of `[from, to]`.
    pub fn contains(
        &self,
        from: Millis,
        to: Millis,
        valid_from: Millis,
        valid_until: Millis,
        tolerance: Millis,
    ) -> bool {
        if from > to {
            return false;
        }
        // Such an occurrence starts in [to - duration - tolerance, from + tolerance].
        let (Some(first), Some(last)) = (
            self.local_date(to - self.duration_ms - tolerance - DAY_MS),
            self.local_date(from + tolerance + DAY_MS),
        ) else {
            return false;
        };
        let mut date = first;
        while date <= last {
            if let Some(start) = self.occurrence_on(date) {
                let opens = start.max(valid_from) - tolerance;
                let closes = (start + self.duration_ms).min(valid_until) + tolerance;
                let cut = start <= valid_until && start + self.duration_ms >= valid_from;
                if cut && opens <= from && to <= closes {
                    return true;
                }
            }
            match date.checked_add(1.day()) {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        false
    }

    /// The occurrence, cut to the validity `[valid_from, valid_until]`, nearest to
    /// `[from, to]` (start, end), looking a week and a day either side; for explaining why
    /// an occurrence did not hold an event, never for deciding.
    pub fn nearest(
        &self,
        from: Millis,
        to: Millis,
        valid_from: Millis,
        valid_until: Millis,
    ) -> Option<(Millis, Millis)> {
        const SPAN: i64 = 8 * DAY_MS;
        let (first, last) = (
            self.local_date(from.saturating_sub(SPAN))?,
            self.local_date(to.saturating_add(SPAN))?,
        );
        let mut best: Option<(i64, Millis, Millis)> = None;
        let mut date = first;
        while date <= last {
            if let Some(start) = self.occurrence_on(date) {
                let (opens, closes) = (
                    start.max(valid_from),
                    (start + self.duration_ms).min(valid_until),
                );
                if opens <= closes {
                    let distance = if closes < from {
                        from - closes
                    } else if opens > to {
                        opens - to
                    } else {
                        0
                    };
                    if best.is_none_or(|(d, _, _)| distance < d) {
                        best = Some((distance, opens, closes));
                    }
                }
            }
            match date.checked_add(1.day()) {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        best.map(|(_, opens, closes)| (opens, closes))
    }

    fn local_date(&self, at: Millis) -> Option<Date> {
        Timestamp::from_millisecond(at)
            .ok()
            .map(|t| t.to_zoned(self.tz.clone()).date())
    }
}

/// `02:00` → 02:00:00; seconds are not accepted (a schedule is a time on a clock face).
fn parse_hh_mm(text: &str) -> Result<Time, String> {
    let bad = || format!("`{text}` is not a local time: write HH:MM, such as `02:00`");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_instant;

    fn every(days: &[&str], start: &str, minutes: u32, tz: &str) -> Recurrence {
        let schedule = Schedule {
            weekdays: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            duration_minutes: minutes,
        };
        Recurrence::compile(&schedule, tz).unwrap()
    }

    fn at(text: &str) -> Millis {
        parse_instant(text).unwrap()
    }

    /// Whether `instant` is in an occurrence (no validity limit, no tolerance).
    fn open_at(r: &Recurrence, instant: &str) -> bool {
        let t = at(instant);
        r.overlaps(t, t, i64::MIN / 2, i64::MAX / 2)
    }

    #[test]
    fn sunday_two_to_four_in_paris() {
        let r = every(&["sun"], "02:00", 120, "Europe/Paris");
        // 2026-11-29 is a Sunday; Paris is UTC+1 in winter.
        assert!(open_at(&r, "2026-11-29T01:00:00Z"));
        assert!(open_at(&r, "2026-11-29T02:59:59Z"));
        assert!(!open_at(&r, "2026-11-29T00:59:59Z"));
        assert!(!open_at(&r, "2026-11-29T03:00:01Z"));
        assert!(!open_at(&r, "2026-11-28T01:30:00Z"), "Saturday");
        assert!(open_at(&r, "2027-06-06T00:30:00Z"), "summer: UTC+2");
    }

    #[test]
    fn spring_forward_moves_a_missing_start_forward_by_the_gap() {
        // 2026-03-29: Paris clocks jump from 02:00 to 03:00.
        let r = every(&["sun"], "02:30", 60, "Europe/Paris");
        let date = Date::new(2026, 3, 29).unwrap();
        // 02:30 does not exist: 03:30 CEST = 01:30Z, for an hour of elapsed time.
        assert_eq!(r.occurrence_on(date), Some(at("2026-03-29T01:30:00Z")));
        assert!(!open_at(&r, "2026-03-29T01:29:00Z"));
        assert!(open_at(&r, "2026-03-29T02:29:00Z"));
        assert!(!open_at(&r, "2026-03-29T02:31:00Z"));
    }

    #[test]
    fn fall_back_takes_the_first_of_a_repeated_start_and_lasts_the_elapsed_duration() {
        // 2026-10-25: Paris clocks go back from 03:00 to 02:00; 02:30 happens twice.
        let r = every(&["sun"], "02:30", 60, "Europe/Paris");
        let date = Date::new(2026, 10, 25).unwrap();
        // The first 02:30 is summer time (UTC+2) = 00:30Z; one elapsed hour → 01:30Z,
        // which is the second 02:30 (winter time) on the wall clock.
        assert_eq!(r.occurrence_on(date), Some(at("2026-10-25T00:30:00Z")));
        assert!(open_at(&r, "2026-10-25T01:29:00Z"));
        assert!(!open_at(&r, "2026-10-25T01:31:00Z"));
    }

    #[test]
    fn an_occurrence_past_midnight_belongs_to_the_day_it_starts() {
        let r = every(&["sat"], "23:00", 120, "UTC");
        // Saturday 2026-11-28 23:00 to Sunday 01:00.
        assert!(open_at(&r, "2026-11-29T00:30:00Z"));
        assert!(!open_at(&r, "2026-11-29T23:30:00Z"), "Sunday starts none");
        assert!(
            !open_at(&r, "2026-11-28T00:30:00Z"),
            "Friday's night is not scheduled"
        );
    }

    #[test]
    fn the_validity_cuts_occurrences() {
        let r = every(&["sun"], "02:00", 120, "UTC");
        let (from, until) = (at("2026-11-29T03:00:00Z"), at("2026-12-06T03:00:00Z"));
        let open = |t: &str| r.overlaps(at(t), at(t), from, until);
        assert!(
            !open("2026-11-29T02:30:00Z"),
            "before the approval is valid"
        );
        assert!(open("2026-11-29T03:30:00Z"));
        assert!(open("2026-12-06T02:30:00Z"));
        assert!(!open("2026-12-06T03:30:00Z"), "after it ends");
        // A tolerance around an instant just outside an occurrence reaches into it.
        assert!(r.overlaps(
            at("2026-11-29T03:59:00Z"),
            at("2026-11-29T04:01:00Z"),
            from,
            until
        ));
    }
}
