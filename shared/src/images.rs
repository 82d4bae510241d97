//! Images a person attaches to a message: checked, shrunk to what the model
//! accepts, stored content-addressed under the project, and inlined as
//! base64 image blocks only when a model request is built.
//!
//! The type comes from the bytes (never from a name or a declared type) and
//! every image is decoded whole before anything is stored, so a PNG header on
//! something else is refused. Images larger than the model takes (long edge
//! over 1568 px or about 1,600 tokens, as Anthropic documents) are scaled down
//! here, once, so the stored image is exactly what the model sees and its
//! token cost is known: `width × height / 750`.
//!
//! Stored under `projects/{id}/images/{sha256}`, inside the project's blob
//! prefix, so hibernation leaves them alone and a purge removes them.

use std::io::Cursor;

use crate::blob::{sha256_hex, BlobStore};
use crate::domain::{ContentBlock, ImageRef, ImageSource};
use crate::error::{Error, Result};
use base64::Engine;
use bytes::Bytes;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// Most images one message may carry.
pub const MAX_IMAGES: usize = 5;
/// Largest image accepted, in bytes of the decoded (not base64) file.
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// The model's longest edge; longer images are scaled down.
pub const MAX_LONG_EDGE: u32 = 1568;
/// The model's largest area (1092², about 1,590 tokens); larger images are scaled down.
pub const MAX_PIXELS: u64 = 1092 * 1092;
/// Images wider or taller than this are refused (the API's own limit is 8000 px).
pub const MAX_SOURCE_EDGE: u32 = 8000;
/// Most images of a conversation sent with each model call; older ones are
/// described in words (the model can still `save_image` them).
pub const MAX_IMAGES_IN_CONTEXT: usize = 20;

/// Image types the model accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// WebP.
    Webp,
    /// GIF (the model sees the first frame).
    Gif,
}

impl MediaType {
    /// The MIME type.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Png => "image/png",
            MediaType::Jpeg => "image/jpeg",
            MediaType::Webp => "image/webp",
            MediaType::Gif => "image/gif",
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            MediaType::Png => "png",
            MediaType::Jpeg => "jpg",
            MediaType::Webp => "webp",
            MediaType::Gif => "gif",
        }
    }

    /// The type the bytes say they are, when it is one the model accepts.
    pub fn sniff(data: &[u8]) -> Option<MediaType> {
        match image::guess_format(data).ok()? {
            ImageFormat::Png => Some(MediaType::Png),
            ImageFormat::Jpeg => Some(MediaType::Jpeg),
            ImageFormat::WebP => Some(MediaType::Webp),
            ImageFormat::Gif => Some(MediaType::Gif),
            _ => None,
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            MediaType::Png => ImageFormat::Png,
            MediaType::Jpeg => ImageFormat::Jpeg,
            MediaType::Webp => ImageFormat::WebP,
            MediaType::Gif => ImageFormat::Gif,
        }
    }
}

/// An image checked and ready to store.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    /// The bytes to store (the upload, or its scaled-down re-encoding).
    pub bytes: Bytes,
    /// How a message will refer to it.
    pub meta: ImageRef,
}

/// Input tokens Anthropic documents for an image: `width × height / 750`, rounded up.
pub fn estimated_tokens(width: u32, height: u32) -> u64 {
    (u64::from(width) * u64::from(height)).div_ceil(750)
}

/// The size an image is scaled to so the model takes it as is.
pub fn fitted_size(width: u32, height: u32) -> (u32, u32) {
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let by_edge = f64::from(MAX_LONG_EDGE) / w.max(h);
    let by_area = (MAX_PIXELS as f64 / (w * h)).sqrt();
    let scale = by_edge.min(by_area);
    if scale >= 1.0 {
        return (width, height);
    }
    // The epsilon keeps 3000 × (1568 / 3000) from flooring to 1567.
    (
        ((w * scale + 1e-6).floor() as u32).max(1),
        ((h * scale + 1e-6).floor() as u32).max(1),
    )
}

