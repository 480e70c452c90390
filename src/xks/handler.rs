//! One XKS request: its route (store, operation, external key), its body, its SigV4
//! signature (service `kms-xks-proxy`, the store's credentials), then the operation
//! through the vault's request path (`Vault::run`, audited like every call), answered
//! with the specification's shapes and error names.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::{Bytes, Incoming};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use zeroize::Zeroizing;

use super::config::{XksKey, XksStore};
use super::errors::{self, XksErrorName};
use super::shapes::{self, RequestMetadata};
use crate::api::Activity;
use crate::aws_json::auth::refused;
use crate::aws_json::{read_body, Body, BodyBudget, Rejected};
use crate::domain::sha256_hex;
use crate::sigv4::{Expect, Presented, SigV4Error};
use crate::vault::{
    Caller, KmsError, RequestInfo, Transport, Vault, XksDecryptInput, XksEncryptInput, XksRequest,
};

/// The signing name the specification gives the proxy.
const SERVICE: &str = "kms-xks-proxy";
/// What must be signed: the date. The path, always signed, names the operation; AWS
/// KMS signs `host` and `x-amz-date` only, so the content type may go unsigned.
const MUST_SIGN: &[(&str, &str)] = &[("x-amz-date", "X-Amz-Date")];
/// The largest body taken: the largest legitimate one (8 KiB of plaintext and 64 KiB
/// of AAD in base64, and requestMetadata) is under 100 KiB.
const MAX_BODY: usize = 128 * 1024;
/// How long GetHealthStatus waits for the token: AWS KMS gives a proxy 250 ms.
const HEALTH_PROBE: std::time::Duration = std::time::Duration::from_millis(150);
/// The longest path taken (the specification's bound on the whole URI is 256).
const MAX_PATH: usize = 512;

/// True when `path` is one of the XKS API's, to be answered here rather than as an AWS
/// KMS call.
pub(crate) fn is_xks_path(path: &str) -> bool {
    path.contains("/kms/xks/v")
}

/// The operations of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Health,
    Metadata,
    Encrypt,
    Decrypt,
}

impl Op {
    /// The name requests of this operation have in records, logs and metrics.
    fn name(self) -> &'static str {
        match self {
            Self::Health => "XksGetHealthStatus",
            Self::Metadata => "XksGetKeyMetadata",
            Self::Encrypt => "XksEncrypt",
            Self::Decrypt => "XksDecrypt",
        }
    }
}

/// The store and operation a path names, and the external key id in it.
fn route<'s, 'p>(stores: &'s [XksStore], path: &'p str) -> Option<(&'s XksStore, Op, &'p str)> {
    if path.len() > MAX_PATH {
        return None;
    }
    stores.iter().find_map(|s| {
        let rest = path.strip_prefix(s.uri_path.as_str())?;
        if rest == "/health" {
            return Some((s, Op::Health, ""));
        }
        let (id, op) = rest.strip_prefix("/keys/")?.rsplit_once('/')?;
        let op = match op {
            "metadata" => Op::Metadata,
            "encrypt" => Op::Encrypt,
            "decrypt" => Op::Decrypt,
            _ => return None,
        };
        Some((s, op, id))
    })
}

