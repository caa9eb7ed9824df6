//! The second S3 server, `moto_server` (`S3_SECOND_ENDPOINT`, started by
//! `scripts/services.sh up s3second`): a bucket of its own per test, filled and emptied here.

use std::{
    io::{Read, Write},
    net::TcpStream,
};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{
    Attributes, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    aws::{AmazonS3, AmazonS3Builder},
    path::Path,
};

pub fn endpoint() -> String {
    std::env::var("S3_SECOND_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9100".into())
}

/// moto accepts any key pair.
pub const KEY: &str = "test";

/// A bucket on moto, deleted with its objects by [`Bucket::remove`].
pub struct Bucket {
    pub name: String,
    pub client: AmazonS3,
}

/// Sends one bare HTTP request (moto does not check signatures on bucket calls); returns
/// the status line.
fn bare(method: &str, path: &str) -> String {
    let url = url::Url::parse(&endpoint()).unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(80));
    let mut conn = TcpStream::connect(&host).expect("moto must run: scripts/services.sh up");
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    reply.lines().next().unwrap_or_default().to_owned()
}

impl Bucket {
    pub fn create(name: &str) -> Self {
        let status = bare("PUT", &format!("/{name}"));
        assert!(
            status.contains("200"),
            "creating bucket {name} on moto: {status}"
        );
        Self::open(name)
    }

    /// A client for `name`, which need not exist.
    pub fn open(name: &str) -> Self {
        let client = AmazonS3Builder::new()
            .with_bucket_name(name)
            .with_region("us-east-1")
            .with_endpoint(endpoint())
            .with_allow_http(true)
            .with_access_key_id(KEY)
            .with_secret_access_key(KEY)
            .build()
            .unwrap();
        Self {
            name: name.to_owned(),
            client,
        }
    }

    /// Writes `data` at `key` with `attributes`; above 5 MiB as a multipart upload of 5 MiB
    /// parts when `multipart`.
    pub async fn put(&self, key: &str, data: Bytes, attributes: Attributes, multipart: bool) {
        let path = Path::parse(key).unwrap();
        if !multipart {
            let opts = PutOptions {
                attributes,
                ..PutOptions::default()
            };
            self.client
                .put_opts(&path, PutPayload::from_bytes(data), opts)
                .await
                .unwrap();
            return;
        }
        let opts = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let mut upload = self.client.put_multipart_opts(&path, opts).await.unwrap();
        for part in data.chunks(5 << 20) {
            upload
                .put_part(PutPayload::from_bytes(data.slice_ref(part)))
                .await
                .unwrap();
        }
        upload.complete().await.unwrap();
    }

    pub async fn delete(&self, key: &str) {
        self.client
            .delete(&Path::parse(key).unwrap())
            .await
            .unwrap();
    }

    /// Deletes every object, then the bucket.
    pub async fn remove(self) {
        let keys: Vec<_> = self
            .client
            .list(None)
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .unwrap_or_default();
        for key in keys {
            let _ = self.client.delete(&key).await;
        }
        bare("DELETE", &format!("/{}", self.name));
    }
}
