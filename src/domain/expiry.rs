//! The optional `expires_at` of a new link.

use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An RFC 3339 instant, in UTC, at Postgres' microsecond precision. Whether it is still in
/// the future is the create's to check ([`ExpiresAt::check_after`]), against its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiresAt(OffsetDateTime);

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ExpiryError {
    #[error("expires_at must be an RFC 3339 timestamp, e.g. 2027-01-01T00:00:00Z")]
    Format,
    #[error("expires_at must be in the future")]
    Past,
}

impl ExpiresAt {
    pub fn parse(raw: &str) -> Result<Self, ExpiryError> {
        let instant = OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| ExpiryError::Format)?;
        Ok(ExpiresAt(truncate_to_micros(
            instant.to_offset(time::UtcOffset::UTC),
        )))
    }

    /// Refuses an instant that is not after `now`.
    pub fn check_after(self, now: OffsetDateTime) -> Result<Self, ExpiryError> {
        if self.0 <= now {
            return Err(ExpiryError::Past);
        }
        Ok(self)
    }

    pub fn get(self) -> OffsetDateTime {
        self.0
    }
}

/// Postgres keeps microseconds; truncating first makes what we answer equal what we store.
pub fn truncate_to_micros(instant: OffsetDateTime) -> OffsetDateTime {
    let micros = instant.microsecond();
    instant.replace_microsecond(micros).unwrap_or(instant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

    fn parse(raw: &str, now: OffsetDateTime) -> Result<ExpiresAt, ExpiryError> {
        ExpiresAt::parse(raw)?.check_after(now)
    }

    #[test]
    fn accepts_future_instants_and_normalises_to_utc() {
        let at = parse("2027-01-01T01:00:00+01:00", NOW).unwrap();
        assert_eq!(at.get(), datetime!(2027-01-01 00:00 UTC));
        let precise = parse("2027-01-01T00:00:00.123456789Z", NOW).unwrap();
        assert_eq!(precise.get(), datetime!(2027-01-01 00:00:00.123456 UTC));
    }

    #[test]
    fn refuses_past_and_malformed_instants() {
        assert_eq!(parse("2026-11-29T11:59:59Z", NOW), Err(ExpiryError::Past));
        assert_eq!(parse("2026-11-29T12:00:00Z", NOW), Err(ExpiryError::Past));
        for bad in [
            "tomorrow",
            "2027-01-01",
            "2027-01-01 00:00:00",
            "1700000000",
            "",
        ] {
            assert_eq!(parse(bad, NOW), Err(ExpiryError::Format), "{bad}");
        }
    }
}
