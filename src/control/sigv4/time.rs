//! `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`, always UTC) to and from seconds since the epoch, and
//! the freshness window. Calendar arithmetic is `crate::calendar`.

use crate::calendar::{civil_from_days, days_from_civil};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{AuthError, MAX_SKEW_SECS};

/// The freshness rule: never more than 15 minutes ahead of `now`; at most 15 minutes
/// behind it for the header form, or `X-Amz-Expires` seconds for the presigned form.
pub(super) fn check_time(
    signed_at: i64,
    expires: Option<i64>,
    now: SystemTime,
) -> Result<(), AuthError> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if signed_at > now.saturating_add(MAX_SKEW_SECS) {
        let (s, n, limit) = (
            format_amz_date(signed_at),
            format_amz_date(now),
            format_amz_date(now.saturating_add(MAX_SKEW_SECS)),
        );
        return Err(AuthError::Mismatch(format!(
            "Signature not yet current: {s} is still later than {limit} ({n} + 15 min.)"
        )));
    }
    let oldest = match expires {
        Some(secs) => now - secs,
        None => now - MAX_SKEW_SECS,
    };
    if signed_at < oldest {
        let (s, n, o) = (
            format_amz_date(signed_at),
            format_amz_date(now),
            format_amz_date(oldest),
        );
        let window = expires.map_or_else(|| "15 min.".to_string(), |e| format!("{e} s"));
        return Err(AuthError::Mismatch(format!(
            "Signature expired: {s} is now earlier than {o} ({n} - {window})"
        )));
    }
    Ok(())
}

/// `YYYYMMDDTHHMMSSZ` to seconds since the epoch; `None` unless exactly that shape with
/// real calendar values.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| b[r].iter().fold(0, |n, &d| n * 10 + i64::from(d - b'0')))
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let max_day = *month_days.get(usize::try_from(mo).ok()?.checked_sub(1)?)?;
    if !(1..=max_day).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Seconds since the epoch to `YYYYMMDDTHHMMSSZ`, for messages.
pub fn format_amz_date(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
