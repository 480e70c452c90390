//! Another account's principal against every RPC that names a key, over the wire. The
//! key policy trusts the whole partner account with kms:* and the partner's identity
//! policy allows kms:*, so only AWS's cross-account table (`CROSS_ACCOUNT_ACTIONS`)
//! stands between the partner and the key. The expectation for each RPC is written
//! here, checked against the table, and the list of RPCs against kms.proto.

use std::collections::BTreeSet;
use std::fmt::Debug;

use serde_json::json;
use tonic::{Response, Status};

use p11kms::client::{error_name, KmsClient};
use p11kms::proto;
use p11kms::{allowed_across_accounts, CROSS_ACCOUNT_ACTIONS};

use crate::harness::*;

/// The RPCs whose request names a key, by what a principal of another account gets.
/// "Cross-account use: Yes" in AWS's API reference: the policies decide (here, allow).
const USED: &str = "Encrypt Decrypt GenerateDataKey GenerateDataKeyWithoutPlaintext \
    ReEncrypt DescribeKey CreateGrant ListGrants RevokeGrant RetireGrant GetKeyRotationStatus";
/// "No": AccessDeniedException from the table, whatever the policies say.
const REFUSED: &str = "GetKeyPolicy PutKeyPolicy ListKeyPolicies EnableKey DisableKey \
    UpdateKeyDescription ScheduleKeyDeletion CancelKeyDeletion EnableKeyRotation \
    DisableKeyRotation RotateKeyOnDemand ListKeyRotations TagResource UntagResource \
    ListResourceTags GetParametersForImport ImportKeyMaterial DeleteImportedKeyMaterial";
/// "No" too, but refused earlier: an alias names keys of its own account only, so
/// another account's key is NotFoundException before any policy (src/vault/aliases.rs).
const NOT_ITS_ACCOUNT: &str = "CreateAlias UpdateAlias ListAliases";
/// "Yes" too, for the asymmetric and HMAC keys (and the data key pairs).
const USED_OTHER_KEYS: &str = "Sign Verify GetPublicKey GenerateMac VerifyMac \
    DeriveSharedSecret GenerateDataKeyPair GenerateDataKeyPairWithoutPlaintext";

const DESCRIPTION: &str = "owned by 111122223333";

fn names(list: &str) -> BTreeSet<&str> {
    list.split_whitespace().collect()
}

/// The actions that authorize `rpc`: AWS names them after the operation, but ReEncrypt.
fn actions(rpc: &str) -> Vec<String> {
    match rpc {
        "ReEncrypt" => vec!["kms:ReEncryptFrom".into(), "kms:ReEncryptTo".into()],
        _ => vec![format!("kms:{rpc}")],
    }
}

/// The RPCs of kms.proto whose request message has a field `…KeyId`.
fn rpcs_that_take_a_key() -> BTreeSet<String> {
    let text = include_str!("../../proto/p11kms/v1/kms.proto");
    let takes_key = |msg: &str| {
        let body = text.split(&format!("message {msg} {{")).nth(1).unwrap();
        body.split('}').next().unwrap().lines().any(|l| {
            let field = l.split('=').next().unwrap().split_whitespace().last();
            // An AccessKeyId names an access key (SigV4 credentials), not a KMS key.
            !l.trim().starts_with("//")
                && field.is_some_and(|f| f.ends_with("KeyId") && f != "AccessKeyId")
        })
    };
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().strip_prefix("rpc ")?.split_once('(')?;
            takes_key(rest.split(')').next()?).then(|| name.to_owned())
        })
        .collect()
}

/// A request naming the key `key`, every other field at its default.
trait Keyed: Default {
    fn on(key: &str) -> Self;
}

macro_rules! keyed {
    ($($t:ident)*) => {$(impl Keyed for proto::$t {
        // Field by field: a message that wipes a secret on drop cannot be built with `..`.
        fn on(key: &str) -> Self { let mut r = Self::default(); r.key_id = key.into(); r }
    })*};
}