/// Checks one upload (`label` names it in errors, e.g. `image 2 ("shot.png")`):
/// size, type from the bytes, a full decode, then scaling when needed.
/// CPU-bound: call it from a blocking task.
pub fn prepare(data: &[u8], label: &str) -> Result<PreparedImage> {
    if data.is_empty() {
        return Err(Error::InvalidInput(format!("{label} is empty")));
    }
    if data.len() > MAX_IMAGE_BYTES {
        return Err(Error::TooLarge(format!(
            "{label} is {:.1} MB; an image may be at most {} MB",
            data.len() as f64 / 1_048_576.0,
            MAX_IMAGE_BYTES / 1_048_576
        )));
    }
    let media_type = MediaType::sniff(data).ok_or_else(|| {
        Error::InvalidInput(format!(
            "{label} is not a PNG, JPEG, WebP or GIF image (judged by its content, not its name)"
        ))
    })?;
    let mut reader = ImageReader::with_format(Cursor::new(data), media_type.format());
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_EDGE);
    limits.max_image_height = Some(MAX_SOURCE_EDGE);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => Error::TooLarge(format!(
            "{label} is larger than {MAX_SOURCE_EDGE}×{MAX_SOURCE_EDGE} pixels"
        )),
        e => Error::InvalidInput(format!(
            "{label} starts like a {} image but is not a valid one: {e}",
            media_type.extension().to_uppercase()
        )),
    })?;
    let (width, height) = (img.width(), img.height());
    let (fw, fh) = fitted_size(width, height);
    if (fw, fh) == (width, height) {
        let bytes = Bytes::copy_from_slice(data);
        return Ok(PreparedImage {
            meta: ImageRef {
                id: sha256_hex(&bytes),
                media_type: media_type.as_str().to_string(),
                width,
                height,
                size: bytes.len() as u64,
            },
            bytes,
        });
    }
    let small = img.resize_exact(fw, fh, image::imageops::FilterType::Triangle);
    let (bytes, media_type) = encode(&small, media_type)?;
    Ok(PreparedImage {
        meta: ImageRef {
            id: sha256_hex(&bytes),
            media_type: media_type.as_str().to_string(),
            width: fw,
            height: fh,
            size: bytes.len() as u64,
        },
        bytes,
    })
}

/// Re-encodes a scaled image: photos (JPEG, opaque WebP) as JPEG, everything
/// else as PNG, which keeps a screenshot's text sharp.
fn encode(img: &DynamicImage, was: MediaType) -> Result<(Bytes, MediaType)> {
    let mut out = Cursor::new(Vec::new());
    let photo =
        matches!(was, MediaType::Jpeg) || (was == MediaType::Webp && !img.color().has_alpha());
    let media_type = if photo {
        let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
        DynamicImage::ImageRgb8(img.to_rgb8())
            .write_with_encoder(enc)
            .map_err(|e| Error::Internal(format!("encoding a scaled image: {e}")))?;
        MediaType::Jpeg
    } else {
        img.write_to(&mut out, ImageFormat::Png)
            .map_err(|e| Error::Internal(format!("encoding a scaled image: {e}")))?;
        MediaType::Png
    };
    Ok((Bytes::from(out.into_inner()), media_type))
}

/// Checks and prepares a message's uploads, each named by `labels[i]` in errors,
/// off the async runtime. Nothing is stored.
pub async fn prepare_all(uploads: Vec<(Vec<u8>, String)>) -> Result<Vec<PreparedImage>> {
    if uploads.len() > MAX_IMAGES {
        return Err(Error::InvalidInput(format!(
            "a message may carry at most {MAX_IMAGES} images; this one has {}",
            uploads.len()
        )));
    }
    tokio::task::spawn_blocking(move || {
        uploads
            .iter()
            .map(|(data, label)| prepare(data, label))
            .collect()
    })
    .await
    .map_err(|e| Error::Internal(format!("image task: {e}")))?
}

/// `projects/{id}/images/{sha256}`: one stored image.
pub fn image_key(project_id: &str, image_id: &str) -> String {
    format!("projects/{project_id}/images/{image_id}")
}

