//! A migration whose source and destination overlap would read what it writes: a destination
//! inside the source lists its own copies (`uploads` → `uploads/moved` copies `moved/…` into
//! `moved/moved/…` while listing), a source inside the destination overwrites the originals,
//! and nested public URLs make a rewrite match its own output again. Refused from config
//! alone, before anything is contacted: when the job is enqueued and again when it starts.

use std::path::{Path, PathBuf};

use ferry_config::{Config, Location};

use super::{MigrateArgs, side::join};

/// Where one side's objects live, resolved from `[stores]` without opening the store.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    S3 {
        endpoint: String,
        bucket: String,
        /// The store's prefix and the side's, joined.
        prefix: String,
    },
    File(PathBuf),
}

struct Resolved {
    place: Place,
    public_url: Option<String>,
}

/// Refuses `--from` and `--to` when they are the same place, one lies inside the other, or
/// their public URLs nest. A side whose store is not configured is left to the run, which
/// names the configured stores.
pub fn check(config: &Config, args: &MigrateArgs) -> Result<(), String> {
    let (Some(from), Some(to)) = (resolve(config, &args.from), resolve(config, &args.to)) else {
        return Ok(());
    };
    let why = match (&from.place, &to.place) {
        (
            Place::S3 {
                endpoint,
                bucket,
                prefix: a,
            },
            Place::S3 {
                endpoint: e2,
                bucket: b2,
                prefix: b,
            },
        ) if endpoint == e2 && bucket == b2 => nested(a, b, '/')
            .map(|how| format!("both are in bucket {bucket:?} at {endpoint}, and {how}")),
        (Place::File(a), Place::File(b)) => nested_paths(a, b),
        _ => None,
    };
    let why = why.or_else(|| match (&from.public_url, &to.public_url) {
        (Some(a), Some(b)) => nested(&url_key(a), &url_key(b), '/')
            .map(|how| format!("their public URLs nest: {how}")),
        _ => None,
    });
    match why {
        None => Ok(()),
        Some(why) => Err(format!(
            "--from {:?} and --to {:?} overlap: {why}; the copy would read what it writes. \
             Choose a destination outside the source: another bucket, or a prefix that \
             neither contains nor lies inside the source's",
            args.from, args.to
        )),
    }
}

fn resolve(config: &Config, spec: &str) -> Option<Resolved> {
    let (name, side_prefix) = spec.split_once(':').unwrap_or((spec, ""));
    let store = config.stores.get(name)?;
    let side_prefix = side_prefix.trim_matches('/');
    let place = match store.location("url").ok()? {
        Location::S3 { bucket, prefix } => Place::S3 {
            endpoint: store
                .endpoint
                .as_deref()
                .map(|e| e.trim_end_matches('/').to_ascii_lowercase())
                .unwrap_or_else(|| "AWS".to_owned()),
            bucket,
            prefix: join(&prefix, side_prefix),
        },
        Location::File { root } => Place::File(root.join(side_prefix)),
    };
    let public_url = store
        .public_url
        .as_deref()
        .map(|u| join(u.trim_end_matches('/'), side_prefix));
    Some(Resolved { place, public_url })
}

/// How `a` (the source) and `b` (the destination) nest as `sep`-separated paths, if they do:
/// `site` and `site/moved` nest, `site` and `site-old` do not.
fn nested(a: &str, b: &str, sep: char) -> Option<String> {
    let inside = |inner: &str, outer: &str| {
        outer.is_empty() || inner == outer || inner.starts_with(&format!("{outer}{sep}"))
    };
    if a == b {
        Some(format!("both are {}", shown(a)))
    } else if inside(b, a) {
        Some(format!(
            "the destination {} lies inside the source {}",
            shown(b),
            shown(a)
        ))
    } else if inside(a, b) {
        Some(format!(
            "the source {} lies inside the destination {}",
            shown(a),
            shown(b)
        ))
    } else {
        None
    }
}

fn nested_paths(a: &Path, b: &Path) -> Option<String> {
    let (sa, sb) = (a.display().to_string(), b.display().to_string());
    if a == b {
        Some(format!("both are directory {sa}"))
    } else if b.starts_with(a) {
        Some(format!("the destination {sb} lies inside the source {sa}"))
    } else if a.starts_with(b) {
        Some(format!("the source {sa} lies inside the destination {sb}"))
    } else {
        None
    }
}

fn shown(prefix: &str) -> String {
    if prefix.is_empty() {
        "the whole bucket".to_owned()
    } else {
        format!("{prefix:?}")
    }
}

/// A URL compared case-insensitively in its scheme and host only, as browsers resolve it.
fn url_key(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let origin = format!("{scheme}://{host}").to_ascii_lowercase();
    match path.trim_matches('/') {
        "" => origin,
        path => format!("{origin}/{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let store = |name: &str, url: &str, endpoint: &str, public: &str| {
            format!(
                "[stores.{name}]\nurl = \"{url}\"\nendpoint = \"{endpoint}\"\n\
                 access_key_id = \"k\"\nsecret_access_key = \"s\"\npublic_url = \"{public}\"\n"
            )
        };
        let toml = [
            store(
                "a",
                "s3://media",
                "http://127.0.0.1:9000",
                "https://cdn.example.com/a",
            ),
            store(
                "site",
                "s3://media/site",
                "http://127.0.0.1:9000/",
                "https://x.example.com",
            ),
            store(
                "other",
                "s3://media",
                "http://127.0.0.1:9100",
                "https://CDN.example.com/a/b",
            ),
            store(
                "far",
                "s3://far",
                "http://127.0.0.1:9000",
                "https://far.example.com",
            ),
        ]
        .concat();
        Config::from_toml_str(&toml, &ferry_config::Env::empty()).unwrap()
    }

    fn check_pair(from: &str, to: &str) -> Result<(), String> {
        let args = MigrateArgs {
            from: from.into(),
            to: to.into(),
            ..MigrateArgs::default()
        };
        check(&config(), &args)
    }

    #[test]
    fn nested_prefixes_in_one_bucket_are_refused() {
        let e = check_pair("a:site", "site:moved").unwrap_err();
        assert!(
            e.contains("\"site/moved\" lies inside the source \"site\""),
            "{e}"
        );
        assert!(e.contains("a:site") && e.contains("site:moved"), "{e}");
        let e = check_pair("site:x", "a").unwrap_err();
        assert!(e.contains("inside the destination the whole bucket"), "{e}");
        assert!(
            check_pair("a:site", "site")
                .unwrap_err()
                .contains("both are")
        );
        // Same letters, different folder; a different bucket.
        assert!(check_pair("a:site-old", "site:moved").is_ok());
        assert!(check_pair("a:uploads", "far:uploads").is_ok());
    }

    #[test]
    fn nested_public_urls_are_refused_across_servers() {
        // Another endpoint, but `other` is served under `a`'s public URL.
        let e = check_pair("a", "other").unwrap_err();
        assert!(e.contains("public URLs nest"), "{e}");
        assert!(check_pair("a:x", "other:y").is_ok());
    }
}
