//! An OCI repository's tags, as the distribution API lists them
//! (`GET /v2/<name>/tags/list?n=…`, page by page: the `Link` header's
//! `rel="next"` page, else, for registries that send none, the page after
//! the last tag, `last=<tag>`, while pages come back full). Anonymous
//! bearer tokens are asked for as a registry's challenge says.

use serde::Deserialize;

use super::oci::{parse, plain_http};
use crate::kernels::bounded::MAX_INDEX;
use crate::kernels::error::OciError;

/// Tags asked for per page.
pub const PAGE: usize = 100;

/// The most pages read: a registry that keeps sending pages is cut off.
const MAX_PAGES: usize = 1000;

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Token {
    token: Option<String>,
    access_token: Option<String>,
}

/// The `rel="next"` target of a `Link` header (`</v2/…?n=100&last=x>;
/// rel="next"`).
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .filter_map(|p| p.split_once('='))
            .any(|(k, v)| k.trim() == "rel" && v.trim().trim_matches('"') == "next")
            .then(|| target.to_owned())
    })
}

/// The parameters of a `Bearer` challenge (`WWW-Authenticate: Bearer
/// realm="…",service="…",scope="…"`), in order.
pub fn bearer_challenge(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim().strip_prefix("Bearer")?.trim_start();
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
        }
        params.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    params.iter().any(|(k, _)| k == "realm").then_some(params)
}

/// Every tag of the repository `repository` (`registry/name`, no tag)
/// names, in the order the registry lists them.
pub async fn list(client: &reqwest::Client, repository: &str) -> Result<Vec<String>, OciError> {
    let parsed = parse(repository)?;
    if parsed.tag().is_some_and(|t| t != "latest") || parsed.digest().is_some() {
        return Err(OciError::Reference {
            reference: repository.to_owned(),
            reason: "give the repository alone (registry/name), without a tag or digest".into(),
        });
    }
    let registry = parsed.resolve_registry();
    let scheme = if plain_http(registry) {
        "http"
    } else {
        "https"
    };
    let origin = format!("{scheme}://{registry}");
    let fail = |error: String| OciError::Registry {
        reference: repository.to_owned(),
        error,
    };
    let mut url = format!("{origin}/v2/{}/tags/list?n={PAGE}", parsed.repository());
    let mut token: Option<String> = None;
    let mut tags: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..MAX_PAGES {
        let response = get(client, &url, token.as_deref()).await.map_err(&fail)?;
        let response = match response.status() {
            reqwest::StatusCode::UNAUTHORIZED if token.is_none() => {
                token = Some(anonymous_token(client, &response).await.map_err(&fail)?);
                get(client, &url, token.as_deref()).await.map_err(&fail)?
            }
            _ => response,
        };
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!("{url}: {status}")));
        }
        let link = response
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let body = capped(response, &url).await.map_err(&fail)?;
        let page = serde_json::from_slice::<TagList>(&body)
            .map_err(|e| fail(format!("{url}: not a tag list: {e}")))?
            .tags
            .unwrap_or_default();
        let next = next_page(&origin, parsed.repository(), link, &page);
        let before = tags.len();
        for tag in page {
            if seen.insert(tag.clone()) {
                tags.push(tag);
            }
        }
        match next {
            Some(next) if tags.len() > before => url = next,
            _ => return Ok(tags),
        }
    }
    Err(fail(format!(
        "the registry sent more than {MAX_PAGES} pages of tags"
    )))
}

/// The URL of the page after `page`: the `Link` header's (relative to
/// `origin`; one to another origin is not followed, as the token goes
/// with it), else, when the page is full, the one after its last tag.
fn next_page(
    origin: &str,
    repository: &str,
    link: Option<String>,
    page: &[String],
) -> Option<String> {
    match (link, page.last()) {
        (Some(link), _) if link.starts_with('/') => Some(format!("{origin}{link}")),
        (Some(link), _) if link.starts_with(&format!("{origin}/")) => Some(link),
        (Some(_), _) => None,
        (None, Some(last)) if page.len() >= PAGE => Some(format!(
            "{origin}/v2/{repository}/tags/list?n={PAGE}&last={last}"
        )),
        _ => None,
    }
}

