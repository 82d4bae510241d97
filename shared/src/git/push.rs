//! Pushing to a Git remote over smart HTTP(S): read the remote's refs
//! (`info/refs?service=git-receive-pack`), send what it lacks in one
//! `git-receive-pack` request, read its report. Fast-forwards only: a remote
//! branch whose tip is not one of ours is refused, never overwritten.
//!
//! The remote URL comes from the person, so it is checked before anything is
//! sent: HTTPS only, no credentials in it, and the host must resolve to public
//! addresses, which the connection is then pinned to (no redirects), so a
//! push cannot be pointed at this server's own network. `APNA_GIT_ALLOW_PRIVATE_REMOTES`
//! lifts that for tests and private networks. The token goes in the
//! Authorization header only; it is never logged nor part of an error.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use gix_hash::ObjectId;
use url::Url;

use super::repo::Repo;
use crate::error::{Error, Result};

/// Longest a push may take in all (an API request must end within 29 s).
const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest ref advertisement or report read from a remote.
const MAX_REPLY: usize = 4 * 1024 * 1024;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// Commits the remote did not have before.
    pub commits: usize,
    /// Objects sent.
    pub objects: usize,
    /// The remote branch's tip now.
    pub head: ObjectId,
    /// Whether the remote was already up to date (nothing sent).
    pub up_to_date: bool,
}

/// A checked remote: the URL without a trailing slash, and the address it resolved to.
#[derive(Debug, Clone)]
pub struct Remote {
    url: Url,
    pin: Option<(String, SocketAddr)>,
}

/// Checks `raw` as a push target and resolves its host.
pub async fn check_remote(raw: &str, allow_private: bool) -> Result<Remote> {
    let bad = |why: &str| Err(Error::InvalidInput(format!("remote_url refused: {why}")));
    let url = match Url::parse(raw.trim()) {
        Ok(u) => u,
        Err(_) => return bad("it is not a URL like https://github.com/you/app.git"),
    };
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return bad("only https:// remotes are supported"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("put the token in the token field, not in the URL");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("it has a query or fragment");
    }
    let Some(host) = url.host_str().map(str::to_string) else {
        return bad("it has no host");
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((host.trim_matches(['[', ']']), port)),
    )
    .await
    .map_err(|_| Error::InvalidInput(format!("remote_url refused: looking up {host} timed out")))?
    .map_err(|_| Error::InvalidInput(format!("remote_url refused: {host} does not resolve")))?
    .collect();
    let Some(first) = addrs.first().copied() else {
        return bad("its host does not resolve");
    };
    if !allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
        return bad("its host is not a public address");
    }
    let mut url = url;
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(Remote {
        url,
        pin: Some((host, first)),
    })
}

/// Whether `ip` is a globally routable unicast address.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || s[0] == 0x2001 && s[1] == 0xdb8)
        }
    }
}

/// Encodes one pkt-line.
fn pkt_line(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", data.len() + 4).into_bytes();
    out.extend_from_slice(data);
    out
}

/// Splits pkt-lines (`None` for a flush packet); stops at malformed input.
fn pkt_lines(mut data: &[u8]) -> Result<Vec<Option<&[u8]>>> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = std::str::from_utf8(&data[..4])
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                Error::InvalidInput("the remote's reply is not Git's protocol".into())
            })?;
        if len == 0 {
            out.push(None);
            data = &data[4..];
            continue;
        }
        if len < 4 || len > data.len() {
            return Err(Error::InvalidInput(
                "the remote's reply is not Git's protocol".into(),
            ));
        }
        out.push(Some(&data[4..len]));
        data = &data[len..];
    }
    Ok(out)
}

struct Client {
    http: reqwest::Client,
    remote: Remote,
    auth: Option<String>,
}

impl Client {
    fn new(remote: Remote, token: Option<&str>) -> Result<Client> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .user_agent("git/2.0 (apna)");
        if let Some((host, addr)) = &remote.pin {
            builder = builder.resolve(host, *addr);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Internal(format!("http client: {e}")))?;
        // Hosts accept a token as the password of any user (GitHub: x-access-token).
        let auth = token.map(|t| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{t}"))
            )
        });
        Ok(Client { http, remote, auth })
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Vec<u8>> {
        let req = match &self.auth {
            Some(a) => req.header(reqwest::header::AUTHORIZATION, a),
            None => req,
        };
        let host = self
            .remote
            .url
            .host_str()
            .unwrap_or("the remote")
            .to_string();
        // reqwest's errors name the URL, never the headers: safe to show.
        let resp = req.send().await.map_err(|e| {
            Error::NotReady(format!(
                "could not reach {host} ({what}): {}",
                e.without_url()
            ))
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Error::InvalidInput(format!(
                "{host} refused the push ({status}): check the token and that it may write to this repository"
            )));
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Error::InvalidInput(format!(
                "{host} has no repository at {} (404)",
                self.remote.url.path()
            )));
        }
        if !status.is_success() {
            return Err(Error::InvalidInput(format!(
                "{host} answered {status} to {what}"
            )));
        }
        let body = resp.bytes().await.map_err(|e| {
            Error::NotReady(format!("reading {host}'s answer: {}", e.without_url()))
        })?;
        if body.len() > MAX_REPLY {
            return Err(Error::InvalidInput(format!("{host}'s answer is too large")));
        }
        Ok(body.to_vec())
    }

    /// The remote's refs: name → id.
    async fn refs(&self) -> Result<Vec<(String, ObjectId)>> {
        let url = format!("{}/info/refs?service=git-receive-pack", self.remote.url);
        let body = self.send(self.http.get(url), "listing refs").await?;
        let mut refs = Vec::new();
        for line in pkt_lines(&body)?.into_iter().flatten() {
            if line.starts_with(b"#") {
                continue;
            }
            let line = line.split(|b| *b == 0).next().unwrap_or(line);
            let text = String::from_utf8_lossy(line);
            let mut parts = text.trim_end().splitn(2, ' ');
            let (Some(id), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(id) = ObjectId::from_hex(id.as_bytes()) else {
                return Err(Error::InvalidInput(
                    "the remote's ref list is not Git's protocol (SHA-1 repositories only)".into(),
                ));
            };
            if !id.is_null() {
                refs.push((name.to_string(), id));
            }
        }
        Ok(refs)
    }

    async fn receive_pack(&self, body: Vec<u8>) -> Result<Vec<u8>> {
        let url = format!("{}/git-receive-pack", self.remote.url);
        self.send(
            self.http
                .post(url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-git-receive-pack-request",
                )
                .header(
                    reqwest::header::ACCEPT,
                    "application/x-git-receive-pack-result",
                )
                .body(body),
            "the push",
        )
        .await
    }
}

