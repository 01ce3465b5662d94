//! Links written in bulk with COPY, for load tests (`shortener seed`).

use bytes::{BufMut, BytesMut};
use futures_util::SinkExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Db, StorageError, pool};

/// One link to write.
pub struct SeedLink {
    pub id: i64,
    pub code: String,
    pub target_url: String,
}

impl Db {
    /// Writes `links` in one COPY (one transaction), created now. Codes and URLs must hold no
    /// tab, newline or backslash (they are written in COPY's text format as they are).
    pub async fn copy_links(&self, links: &[SeedLink]) -> Result<u64, StorageError> {
        let created = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .map_err(|error| StorageError::Unavailable(error.to_string()))?;
        let mut text = BytesMut::with_capacity(links.len() * 100);
        for link in links {
            text.put_slice(link.id.to_string().as_bytes());
            for field in [&link.code, &link.target_url, &created] {
                text.put_u8(b'\t');
                text.put_slice(field.as_bytes());
            }
            text.put_u8(b'\n');
        }
        let conn = pool::checkout(&self.write).await?;
        let sink = conn
            .client
            .copy_in("COPY links (id, code, target_url, created_at) FROM STDIN")
            .await?;
        let mut sink = std::pin::pin!(sink);
        sink.send(text.freeze()).await?;
        Ok(sink.finish().await?)
    }
}