/// Answers one request. Never fails: every refusal is an XKS error answer.
pub(crate) async fn handle(
    vault: Arc<Vault>,
    stores: &[XksStore],
    source_ip: IpAddr,
    budget: &BodyBudget,
    activity: &Activity,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // The body first, whatever the answer: an HTTP/2 answer sent before the request's
    // body was read ends its stream with a reset, which some clients (curl) report as
    // a failed transfer rather than as the answer.
    let body = match read_body(body, MAX_BODY, budget).await {
        Ok(b) => b,
        Err(Rejected::TooLarge(_)) => {
            return errors::answer(
                XksErrorName::UnsupportedOperation,
                &format!("the request body is over {MAX_BODY} bytes"),
            )
        }
        Err(Rejected::TooSlow) => {
            return errors::answer(
                XksErrorName::Validation,
                "the request body did not arrive in time",
            )
        }
        Err(_) => {
            return errors::answer(
                XksErrorName::Validation,
                "the request body could not be read",
            )
        }
    };
    let Some((store, op, external_id)) = route(stores, parts.uri.path()) else {
        return errors::answer(
            XksErrorName::InvalidUriPath,
            "the path names no operation of a key store served here",
        );
    };
    if parts.method != Method::POST {
        return errors::method_not_allowed();
    }
    let key = store.key(external_id);
    let info = RequestInfo {
        operation: op.name(),
        transport: Transport::Xks,
        key_id: key.map(|k| k.key.clone()).unwrap_or_default(),
        source_ip: Some(source_ip),
    };
    // Over the store's quota: recorded like every request, not authenticated, not
    // served.
    let throttled = store
        .quota
        .as_ref()
        .is_some_and(|q| !q.admit(std::time::Instant::now()));
    let identify = async {
        if throttled {
            return Err(KmsError::LimitExceeded(
                "the key store's request quota (max_requests_per_second) is used up; retry later"
                    .into(),
            ));
        }
        authenticate(&vault, store, &parts, &body, source_ip)
    };
    let (result, outcome) = vault
        .run(info, identify, |caller| {
            serve(&vault, caller, store, op, external_id, key, &body)
        })
        .await;
    if outcome.principal.is_some() {
        activity.authenticated();
    }
    match result {
        Ok(answer) => errors::json(StatusCode::OK, answer),
        Err(e) => {
            tracing::debug!(request_id = %outcome.request_id, error = %e, "XKS request refused");
            errors::answer(XksErrorName::of(&e), &e.to_string())
        }
    }
}

/// The store's principal, when the request is signed with one of its credentials.
fn authenticate(
    vault: &Vault,
    store: &XksStore,
    parts: &Parts,
    body: &[u8],
    source_ip: IpAddr,
) -> Result<Caller, KmsError> {
    // The region of the AWS KMS that uses the store, which need not be the daemon's.
    let expect = Expect {
        region: store.region(),
        service: SERVICE,
        now: vault.now(),
        must_sign: MUST_SIGN,
    };
    // Each reason under its AWS name in the record (AWS KMS is answered
    // AuthenticationFailedException for all of them).
    let presented = Presented::parse(parts, &expect).map_err(refused)?;
    let secret = store
        .secret(presented.access_key_id())
        .ok_or_else(|| refused(SigV4Error::unrecognized()))?;
    presented
        .verify(secret, &sha256_hex(body))
        .map_err(refused)?;
    vault.caller(store.principal.clone(), None, Some(source_ip))
}