/// A response's body, at most [`MAX_INDEX`] bytes of it.
async fn capped(mut response: reqwest::Response, url: &str) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > MAX_INDEX {
            return Err(format!(
                "{url}: the answer is larger than {MAX_INDEX} bytes"
            ));
        }
    }
    Ok(body)
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<reqwest::Response, String> {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .map_err(|e| format!("{url}: {}", crate::error_chain::error_chain(&e)))
}

/// An anonymous token, as the `401`'s challenge says to ask for it.
async fn anonymous_token(
    client: &reqwest::Client,
    refused: &reqwest::Response,
) -> Result<String, String> {
    let challenge = refused
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_challenge)
        .ok_or_else(|| format!("{}: 401 without a Bearer challenge", refused.url()))?;
    let realm = &challenge
        .iter()
        .find(|(k, _)| k == "realm")
        .expect("checked")
        .1;
    let query: Vec<(&str, &str)> = challenge
        .iter()
        .filter(|(k, _)| k == "service" || k == "scope")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let response = client
        .get(realm)
        .query(&query)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("{realm}: {}", crate::error_chain::error_chain(&e)))?;
    let body = capped(response, realm).await?;
    let token: Token =
        serde_json::from_slice(&body).map_err(|e| format!("{realm}: not a token: {e}"))?;
    token
        .token
        .or(token.access_token)
        .ok_or_else(|| format!("{realm}: the answer holds no token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_pages_are_read_from_link_headers() {
        assert_eq!(
            next_link("</v2/k/tags/list?n=100&last=6.1.9>; rel=\"next\"").as_deref(),
            Some("/v2/k/tags/list?n=100&last=6.1.9")
        );
        assert_eq!(
            next_link("<https://r.example/a>; rel=\"prev\", <https://r.example/b>; rel=next")
                .as_deref(),
            Some("https://r.example/b")
        );
        assert_eq!(next_link("</v2/k/tags/list?n=100>; rel=\"prev\""), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn pages_follow_the_link_header_else_the_last_tag_of_a_full_page() {
        let origin = "http://127.0.0.1:5000";
        let short = vec!["6.1".to_owned(), "6.6".to_owned()];
        let full: Vec<String> = (0..PAGE).map(|p| format!("6.1.{p}")).collect();
        assert_eq!(
            next_page(
                origin,
                "k",
                Some("/v2/k/tags/list?n=2&last=6.6".into()),
                &short
            )
            .as_deref(),
            Some("http://127.0.0.1:5000/v2/k/tags/list?n=2&last=6.6")
        );
        assert_eq!(next_page(origin, "k", None, &short), None);
        assert_eq!(
            next_page(origin, "k", None, &full),
            Some(format!(
                "http://127.0.0.1:5000/v2/k/tags/list?n={PAGE}&last=6.1.{}",
                PAGE - 1
            ))
        );
        assert_eq!(next_page(origin, "k", None, &[]), None);
        // The token goes with the request: never to another origin.
        let elsewhere = |link: &str| next_page(origin, "k", Some(link.into()), &short);
        assert_eq!(
            elsewhere("http://127.0.0.1:5000/v2/k/tags/list?last=6.6").as_deref(),
            Some("http://127.0.0.1:5000/v2/k/tags/list?last=6.6")
        );
        assert_eq!(elsewhere("http://127.0.0.1:5001/v2/k/tags/list"), None);
        assert_eq!(elsewhere("https://other.example/v2/k/tags/list"), None);
    }

    #[test]
    fn bearer_challenges_are_parsed_with_quoted_commas() {
        let params = bearer_challenge(
            "Bearer realm=\"https://auth.example/token\",service=\"registry\",scope=\"repository:k:pull,push\"",
        )
        .unwrap();
        assert_eq!(
            params,
            [
                ("realm".to_owned(), "https://auth.example/token".to_owned()),
                ("service".to_owned(), "registry".to_owned()),
                ("scope".to_owned(), "repository:k:pull,push".to_owned()),
            ]
        );
        assert_eq!(bearer_challenge("Basic realm=\"x\""), None);
        assert_eq!(bearer_challenge("Bearer service=\"x\""), None);
    }

    #[test]
    fn tag_lists_without_tags_are_empty_pages() {
        let page: TagList = serde_json::from_str(r#"{"name":"k","tags":null}"#).unwrap();
        assert!(page.tags.is_none());
        let page: TagList = serde_json::from_str(r#"{"name":"k","tags":["6.1","6.6"]}"#).unwrap();
        assert_eq!(page.tags.unwrap(), ["6.1", "6.6"]);
    }
}
