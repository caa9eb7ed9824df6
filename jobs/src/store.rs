//! Object stores: S3-compatible buckets (through `object_store`) or local directories, with
//! the one upload shape backups need: parts streamed in order, aborted cleanly on failure.

use std::{path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use ferry_config::{Location, StoreConfig};
use futures::{StreamExt, stream::BoxStream};
use object_store::{
    Attributes, ClientOptions, GetOptions, MultipartId, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutPayload, RetryConfig,
    aws::{AmazonS3, AmazonS3Builder},
    local::LocalFileSystem,
    multipart::{MultipartStore, PartId},
    path::Path,
};
use tokio::io::AsyncWriteExt;

use crate::{Failure, JobError, put_stream::StreamPut};

/// A store that does not answer a connection fails the attempt in seconds.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default of a store's `request_timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// A download streams for as long as the copy it feeds (a 50 GiB object, a restore of a large
/// dump), so it gets no overall limit: it fails when no byte has passed for this long, the
/// server stalled or the consumer did (reqwest's read timeout counts both).
const READ_STALL: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{store} refused the credentials ({detail}); check the store's access_key_id and secret_access_key (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    )]
    Denied { store: String, detail: String },
    #[error("{store}: {key} not found")]
    NotFound { store: String, key: String },
    #[error("{store}: the bucket does not exist; create it or correct the store's url")]
    NoBucket { store: String },
    #[error("{0}")]
    Config(String),
    #[error("{store}: cannot {what}: {detail}")]
    Unavailable {
        store: String,
        what: &'static str,
        detail: String,
    },
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable { .. } => JobError::Retryable(Failure::of(e)),
            e => JobError::Permanent(Failure::of(e)),
        }
    }
}

/// An opened store. `url` identifies it in manifests and messages and holds no secret.
#[derive(Clone)]
pub struct Store {
    pub url: String,
    /// The endpoint and the URL: two servers may both have a bucket `uploads`.
    pub identity: String,
    objects: Arc<dyn ObjectStore>,
    /// The same store for downloads, limited by [`READ_STALL`] instead of the request timeout.
    reads: Arc<dyn ObjectStore>,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    S3 {
        s3: Arc<AmazonS3>,
        prefix: String,
        streamed: Arc<StreamPut>,
    },
    File {
        root: PathBuf,
    },
}

