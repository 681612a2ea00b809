//! Pages of a list: at most `limit` items and an opaque `nextToken` to ask for the
//! next page with. Every list of the API (devices, events, telemetry) pages this way, so
//! no response grows with the fleet (Lambda answers at most 6 MB).
//!
//! A token is the adapter's position (a DynamoDB `LastEvaluatedKey`, an offset)
//! serialized to JSON and base64url-encoded: callers pass it back unchanged. A token
//! that does not decode is the caller's mistake ([`BadPageToken`], HTTP 400).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The page size when the caller gives none.
pub const DEFAULT_PAGE_LIMIT: usize = 1_000;
/// The largest page a caller may ask for.
pub const MAX_PAGE_LIMIT: usize = 10_000;

/// Which page to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many items (1..=[`MAX_PAGE_LIMIT`]).
    pub limit: usize,
    /// Where the previous page ended; `None` for the first page.
    pub token: Option<String>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: DEFAULT_PAGE_LIMIT,
            token: None,
        }
    }
}

impl PageRequest {
    pub fn first(limit: usize) -> Self {
        Self { limit, token: None }
    }

    /// The position in the token, if any.
    pub fn position<T: DeserializeOwned>(&self) -> Result<Option<T>, BadPageToken> {
        self.token.as_deref().map(decode_token).transpose()
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass it back for the next page; `None` on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

impl<T> Page<T> {
    pub fn last(items: Vec<T>) -> Self {
        Self {
            items,
            next_token: None,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_token: self.next_token,
        }
    }
}

/// A page token that is not one this platform gave out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid page token: {0}")]
pub struct BadPageToken(pub String);

/// The token of a position.
pub fn encode_token<T: Serialize>(position: &T) -> String {
    // Serializing plain keys to JSON cannot fail; an empty token would restart the list.
    let json = serde_json::to_vec(position).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// The position in a token.
pub fn decode_token<T: DeserializeOwned>(token: &str) -> Result<T, BadPageToken> {
    let json = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|e| BadPageToken(format!("not base64url: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| BadPageToken(format!("not a position: {e}")))
}

/// Reads every page of a paged list (for callers that need the whole list and know
/// it is bounded, such as a command sent to a label selector).
pub async fn collect_all<T, E, F, Fut>(mut read: F) -> Result<Vec<T>, E>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, E>>,
{
    let mut out = Vec::new();
    let mut request = PageRequest::first(MAX_PAGE_LIMIT);
    loop {
        let page = read(request.clone()).await?;
        out.extend(page.items);
        match page.next_token {
            Some(t) => request.token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Reads pages until `limit` items are read or the list ends (asking each page for
/// what is still missing, at most [`MAX_PAGE_LIMIT`]); the items past `limit` are left
/// out. For callers that show at most `limit` items of a list, such as `mir event ls`.
pub async fn collect_up_to<T, E, F, Fut>(limit: usize, mut read: F) -> Result<Vec<T>, E>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, E>>,
{
    let mut out = Vec::new();
    let mut token = None;
    while out.len() < limit {
        let want = (limit - out.len()).min(MAX_PAGE_LIMIT);
        let page = read(PageRequest { limit: want, token }).await?;
        out.extend(page.items.into_iter().take(want));
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_survives_its_token() {
        let pos = serde_json::json!({"pk": "DEV#a", "sk": "TWIN"});
        let token = encode_token(&pos);
        assert!(!token.contains('='), "url-safe, unpadded: {token}");
        let back: serde_json::Value = decode_token(&token).expect("decodes");
        assert_eq!(back, pos);
    }

    #[test]
    fn a_position_holding_a_double_survives_its_token() {
        // Found by the property tests (serde_json's float_roundtrip).
        let pos = serde_json::json!({"": {"": 4.4211471976600445e-71}});
        let back: serde_json::Value = decode_token(&encode_token(&pos)).expect("decodes");
        assert_eq!(back, pos);
    }

    #[test]
    fn a_token_that_is_not_ours_is_refused_with_the_reason() {
        let err = decode_token::<serde_json::Value>("%%%").expect_err("not base64");
        assert!(err.0.starts_with("not base64url"), "{err}");
        let err = decode_token::<u64>(&URL_SAFE_NO_PAD.encode("{}")).expect_err("not a u64");
        assert!(err.0.starts_with("not a position"), "{err}");
    }

    #[tokio::test]
    async fn collect_all_follows_tokens_to_the_last_page() {
        let all: Vec<u32> = (0..25).collect();
        let got = collect_all(|req: PageRequest| {
            let all = all.clone();
            async move {
                let from: usize = req.position().map_err(|e| e.0)?.unwrap_or(0);
                let to = (from + 10).min(all.len());
                Ok::<_, String>(Page {
                    items: all[from..to].to_vec(),
                    next_token: (to < all.len()).then(|| encode_token(&to)),
                })
            }
        })
        .await
        .expect("read");
        assert_eq!(got, all);
    }

    /// A list of 0..25 served ten at a time at most, recording the limits asked for.
    async fn up_to(limit: usize, asked: &std::sync::Mutex<Vec<usize>>) -> Vec<u32> {
        let all: Vec<u32> = (0..25).collect();
        collect_up_to(limit, |req: PageRequest| {
            let all = all.clone();
            if let Ok(mut a) = asked.lock() {
                a.push(req.limit);
            }
            async move {
                let from: usize = req.position().map_err(|e| e.0)?.unwrap_or(0);
                let to = (from + req.limit.min(10)).min(all.len());
                Ok::<_, String>(Page {
                    items: all[from..to].to_vec(),
                    next_token: (to < all.len()).then(|| encode_token(&to)),
                })
            }
        })
        .await
        .unwrap_or_default()
    }

    #[tokio::test]
    async fn collect_up_to_follows_tokens_until_the_limit_or_the_end() {
        let asked = std::sync::Mutex::new(Vec::new());
        assert_eq!(up_to(23, &asked).await, (0..23).collect::<Vec<_>>());
        assert_eq!(*asked.lock().expect("lock"), [23, 13, 3]);
        let asked = std::sync::Mutex::new(Vec::new());
        assert_eq!(up_to(100, &asked).await, (0..25).collect::<Vec<_>>());
        assert_eq!(*asked.lock().expect("lock"), [100, 90, 80]);
    }
}
