//! The gRPC side of the load: the daemon's own client (tonic, mTLS), four HTTP/2
//! connections shared by the tasks, one call per operation with a 32-byte plaintext.

use std::sync::Arc;
use std::time::Duration;

use p11kms::client::{connect, Identity, KmsClient};
use p11kms::proto;

use super::load::{drive, Stats};
use super::{BoxResult, Op};

/// Four connections to one daemon, a key and a ciphertext under it.
#[derive(Clone)]
pub(crate) struct Grpc {
    clients: Arc<Vec<KmsClient>>,
    key: Arc<str>,
    blob: Arc<Vec<u8>>,
}

impl Grpc {
    pub(crate) async fn connect(endpoint: &str, identity: &Identity, key: &str) -> BoxResult<Self> {
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(connect(endpoint, identity).await?);
        }
        let mut c = clients[0].clone();
        let blob = c
            .encrypt(encrypt_request(key.to_owned()))
            .await?
            .into_inner()
            .ciphertext_blob;
        Ok(Self {
            clients: Arc::new(clients),
            key: key.into(),
            blob: Arc::new(blob),
        })
    }

    /// Four connections for the calls that need no ciphertext (Sign, GenerateMac), with
    /// a key that cannot encrypt.
    pub(crate) async fn connect_without_blob(
        endpoint: &str,
        identity: &Identity,
        key: &str,
    ) -> BoxResult<Self> {
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(connect(endpoint, identity).await?);
        }
        Ok(Self {
            clients: Arc::new(clients),
            key: key.into(),
            blob: Arc::new(Vec::new()),
        })
    }

    /// `op` from `concurrency` tasks (see [`drive`]).
    pub(crate) async fn load(
        &self,
        op: Op,
        concurrency: usize,
        pace: Option<f64>,
        secs: Duration,
    ) -> Stats {
        let me = self.clone();
        drive(concurrency, pace, secs, move |i| {
            let me = me.clone();
            async move { me.call(op, i).await }
        })
        .await
    }

    async fn call(&self, op: Op, i: usize) {
        let mut c = self.clients[i % self.clients.len()].clone();
        let key = self.key.to_string();
        let ok = match op {
            Op::Encrypt => c.encrypt(encrypt_request(key)).await.map(drop),
            Op::Decrypt => c
                .decrypt(proto::DecryptRequest {
                    ciphertext_blob: self.blob.to_vec(),
                    ..Default::default()
                })
                .await
                .map(drop),
            Op::GenerateDataKey => c
                .generate_data_key(proto::GenerateDataKeyRequest {
                    key_id: key,
                    key_spec: "AES_256".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
            Op::ReEncrypt => c
                .re_encrypt(proto::ReEncryptRequest {
                    ciphertext_blob: self.blob.to_vec(),
                    destination_key_id: key,
                    ..Default::default()
                })
                .await
                .map(drop),
            Op::BatchEncrypt => {
                let items = (0..super::BATCH)
                    .map(|_| encrypt_request(key.clone()))
                    .collect();
                let answer = c.batch_encrypt(proto::BatchEncryptRequest { items }).await;
                if let Ok(a) = &answer {
                    let failed = a.get_ref().results.iter().filter(|r| {
                        !matches!(
                            r.outcome,
                            Some(proto::batch_encrypt_result::Outcome::Response(_))
                        )
                    });
                    assert_eq!(failed.count(), 0, "a batch item failed");
                }
                answer.map(drop)
            }
            Op::CreateKey => c
                .create_key(proto::CreateKeyRequest::default())
                .await
                .map(drop),
            Op::DescribeKey => c
                .describe_key(proto::DescribeKeyRequest {
                    key_id: key,
                    ..Default::default()
                })
                .await
                .map(drop),
            Op::SignEcdsa | Op::SignRsa => c
                .sign(proto::SignRequest {
                    key_id: key,
                    message: vec![7; 32],
                    signing_algorithm: if op == Op::SignEcdsa {
                        "ECDSA_SHA_256"
                    } else {
                        "RSASSA_PKCS1_V1_5_SHA_256"
                    }
                    .into(),
                    ..Default::default()
                })
                .await
                .map(drop),
            Op::GenerateMac => c
                .generate_mac(proto::GenerateMacRequest {
                    key_id: key,
                    message: vec![7; 32],
                    mac_algorithm: "HMAC_SHA_256".into(),
                    grant_tokens: vec![],
                })
                .await
                .map(drop),
        };
        if let Err(e) = ok {
            panic!("gRPC {op:?} failed during the benchmark: {e}");
        }
    }
}

/// An Encrypt of 32 bytes (the message type zeroizes on drop, so it is built by field).
pub(crate) fn encrypt_request(key_id: String) -> proto::EncryptRequest {
    let mut r = proto::EncryptRequest::default();
    r.key_id = key_id;
    r.plaintext = vec![7u8; 32];
    r
}
