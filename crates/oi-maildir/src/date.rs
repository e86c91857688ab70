//! The message date for `utime_from_header` and `filename_use_mail_timestamp`: the first
//! `Date` (or `Delivery-date`) header, read as Python's `email.utils.parsedate_tz` +
//! `mktime_tz` read it, because OfflineIMAP 8 uses exactly those (`get_message_date`).

/// The unfolded value of the first header called `name` (ASCII case-insensitive), looking
/// only at the header block.
pub fn header_value(message: &[u8], name: &str) -> Option<String> {
    let mut value: Option<Vec<u8>> = None;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(v) = value.as_mut() {
                v.push(b' ');
                v.extend_from_slice(line.trim_ascii());
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':')
            && line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
        {
            value = Some(line[colon + 1..].trim_ascii().to_vec());
        }
    }
    value.map(|v| String::from_utf8_lossy(&v).into_owned())
}

const MONTHS: [&str; 24] = [
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn zone(name: &str) -> Option<i64> {
    Some(match name {
        "UT" | "UTC" | "GMT" | "Z" => 0,
        "AST" => -400,
        "ADT" => -300,
        "EDT" => -400,
        "EST" => -500,
        "CST" => -600,
        "CDT" => -500,
        "MST" => -700,
        "MDT" => -600,
        "PST" => -800,
        "PDT" => -700,
        _ => return None,
    })
}

/// Python's `int()` on a short token: optional sign, digits, surrounding blanks.
fn py_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of an RFC 2822 date, or `None` where Python's parser gives up.
/// A date without a usable zone is local time, as Python's `mktime_tz` takes it.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut data: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let first = data.first()?.clone();
    if first.ends_with(',') || DAYS.contains(&first.to_lowercase().as_str()) {
        data.remove(0);
    } else if let Some(i) = first.rfind(',') {
        data[0] = first[i + 1..].to_owned();
    }
    if data.len() == 3 {
        let stuff: Vec<String> = data[0].split('-').map(str::to_owned).collect();
        if stuff.len() == 3 {
            data = stuff.into_iter().chain(data[1..].iter().cloned()).collect();
        }
    }
    if data.len() == 4 {
        let s = data[3].clone();
        let i = s.find('+').or_else(|| s.find('-'));
        match i {
            Some(i) if i > 0 => {
                data[3] = s[..i].to_owned();
                data.push(s[i..].to_owned());
            }
            _ => data.push(String::new()),
        }
    }
    if data.len() < 5 {
        return None;
    }
    let [mut dd, mut mm, mut yy, mut tm, mut tz] = [0, 1, 2, 3, 4].map(|i| data[i].clone());
    if dd.is_empty() || mm.is_empty() || yy.is_empty() {
        return None;
    }
    mm = mm.to_lowercase();
    if !MONTHS.contains(&mm.as_str()) {
        (dd, mm) = (mm, dd.to_lowercase());
        if !MONTHS.contains(&mm.as_str()) {
            return None;
        }
    }
    let month = MONTHS.iter().position(|m| *m == mm)? as i64 % 12 + 1;
    if dd.ends_with(',') {
        dd.pop();
    }
    if yy.find(':').is_some_and(|i| i > 0) {
        (yy, tm) = (tm, yy);
    }
    if yy.ends_with(',') {
        yy.pop();
        if yy.is_empty() {
            return None;
        }
    }
    if !yy.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        (yy, tz) = (tz, yy);
    }
    if tm.ends_with(',') {
        tm.pop();
    }
    let parts: Vec<&str> = tm.split(':').collect();
    let (thh, tmm, tss) = match parts.as_slice() {
        [h, m] => (*h, *m, "0"),
        [h, m, s] => (*h, *m, *s),
        [one] if one.contains('.') => match one.split('.').collect::<Vec<_>>().as_slice() {
            [h, m] => (*h, *m, "0"),
            [h, m, s] => (*h, *m, *s),
            _ => return None,
        },
        _ => return None,
    };
    let mut year = py_int(&yy)?;
    let day = py_int(&dd)?;
    let (h, mi, s) = (py_int(thh)?, py_int(tmm)?, py_int(tss)?);
    if year < 100 {
        year += if year > 68 { 1900 } else { 2000 };
    }
    let tz = tz.to_uppercase();
    let mut offset = zone(&tz).or_else(|| py_int(&tz));
    if offset == Some(0) && tz.starts_with('-') {
        offset = None;
    }
    // Python's calendar.timegm goes through datetime.date(year, month, 1).
    if !(1..=9999).contains(&year) {
        return None;
    }
    let days = days_from_civil(year, month, 1) + day - 1;
    let wall = ((days * 24 + h) * 60 + mi) * 60 + s;
    match offset {
        Some(o) => {
            let sign = if o < 0 { -1 } else { 1 };
            let o = o.abs();
            Some(wall - sign * ((o / 100) * 3600 + (o % 100) * 60))
        }
        None => local_to_utc(wall),
    }
}