/// Runs the operation for an identified caller; the answer's JSON.
async fn serve(
    vault: &Vault,
    caller: Caller,
    store: &XksStore,
    op: Op,
    external_id: &str,
    key: Option<&XksKey>,
    body: &[u8],
) -> Result<Bytes, KmsError> {
    caller.trace.parameter("uriPath", store.uri_path.clone());
    if op != Op::Health {
        caller
            .trace
            .parameter("externalKeyId", external_id.to_owned());
    }
    let key = match (op, key) {
        (Op::Health, _) => None,
        (_, Some(k)) => Some(k),
        (_, None) => {
            // AWS's request id in the record of the refusal too.
            note_leniently(&caller, body);
            return Err(KmsError::NotFound(format!(
                "the key store {} has no external key '{}'",
                store.uri_path,
                external_id.escape_debug()
            )));
        }
    };
    match (op, key) {
        (Op::Health, _) => {
            let _: shapes::MetadataOnly = decode_noted(&caller, body)?;
            let health = vault.xks_token_health(HEALTH_PROBE).await;
            to_json(&shapes::HealthResponse {
                xks_proxy_fleet_size: 1,
                xks_proxy_vendor: "p11kms",
                xks_proxy_model: format!("p11kms {}", env!("CARGO_PKG_VERSION")),
                ekm_vendor: "PKCS#11",
                ekm_fleet_details: vec![shapes::EkmInstance {
                    id: "token".into(),
                    model: "PKCS#11 token",
                    health_status: health,
                }],
            })
        }
        (Op::Metadata, Some(k)) => {
            let m: shapes::MetadataOnly = decode_noted(&caller, body)?;
            required(&m.request_metadata, false)?;
            let request = conditions(store, external_id, &m.request_metadata);
            let out = vault
                .xks_key_metadata(&caller, &k.key, k.usage, &request)
                .await?;
            to_json(&shapes::KeyMetadataResponse {
                key_spec: out.key_spec,
                key_usage: out.key_usage,
                key_status: out.key_status,
            })
        }
        (Op::Encrypt, Some(k)) => {
            let r: shapes::EncryptRequest = decode_noted(&caller, body)?;
            required(&r.request_metadata, true)?;
            algorithm(&caller, &r.encryption_algorithm)?;
            let integrity = match r.ciphertext_data_integrity_value_algorithm.as_deref() {
                None => false,
                Some("SHA_256") => true,
                Some(_) => {
                    return Err(KmsError::validation(
                        "ciphertextDataIntegrityValueAlgorithm must be SHA_256",
                    ))
                }
            };
            let out = vault
                .xks_encrypt(
                    &caller,
                    XksEncryptInput {
                        key: k.key.clone(),
                        usage: k.usage,
                        plaintext: r.plaintext,
                        aad: r.additional_authenticated_data.unwrap_or_default(),
                        integrity,
                        request: conditions(store, external_id, &r.request_metadata),
                    },
                )
                .await?;
            to_json(&shapes::EncryptResponse {
                ciphertext: shapes::encode(&out.ciphertext),
                initialization_vector: shapes::encode(&out.iv),
                authentication_tag: shapes::encode(&out.tag),
                ciphertext_metadata: shapes::encode(&out.metadata),
                ciphertext_data_integrity_value: out.integrity.as_deref().map(shapes::encode),
            })
        }
        (Op::Decrypt, Some(k)) => {
            let r: shapes::DecryptRequest = decode_noted(&caller, body)?;
            required(&r.request_metadata, true)?;
            algorithm(&caller, &r.encryption_algorithm)?;
            let plaintext = vault
                .xks_decrypt(
                    &caller,
                    XksDecryptInput {
                        key: k.key.clone(),
                        usage: k.usage,
                        ciphertext: r.ciphertext,
                        iv: r.initialization_vector,
                        tag: r.authentication_tag,
                        aad: r.additional_authenticated_data.unwrap_or_default(),
                        metadata: r.ciphertext_metadata.unwrap_or_default(),
                        request: conditions(store, external_id, &r.request_metadata),
                    },
                )
                .await?;
            let encoded = Zeroizing::new(shapes::encode(plaintext.expose()));
            to_json(&shapes::DecryptResponse {
                plaintext: &encoded,
            })
        }
        (_, None) => Err(KmsError::internal(std::io::Error::other(
            "an XKS key operation without its key",
        ))),
    }
}

/// The answer's JSON, in a buffer wiped when the answer is dropped (a Decrypt answer
/// holds a plaintext).
fn to_json<T: serde::Serialize>(v: &T) -> Result<Bytes, KmsError> {
    crate::aws_json::wiping_json(v).map_err(KmsError::internal)
}

/// The body as the operation's request, its requestMetadata put into the audit record
/// (read leniently from the raw body when the body is refused, so that a refusal can be
/// joined with the customer's CloudTrail too: the one case that parses a body twice).
fn decode_noted<T>(caller: &Caller, body: &[u8]) -> Result<T, KmsError>
where
    T: serde::de::DeserializeOwned + shapes::WithMetadata,
{
    match decode::<T>(body) {
        Ok(r) => {
            note(caller, r.request_metadata());
            Ok(r)
        }
        Err(e) => {
            note_leniently(caller, body);
            Err(e)
        }
    }
}