/// Pushes `repo`'s history to `branch` of `remote`: only the commits the
/// remote lacks; `Conflict` when the remote branch has moved on.
pub async fn push(
    repo: &Repo,
    remote: Remote,
    branch: &str,
    token: Option<&str>,
) -> Result<PushOutcome> {
    let head = repo
        .head()
        .ok_or_else(|| Error::Conflict("the project has no versions yet".into()))?;
    let refname = format!("refs/heads/{branch}");
    let client = Client::new(remote, token)?;
    let theirs = client
        .refs()
        .await?
        .into_iter()
        .find(|(name, _)| *name == refname)
        .map(|(_, id)| id);
    let ours: Vec<ObjectId> = repo.commits.iter().map(|(_, id)| *id).collect();
    if theirs == Some(head) {
        return Ok(PushOutcome {
            commits: 0,
            objects: 0,
            head,
            up_to_date: true,
        });
    }
    let new_commits = match theirs {
        None => ours.len(),
        Some(t) => match ours.iter().position(|id| *id == t) {
            Some(i) => ours.len() - i - 1,
            None => {
                return Err(Error::Conflict(format!(
                    "{branch} on the remote has commits that are not this project's versions; \
                     Apna never overwrites them: push to a new branch, or to an empty repository"
                )))
            }
        },
    };
    let (pack, objects) = repo.pack(head, theirs)?;
    let old = theirs.unwrap_or_else(|| ObjectId::null(gix_hash::Kind::Sha1));
    let mut body =
        pkt_line(format!("{old} {head} {refname}\0report-status agent=apna\n").as_bytes());
    body.extend_from_slice(b"0000");
    body.extend(pack);
    let reply = client.receive_pack(body).await?;
    let lines: Vec<String> = pkt_lines(&reply)?
        .into_iter()
        .flatten()
        .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
        .collect();
    if let Some(unpack) = lines.iter().find(|l| l.starts_with("unpack ")) {
        if unpack != "unpack ok" {
            return Err(Error::InvalidInput(format!(
                "the remote could not unpack: {unpack}"
            )));
        }
    }
    if let Some(ng) = lines
        .iter()
        .find(|l| l.starts_with(&format!("ng {refname}")))
    {
        return Err(Error::Conflict(format!(
            "the remote refused the update: {ng}"
        )));
    }
    if !lines.iter().any(|l| *l == format!("ok {refname}")) {
        return Err(Error::InvalidInput(format!(
            "the remote did not confirm the push: {}",
            lines.join("; ").chars().take(300).collect::<String>()
        )));
    }
    Ok(PushOutcome {
        commits: new_commits,
        objects,
        head,
        up_to_date: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkt_lines_round_trip() {
        let mut data = pkt_line(b"hello\n");
        data.extend_from_slice(b"0000");
        data.extend(pkt_line(b"x"));
        let lines = pkt_lines(&data).unwrap();
        assert_eq!(lines, vec![Some(&b"hello\n"[..]), None, Some(&b"x"[..])]);
        assert!(pkt_lines(b"zzzz").is_err());
        assert!(pkt_lines(b"00ff").is_err());
    }

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["140.82.112.3", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn remotes_are_checked_before_anything_is_sent() {
        for bad in [
            "not a url",
            "http://example.com/a.git",
            "ftp://example.com/a.git",
            "file:///etc/passwd",
            "https://user:secret@github.com/a/b.git",
            "https://127.0.0.1/a.git",
            "https://localhost/a.git",
            "https://169.254.169.254/latest",
            "https://[::1]/a.git",
            "https://10.0.0.1/a.git",
            "https://github.com/a/b.git?x=1",
        ] {
            let e = check_remote(bad, false).await.unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{bad}: {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
        assert!(check_remote("http://127.0.0.1:9/a.git", true).await.is_ok());
    }
}
