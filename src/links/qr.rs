//! QR codes of links: the image of a link's short URL, as SVG or PNG, made on the blocking
//! pool (a 2048-pixel PNG is milliseconds of CPU, which a runtime worker must not spend) and
//! at most [`RENDERS_AT_ONCE`] at a time: more are refused at once (503), not queued.
//!
//! The image depends only on the short URL, the format and the size, so its entity tag is
//! computed without making it: a client that has it gets 304 for a lookup of the link alone.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use qrcode::{Color, EcLevel, QrCode};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::{IfMatch, ResolveError, Resolver};
use crate::domain::Code;

/// Smallest and largest image, in pixels a side.
pub const MIN_SIZE: u32 = 64;
pub const MAX_SIZE: u32 = 2048;
/// The size of an image when none is asked for.
pub const DEFAULT_SIZE: u32 = 256;
/// Images made at the same time; more are refused (the blocking pool is shared with other
/// work, and a flood of large PNGs must not take it).
pub const RENDERS_AT_ONCE: usize = 4;
/// Light modules around the code, as the QR specification asks.
const QUIET_ZONE: usize = 4;
/// Changes when the images change for the same URL, format and size (so that entity tags do).
const RENDERING: &str = "1";

/// The formats a QR code is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrFormat {
    Svg,
    Png,
}

impl QrFormat {
    fn name(self) -> &'static str {
        match self {
            QrFormat::Svg => "svg",
            QrFormat::Png => "png",
        }
    }
}

/// What was asked for: the link, the format and the size (already checked at the edge).
#[derive(Debug, Clone)]
pub struct QrRequest {
    pub code: Code,
    pub format: QrFormat,
    /// Pixels a side, [`MIN_SIZE`]–[`MAX_SIZE`].
    pub size: u32,
    /// The client's `If-None-Match`: the image is not made when it holds the tag.
    pub if_none_match: Option<IfMatch>,
}

/// What the use case answers.
#[derive(Debug)]
pub enum QrAnswer {
    /// The image, and its entity tag.
    Image { bytes: Bytes, etag: String },
    /// The client holds the image already.
    Unchanged { etag: String },
}

#[derive(Debug, Error)]
pub enum QrError {
    #[error(transparent)]
    Link(#[from] ResolveError),
    /// Too many images are being made now.
    #[error("too many QR codes are being made now")]
    Busy,
    #[error("the QR code could not be made: {0}")]
    Failed(String),
}

/// Makes the QR codes of links.
pub struct QrCodes {
    resolver: Arc<Resolver>,
    /// Without a trailing slash.
    public_base_url: String,
    tasks: TaskTracker,
    renders: Arc<Semaphore>,
}

impl QrCodes {
    pub fn new(resolver: Arc<Resolver>, public_base_url: String, tasks: TaskTracker) -> Self {
        QrCodes {
            resolver,
            public_base_url,
            tasks,
            renders: Arc::new(Semaphore::new(RENDERS_AT_ONCE)),
        }
    }