impl Store {
    /// Builds the client; nothing is contacted until the first request.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let location = config
            .location("store url")
            .map_err(|e| StoreError::Config(e.to_string()))?;
        match location {
            Location::S3 { bucket, prefix } => {
                let (Some(key_id), Some(secret)) =
                    (&config.access_key_id, &config.secret_access_key)
                else {
                    // Without keys object_store would ask the cloud metadata service, which
                    // hangs or misleads anywhere but inside AWS.
                    return Err(StoreError::Config(format!(
                        "{} has no credentials: set access_key_id and secret_access_key in its \
                         [stores] entry, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                        config.url
                    )));
                };
                let builder = AmazonS3Builder::new()
                    .with_bucket_name(&bucket)
                    .with_region(config.region.as_deref().unwrap_or("us-east-1"))
                    .with_access_key_id(key_id)
                    .with_secret_access_key(secret.expose())
                    // The job's own retry policy handles outages; the client only smooths
                    // over a blip, so a down store fails an attempt in seconds, not minutes.
                    .with_retry(RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(15),
                        ..RetryConfig::default()
                    });
                let timeout = config.request_timeout.unwrap_or(REQUEST_TIMEOUT);
                let client = |options: ClientOptions| {
                    // Client options first: they replace what the endpoint settings set.
                    let mut builder = builder
                        .clone()
                        .with_client_options(options.with_connect_timeout(CONNECT_TIMEOUT));
                    if let Some(endpoint) = &config.endpoint {
                        builder = builder
                            .with_endpoint(endpoint)
                            .with_allow_http(endpoint.starts_with("http://"))
                            .with_virtual_hosted_style_request(false);
                    }
                    builder
                        .build()
                        .map(Arc::new)
                        .map_err(|e| StoreError::Config(format!("{}: {e}", config.url)))
                };
                let s3 = client(ClientOptions::new().with_timeout(timeout))?;
                let reads = client(
                    ClientOptions::new()
                        .with_timeout_disabled()
                        .with_read_timeout(READ_STALL),
                )?;
                let streamed = StreamPut::new(
                    config.endpoint.as_deref(),
                    &bucket,
                    config.region.as_deref().unwrap_or("us-east-1"),
                    key_id,
                    secret.expose(),
                    timeout,
                )
                .map_err(|e| StoreError::Config(format!("{}: {e}", config.url)))?;
                Ok(Self {
                    url: config.url.clone(),
                    identity: format!(
                        "{} {}",
                        config.endpoint.as_deref().unwrap_or("aws"),
                        config.url
                    ),
                    objects: s3.clone(),
                    reads,
                    backend: Backend::S3 {
                        s3,
                        prefix,
                        streamed: Arc::new(streamed),
                    },
                })
            }
            Location::File { root } => {
                std::fs::create_dir_all(&root).map_err(|e| {
                    StoreError::Config(format!("cannot create {}: {e}", root.display()))
                })?;
                let local: Arc<dyn ObjectStore> = Arc::new(
                    LocalFileSystem::new_with_prefix(&root)
                        .map_err(|e| StoreError::Config(format!("{}: {e}", config.url)))?,
                );
                Ok(Self {
                    url: config.url.clone(),
                    identity: config.url.clone(),
                    objects: local.clone(),
                    reads: local,
                    backend: Backend::File { root },
                })
            }
        }
    }

    /// The path of `key`, taken as the store's key itself: `Path::from` would percent-encode
    /// `%` and non-ASCII letters into a different key. Only a key object_store cannot hold
    /// (an empty or `..` segment) is encoded.
    fn path(&self, key: &str) -> Path {
        let full = match &self.backend {
            Backend::S3 { prefix, .. } if !prefix.is_empty() => format!("{prefix}/{key}"),
            _ => key.to_owned(),
        };
        Path::parse(&full).unwrap_or_else(|_| Path::from(full))
    }

    fn error(&self, what: &'static str, key: &str, e: object_store::Error) -> StoreError {
        use object_store::Error as E;
        match e {
            E::PermissionDenied { source, .. } | E::Unauthenticated { source, .. } => {
                StoreError::Denied {
                    store: self.url.clone(),
                    detail: source.to_string(),
                }
            }
            E::NotFound { .. } => StoreError::NotFound {
                store: self.url.clone(),
                key: key.to_owned(),
            },
            e => self.by_code(what, s3_code(&e).as_deref(), e.to_string()),
        }
    }

    /// Classifies a failure by the S3 error code the server sent, if any.
    fn by_code(&self, what: &'static str, code: Option<&str>, detail: String) -> StoreError {
        match code {
            Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch") => {
                StoreError::Denied {
                    store: self.url.clone(),
                    detail,
                }
            }
            Some("NoSuchBucket") => StoreError::NoBucket {
                store: self.url.clone(),
            },
            _ => StoreError::Unavailable {
                store: self.url.clone(),
                what,
                detail,
            },
        }
    }

    fn relative(&self, path: &Path) -> String {
        let full = path.as_ref();
        match &self.backend {
            Backend::S3 { prefix, .. } if !prefix.is_empty() => full
                .strip_prefix(prefix.as_str())
                .and_then(|k| k.strip_prefix('/'))
                .unwrap_or(full)
                .to_owned(),
            _ => full.to_owned(),
        }
    }

    /// Objects under `prefix` in key order, after `after` when given (S3 `start-after`, so a
    /// resumed listing starts where the last one stopped). The stream pages by itself.
    pub fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> BoxStream<'static, Result<Listed, StoreError>> {
        let under = (!prefix.is_empty()).then(|| self.path(prefix.trim_end_matches('/')));
        let listing = match after {
            Some(after) => self
                .objects
                .list_with_offset(under.as_ref(), &self.path(after)),
            None => self.objects.list(under.as_ref()),
        };
        let this = self.clone();
        listing
            .map(move |r| {
                r.map(|meta| Listed {
                    key: this.relative(&meta.location),
                    size: meta.size,
                    e_tag: meta.e_tag,
                })
                .map_err(|e| this.error("list", prefix_or_root(&this), e))
            })
            .boxed()
    }

    /// The object's size and ETag, or None when it is not there.
    pub async fn head(&self, key: &str) -> Result<Option<Listed>, StoreError> {
        match self.objects.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(Listed {
                key: key.to_owned(),
                size: meta.size,
                e_tag: meta.e_tag,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("stat", key, e)),
        }
    }

    /// The object's bytes as a stream, with its size, ETag and attributes (content type,
    /// cache control, disposition, user metadata).
    pub async fn get_with_attributes(&self, key: &str) -> Result<Fetched, StoreError> {
        let got = self
            .reads
            .get_opts(&self.path(key), GetOptions::default())
            .await
            .map_err(|e| self.error("read", key, e))?;
        let attributes = got.attributes.clone();
        let meta = Listed {
            key: key.to_owned(),
            size: got.meta.size,
            e_tag: got.meta.e_tag.clone(),
        };
        let this = self.clone();
        let key = key.to_owned();
        let body = got
            .into_stream()
            .map(move |r| r.map_err(|e| this.error("read", &key, e)))
            .boxed();
        Ok(Fetched {
            meta,
            attributes,
            body,
        })
    }

    /// The S3 clients, for writes that carry object attributes: a local directory keeps none.
    fn s3_only(&self) -> Result<(&Arc<AmazonS3>, &StreamPut), StoreError> {
        match &self.backend {
            Backend::S3 { s3, streamed, .. } => Ok((s3, streamed)),
            Backend::File { .. } => Err(StoreError::Config(format!(
                "{} is a local directory, which keeps no object attributes; use an S3 store",
                self.url
            ))),
        }
    }

    /// Writes a whole object of `size` bytes in one request streamed from `body`, so memory
    /// stays small whatever the size (S3 takes up to 5 GiB so). Returns the store's ETag.
    /// S3 only.
    pub async fn put_streamed(
        &self,
        key: &str,
        size: u64,
        attributes: &Attributes,
        body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    ) -> Result<Option<String>, StoreError> {
        let (_, streamed) = self.s3_only()?;
        streamed
            .put(self.path(key).as_ref(), size, attributes, body)
            .await
            .map_err(|f| self.by_code("write", f.code.as_deref(), f.detail))
    }

    /// Starts an upload of `key` carrying `attributes`. S3 only: a local directory keeps no
    /// attributes.
    pub async fn begin_upload_with(
        &self,
        key: &str,
        attributes: Attributes,
    ) -> Result<Upload, StoreError> {
        let (s3, _) = self.s3_only()?;
        let path = self.path(key);
        let opts = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let id = s3
            .create_multipart_opts(&path, opts)
            .await
            .map_err(|e| self.error("start an upload", key, e))?;
        Ok(Upload::S3 {
            s3: s3.clone(),
            store: self.clone(),
            key: key.to_owned(),
            path,
            id,
            parts: Vec::new(),
        })
    }

    /// Starts an upload of `key`. An S3 upload has an id to save in a checkpoint, so a later
    /// attempt can abort it if this one dies before it could.
    pub async fn begin_upload(&self, key: &str) -> Result<Upload, StoreError> {
        match &self.backend {
            Backend::S3 { .. } => self.begin_upload_with(key, Attributes::new()).await,
            Backend::File { root } => {
                let dest = root.join(key);
                let tmp = root.join(format!("{key}.partial"));
                let io = |e: std::io::Error| StoreError::Unavailable {
                    store: self.url.clone(),
                    what: "write",
                    detail: format!("{}: {e}", tmp.display()),
                };
                if let Some(dir) = dest.parent() {
                    tokio::fs::create_dir_all(dir).await.map_err(io)?;
                }
                let file = tokio::fs::File::create(&tmp).await.map_err(io)?;
                Ok(Upload::File {
                    url: self.url.clone(),
                    file,
                    tmp,
                    dest,
                })
            }
        }
    }

    /// Aborts an upload a previous attempt left behind. A no-op for local directories, whose
    /// partial file the next upload overwrites.
    pub async fn abort_upload(&self, key: &str, id: &str) -> Result<(), StoreError> {
        if let Backend::S3 { s3, .. } = &self.backend {
            match s3.abort_multipart(&self.path(key), &id.to_owned()).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error("abort an upload", key, e)),
            }
        }
        Ok(())
    }

    /// Removes all an attempt that died left of `key`: its unfinished upload (S3, when the
    /// id is known), its partial file (local directories), and the object if it completed.
    pub async fn discard(&self, key: &str, upload_id: Option<&str>) -> Result<(), StoreError> {
        if let Some(id) = upload_id
            && let Err(e) = self.abort_upload(key, id).await
            // A completed upload has no id left to abort: S3 answers NoSuchUpload, some
            // servers 403. Then the object is there, and deleting it below is what is left.
            && self.head(key).await?.is_none()
        {
            return Err(e);
        }
        if let Backend::File { .. } = &self.backend {
            self.delete(&format!("{key}.partial")).await?;
        }
        self.delete(key).await
    }

    /// The object's bytes as a stream.
    pub async fn get(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        let got = self
            .reads
            .get(&self.path(key))
            .await
            .map_err(|e| self.error("read", key, e))?;
        let this = self.clone();
        let key = key.to_owned();
        Ok(got
            .into_stream()
            .map(move |r| r.map_err(|e| this.error("read", &key, e)))
            .boxed())
    }

    pub async fn size(&self, key: &str) -> Result<u64, StoreError> {
        let meta = self
            .objects
            .head(&self.path(key))
            .await
            .map_err(|e| self.error("stat", key, e))?;
        Ok(meta.size)
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.objects.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }
}

