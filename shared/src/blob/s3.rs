//! Blob store on S3 or any S3-compatible server (`S3_ENDPOINT`: MinIO, R2, moto).
//!
//! Puts send the SHA-256 so the server rejects corrupted uploads, and keep the
//! hex digest in object metadata (`x-amz-meta-sha256`), which every
//! S3-compatible server returns from HEAD; large streams go up as multipart.

use async_trait::async_trait;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::{check_key, BlobMeta, BlobStore, ByteStream, ObjectHeaders};
use crate::error::{Error, Result};

/// Parts of a multipart upload (S3's minimum part size is 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Metadata key holding the hex SHA-256.
const SHA_META: &str = "sha256";

/// An S3-backed [`BlobStore`].
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
}

fn s3_err<E: ProvideErrorMetadata + std::fmt::Debug>(op: &str, e: SdkError<E>) -> Error {
    let detail = match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => code.to_string(),
                // No parsed error: show the HTTP status and the start of the body.
                _ => {
                    let raw = se.raw();
                    let body = raw
                        .body()
                        .bytes()
                        .map(|b| {
                            String::from_utf8_lossy(b)
                                .chars()
                                .take(300)
                                .collect::<String>()
                        })
                        .unwrap_or_default();
                    format!("HTTP {} {body}", raw.status().as_u16())
                }
            }
        }
        other => format!("{other:?}").chars().take(300).collect(),
    };
    Error::Blob(format!("s3 {op}: {detail}"))
}

fn is_not_found<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    match e {
        SdkError::ServiceError(se) => {
            matches!(se.err().code(), Some("NoSuchKey" | "NotFound" | "404"))
                || se.raw().status().as_u16() == 404
        }
        _ => false,
    }
}

impl S3BlobStore {
    /// A client for `bucket` in `region`, optionally at a custom endpoint
    /// (path-style addressing then, as MinIO and moto expect).
    pub async fn connect(bucket: &str, region: &str, endpoint: Option<&str>) -> Result<Self> {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .load()
            .await;
        // Checksums are sent explicitly (SHA-256 on put); the SDK's default extra
        // CRC32 on every request trips some S3-compatible servers' multipart APIs.
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .interceptor(crate::xray::aws::XRayInterceptor::from_env());
        if let Some(ep) = endpoint {
            builder = builder.endpoint_url(ep).force_path_style(true);
        }
        Ok(S3BlobStore {
            client: Client::from_conf(builder.build()),
            bucket: bucket.to_string(),
        })
    }

