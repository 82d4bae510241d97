//! One conformance suite for every `BlobStore`: the filesystem and S3 (moto).

use std::sync::Arc;

#[cfg(feature = "aws")]
use apna::blob::S3BlobStore;
use apna::blob::{sha256_hex, BlobStore, FsBlobStore, ObjectHeaders};
use bytes::Bytes;
use futures::StreamExt;

async fn conformance(store: Arc<dyn BlobStore>) {
    println!("blob conformance: backend={}", store.backend());
    store.ping().await.unwrap();
    let prefix = format!("t-{}", uuid::Uuid::new_v4());

    // put / get / head round trip with checksums.
    let key = format!("{prefix}/snapshots/p1/v1.tar.zst");
    let data = Bytes::from_static(b"hello snapshot");
    let meta = store.put(&key, data.clone()).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.sha256, sha256_hex(&data));
    assert_eq!(store.get(&key).await.unwrap(), data);
    let head = store.head(&key).await.unwrap().unwrap();
    assert_eq!(
        (head.size, head.sha256.as_str()),
        (meta.size, meta.sha256.as_str())
    );

    // A put with serving headers stores the same bytes, checked the same way.
    let served = format!("{prefix}/sites/app/index.html");
    let page = Bytes::from_static(b"<!doctype html><h1>hi</h1>");
    let headers = ObjectHeaders {
        content_type: "text/html; charset=utf-8".into(),
        cache_control: "no-cache".into(),
    };
    let m = store
        .put_served(&served, page.clone(), &headers)
        .await
        .unwrap();
    assert_eq!(m.sha256, sha256_hex(&page));
    assert_eq!(store.get(&served).await.unwrap(), page);
    assert_eq!(
        store.head(&served).await.unwrap().unwrap().size,
        page.len() as u64
    );
    // Listing a prefix that stops inside a name.
    assert_eq!(
        store
            .list(&format!("{prefix}/sites/app/ind"))
            .await
            .unwrap(),
        vec![served.clone()]
    );
    assert!(store
        .list(&format!("{prefix}/sites/nope/"))
        .await
        .unwrap()
        .is_empty());
    store.delete(&served).await.unwrap();

    // Overwrite replaces.
    store.put(&key, Bytes::from_static(b"v2")).await.unwrap();
    assert_eq!(&store.get(&key).await.unwrap()[..], b"v2");

    // Missing objects.
    let missing = format!("{prefix}/nope");
    assert!(store.head(&missing).await.unwrap().is_none());
    assert!(matches!(
        store.get(&missing).await,
        Err(apna::Error::NotFound(_))
    ));
    assert!(matches!(
        store.get_stream(&missing).await,
        Err(apna::Error::NotFound(_))
    ));
    assert!(!store.delete(&missing).await.unwrap());

    // Streaming: a large object (multipart on S3) goes up and comes back intact.
    let big: Vec<u8> = (0..(9 * 1024 * 1024 + 123))
        .map(|i| (i % 251) as u8)
        .collect();
    let chunks: Vec<apna::Result<Bytes>> = big
        .chunks(300_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let big_key = format!("{prefix}/big.bin");
    let meta = store
        .put_stream(&big_key, Box::pin(futures::stream::iter(chunks)))
        .await
        .unwrap();
    assert_eq!(meta.size, big.len() as u64);
    assert_eq!(meta.sha256, sha256_hex(&big));
    let mut back = Vec::new();
    let mut stream = store.get_stream(&big_key).await.unwrap();
    while let Some(chunk) = stream.next().await {
        back.extend_from_slice(&chunk.unwrap());
    }
    assert!(back == big, "streamed object differs");
    assert_eq!(
        store.head(&big_key).await.unwrap().unwrap().sha256,
        sha256_hex(&big)
    );

    // A small stream is one put.
    let small_key = format!("{prefix}/small.bin");
    let chunks = vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"cd"))];
    let meta = store
        .put_stream(&small_key, Box::pin(futures::stream::iter(chunks)))
        .await
        .unwrap();
    assert_eq!(meta.sha256, sha256_hex(b"abcd"));

    // A failing stream stores nothing.
    let bad_key = format!("{prefix}/bad.bin");
    let chunks = vec![
        Ok(Bytes::from_static(b"ab")),
        Err(apna::Error::Io(std::io::Error::other("disk on fire"))),
    ];
    assert!(store
        .put_stream(&bad_key, Box::pin(futures::stream::iter(chunks)))
        .await
        .is_err());
    assert!(store.head(&bad_key).await.unwrap().is_none());

    // list is sorted and prefix-scoped.
    let listed = store.list(&format!("{prefix}/")).await.unwrap();
    assert_eq!(
        listed,
        vec![big_key.clone(), small_key.clone(), key.clone()]
    );
    assert_eq!(
        store.list(&format!("{prefix}/snap")).await.unwrap(),
        vec![key.clone()]
    );

    // delete.
    assert!(store.delete(&key).await.unwrap());
    assert!(store.head(&key).await.unwrap().is_none());

    // Bad keys are refused before touching the backend.
    for bad in ["", "/abs", "a/../b", "a//b", "a\\b", "sp ace", "trailing/"] {
        assert!(
            matches!(
                store.put(bad, Bytes::new()).await,
                Err(apna::Error::InvalidInput(_))
            ),
            "{bad:?}"
        );
    }
    for k in [big_key, small_key] {
        store.delete(&k).await.unwrap();
    }
}

#[tokio::test]
async fn fs_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::new(dir.path().join("blobs")).await.unwrap();
    conformance(Arc::new(store)).await;
    // No temporary files are left behind.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn s3_conformance() {
    let Some(url) = apna::testing::services::moto_url() else {
        return;
    };
    let store = S3BlobStore::connect("apna-conformance", "us-east-1", Some(&url))
        .await
        .unwrap();
    store.ensure_bucket().await.unwrap();
    conformance(Arc::new(store)).await;
}

/// S3 keeps a published file's headers with the object, so CloudFront serves
/// them (and compresses by content type).
#[cfg(feature = "aws")]
#[tokio::test]
async fn s3_keeps_serving_headers() {
    let Some(url) = apna::testing::services::moto_url() else {
        return;
    };
    let store = S3BlobStore::connect("apna-conformance", "us-east-1", Some(&url))
        .await
        .unwrap();
    store.ensure_bucket().await.unwrap();
    let key = format!(
        "t-{}/sites/app/_apna/v1-00/assets/index-x.js",
        uuid::Uuid::new_v4()
    );
    let headers = ObjectHeaders {
        content_type: "text/javascript; charset=utf-8".into(),
        cache_control: "public, max-age=31536000, immutable".into(),
    };
    store
        .put_served(&key, Bytes::from_static(b"console.log(1)"), &headers)
        .await
        .unwrap();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .load()
        .await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .endpoint_url(&url)
            .force_path_style(true)
            .build(),
    );
    let head = client
        .head_object()
        .bucket("apna-conformance")
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some(headers.content_type.as_str()));
    assert_eq!(head.cache_control(), Some(headers.cache_control.as_str()));
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn s3_missing_bucket_is_a_clear_error() {
    let Some(url) = apna::testing::services::moto_url() else {
        return;
    };
    let store = S3BlobStore::connect("no-such-bucket-here", "us-east-1", Some(&url))
        .await
        .unwrap();
    let err = store.ping().await.unwrap_err();
    assert!(err.to_string().contains("head_bucket"), "{err}");
}
