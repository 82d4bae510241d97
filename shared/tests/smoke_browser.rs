//! The browser check on the local driver, with the host's Chromium and a
//! real Vite dev server: each broken app is found and placed in its file and
//! line; a healthy one passes with screenshots.

use std::time::Duration;

use apna::sandbox::local::wait_ready;
use apna::sandbox::{ProjectPath, Sandbox, SmokeRequest};
use apna::testing::local::provider;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explore() {
    let dir = tempfile::tempdir().unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hmr = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            drop(c);
        }
    });
    let p = provider(dir.path(), Some(hmr)).await;
    p.set_warm_spare(false).await;
    let sb = p.local("smoke-explore").unwrap();
    sb.ensure().await.unwrap();
    wait_ready(&sb, Duration::from_secs(60)).await.unwrap();
    let app = std::env::var("APP").unwrap_or_else(|_| "export default function App() {\n  const items: string[] | undefined = undefined\n  return <ul>{items!.map((i) => <li>{i}</li>)}</ul>\n}\n".into());
    sb.write_file(&ProjectPath::parse("src/App.tsx").unwrap(), app.as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let r = sb.smoke_check(&SmokeRequest::default()).await;
        match r {
            Ok(r) => {
                println!(
                    "elapsed {:?} {} ms checked={} note={:?}",
                    t.elapsed(),
                    r.elapsed_ms,
                    r.checked,
                    r.note
                );
                for d in &r.diagnostics {
                    println!("  {}:{}:{} {}", d.file, d.line, d.column, d.message);
                }
                for s in &r.screenshots {
                    println!(
                        "  shot {} {}x{} {} bytes",
                        s.viewport,
                        s.width,
                        s.height,
                        s.png.len()
                    );
                    std::fs::write(format!("/tmp/smoke-{}.png", s.viewport), &s.png).unwrap();
                }
            }
            Err(e) => println!("error {e}"),
        }
    }
    println!("memory {:?}", p.browser().memory_bytes().await);
    p.stop_all().await;
}
