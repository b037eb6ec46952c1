//! Wall-clock timestamps in local time, in the two shapes gunicorn logs.
//!
//! Written by hand on top of `localtime_r` rather than `strftime` so that the
//! month names do not depend on the C locale and so that the formatting can
//! be tested with a fixed time and offset. (`chrono`/`time` would add a
//! dependency for two fixed formats; `time` also refuses the local offset in
//! multi-threaded processes.)

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A broken-down local time with its offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalTime {
    pub year: i32,
    /// 1–12.
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    /// 0–60 (a leap second is 60).
    pub second: u8,
    /// Seconds east of UTC.
    pub utc_offset: i32,
}

impl LocalTime {
    const EPOCH: LocalTime = LocalTime {
        year: 1970,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
        utc_offset: 0,
    };

    pub fn now() -> LocalTime {
        LocalTime::at(SystemTime::now())
    }

    /// `t` in the process's time zone (`TZ` or `/etc/localtime`).
    pub fn at(t: SystemTime) -> LocalTime {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let secs = libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX);
        // SAFETY: `tm` is plain data that localtime_r fully initialises on
        // success; localtime_r (unlike localtime) uses no shared result buffer.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
            return LocalTime::EPOCH;
        }
        LocalTime {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u8,
            day: tm.tm_mday as u8,
            hour: tm.tm_hour as u8,
            minute: tm.tm_min as u8,
            second: tm.tm_sec as u8,
            utc_offset: tm.tm_gmtoff as i32,
        }
    }

    /// The error-log stamp, Python's `[%Y-%m-%d %H:%M:%S %z]`:
    /// `[2026-11-22 01:57:18 +0000]`.
    pub fn write_error_stamp(&self, out: &mut String) {
        let _ = write!(
            out,
            "[{:04}-{:02}-{:02} {:02}:{:02}:{:02} ",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        self.write_offset(out);
        out.push(']');
    }

    /// The access-log stamp, `[%d/%b/%Y:%H:%M:%S %z]`:
    /// `[22/Nov/2026:01:58:29 +0000]`.
    pub fn write_clf(&self, out: &mut String) {
        let month = MONTHS
            .get(usize::from(self.month).wrapping_sub(1))
            .copied()
            .unwrap_or("???");
        let _ = write!(
            out,
            "[{:02}/{}/{:04}:{:02}:{:02}:{:02} ",
            self.day, month, self.year, self.hour, self.minute, self.second
        );
        self.write_offset(out);
        out.push(']');
    }

    /// `%z`: `+HHMM` / `-HHMM`.
    fn write_offset(&self, out: &mut String) {
        let sign = if self.utc_offset < 0 { '-' } else { '+' };
        let minutes = self.utc_offset.unsigned_abs() / 60;
        let _ = write!(out, "{sign}{:02}{:02}", minutes / 60, minutes % 60);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: LocalTime = LocalTime {
        year: 2026,
        month: 11,
        day: 22,
        hour: 1,
        minute: 58,
        second: 29,
        utc_offset: 0,
    };

    fn stamp(t: LocalTime, clf: bool) -> String {
        let mut out = String::new();
        if clf {
            t.write_clf(&mut out)
        } else {
            t.write_error_stamp(&mut out)
        }
        out
    }

    #[test]
    fn formats_both_shapes() {
        assert_eq!(stamp(SAMPLE, false), "[2026-11-22 01:58:29 +0000]");
        assert_eq!(stamp(SAMPLE, true), "[22/Nov/2026:01:58:29 +0000]");
    }

    #[test]
    fn formats_offsets() {
        let india = LocalTime {
            utc_offset: 5 * 3600 + 30 * 60,
            ..SAMPLE
        };
        assert_eq!(stamp(india, true), "[22/Nov/2026:01:58:29 +0530]");
        let newfoundland = LocalTime {
            utc_offset: -(3 * 3600 + 30 * 60),
            ..SAMPLE
        };
        assert_eq!(stamp(newfoundland, false), "[2026-11-22 01:58:29 -0330]");
        let jan = LocalTime {
            month: 1,
            day: 5,
            ..SAMPLE
        };
        assert_eq!(stamp(jan, true), "[05/Jan/2026:01:58:29 +0000]");
    }

    #[test]
    fn local_time_matches_the_clock() {
        // Whatever the zone, local time minus its offset is UTC.
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_312_709); // 2026-11-22 01:58:29 UTC
        let local = LocalTime::at(t);
        let secs_of_day =
            i64::from(local.hour) * 3600 + i64::from(local.minute) * 60 + i64::from(local.second);
        let utc_secs_of_day = (secs_of_day - i64::from(local.utc_offset)).rem_euclid(86_400);
        assert_eq!(utc_secs_of_day, 3600 + 58 * 60 + 29);
        assert_eq!(local.year, 2026);
        assert_eq!(local.month, 11);
    }
}