/// The body as the operation's request. The message says where and what kind of
/// fault, or which member is missing, never a value: serde_json quotes the offending
/// value in its own messages, and a body may carry a plaintext.
fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, KmsError> {
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        let what = match text.split_once(" at line ") {
            Some((missing, _)) if missing.starts_with("missing field `") => missing.to_owned(),
            _ => match e.classify() {
                serde_json::error::Category::Data => {
                    "a member has the wrong type or is not valid base64".to_owned()
                }
                _ => "it is not a JSON object".to_owned(),
            },
        };
        KmsError::validation(format!(
            "the request body is not valid ({what}; line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

fn algorithm(caller: &Caller, a: &str) -> Result<(), KmsError> {
    caller.trace.parameter("encryptionAlgorithm", a.to_owned());
    if a == "AES_GCM" {
        Ok(())
    } else {
        Err(KmsError::validation("encryptionAlgorithm must be AES_GCM"))
    }
}

/// The condition keys of a call: where it arrived and what AWS KMS says about it.
fn conditions(store: &XksStore, external_id: &str, m: &RequestMetadata) -> XksRequest {
    XksRequest {
        uri_path: store.uri_path.clone(),
        external_key_id: external_id.to_owned(),
        kms_operation: m.kms_operation.clone(),
        kms_key_arn: m.kms_key_arn.clone(),
        aws_principal_arn: m.aws_principal_arn.clone(),
        kms_via_service: m.kms_via_service.clone(),
        aws_source_vpc: m.aws_source_vpc.clone(),
        aws_source_vpce: m.aws_source_vpce.clone(),
    }
}

/// The requestMetadata members the specification requires beyond the operation and
/// request id: who called AWS KMS, and (to encrypt or decrypt) with which AWS KMS key.
fn required(m: &RequestMetadata, key_arn: bool) -> Result<(), KmsError> {
    if m.aws_principal_arn.is_none() {
        return Err(KmsError::validation(
            "the request body is not valid (missing field `awsPrincipalArn`)",
        ));
    }
    if key_arn && m.kms_key_arn.is_none() {
        return Err(KmsError::validation(
            "the request body is not valid (missing field `kmsKeyArn`)",
        ));
    }
    Ok(())
}

/// Puts the requestMetadata into the request's audit record, so that it can be joined
/// with the customer's CloudTrail (kmsRequestId).
fn note(caller: &Caller, m: &RequestMetadata) {
    let t = &caller.trace;
    t.parameter("kmsRequestId", m.kms_request_id.clone());
    t.parameter("kmsOperation", m.kms_operation.clone());
    for (name, v) in [
        ("awsPrincipalArn", &m.aws_principal_arn),
        ("kmsKeyArn", &m.kms_key_arn),
        ("kmsViaService", &m.kms_via_service),
        ("awsSourceVpc", &m.aws_source_vpc),
        ("awsSourceVpce", &m.aws_source_vpce),
    ] {
        if let Some(v) = v {
            t.parameter(name, v.clone());
        }
    }
}

/// Puts what the body's requestMetadata holds into the request's audit record, so that
/// it can be joined with the customer's CloudTrail (kmsRequestId): every string member
/// of a known name, whether or not the body is valid otherwise.
fn note_leniently(caller: &Caller, body: &[u8]) {
    let Ok(serde_json::Value::Object(mut top)) = serde_json::from_slice(body) else {
        return;
    };
    let Some(serde_json::Value::Object(m)) = top.remove("requestMetadata") else {
        return;
    };
    for name in [
        "kmsRequestId",
        "kmsOperation",
        "awsPrincipalArn",
        "kmsKeyArn",
        "kmsViaService",
        "awsSourceVpc",
        "awsSourceVpce",
    ] {
        if let Some(serde_json::Value::String(v)) = m.get(name) {
            caller.trace.parameter(name, v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xks::config::XksUsage;

    fn store(path: &str) -> XksStore {
        XksStore {
            uri_path: path.into(),
            region: "us-east-1".parse().unwrap(),
            quota: None,
            principal: "arn:aws:iam::111122223333:user/xks".parse().unwrap(),
            credentials: Vec::new(),
            keys: vec![XksKey {
                id: "k1".into(),
                key: "alias/k".into(),
                usage: XksUsage {
                    encrypt: true,
                    decrypt: true,
                },
            }],
        }
    }

    #[test]
    fn paths_route_to_their_store_and_operation() {
        let stores = [store("/a/kms/xks/v1"), store("/b/c/kms/xks/v1")];
        let r =
            |p: &str| route(&stores, p).map(|(s, op, id)| (s.uri_path.clone(), op, id.to_owned()));
        assert_eq!(
            r("/a/kms/xks/v1/health"),
            Some(("/a/kms/xks/v1".into(), Op::Health, String::new()))
        );
        assert_eq!(
            r("/b/c/kms/xks/v1/keys/k1/encrypt"),
            Some(("/b/c/kms/xks/v1".into(), Op::Encrypt, "k1".into()))
        );
        assert_eq!(
            r("/a/kms/xks/v1/keys/k.2/metadata").unwrap().1,
            Op::Metadata
        );
        assert_eq!(r("/a/kms/xks/v1/keys/x/y/decrypt").unwrap().2, "x/y");
        for none in [
            "/kms/xks/v1/health",
            "/a/kms/xks/v1/",
            "/a/kms/xks/v1/health/",
            "/a/kms/xks/v1/keys/k1/sign",
            "/a/kms/xks/v1/keys/k1",
            "/invalid/a/kms/xks/v1/health",
            "/c/kms/xks/v1/health",
        ] {
            assert!(r(none).is_none(), "{none}");
        }
    }
}

#[cfg(test)]
mod properties {
    //! The parsers of untrusted bytes this module owns: the route of any path, and the
    //! decoding of any body, never panic, and a refusal never echoes the body.
    use proptest::prelude::*;

    use super::*;
    use crate::xks::config::XksUsage;

    fn stores() -> Vec<XksStore> {
        vec![XksStore {
            uri_path: "/p/kms/xks/v1".into(),
            region: "us-east-1".parse().unwrap(),
            quota: None,
            principal: "arn:aws:iam::111122223333:user/xks".parse().unwrap(),
            credentials: Vec::new(),
            keys: vec![XksKey {
                id: "k".into(),
                key: "alias/k".into(),
                usage: XksUsage {
                    encrypt: true,
                    decrypt: true,
                },
            }],
        }]
    }

    proptest! {
        #[test]
        fn any_path_routes_or_not_without_panic(tail in "[ -~]{0,80}", raw in any::<Vec<u8>>()) {
            let s = stores();
            let path = format!("/p/kms/xks/v1{tail}");
            if let Some((store, op, id)) = route(&s, &path) {
                prop_assert_eq!(&store.uri_path, "/p/kms/xks/v1");
                let suffix = match op {
                    Op::Health => "/health".to_owned(),
                    Op::Metadata => format!("/keys/{id}/metadata"),
                    Op::Encrypt => format!("/keys/{id}/encrypt"),
                    Op::Decrypt => format!("/keys/{id}/decrypt"),
                };
                prop_assert_eq!(format!("/p/kms/xks/v1{suffix}"), path.clone());
            }
            let lossy = String::from_utf8_lossy(&raw);
            let _ = route(&s, &lossy);
        }

        #[test]
        fn any_body_decodes_or_is_a_validation_error_that_echoes_nothing(
            body in prop_oneof![
                any::<Vec<u8>>(),
                "[ -~]{0,200}".prop_map(String::into_bytes),
                ("[A-Za-z0-9+/=!]{0,40}", "[ -~]{0,20}").prop_map(|(p, a)| serde_json::json!({
                    "requestMetadata": {"kmsOperation": "Encrypt", "kmsRequestId": "r"},
                    "plaintext": p, "encryptionAlgorithm": a,
                    "additionalAuthenticatedData": p,
                }).to_string().into_bytes()),
            ]
        ) {
            for result in [
                decode::<shapes::EncryptRequest>(&body).err(),
                decode::<shapes::DecryptRequest>(&body).err(),
                decode::<shapes::MetadataOnly>(&body).err(),
            ]
            .into_iter()
            .flatten()
            {
                prop_assert!(matches!(result, KmsError::Validation(_)));
                let message = result.to_string();
                // Whatever the body held, the message is made of fixed words, a member
                // name and a position: no run of the body's own text longer than that.
                let text = String::from_utf8_lossy(&body);
                for w in text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| w.len() > 16) {
                    prop_assert!(!message.contains(w), "{message} echoes {w}");
                }
            }
        }
    }
}