/// An object as a listing or a HEAD shows it; `key` is relative to the store's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub e_tag: Option<String>,
}

/// An object being read.
pub struct Fetched {
    pub meta: Listed,
    pub attributes: Attributes,
    pub body: BoxStream<'static, Result<Bytes, StoreError>>,
}

fn prefix_or_root(store: &Store) -> &str {
    match &store.backend {
        Backend::S3 { prefix, .. } if !prefix.is_empty() => prefix,
        _ => "/",
    }
}

/// The S3 error code (`<Code>NoSuchBucket</Code>`) of a failed request. object_store keeps
/// the HTTP status only for single-object requests and wraps list and multipart failures in
/// an opaque error whose text carries the response body, so the protocol's own error code
/// is read from there.
fn s3_code(e: &object_store::Error) -> Option<String> {
    let text = error_chain(e);
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")?;
    Some(text[start..start + end].to_owned())
}

/// An error and every cause under it, in one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// An upload in progress: parts in order, then `complete` or `abort`.
pub enum Upload {
    S3 {
        s3: Arc<AmazonS3>,
        /// For its URL in errors, and to abort.
        store: Store,
        key: String,
        path: Path,
        id: MultipartId,
        parts: Vec<PartId>,
    },
    File {
        url: String,
        file: tokio::fs::File,
        tmp: PathBuf,
        dest: PathBuf,
    },
}

