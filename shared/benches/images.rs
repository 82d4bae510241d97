//! What an attached screenshot costs (issue #21): request sizes, the model's
//! input tokens for it, and the time to check and store it.
//!
//! `cargo bench -p apna --bench images --profile dev`
//!
//! The screenshot is `docs/screenshot.png` (the project view, 1280×800 PNG).
//! Prints one table: sizes in bytes, times as p50 / p95 of `ROUNDS` rounds.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apna::agent::{anthropic::messages_body, ModelMessage, ModelRequest};
use apna::domain::{ContentBlock, ImageSource, Role};
use apna::store::SqliteStore;
use apna::testing::api::harness;
use base64::Engine;
use serde_json::json;

const ROUNDS: usize = 30;

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 95 / 100).min(v.len() - 1)]),
    )
}

fn body_bytes(messages: Vec<ModelMessage>) -> usize {
    let req = ModelRequest {
        system: String::new(),
        tools: vec![],
        messages,
        max_tokens: 1000,
    };
    serde_json::to_vec(&messages_body(&req).unwrap())
        .unwrap()
        .len()
}

#[tokio::main]
async fn main() {
    let shot = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/screenshot.png"
    ))
    .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&shot);
    let prompt = "make it look like this";

    // The create request, with and without the screenshot.
    let plain = json!({ "prompt": prompt }).to_string();
    let with = json!({ "prompt": prompt, "images": [{ "data": b64, "name": "screenshot.png" }] })
        .to_string();

    // The model request: the same conversation, with the image inlined.
    let prepared = apna::images::prepare(&shot, "image 1").unwrap();
    let text = ContentBlock::Text {
        text: prompt.into(),
    };
    let without_image = body_bytes(vec![ModelMessage {
        role: Role::User,
        content: vec![text.clone()],
    }]);
    let with_image = body_bytes(vec![ModelMessage {
        role: Role::User,
        content: vec![
            ContentBlock::Image {
                source: ImageSource::Base64 {
                    media_type: "image/png".into(),
                    data: b64.clone(),
                },
            },
            text,
        ],
    }]);
    let tokens = prepared.meta.estimated_tokens();

    // Checking (sniff + full decode) a screenshot, and scaling a large photo.
    let mut check = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        apna::images::prepare(&shot, "image 1").unwrap();
        check.push(t.elapsed());
    }
    let photo = {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(4000, 3000, |x, y| {
            image::Rgb([
                (x / 7 % 256) as u8,
                (y / 5 % 256) as u8,
                ((x + y) / 11 % 256) as u8,
            ])
        }));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    };
    let mut scale = Vec::new();
    let mut scaled = None;
    for _ in 0..5 {
        let t = Instant::now();
        scaled = Some(apna::images::prepare(&photo, "image 1").unwrap());
        scale.push(t.elapsed());
    }
    let scaled = scaled.unwrap();

    // POST /api/projects through the router (SQLite in memory, disk blobs), with and without.
    let h = harness(
        Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap()),
        &[
            ("APNA_MAX_PROJECTS", "1000"),
            ("APNA_MAX_ACTIVE_RUNS", "1000"),
        ],
    )
    .await;
    let mut create_plain = Vec::new();
    let mut create_with = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let r = h.post("/api/projects", None, &plain).await;
        assert_eq!(r.status.as_u16(), 202, "{}", r.text);
        create_plain.push(t.elapsed());
        let t = Instant::now();
        let r = h.post("/api/projects", None, &with).await;
        assert_eq!(r.status.as_u16(), 202, "{}", r.text);
        create_with.push(t.elapsed());
    }

    let (c50, c95) = percentiles(check);
    let (s50, s95) = percentiles(scale);
    let (p50, p95) = percentiles(create_plain);
    let (w50, w95) = percentiles(create_with);
    println!("| | figure |");
    println!("|---|---|");
    println!(
        "| the screenshot | {}×{} PNG, {} bytes |",
        prepared.meta.width,
        prepared.meta.height,
        shot.len()
    );
    println!(
        "| create request | {} → {} bytes (+{}: base64 is 4/3 of the file) |",
        plain.len(),
        with.len(),
        with.len() - plain.len()
    );
    println!(
        "| model request body | {without_image} → {with_image} bytes (+{}) |",
        with_image - without_image
    );
    println!("| model input tokens for the image (width × height / 750) | {tokens} (≈ ${:.4} uncached, ${:.5} from the prompt cache, Sonnet) |", tokens as f64 * 3.0 / 1e6, tokens as f64 * 0.3 / 1e6);
    println!(
        "| stored | {} bytes (the upload as is: it fits the model) |",
        prepared.meta.size
    );
    println!("| check (sniff + full decode), p50 / p95 | {c50:.1} / {c95:.1} ms |");
    println!("| 4000×3000 JPEG ({} bytes) scaled to {}×{} ({} bytes, {} tokens), p50 / p95 | {s50:.0} / {s95:.0} ms |", photo.len(), scaled.meta.width, scaled.meta.height, scaled.meta.size, scaled.meta.estimated_tokens());
    println!("| POST /api/projects without / with the screenshot, p50 | {p50:.1} / {w50:.1} ms (p95 {p95:.1} / {w95:.1}) |");
}
