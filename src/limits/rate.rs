//! What a limit is: `N/s,burst=M` (also `/m`, `/h`), and how it maps onto GCRA's quota and
//! the IETF RateLimit fields' quota and window.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::Quota;

/// How often a limit refills: per second, minute or hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    fn duration(self) -> Duration {
        match self {
            Per::Second => Duration::from_secs(1),
            Per::Minute => Duration::from_secs(60),
            Per::Hour => Duration::from_secs(3600),
        }
    }
}

/// `N/s,burst=M` (also `/m`, `/h`; `burst` defaults to `N`), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    pub count: NonZeroU32,
    pub per: Per,
    pub burst: NonZeroU32,
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{raw}' is not a limit like 20/s,burst=40 (or off)");
        let mut parts = raw.split(',').map(str::trim);
        let rate = parts.next().ok_or_else(bad)?;
        let (count, per) = rate.split_once('/').ok_or_else(bad)?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| bad())?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Per::Second,
            "m" | "min" | "minute" => Per::Minute,
            "h" | "hour" => Per::Hour,
            _ => return Err(bad()),
        };
        let mut burst = count;
        for part in parts {
            match part
                .split_once('=')
                .map(|(name, value)| (name.trim(), value.trim()))
            {
                Some(("burst", value)) => burst = value.parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            }
        }
        Ok(RateSpec { count, per, burst })
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = match self.per {
            Per::Second => "s",
            Per::Minute => "m",
            Per::Hour => "h",
        };
        write!(f, "{}/{per},burst={}", self.count, self.burst)
    }
}

impl RateSpec {
    /// One request back every this long.
    pub fn emission_interval(&self) -> Duration {
        self.per.duration() / self.count.get()
    }

    pub(super) fn quota(&self) -> Quota {
        Quota::with_period(self.emission_interval())
            .expect("a positive interval")
            .allow_burst(self.burst)
    }

    /// The window `w` of `RateLimit-Policy`: seconds for an empty bucket to fill, at least 1.
    pub fn window_seconds(&self) -> u64 {
        (self.emission_interval() * self.burst.get())
            .as_secs_f64()
            .ceil()
            .max(1.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(raw: &str) -> RateSpec {
        raw.parse().unwrap()
    }

    #[test]
    fn limits_parse_and_map_onto_quota_and_window() {
        let create = spec("20/s,burst=40");
        assert_eq!(create.burst.get(), 40);
        assert_eq!(create.emission_interval(), Duration::from_millis(50));
        assert_eq!(create.window_seconds(), 2);
        assert_eq!(spec("1000/s,burst=2000").window_seconds(), 2);
        assert_eq!(spec("60/h,burst=100").window_seconds(), 6000);
        assert_eq!(spec("5/m").burst.get(), 5);
        assert_eq!(spec(" 5 / m , burst = 7 ").to_string(), "5/m,burst=7");
        for bad in [
            "",
            "20",
            "20/d",
            "0/s",
            "20/s,burst=0",
            "20/s,bust=3",
            "x/s",
        ] {
            assert!(bad.parse::<RateSpec>().is_err(), "{bad}");
        }
    }
}
