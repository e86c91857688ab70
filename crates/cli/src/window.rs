//! `maxage` and `startdate` at run time: turning the configured days into the cutoffs the
//! engine and the stores use, with OfflineIMAP's time arithmetic (local time zone included).

use anyhow::{Result, bail};
use chrono::{DateTime, Datelike, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use oi_config::{AccountConfig, Day, MaxAge};
use oi_core::{AgeCutoff, EventSink};

const DAY: i64 = 24 * 60 * 60;

/// The window of an account's `maxage`, as of `now`.
///
/// OfflineIMAP takes `gmtime(now - days)` (or the day at midnight), reads it back with
/// `mktime` (as local time) for the Maildir comparison, and searches the server from the
/// UTC day of that instant plus one day.
pub fn max_age(maxage: MaxAge, now: DateTime<Utc>) -> Result<oi_sync::MaxAge> {
    let local_epoch = match maxage {
        MaxAge::Days(days) => {
            let then = now.timestamp() - i64::from(days) * DAY;
            let Some(utc) = DateTime::from_timestamp(then, 0) else {
                bail!("maxage = {days} days reaches before any date this system can handle");
            };
            mktime(utc.naive_utc())
        }
        MaxAge::Since(day) => {
            let epoch = midnight(day)?;
            if epoch > now.timestamp() {
                bail!(
                    "maxage led to future date {:04}-{:02}-{:02}. Abort syncing.",
                    day.year,
                    day.month,
                    day.day
                );
            }
            epoch
        }
    };
    let remote_day = DateTime::from_timestamp(local_epoch + DAY, 0)
        .map(|d| d.date_naive())
        .unwrap_or_default();
    Ok(oi_sync::MaxAge {
        remote: AgeCutoff {
            day: ymd(remote_day),
            epoch: local_epoch + DAY,
        },
        local: AgeCutoff {
            day: ymd(naive_day(local_epoch)),
            epoch: local_epoch,
        },
    })
}

/// Quick syncs cannot be combined with `maxage` (the quick check sees the whole folder):
/// OfflineIMAP warns and syncs fully.
pub fn quick_setting(account: &AccountConfig, setting: i64, ui: &oi_ui::Ui) -> i64 {
    let restricted = account.maxage.is_some()
        || account.local.startdate.is_some()
        || account.remote.startdate.is_some();
    if setting != 0 && restricted {
        ui.emit(oi_core::Event::Warning {
            account: Some(account.name.clone()),
            message: "Quick syncs (-q) not supported in conjunction with maxage or startdate; \
                      ignoring -q."
                .into(),
        });
        return 0;
    }
    setting
}

/// The `startdate` of an account's folders (at most one repository has one).
pub fn start_date(
    account: &AccountConfig,
    now: DateTime<Utc>,
) -> Result<Option<oi_sync::StartDate>> {
    let (partial, day) = match (account.remote.startdate, account.local.startdate) {
        (Some(day), _) => (oi_core::Side::Remote, day),
        (None, Some(day)) => (oi_core::Side::Local, day),
        (None, None) => return Ok(None),
    };
    let epoch = midnight(day)?;
    if epoch > now.timestamp() {
        bail!(
            "startdate led to future date {:04}-{:02}-{:02}. Abort syncing.",
            day.year,
            day.month,
            day.day
        );
    }
    Ok(Some(oi_sync::StartDate {
        partial,
        since: AgeCutoff {
            day: (day.year, day.month, day.day),
            epoch,
        },
    }))
}

/// The local midnight that starts `day`, as seconds since the epoch.
pub fn midnight(day: Day) -> Result<i64> {
    let Some(date) = NaiveDate::from_ymd_opt(day.year, day.month.into(), day.day.into()) else {
        bail!(
            "{:04}-{:02}-{:02} is not a date",
            day.year,
            day.month,
            day.day
        );
    };
    Ok(mktime(date.and_time(chrono::NaiveTime::MIN)))
}

/// C's `mktime`: a wall-clock time read in the local time zone (the earlier instant when
/// the clock went back, the instant after the gap when it jumped forward).
fn mktime(wall: NaiveDateTime) -> i64 {
    match Local.from_local_datetime(&wall) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.timestamp(),
        chrono::LocalResult::None => Local
            .from_local_datetime(&(wall + chrono::Duration::hours(1)))
            .earliest()
            .map_or_else(|| wall.and_utc().timestamp(), |t| t.timestamp()),
    }
}

fn naive_day(epoch: i64) -> NaiveDate {
    DateTime::from_timestamp(epoch, 0)
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

fn ymd(d: NaiveDate) -> (i32, u8, u8) {
    // Months and days always fit a u8.
    (d.year(), d.month() as u8, d.day() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_search_the_server_from_the_next_day() {
        // Runs in whatever zone the machine has; with a UTC clock the local cutoff is
        // exactly `days` before now.
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap(); // 2023-11-14 22:13 UTC
        let w = max_age(MaxAge::Days(3), now).unwrap();
        assert_eq!(w.remote.epoch - w.local.epoch, DAY);
        if Local
            .offset_from_utc_datetime(&now.naive_utc())
            .local_minus_utc()
            == 0
        {
            assert_eq!(w.local.epoch, 1_700_000_000 - 3 * DAY);
            assert_eq!(w.remote.day, (2023, 11, 12));
        }
    }

    #[test]
    fn a_future_day_is_refused() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let future = Day {
            year: 2030,
            month: 1,
            day: 1,
        };
        let e = max_age(MaxAge::Since(future), now).unwrap_err();
        assert!(e.to_string().contains("future date 2030-01-01"), "{e}");
    }
}