    /// Creates the bucket if it does not exist (local S3-compatible servers, tests).
    pub async fn ensure_bucket(&self) -> Result<()> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(s3_err("create_bucket", e)),
        }
    }

    async fn get_object(
        &self,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        check_key(key)?;
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Ok(o),
            Err(e) if is_not_found(&e) => Err(Error::NotFound(format!("no object at {key}"))),
            Err(e) => Err(s3_err("get_object", e)),
        }
    }

    async fn put_single(
        &self,
        key: &str,
        data: Bytes,
        headers: Option<&ObjectHeaders>,
    ) -> Result<BlobMeta> {
        let digest = Sha256::digest(&data);
        let hex_sha = hex::encode(digest);
        let size = data.len() as u64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
            .metadata(SHA_META, &hex_sha)
            .set_content_type(headers.map(|h| h.content_type.clone()))
            .set_cache_control(headers.map(|h| h.cache_control.clone()))
            .body(S3Body::from(data))
            .send()
            .await
            .map_err(|e| s3_err("put_object", e))?;
        Ok(BlobMeta {
            key: key.to_string(),
            size,
            sha256: hex_sha,
        })
    }

    async fn put_multipart(
        &self,
        key: &str,
        first: Bytes,
        mut rest: ByteStream,
    ) -> Result<BlobMeta> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_err("create_multipart_upload", e))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| Error::Blob("s3 returned no upload id".into()))?
            .to_string();
        let result = async {
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut parts = Vec::new();
            let mut buf = BytesMut::from(&first[..]);
            let mut done = false;
            while !done {
                while buf.len() < PART_SIZE {
                    match rest.next().await {
                        Some(chunk) => buf.extend_from_slice(&chunk?),
                        None => {
                            done = true;
                            break;
                        }
                    }
                }
                if buf.is_empty() {
                    break;
                }
                let take = buf.len().min(PART_SIZE);
                let part = buf.split_to(take).freeze();
                hasher.update(&part);
                size += part.len() as u64;
                let number = parts.len() as i32 + 1;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(S3Body::from(part))
                    .send()
                    .await
                    .map_err(|e| s3_err("upload_part", e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build(),
                );
                if done && !buf.is_empty() {
                    done = false;
                }
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| s3_err("complete_multipart_upload", e))?;
            Ok::<_, Error>((hex::encode(hasher.finalize()), size))
        }
        .await;
        let (sha256, size) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        // The digest is only known at the end; record it by copying the object
        // onto itself with new metadata.
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(key)
            .copy_source(format!("{}/{}", self.bucket, key))
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .metadata(SHA_META, &sha256)
            .send()
            .await
            .map_err(|e| s3_err("copy_object", e))?;
        Ok(BlobMeta {
            key: key.to_string(),
            size,
            sha256,
        })
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn backend(&self) -> &'static str {
        "s3"
    }

    async fn ping(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| s3_err("head_bucket", e))?;
        Ok(())
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<BlobMeta> {
        check_key(key)?;
        self.put_single(key, data, None).await
    }

    async fn put_served(
        &self,
        key: &str,
        data: Bytes,
        headers: &ObjectHeaders,
    ) -> Result<BlobMeta> {
        check_key(key)?;
        self.put_single(key, data, Some(headers)).await
    }

    async fn put_stream(&self, key: &str, mut data: ByteStream) -> Result<BlobMeta> {
        check_key(key)?;
        // Small streams (the common case for source snapshots) go up in one request.
        let mut first = BytesMut::new();
        while first.len() < PART_SIZE {
            match data.next().await {
                Some(chunk) => first.extend_from_slice(&chunk?),
                None => return self.put_single(key, first.freeze(), None).await,
            }
        }
        self.put_multipart(key, first.freeze(), data).await
    }

    async fn presigned_get(
        &self,
        key: &str,
        expires: std::time::Duration,
        filename: &str,
    ) -> Result<Option<String>> {
        check_key(key)?;
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires)
            .map_err(|e| Error::Blob(format!("presign {key}: {e}")))?;
        let filename: String = filename
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(format!("attachment; filename=\"{filename}\""))
            .presigned(config)
            .await
            .map_err(|e| Error::Blob(format!("presign {key}: {e}")))?;
        Ok(Some(req.uri().to_string()))
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let out = self.get_object(key).await?;
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| Error::Blob(format!("s3 read {key}: {e}")))?;
        Ok(data.into_bytes())
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream> {
        let out = self.get_object(key).await?;
        let key = key.to_string();
        let stream = futures::stream::unfold(Some(out.body), move |body| {
            let key = key.clone();
            async move {
                let mut body = body?;
                match body.try_next().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some(body))),
                    Ok(None) => None,
                    Err(e) => Some((Err(Error::Blob(format!("s3 read {key}: {e}"))), None)),
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>> {
        check_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => {
                let sha256 = o
                    .metadata()
                    .and_then(|m| m.get(SHA_META))
                    .cloned()
                    .unwrap_or_default();
                Ok(Some(BlobMeta {
                    key: key.to_string(),
                    size: o.content_length().unwrap_or(0).max(0) as u64,
                    sha256,
                }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s3_err("head_object", e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| s3_err("list_objects_v2", e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        if self.head(key).await?.is_none() {
            return Ok(false);
        }
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_err("delete_object", e))?;
        Ok(true)
    }
}