keyed!(GenerateDataKeyRequest GenerateDataKeyWithoutPlaintextRequest DescribeKeyRequest
    SignRequest VerifyRequest GetPublicKeyRequest GenerateMacRequest VerifyMacRequest
    DeriveSharedSecretRequest GenerateDataKeyPairRequest GenerateDataKeyPairWithoutPlaintextRequest
    ListGrantsRequest RevokeGrantRequest RetireGrantRequest GetKeyRotationStatusRequest
    GetKeyPolicyRequest PutKeyPolicyRequest ListKeyPoliciesRequest EnableKeyRequest
    DisableKeyRequest UpdateKeyDescriptionRequest ScheduleKeyDeletionRequest
    CancelKeyDeletionRequest EnableKeyRotationRequest DisableKeyRotationRequest
    RotateKeyOnDemandRequest ListKeyRotationsRequest TagResourceRequest UntagResourceRequest
    ListResourceTagsRequest ListAliasesRequest GetParametersForImportRequest
    ImportKeyMaterialRequest DeleteImportedKeyMaterialRequest);

/// The same, as the request of any RPC that takes one of these.
fn keyed<T: Keyed>(key: &str) -> tonic::Request<T> {
    tonic::Request::new(T::on(key))
}

/// The RPC a response belongs to: `EnableKeyResponse` → `EnableKey`.
fn rpc_of<T>() -> &'static str {
    let name = std::any::type_name::<T>().rsplit("::").next().unwrap();
    name.strip_suffix("Response").unwrap()
}

/// The RPCs a test called, each checked against its list and the table, and each
/// call's request id, RPC and error name, to find in the audit trail.
#[derive(Default)]
struct Walk(
    BTreeSet<&'static str>,
    Vec<(String, &'static str, Option<String>)>,
);

impl Walk {
    /// Records the RPC of `T`, which must be in `list`; the table must say `open`.
    #[track_caller]
    fn call<T>(&mut self, list: &str, open: bool) -> &'static str {
        let rpc = rpc_of::<T>();
        assert!(names(list).contains(rpc), "{rpc} is not in: {list}");
        for a in actions(rpc) {
            assert_eq!(allowed_across_accounts(&a), open, "the table on {a}");
        }
        self.0.insert(rpc);
        rpc
    }

    /// Notes the call for [`Walk::recorded`].
    fn noted<T>(&mut self, rpc: &'static str, r: &Result<Response<T>, Status>) {
        let error = r
            .as_ref()
            .err()
            .and_then(|s| error_name(s))
            .map(str::to_owned);
        self.1.push((request_id(r), rpc, error));
    }

    /// Each call left exactly one record in the trail, naming its operation, the
    /// partner as caller, the key, and the error the caller saw.
    fn recorded(&self, data_dir: &std::path::Path, partner: &str) {
        let mut records = std::collections::HashMap::new();
        for f in p11kms::trail_files(&data_dir.join("audit")).unwrap() {
            for line in std::fs::read_to_string(f).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(rid) = v["requestID"].as_str() {
                    assert!(
                        records.insert(rid.to_owned(), v.clone()).is_none(),
                        "two records for {rid}"
                    );
                }
            }
        }
        assert!(!self.1.is_empty());
        for (rid, rpc, error) in &self.1 {
            let r = records
                .get(rid)
                .unwrap_or_else(|| panic!("{rpc} {rid}: no record"));
            assert_eq!(r["eventName"], *rpc, "{r}");
            assert_eq!(r["userIdentity"]["arn"], partner, "{r}");
            assert_eq!(r["errorCode"].as_str(), error.as_deref(), "{rpc}: {r}");
            let decision = r["p11kms"]["decision"].as_str();
            match error.as_deref() {
                None => {
                    assert_eq!(decision, Some("Allow"), "{rpc}: {r}");
                    let resources = r["resources"].as_array().unwrap();
                    assert!(
                        resources.iter().any(|x| x["type"] == "AWS::KMS::Key"),
                        "{rpc}: no key among the resources: {r}"
                    );
                }
                Some("AccessDeniedException") => {
                    assert_eq!(decision, Some("ImplicitDeny"), "{rpc}: {r}")
                }
                Some(_) => {}
            }
        }
    }

    #[track_caller]
    fn used<T>(&mut self, r: Result<Response<T>, Status>) -> T {
        self.used_in(USED, r)
    }

    #[track_caller]
    fn used_in<T>(&mut self, list: &str, r: Result<Response<T>, Status>) -> T {
        let rpc = self.call::<T>(list, true);
        self.noted(rpc, &r);
        match r {
            Ok(r) => r.into_inner(),
            Err(e) => panic!("{rpc} across accounts failed: {e:?}"),
        }
    }

    /// Denied by the table itself: only it gives this reason, and it stands before
    /// every Allow (the policies here allow the partner kms:*).
    #[track_caller]
    fn refused<T: Debug>(&mut self, r: Result<Response<T>, Status>) {
        let rpc = self.call::<T>(REFUSED, false);
        self.noted(rpc, &r);
        let st = assert_kms_error(r, "AccessDeniedException");
        let why = format!("kms:{rpc} is not available across accounts");
        assert!(st.message().contains(&why), "{rpc}: {}", st.message());
    }

    #[track_caller]
    fn not_its_account<T: Debug>(&mut self, r: Result<Response<T>, Status>, arn: &str) {
        let rpc = self.call::<T>(NOT_ITS_ACCOUNT, false);
        self.noted(rpc, &r);
        let st = assert_kms_error(r, "NotFoundException");
        assert!(st.message().contains(arn), "{rpc}: {}", st.message());
    }

    fn covered(&self, list: &str) {
        let missed: Vec<_> = names(list)
            .into_iter()
            .filter(|n| !self.0.contains(n))
            .collect();
        assert!(missed.is_empty(), "not walked: {missed:?}");
    }
}