/// Whether `id` has the shape of an image id (64 lower-case hex digits).
pub fn is_image_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Stores prepared images under the project (an image stored before is not
/// written again) and returns what messages refer to them by.
pub async fn store(
    blobs: &dyn BlobStore,
    project_id: &str,
    images: &[PreparedImage],
) -> Result<Vec<ImageRef>> {
    let mut refs = Vec::with_capacity(images.len());
    for img in images {
        let key = image_key(project_id, &img.meta.id);
        if blobs.head(&key).await?.is_none() {
            blobs.put(&key, img.bytes.clone()).await?;
        }
        refs.push(img.meta.clone());
    }
    Ok(refs)
}

/// One stored image's bytes and type; `NotFound` when the project has no such image.
pub async fn load(
    blobs: &dyn BlobStore,
    project_id: &str,
    image_id: &str,
) -> Result<(Bytes, MediaType)> {
    let missing = || Error::NotFound(format!("image {image_id} not found"));
    if !is_image_id(image_id) {
        return Err(missing());
    }
    let bytes = match blobs.get(&image_key(project_id, image_id)).await {
        Ok(b) => b,
        Err(Error::NotFound(_)) => return Err(missing()),
        Err(e) => return Err(e),
    };
    let media_type = MediaType::sniff(&bytes)
        .ok_or_else(|| Error::Internal(format!("stored image {image_id} is not an image")))?;
    Ok((bytes, media_type))
}

/// Replaces stored images among `blocks` by their base64 data, as the
/// Messages API (and Bedrock) take them. A missing image becomes a sentence
/// saying so rather than failing the run.
pub async fn inline(
    blobs: &dyn BlobStore,
    project_id: &str,
    blocks: &mut [ContentBlock],
) -> Result<()> {
    for block in blocks.iter_mut() {
        let ContentBlock::Image {
            source: ImageSource::Stored(r),
        } = &*block
        else {
            continue;
        };
        *block = match load(blobs, project_id, &r.id).await {
            Ok((bytes, media_type)) => ContentBlock::Image {
                source: ImageSource::Base64 {
                    media_type: media_type.as_str().to_string(),
                    data: base64::engine::general_purpose::STANDARD.encode(&bytes),
                },
            },
            Err(Error::NotFound(_)) => ContentBlock::Text {
                text: format!("[image {} is no longer stored]", r.id),
            },
            Err(e) => return Err(e),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        }));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn tokens_follow_the_documented_formula() {
        assert_eq!(estimated_tokens(1092, 1092), 1590);
        assert_eq!(estimated_tokens(1280, 800), 1366);
        assert_eq!(estimated_tokens(200, 200), 54);
    }

    #[test]
    fn large_images_are_fitted_to_the_model() {
        assert_eq!(fitted_size(1280, 800), (1280, 800));
        let (w, h) = fitted_size(4000, 3000);
        assert!(w <= MAX_LONG_EDGE && u64::from(w) * u64::from(h) <= MAX_PIXELS);
        assert!((f64::from(w) / f64::from(h) - 4.0 / 3.0).abs() < 0.01);
        let (w, h) = fitted_size(3000, 200);
        assert_eq!(w, MAX_LONG_EDGE);
        assert!(h >= 104);
    }

    #[test]
    fn prepare_keeps_small_images_and_scales_large_ones() {
        let small = png(64, 32);
        let p = prepare(&small, "image 1").unwrap();
        assert_eq!(&p.bytes[..], &small[..]);
        assert_eq!((p.meta.width, p.meta.height), (64, 32));
        assert_eq!(p.meta.media_type, "image/png");
        assert_eq!(p.meta.id, sha256_hex(&small));

        let big = png(2000, 1000);
        let p = prepare(&big, "image 1").unwrap();
        // The area binds here: 1544×772, under 1092² pixels and 1568 px.
        assert_eq!((p.meta.width, p.meta.height), (1544, 772));
        assert_eq!(p.meta.media_type, "image/png");
        assert!(p.meta.estimated_tokens() <= 1600);
        assert_eq!(
            MediaType::sniff(&p.bytes),
            Some(MediaType::Png),
            "stored as the PNG it claims"
        );
    }

    #[test]
    fn prepare_refuses_what_is_not_an_image() {
        let e = prepare(b"GIF87a\x02\x00\x02\x00 but not really", "image 1").unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
        let mut fake = b"\x89PNG\r\n\x1a\n".to_vec();
        fake.extend_from_slice(&[0u8; 100]);
        let e = prepare(&fake, "image 2").unwrap_err();
        assert!(e.to_string().contains("not a valid one"), "{e}");
        let e = prepare(b"%PDF-1.4", "image 3").unwrap_err();
        assert!(
            e.to_string().contains("not a PNG, JPEG, WebP or GIF"),
            "{e}"
        );
        let e = prepare(&vec![0u8; MAX_IMAGE_BYTES + 1], "image 4").unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
    }
}