/// `time.mktime` for a wall-clock time given as if it were UTC seconds.
// time_t is i64 here but i32 on some 32-bit targets.
#[allow(unsafe_code, clippy::useless_conversion)]
fn local_to_utc(wall: i64) -> Option<i64> {
    let days = wall.div_euclid(86_400);
    let secs = wall.rem_euclid(86_400);
    // Civil date back from days (inverse of days_from_civil).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // SAFETY: an all-zero `tm` is a valid value of the plain C struct; mktime reads the
    // fields we set and writes back into the same struct, which lives for the call.
    let mut t: libc::tm = unsafe { std::mem::zeroed() };
    t.tm_year = i32::try_from(y - 1900).ok()?;
    t.tm_mon = i32::try_from(m - 1).ok()?;
    t.tm_mday = i32::try_from(d).ok()?;
    t.tm_hour = i32::try_from(secs / 3600).ok()?;
    t.tm_min = i32::try_from(secs % 3600 / 60).ok()?;
    t.tm_sec = i32::try_from(secs % 60).ok()?;
    t.tm_isdst = -1;
    // SAFETY: `t` is a valid, initialised `tm`.
    let r = unsafe { libc::mktime(&mut t) };
    (r != -1).then_some(i64::from(r))
}

/// OfflineIMAP's `get_message_date(msg, header)`.
pub fn message_date(message: &[u8], header: &str) -> Option<i64> {
    parse_date(&header_value(message, header)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn reads_headers() {
        let m = b"From: a\r\nDate: Tue, 14 Nov 2023\r\n 22:13:20 +0000\r\nDate: later\r\n\r\nDate: body";
        assert_eq!(
            header_value(m, "date").as_deref(),
            Some("Tue, 14 Nov 2023 22:13:20 +0000")
        );
        assert_eq!(header_value(b"X: 1\n\nDate: body", "Date"), None);
        assert_eq!(message_date(m, "Date"), Some(1_700_000_000));
    }

    #[test]
    fn parses_like_python() {
        assert_eq!(
            parse_date("Tue, 14 Nov 2023 22:13:20 +0000"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_date("14 Nov 2023 23:13:20 +0100"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_date("Tue,14 Nov 2023 17:13:20 EST"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_date("Nov 14 23 22:13:20 GMT"), Some(1_700_000_000));
        assert_eq!(parse_date("garbage"), None);
        assert_eq!(parse_date(""), None);
    }

    /// Compares with CPython over a list of odd dates; both read dates without a zone in
    /// the same local time zone (this process's).
    #[test]
    fn same_as_python_parsedate_tz() {
        let cases = [
            "Tue, 14 Nov 2023 22:13:20 +0000",
            "Tuesday, 14 Nov 2023 22:13:20 -0730",
            "14-Nov-2023 22:13:20 +0200",
            "14 November 2023 22.13 PDT",
            "14 Nov 69 22:13:20 +0000",
            "14 Nov 68 22:13:20 +0000",
            "14 Nov 2023 22:13:20",
            "14 Nov 2023 22:13:20 -0000",
            "Nov 14 2023 22:13:20 CDT",
            "14 Nov 2023 22:13:20+0100",
            "2023 Nov 14 22:13:20",
            "14 Foo 2023 22:13:20 +0000",
            "31 Feb 2023 25:61:61 +0000",
            "14 Nov 2023, 22:13:20, +0000",
            "14 Nov 2023 22:13 XYZ",
            "Mon, 1 Jan 0 00:00:00 +0000",
            "1 Jan 2023",
        ];
        let script = "import sys,email.utils as u\nfor l in sys.stdin.read().split('\\n'):\n t=u.parsedate_tz(l)\n try: print(u.mktime_tz(t) if t else None)\n except Exception: print(None)";
        let Ok(mut child) = Command::new("python3")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("python3 not found; skipping");
            return;
        };
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(cases.join("\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let py: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(py.len(), cases.len());
        for (case, want) in cases.iter().zip(py) {
            let ours = parse_date(case).map_or("None".to_owned(), |v| v.to_string());
            assert_eq!(ours, want, "{case}");
        }
    }
}