/// A daemon; a key of ACCOUNT whose policy gives kms:* to its root and to the whole
/// partner account; the partner role, whose own root allows it kms:* and iam:*.
struct Setup {
    owner: KmsClient,
    partner: KmsClient,
    key: proto::KeyMetadata,
    policy: String,
    _d: Daemon,
    _dir: TestDir,
}

async fn setup() -> Setup {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut owner = d.admin().await;
    let key = proto::CreateKeyRequest {
        description: DESCRIPTION.into(),
        ..Default::default()
    };
    let key = owner.create_key(key).await.unwrap().into_inner();
    let key = key.key_metadata.unwrap();
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": root_of(ACCOUNT)}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "PartnerAccount", "Effect": "Allow", "Principal": {"AWS": OTHER_ACCOUNT}, "Action": "kms:*", "Resource": "*"}]})
    .to_string();
    let mut r = proto::PutKeyPolicyRequest::on(&key.key_id);
    r.policy = policy.clone();
    owner.put_key_policy(r).await.unwrap();
    let mut partner_root = d.client_as(&root_of(OTHER_ACCOUNT)).await;
    let partner = role(OTHER_ACCOUNT, "Partner");
    let all = allow(&["kms:*", "iam:*"]);
    put_identity_policy(&mut partner_root, &partner, "all", all).await;
    Setup {
        owner,
        partner: d.client_as(&partner).await,
        key,
        policy,
        _d: d,
        _dir: dir,
    }
}

