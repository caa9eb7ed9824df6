//! One-request uploads streamed from a body of known length. object_store's PUT takes the
//! whole body in memory, which made memory grow with the object; here the bytes go straight
//! from the source's body into the request, signed with SigV4 (`aws-sigv4`) over an unsigned
//! payload. The destination's ETag, checked by the caller, proves the bytes instead.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::{
    http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
        UriPathNormalizationMode, sign,
    },
    sign::v4,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::{Attribute, Attributes};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::store::{CONNECT_TIMEOUT, error_chain};

/// S3 keeps `-._~` and `/` as they are in a path and encodes every other byte.
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

pub struct StreamPut {
    http: reqwest::Client,
    /// The bucket's URL, no trailing slash: path style on a custom endpoint, virtual-hosted on
    /// AWS, as object_store addresses it.
    base: String,
    region: String,
    credentials: Credentials,
    timeout: std::time::Duration,
}

impl std::fmt::Debug for StreamPut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPut")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Why a streamed PUT failed: the S3 error code when the server sent one.
#[derive(Debug)]
pub struct PutFailed {
    pub code: Option<String>,
    pub detail: String,
}

impl StreamPut {
    pub fn new(
        endpoint: Option<&str>,
        bucket: &str,
        region: &str,
        key_id: &str,
        secret: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, String> {
        let base = match endpoint {
            Some(e) => format!("{}/{bucket}", e.trim_end_matches('/')),
            None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            http,
            base,
            region: region.to_owned(),
            credentials: Credentials::new(key_id, secret, None, None, "ferry"),
            timeout,
        })
    }

    /// PUTs `size` bytes from `body` at `path` (the full key, prefix included); returns the
    /// ETag the store computed.
    pub async fn put(
        &self,
        path: &str,
        size: u64,
        attributes: &Attributes,
        body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    ) -> Result<Option<String>, PutFailed> {
        let url = format!("{}/{}", self.base, utf8_percent_encode(path, KEY));
        let mut headers: Vec<(String, String)> = vec![("content-length".into(), size.to_string())];
        for (attribute, value) in attributes {
            let name = match attribute {
                Attribute::ContentType => "content-type".to_owned(),
                Attribute::CacheControl => "cache-control".to_owned(),
                Attribute::ContentDisposition => "content-disposition".to_owned(),
                Attribute::ContentEncoding => "content-encoding".to_owned(),
                Attribute::ContentLanguage => "content-language".to_owned(),
                Attribute::Metadata(k) => format!("x-amz-meta-{k}"),
                _ => continue,
            };
            headers.push((name, value.to_string()));
        }
        let failed = |detail: String| PutFailed { code: None, detail };
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| failed(format!("cannot sign: {e}")))?
            .into();
        let signable = SignableRequest::new(
            "PUT",
            &url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| failed(format!("cannot sign: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| failed(format!("cannot sign: {e}")))?
            .into_parts();
        // The body streams at the source's pace: a second per MiB on top of the request
        // timeout, so a large object on a slow link is not cut off, but a stalled one is.
        let mut request = self
            .http
            .put(&url)
            .timeout(self.timeout + std::time::Duration::from_secs(size >> 20));
        for (k, v) in &headers {
            request = request.header(k, v);
        }
        for (k, v) in instructions.headers() {
            request = request.header(k, v);
        }
        let response = request
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned));
        }
        let text = response.text().await.unwrap_or_default();
        let code = text
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(code, _)| code.to_owned());
        let message = text
            .split_once("<Message>")
            .and_then(|(_, rest)| rest.split_once("</Message>"))
            .map_or("", |(m, _)| m);
        Err(PutFailed {
            detail: format!("HTTP {status}: {} {message}", code.as_deref().unwrap_or("")),
            code,
        })
    }
}

/// A reqwest error with its causes: "error sending request" alone says nothing.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_as_s3_signs_them() {
        let encoded = utf8_percent_encode("a b/ü%+~x.y_z-1", KEY).to_string();
        assert_eq!(encoded, "a%20b/%C3%BC%25%2B~x.y_z-1");
    }
}