impl Upload {
    /// The multipart upload id, where the store has one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::S3 { id, .. } => Some(id),
            Self::File { .. } => None,
        }
    }

    /// Appends one part. S3 needs every part but the last to be at least 5 MiB.
    pub async fn put(&mut self, data: Bytes) -> Result<(), StoreError> {
        match self {
            Self::S3 {
                s3,
                store,
                key,
                path,
                id,
                parts,
            } => {
                let part = s3
                    .put_part(path, id, parts.len(), PutPayload::from_bytes(data))
                    .await
                    .map_err(|e| store.error("upload a part", key, e))?;
                parts.push(part);
                Ok(())
            }
            Self::File { url, file, tmp, .. } => {
                file.write_all(&data)
                    .await
                    .map_err(|e| StoreError::Unavailable {
                        store: url.clone(),
                        what: "write",
                        detail: format!("{}: {e}", tmp.display()),
                    })
            }
        }
    }

    /// Finishes the upload; returns the ETag an S3 store computed.
    pub async fn complete(self) -> Result<Option<String>, StoreError> {
        match self {
            Self::S3 {
                s3,
                store,
                key,
                path,
                id,
                parts,
            } => {
                let done = s3
                    .complete_multipart(&path, &id, parts)
                    .await
                    .map_err(|e| store.error("complete the upload", &key, e))?;
                Ok(done.e_tag)
            }
            Self::File {
                url,
                mut file,
                tmp,
                dest,
            } => {
                let io = |e: std::io::Error| StoreError::Unavailable {
                    store: url.clone(),
                    what: "write",
                    detail: format!("{}: {e}", dest.display()),
                };
                file.flush().await.map_err(io)?;
                file.sync_all().await.map_err(io)?;
                tokio::fs::rename(&tmp, &dest).await.map_err(io)?;
                Ok(None)
            }
        }
    }

    /// Removes what was uploaded so far. Returns whether that worked: when the store is down
    /// it cannot, and the caller keeps the upload id so a later attempt aborts it.
    pub async fn abort(self) -> bool {
        match self {
            Self::S3 { store, key, id, .. } => match store.abort_upload(&key, &id).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "could not abort the upload; the next attempt will");
                    false
                }
            },
            Self::File { tmp, .. } => {
                let _ = tokio::fs::remove_file(&tmp).await;
                true
            }
        }
    }
}