#[test]
fn every_rpc_that_takes_a_key_has_an_expectation_that_the_table_agrees_with() {
    let lists = [
        (USED, true),
        (USED_OTHER_KEYS, true),
        (REFUSED, false),
        (NOT_ITS_ACCOUNT, false),
    ];
    let listed: Vec<&str> = lists.iter().flat_map(|(l, _)| names(l)).collect();
    let unique: BTreeSet<String> = listed.iter().map(|n| n.to_string()).collect();
    assert_eq!(unique.len(), listed.len(), "an RPC in two lists");
    assert_eq!(unique, rpcs_that_take_a_key());
    for (list, open) in lists {
        for a in names(list).into_iter().flat_map(actions) {
            assert_eq!(allowed_across_accounts(&a), open, "{a}");
        }
    }
    // Every action the table opens is walked here.
    let mut walked: BTreeSet<String> = names(USED).into_iter().flat_map(actions).collect();
    walked.extend(names(USED_OTHER_KEYS).into_iter().flat_map(actions));
    let table: BTreeSet<String> = CROSS_ACCOUNT_ACTIONS
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(walked, table);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_account_trusted_by_the_key_policy_uses_the_key_and_its_grants() {
    let mut s = setup().await;
    let (p, o, arn) = (&mut s.partner, &mut s.owner, s.key.arn.as_str());
    let mut w = Walk::default();
    let blob = w.used(p.encrypt(encrypt_req(arn, b"partner", &[])).await);
    assert_eq!(decrypt(o, &blob.ciphertext_blob, &[]).await, b"partner");
    let owners = encrypt(o, arn, b"owner", &[]).await;
    let mut r = decrypt_req(&owners, &[]);
    r.key_id = arn.into();
    let out = w.used(p.decrypt(r).await);
    assert_eq!((&out.plaintext[..], &out.key_id[..]), (&b"owner"[..], arn));
    let mut r = proto::GenerateDataKeyRequest::on(arn);
    r.key_spec = "AES_256".into();
    let dk = w.used(p.generate_data_key(r).await);
    assert_eq!(decrypt(o, &dk.ciphertext_blob, &[]).await, dk.plaintext);
    let mut r = proto::GenerateDataKeyWithoutPlaintextRequest::on(arn);
    r.number_of_bytes = Some(16);
    let dk = w.used(p.generate_data_key_without_plaintext(r).await);
    assert_eq!(decrypt(o, &dk.ciphertext_blob, &[]).await.len(), 16);
    let r = proto::ReEncryptRequest {
        ciphertext_blob: owners,
        source_key_id: arn.into(),
        destination_key_id: arn.into(),
        destination_encryption_context: ctx(&[("by", "partner")]),
        ..Default::default()
    };
    let re = w.used(p.re_encrypt(r).await);
    assert_eq!(re.key_id, arn);
    let back = decrypt(p, &re.ciphertext_blob, &[("by", "partner")]).await;
    assert_eq!(back, b"owner");
    let meta = w.used(p.describe_key(keyed(arn)).await);
    assert_eq!(meta.key_metadata.unwrap().aws_account_id, ACCOUNT);

    // Grants on the foreign key to the partner itself: one revoked, one retired.
    let grant = |name: &str| proto::CreateGrantRequest {
        key_id: arn.into(),
        grantee_principal: role(OTHER_ACCOUNT, "Partner"),
        retiring_principal: role(OTHER_ACCOUNT, "Partner"),
        operations: vec!["Decrypt".into()],
        name: name.into(),
        ..Default::default()
    };
    let revoke = w.used(p.create_grant(grant("revoke")).await).grant_id;
    let retire = w.used(p.create_grant(grant("retire")).await).grant_id;
    let listed = w.used(p.list_grants(keyed(arn)).await);
    let ids: BTreeSet<String> = listed.grants.into_iter().map(|g| g.grant_id).collect();
    assert_eq!(ids, BTreeSet::from([revoke.clone(), retire.clone()]));
    let mut r = proto::RevokeGrantRequest::on(arn);
    r.grant_id = revoke;
    w.used(p.revoke_grant(r).await);
    let mut r = proto::RetireGrantRequest::on(arn);
    r.grant_id = retire;
    w.used(p.retire_grant(r).await);
    let left = o.list_grants(keyed(arn)).await.unwrap();
    assert!(left.get_ref().grants.is_empty(), "{left:?}");

    let status = w.used(p.get_key_rotation_status(keyed(arn)).await);
    assert!(!status.key_rotation_enabled);
    w.covered(USED);
    w.recorded(s._dir.path(), &role(OTHER_ACCOUNT, "Partner"));
}

/// A key of `spec` and `usage` in ACCOUNT with the setup's policy (the partner trusted).
async fn other_key(s: &mut Setup, spec: &str, usage: &str) -> String {
    let r = proto::CreateKeyRequest {
        key_spec: spec.into(),
        key_usage: usage.into(),
        policy: s.policy.clone(),
        ..Default::default()
    };
    let m = s.owner.create_key(r).await.unwrap().into_inner();
    m.key_metadata.unwrap().arn
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_account_uses_asymmetric_and_hmac_keys_as_the_table_allows() {
    let mut s = setup().await;
    let signer = other_key(&mut s, "ECC_NIST_P256", "SIGN_VERIFY").await;
    let mac = other_key(&mut s, "HMAC_256", "GENERATE_VERIFY_MAC").await;
    let agree = other_key(&mut s, "ECC_NIST_P256", "KEY_AGREEMENT").await;
    let peer = other_key(&mut s, "ECC_NIST_P256", "KEY_AGREEMENT").await;
    let (p, o, arn) = (&mut s.partner, &mut s.owner, s.key.arn.as_str());
    let mut w = Walk::default();
    let list = USED_OTHER_KEYS;

    let mut r = proto::SignRequest::on(&signer);
    (r.message, r.signing_algorithm) = (b"partner".to_vec(), "ECDSA_SHA_256".into());
    let sig = w.used_in(list, p.sign(r).await);
    assert_eq!(sig.key_id, signer);
    let mut r = proto::VerifyRequest::on(&signer);
    (r.message, r.signature) = (b"partner".to_vec(), sig.signature);
    r.signing_algorithm = "ECDSA_SHA_256".into();
    assert!(w.used_in(list, p.verify(r).await).signature_valid);
    let public = w.used_in(list, p.get_public_key(keyed(&signer)).await);
    assert_eq!(public.key_spec, "ECC_NIST_P256");

    let mut r = proto::GenerateMacRequest::on(&mac);
    (r.message, r.mac_algorithm) = (b"partner".to_vec(), "HMAC_SHA_256".into());
    let tag = w.used_in(list, p.generate_mac(r).await);
    assert_eq!(tag.mac.len(), 32);
    let mut r = proto::VerifyMacRequest::on(&mac);
    (r.message, r.mac, r.mac_algorithm) = (b"partner".to_vec(), tag.mac, "HMAC_SHA_256".into());
    assert!(w.used_in(list, p.verify_mac(r).await).mac_valid);

    // Two KMS keys agree on one secret: each side with the other's public key.
    let peer_public = o.get_public_key(keyed(&peer)).await.unwrap().into_inner();
    let agree_public = o.get_public_key(keyed(&agree)).await.unwrap().into_inner();
    let mut r = proto::DeriveSharedSecretRequest::on(&agree);
    (r.key_agreement_algorithm, r.public_key) = ("ECDH".into(), peer_public.public_key);
    let mine = w.used_in(list, p.derive_shared_secret(r).await);
    let mut r = proto::DeriveSharedSecretRequest::on(&peer);
    (r.key_agreement_algorithm, r.public_key) = ("ECDH".into(), agree_public.public_key);
    let theirs = o.derive_shared_secret(r).await.unwrap().into_inner();
    assert_eq!(mine.shared_secret.len(), 32);
    assert_eq!(mine.shared_secret, theirs.shared_secret);

    // Data key pairs under the partner-trusted symmetric key.
    let mut r = proto::GenerateDataKeyPairRequest::on(arn);
    r.key_pair_spec = "ECC_NIST_P256".into();
    let pair = w.used_in(list, p.generate_data_key_pair(r).await);
    let private = decrypt(o, &pair.private_key_ciphertext_blob, &[]).await;
    assert_eq!(private, pair.private_key_plaintext);
    let mut r = proto::GenerateDataKeyPairWithoutPlaintextRequest::on(arn);
    r.key_pair_spec = "RSA_2048".into();
    let pair = w.used_in(list, p.generate_data_key_pair_without_plaintext(r).await);
    assert!(pair.public_key.len() > 256);
    w.covered(list);
    w.recorded(s._dir.path(), &role(OTHER_ACCOUNT, "Partner"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_account_cannot_manage_the_key_whatever_the_policies_allow() {
    let mut s = setup().await;
    let (p, arn) = (&mut s.partner, s.key.arn.as_str());
    let mut w = Walk::default();
    // Control: the same policies let the partner in where the table allows it.
    w.used(p.describe_key(keyed(arn)).await);
    w.refused(p.get_key_policy(keyed(arn)).await);
    // A take-over: the partner's root alone in the policy, with and without the check.
    let takeover = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": root_of(OTHER_ACCOUNT)}, "Action": "kms:*", "Resource": "*"}]});
    for bypass in [false, true] {
        let mut r = proto::PutKeyPolicyRequest::on(arn);
        (r.policy, r.bypass_policy_lockout_safety_check) = (takeover.to_string(), bypass);
        w.refused(p.put_key_policy(r).await);
    }
    w.refused(p.list_key_policies(keyed(arn)).await);
    w.refused(p.enable_key(keyed(arn)).await);
    w.refused(p.disable_key(keyed(arn)).await);
    let mut r = proto::UpdateKeyDescriptionRequest::on(arn);
    r.description = "taken".into();
    w.refused(p.update_key_description(r).await);
    let mut r = proto::ScheduleKeyDeletionRequest::on(arn);
    r.pending_window_in_days = Some(7);
    w.refused(p.schedule_key_deletion(r).await);
    w.refused(p.cancel_key_deletion(keyed(arn)).await);
    w.refused(p.enable_key_rotation(keyed(arn)).await);
    w.refused(p.disable_key_rotation(keyed(arn)).await);
    w.refused(p.rotate_key_on_demand(keyed(arn)).await);
    w.refused(p.list_key_rotations(keyed(arn)).await);
    let mut r = proto::TagResourceRequest::on(arn);
    r.tags.push(proto::Tag {
        tag_key: "owner".into(),
        tag_value: "partner".into(),
    });
    w.refused(p.tag_resource(r).await);
    let mut r = proto::UntagResourceRequest::on(arn);
    r.tag_keys.push("owner".into());
    w.refused(p.untag_resource(r).await);
    w.refused(p.list_resource_tags(keyed(arn)).await);
    // Bring your own key: a well-formed request each, so that only the table refuses.
    let mut r = proto::GetParametersForImportRequest::on(arn);
    (r.wrapping_algorithm, r.wrapping_key_spec) = ("RSAES_OAEP_SHA_1".into(), "RSA_2048".into());
    w.refused(p.get_parameters_for_import(r).await);
    let mut r = proto::ImportKeyMaterialRequest::on(arn);
    (r.import_token, r.encrypted_key_material) = (vec![1], vec![1]);
    r.expiration_model = "KEY_MATERIAL_DOES_NOT_EXPIRE".into();
    w.refused(p.import_key_material(r).await);
    w.refused(p.delete_imported_key_material(keyed(arn)).await);
    w.covered(REFUSED);
    w.recorded(s._dir.path(), &role(OTHER_ACCOUNT, "Partner"));

    // The owner finds the key as it left it.
    let o = &mut s.owner;
    let m = describe(o, arn).await;
    assert!(
        m.enabled && m.key_state == "Enabled" && m.deletion_date.is_none(),
        "{m:?}"
    );
    assert_eq!(m.description, DESCRIPTION);
    let policy = o.get_key_policy(keyed(arn)).await;
    assert_eq!(policy.unwrap().into_inner().policy, s.policy);
    let tags = o.list_resource_tags(keyed(arn)).await;
    assert!(tags.unwrap().into_inner().tags.is_empty());
    let status = o.get_key_rotation_status(keyed(arn)).await;
    assert!(!status.unwrap().into_inner().key_rotation_enabled);
    let rotations = o.list_key_rotations(keyed(arn)).await;
    assert!(rotations.unwrap().into_inner().rotations.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_cannot_point_its_own_aliases_at_another_accounts_key() {
    let mut s = setup().await;
    let (p, arn) = (&mut s.partner, s.key.arn.as_str());
    let mut w = Walk::default();
    let own = create_key(p).await;
    let alias = |name: &str, target: &str| proto::CreateAliasRequest {
        alias_name: name.into(),
        target_key_id: target.into(),
    };
    let r = alias("alias/partner", &own.key_id);
    p.create_alias(r).await.unwrap();
    w.not_its_account(p.create_alias(alias("alias/borrowed", arn)).await, arn);
    let r = proto::UpdateAliasRequest {
        alias_name: "alias/partner".into(),
        target_key_id: arn.into(),
    };
    w.not_its_account(p.update_alias(r).await, arn);
    w.not_its_account(p.list_aliases(keyed(arn)).await, arn);
    w.covered(NOT_ITS_ACCOUNT);

    // The partner's alias still names its own key; the owner's key has no alias.
    let mine = p.list_aliases(proto::ListAliasesRequest::default()).await;
    let mine: Vec<_> = (mine.unwrap().into_inner().aliases.into_iter())
        .map(|a| (a.alias_name, a.target_key_id))
        .collect();
    assert_eq!(mine, [("alias/partner".to_owned(), own.key_id)]);
    let theirs = s.owner.list_aliases(keyed(arn)).await;
    assert!(theirs.unwrap().into_inner().aliases.is_empty());
}
