//! Where the NATS backend keeps bodies past `--nats-max-inline`: the
//! cluster's own JetStream object store (the default), or an S3 bucket
//! (`--blob-store s3://bucket[/prefix]`) through the `object_store` crate.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::ObjectStore;

/// Makes aws-lc-rs the process's TLS provider, as the rest of blobq uses.
/// `object_store`'s HTTP client brings rustls's `ring` provider too, and
/// with two built in, rustls cannot choose one by itself for the NATS
/// client's TLS connections (`tls://`, `--nats-tls-ca`). A provider
/// already chosen stays.
pub fn choose_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// What `--blob-store` names for the cluster's own object store.
const NATS: &str = "nats";

/// The S3 settings as given, each optional.
pub struct S3Settings {
    pub url: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// The store of large bodies, ready to use.
#[derive(Clone)]
pub enum BlobStore {
    /// A JetStream object store bucket per namespace.
    Nats,
    /// An S3 bucket: objects at `{prefix}/{namespace}/{object}`.
    S3 {
        url: String,
        store: Arc<dyn ObjectStore>,
        prefix: Path,
    },
}

/// Shows where, never a credential.
impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobStore::Nats => f.write_str("JetStream object store"),
            BlobStore::S3 { url, .. } => f.write_str(url),
        }
    }
}

impl BlobStore {
    /// The store the settings name; S3's client is built (nothing is sent
    /// yet), so that a bad setting stops start-up.
    pub fn resolve(s: S3Settings) -> Result<BlobStore, String> {
        let url = s.url.as_deref().unwrap_or(NATS).trim();
        if url == NATS {
            let s3_only = [&s.endpoint, &s.region, &s.access_key_id];
            if s3_only.iter().any(|v| v.is_some()) || s.secret_access_key.is_some() {
                return Err("blob-store-endpoint, -region and -access-key-id / \
                            -secret-access-key go with --blob-store s3://bucket"
                    .into());
            }
            return Ok(BlobStore::Nats);
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(format!(
                "blob-store: {url:?} is neither \"nats\" nor s3://bucket[/prefix]"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("blob-store: {url:?} names no bucket"));
        }
        let prefix = Path::parse(prefix.trim_matches('/'))
            .map_err(|e| format!("blob-store: the prefix of {url:?} is not a key prefix ({e})"))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = s.endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        if let Some(region) = s.region {
            builder = builder.with_region(region);
        }
        match (s.access_key_id, s.secret_access_key) {
            (Some(id), Some(secret)) => {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
            }
            (None, None) => {}
            _ => {
                return Err("blob-store-access-key-id and blob-store-secret-access-key \
                            must be given together"
                    .into())
            }
        }
        let store = builder
            .build()
            .map_err(|e| format!("blob-store: cannot use {url:?} ({e})"))?;
        Ok(BlobStore::S3 {
            url: url.to_owned(),
            store: Arc::new(store),
            prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(url: Option<&str>) -> S3Settings {
        S3Settings {
            url: url.map(str::to_owned),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
        }
    }

    #[test]
    fn the_object_store_is_nats_unless_an_s3_url_is_given() {
        assert!(matches!(
            BlobStore::resolve(with(None)),
            Ok(BlobStore::Nats)
        ));
        assert!(matches!(
            BlobStore::resolve(with(Some("nats"))),
            Ok(BlobStore::Nats)
        ));
        let s3 = S3Settings {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("eu-west-1".into()),
            access_key_id: Some("id".into()),
            secret_access_key: Some("sekrit".into()),
            ..with(Some("s3://bucket/a/b/"))
        };
        match BlobStore::resolve(s3) {
            Ok(store @ BlobStore::S3 { .. }) => {
                assert!(!format!("{store:?}").contains("sekrit"));
                let BlobStore::S3 { prefix, .. } = store else {
                    unreachable!()
                };
                assert_eq!(prefix.as_ref(), "a/b");
            }
            other => panic!("an S3 store, not {:?}", other.map(|_| ())),
        }
        for bad in ["s3://", "gs://x", "x"] {
            assert!(BlobStore::resolve(with(Some(bad))).is_err(), "{bad}");
        }
        let alone = S3Settings {
            access_key_id: Some("id".into()),
            ..with(Some("s3://b"))
        };
        assert!(BlobStore::resolve(alone).is_err());
        let stray = S3Settings {
            region: Some("r".into()),
            ..with(None)
        };
        assert!(BlobStore::resolve(stray).is_err());
    }
}