    /// The image of the link named `request.code`, if it answers redirects (404 and 410 as
    /// they would), unless the client holds it.
    pub async fn image(&self, request: QrRequest) -> Result<QrAnswer, QrError> {
        self.resolver.live(&request.code).await?;
        let url = format!("{}/{}", self.public_base_url, request.code.as_str());
        let etag = etag(&url, request.format, request.size);
        let held = match &request.if_none_match {
            Some(IfMatch::Any) => true,
            Some(IfMatch::Tags(tags)) => tags.contains(&etag),
            None => false,
        };
        if held {
            return Ok(QrAnswer::Unchanged { etag });
        }
        let permit = Arc::clone(&self.renders)
            .try_acquire_owned()
            .map_err(|_| QrError::Busy)?;
        let (format, size) = (request.format, request.size);
        let made = self
            .tasks
            .spawn_blocking(move || {
                let _permit = permit;
                render(&url, format, size)
            })
            .await
            .map_err(|error| QrError::Failed(error.to_string()))??;
        Ok(QrAnswer::Image { bytes: made, etag })
    }
}

/// The entity tag of an image: what it depends on, digested.
fn etag(url: &str, format: QrFormat, size: u32) -> String {
    let digest = Sha256::digest(format!("{RENDERING}\n{url}\n{}\n{size}", format.name()));
    let mut tag = String::from("\"qr-");
    for byte in &digest[..8] {
        let _ = write!(tag, "{byte:02x}");
    }
    tag.push('"');
    tag
}

/// The image of `url`, `size` pixels a side (larger when the code does not fit in it at one
/// pixel a module).
pub fn render(url: &str, format: QrFormat, size: u32) -> Result<Bytes, QrError> {
    let code = QrCode::with_error_correction_level(url.as_bytes(), EcLevel::M)
        .map_err(|error| QrError::Failed(error.to_string()))?;
    let modules = Modules::of(&code);
    match format {
        QrFormat::Svg => Ok(svg(&modules, size)),
        QrFormat::Png => png(&modules, size),
    }
}

/// The code's modules with the quiet zone around them: `true` is dark.
struct Modules {
    /// Modules a side, quiet zone included.
    side: usize,
    dark: Vec<bool>,
}

impl Modules {
    fn of(code: &QrCode) -> Self {
        let width = code.width();
        let side = width + 2 * QUIET_ZONE;
        let mut dark = vec![false; side * side];
        for (at, color) in code.to_colors().into_iter().enumerate() {
            let (x, y) = (at % width + QUIET_ZONE, at / width + QUIET_ZONE);
            dark[y * side + x] = color == Color::Dark;
        }
        Modules { side, dark }
    }

    fn is_dark(&self, x: usize, y: usize) -> bool {
        self.dark[y * self.side + x]
    }
}

/// An SVG of `size` pixels: one path of unit squares in a viewBox of modules.
fn svg(modules: &Modules, size: u32) -> Bytes {
    let side = modules.side;
    let mut path = String::with_capacity(side * side * 4);
    for y in 0..side {
        for x in 0..side {
            if modules.is_dark(x, y) {
                let _ = write!(path, "M{x} {y}h1v1h-1z");
            }
        }
    }
    Bytes::from(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" \
         viewBox=\"0 0 {side} {side}\" shape-rendering=\"crispEdges\">\
         <rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{path}\"/></svg>\n"
    ))
}

/// A one-bit greyscale PNG: each module a square of whole pixels, the code centred in an
/// image of `size` pixels (or of the code's own size, if it is larger).
fn png(modules: &Modules, size: u32) -> Result<Bytes, QrError> {
    let side = modules.side;
    let scale = (size as usize / side).max(1);
    let pixels = (side * scale).max(size as usize);
    let offset = (pixels - side * scale) / 2;
    let row_bytes = pixels.div_ceil(8);
    // Light (1) everywhere, dark modules cleared.
    let mut data = vec![0xff_u8; row_bytes * pixels];
    for y in 0..side {
        for x in 0..side {
            if !modules.is_dark(x, y) {
                continue;
            }
            for py in offset + y * scale..offset + (y + 1) * scale {
                for px in offset + x * scale..offset + (x + 1) * scale {
                    data[py * row_bytes + px / 8] &= !(0x80 >> (px % 8));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, pixels as u32, pixels as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    encoder.set_compression(png::Compression::Fast);
    let failed = |error: png::EncodingError| QrError::Failed(error.to_string());
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(&data).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_is_the_size_asked_and_its_modules_are_whole_pixels() {
        for size in [MIN_SIZE, 100, DEFAULT_SIZE, MAX_SIZE] {
            let image = render("http://sho.rt/abcdefghijk", QrFormat::Png, size).unwrap();
            let decoder = png::Decoder::new(std::io::Cursor::new(image));
            let reader = decoder.read_info().unwrap();
            let info = reader.info();
            assert_eq!((info.width, info.height), (size, size));
        }
    }

    #[test]
    fn entity_tags_follow_what_the_image_depends_on() {
        let tag = etag("http://sho.rt/a", QrFormat::Svg, 256);
        assert_eq!(tag, etag("http://sho.rt/a", QrFormat::Svg, 256));
        for other in [
            etag("http://sho.rt/b", QrFormat::Svg, 256),
            etag("http://sho.rt/a", QrFormat::Png, 256),
            etag("http://sho.rt/a", QrFormat::Svg, 257),
        ] {
            assert_ne!(tag, other);
        }
        assert!(tag.starts_with("\"qr-") && tag.ends_with('"'));
    }
}
