//! The gRPC table: each operation's fields made wrong one at a time through the tonic
//! client, strings that are not UTF-8 and protobuf that is not the message as raw
//! frames, and bytes in place of TLS or HTTP/2.

use p11kms::proto::*;

use super::*;

pub(super) fn grpc_table(f: Fixture) -> Table<GrpcReq> {
    let Fixture {
        key,
        arn,
        other,
        blob,
        alias,
        role,
        ..
    } = f;
    let mut t = Table(Vec::new());
    // A valid request of each operation, which each row makes wrong in one way.
    let enc = move || encrypt_req_unscanned(key, b"x", &[]);
    let dec = move || DecryptRequest {
        ciphertext_blob: blob.to_vec(),
        encryption_context: ctx(&[("purpose", "bad-input")]),
        ..Default::default()
    };
    let gdk = move || GenerateDataKeyRequest {
        key_id: key.into(),
        key_spec: "AES_256".into(),
        ..Default::default()
    };
    let re = move || ReEncryptRequest {
        ciphertext_blob: blob.to_vec(),
        source_encryption_context: ctx(&[("purpose", "bad-input")]),
        destination_key_id: other.into(),
        ..Default::default()
    };
    let ck = CreateKeyRequest::default;
    let pkp = move || PutKeyPolicyRequest {
        key_id: key.into(),
        policy_name: "default".into(),
        policy: root_policy(0),
        ..Default::default()
    };
    let ppp = move || PutPrincipalPolicyRequest {
        principal_arn: role.into(),
        policy_name: "p".into(),
        policy_document: identity_policy(0),
    };
    let lk = ListKeysRequest::default;
    let tr = move |tags: Vec<Tag>| TagResourceRequest {
        key_id: key.into(),
        tags,
    };
    let grant = move || CreateGrantRequest {
        key_id: key.into(),
        grantee_principal: role.into(),
        operations: vec!["Encrypt".into()],
        ..Default::default()
    };
    let lg = move || ListGrantsRequest {
        key_id: key.into(),
        ..Default::default()
    };
    let ca = move |name: &str, target: &str| CreateAliasRequest {
        alias_name: name.into(),
        target_key_id: target.into(),
    };
    let random = |n: Option<i32>| GenerateRandomRequest { number_of_bytes: n };
    let bytes = |n: i32| {
        move |r: &mut GenerateDataKeyRequest| {
            r.key_spec.clear();
            r.number_of_bytes = Some(n);
        }
    };
    let lkp = move |limit: Option<i32>, marker: &str| ListKeyPoliciesRequest {
        key_id: key.into(),
        limit,
        marker: marker.into(),
    };
    let tp = move |tags: Vec<Tag>| TagPrincipalRequest {
        principal_arn: role.into(),
        tags,
    };
    let skd = move |days: i32| ScheduleKeyDeletionRequest {
        key_id: key.into(),
        pending_window_in_days: Some(days),
    };
    let ekr = move |days: i32| EnableKeyRotationRequest {
        key_id: key.into(),
        rotation_period_in_days: Some(days),
    };
    let lkr = move |limit: Option<i32>, marker: &str| ListKeyRotationsRequest {
        key_id: key.into(),
        limit,
        marker: marker.into(),
    };
    let lrt = move |limit: Option<i32>, marker: &str| ListResourceTagsRequest {
        key_id: key.into(),
        limit,
        marker: marker.into(),
    };
    let subset = |k: &str, v: &str| {
        Some(GrantConstraints {
            encryption_context_subset: ctx(&[(k, v)]),
            ..Default::default()
        })
    };

    calls! { t;
        // Encrypt.
        "Encrypt KeyId empty", VALIDATION, |c| c.encrypt(with(enc(), |r| r.key_id.clear()));
        "Encrypt KeyId 2049 characters", VALIDATION,
            |c| c.encrypt(with(enc(), |r| r.key_id = "k".repeat(2049)));
        "Encrypt KeyId a NUL byte", NOT_FOUND, |c| c.encrypt(with(enc(), |r| r.key_id = "\0".into()));
        "Encrypt KeyId ending in a NUL byte", NOT_FOUND, |c| c.encrypt(with(enc(), |r| r.key_id.push('\0')));
        "Encrypt KeyId unknown", NOT_FOUND, |c| c.encrypt(with(enc(), |r| r.key_id = UNKNOWN_KEY.into()));
        "Encrypt KeyId an alias nobody made", NOT_FOUND,
            |c| c.encrypt(with(enc(), |r| r.key_id = "alias/nobody".into()));
        "Encrypt KeyId ARN of another region", NOT_FOUND,
            |c| c.encrypt(with(enc(), |r| r.key_id = arn.replace("us-east-1", "eu-west-3")));
        "Encrypt KeyId ARN of another service", NOT_FOUND,
            |c| c.encrypt(with(enc(), |r| r.key_id = arn.replace(":kms:", ":s3:")));
        "Encrypt a message over 8 MiB", VALIDATION,
            |c| c.encrypt(with(enc(), |r| r.plaintext = vec![1; 9 << 20]));
        "Encrypt Plaintext empty", VALIDATION, |c| c.encrypt(with(enc(), |r| r.plaintext.clear()));
        "Encrypt Plaintext 4097 bytes", VALIDATION,
            |c| c.encrypt(with(enc(), |r| r.plaintext = vec![1; 4097]));
        "Encrypt EncryptionContext over 8192 bytes", VALIDATION,
            |c| c.encrypt(with(enc(), |r| r.encryption_context = ctx(&[("k", &"v".repeat(8200))])));
        "Encrypt EncryptionContext 10,000 pairs", VALIDATION,
            |c| c.encrypt(with(enc(), |r| r.encryption_context = pairs(10_000)));
        "Encrypt GrantTokens 11", VALIDATION,
            |c| c.encrypt(with(enc(), |r| r.grant_tokens = vec![BOGUS_TOKEN.into(); 11]));
        "Encrypt GrantTokens an empty token", VALIDATION,
            |c| c.encrypt(with(enc(), |r| r.grant_tokens = vec![String::new()]));
        "Encrypt GrantTokens a token of 8193 characters", VALIDATION,
            |c| c.encrypt(with(enc(), |r| r.grant_tokens = vec!["t".repeat(8193)]));
        "Encrypt GrantTokens a token nobody issued", INVALID_GRANT_TOKEN,
            |c| c.encrypt(with(enc(), |r| r.grant_tokens = vec![BOGUS_TOKEN.into()]));
        "Encrypt EncryptionAlgorithm unknown", VALIDATION,
            |c| c.encrypt(with(enc(), |r| r.encryption_algorithm = "AES_GCM".into()));
        "Encrypt EncryptionAlgorithm in lower case", VALIDATION,
            |c| c.encrypt(with(enc(), |r| r.encryption_algorithm = "symmetric_default".into()));
        "Encrypt EncryptionAlgorithm asymmetric", INVALID_KEY_USAGE,
            |c| c.encrypt(with(enc(), |r| r.encryption_algorithm = "RSAES_OAEP_SHA_256".into()));

        // Decrypt.
        "Decrypt CiphertextBlob empty", VALIDATION, |c| c.decrypt(with(dec(), |r| r.ciphertext_blob.clear()));
        "Decrypt CiphertextBlob 6145 bytes", VALIDATION,
            |c| c.decrypt(with(dec(), |r| r.ciphertext_blob = vec![b'p'; 6145]));
        "Decrypt CiphertextBlob noise", INVALID_CIPHERTEXT,
            |c| c.decrypt(with(dec(), |r| r.ciphertext_blob = noise(200, 7)));
        "Decrypt CiphertextBlob one byte short", INVALID_CIPHERTEXT,
            |c| c.decrypt(with(dec(), |r| { r.ciphertext_blob.pop(); }));
        "Decrypt CiphertextBlob one byte more", INVALID_CIPHERTEXT,
            |c| c.decrypt(with(dec(), |r| r.ciphertext_blob.push(0)));
        "Decrypt EncryptionContext missing", INVALID_CIPHERTEXT,
            |c| c.decrypt(with(dec(), |r| r.encryption_context.clear()));
        "Decrypt EncryptionContext 10,000 pairs", VALIDATION,
            |c| c.decrypt(with(dec(), |r| r.encryption_context = pairs(10_000)));
        "Decrypt KeyId another key", INCORRECT_KEY, |c| c.decrypt(with(dec(), |r| r.key_id = other.into()));
        "Decrypt KeyId 2049 characters", VALIDATION,
            |c| c.decrypt(with(dec(), |r| r.key_id = "k".repeat(2049)));
        "Decrypt EncryptionAlgorithm SM2PKE", INVALID_KEY_USAGE,
            |c| c.decrypt(with(dec(), |r| r.encryption_algorithm = "SM2PKE".into()));
        "Decrypt GrantTokens 11", VALIDATION,
            |c| c.decrypt(with(dec(), |r| r.grant_tokens = vec!["t".into(); 11]));

        // The data keys.
        "GenerateDataKey NumberOfBytes 0", VALIDATION,
            |c| c.generate_data_key(with(gdk(), bytes(0)));
        "GenerateDataKey NumberOfBytes 1025", VALIDATION,
            |c| c.generate_data_key(with(gdk(), bytes(1025)));
        "GenerateDataKey NumberOfBytes -1", VALIDATION,
            |c| c.generate_data_key(with(gdk(), bytes(-1)));
        "GenerateDataKey NumberOfBytes i32::MIN", VALIDATION,
            |c| c.generate_data_key(with(gdk(), bytes(i32::MIN)));
        "GenerateDataKey NumberOfBytes and KeySpec", VALIDATION,
            |c| c.generate_data_key(with(gdk(), |r| r.number_of_bytes = Some(32)));
        "GenerateDataKey neither NumberOfBytes nor KeySpec", VALIDATION,
            |c| c.generate_data_key(with(gdk(), |r| r.key_spec.clear()));
        "GenerateDataKey KeySpec AES_512", VALIDATION,
            |c| c.generate_data_key(with(gdk(), |r| r.key_spec = "AES_512".into()));
        "GenerateDataKey KeySpec in lower case", VALIDATION,
            |c| c.generate_data_key(with(gdk(), |r| r.key_spec = "aes_256".into()));
        "GenerateDataKey EncryptionContext 10,000 pairs", VALIDATION,
            |c| c.generate_data_key(with(gdk(), |r| r.encryption_context = pairs(10_000)));
        "GenerateDataKeyWithoutPlaintext NumberOfBytes 1025", VALIDATION,
            |c| c.generate_data_key_without_plaintext(GenerateDataKeyWithoutPlaintextRequest {
                key_id: key.into(), number_of_bytes: Some(1025), ..Default::default() });
        "GenerateDataKeyWithoutPlaintext KeySpec RSA_2048", VALIDATION,
            |c| c.generate_data_key_without_plaintext(GenerateDataKeyWithoutPlaintextRequest {
                key_id: key.into(), key_spec: "RSA_2048".into(), ..Default::default() });

        // ReEncrypt.
        "ReEncrypt DestinationKeyId empty", VALIDATION,
            |c| c.re_encrypt(with(re(), |r| r.destination_key_id.clear()));
        "ReEncrypt DestinationKeyId unknown", NOT_FOUND,
            |c| c.re_encrypt(with(re(), |r| r.destination_key_id = UNKNOWN_KEY.into()));
        "ReEncrypt CiphertextBlob empty", VALIDATION,
            |c| c.re_encrypt(with(re(), |r| r.ciphertext_blob.clear()));
        "ReEncrypt CiphertextBlob noise", INVALID_CIPHERTEXT,
            |c| c.re_encrypt(with(re(), |r| r.ciphertext_blob = noise(120, 9)));
        "ReEncrypt SourceKeyId another key", INCORRECT_KEY,
            |c| c.re_encrypt(with(re(), |r| r.source_key_id = other.into()));
        "ReEncrypt SourceEncryptionContext wrong", INVALID_CIPHERTEXT,
            |c| c.re_encrypt(with(re(), |r| r.source_encryption_context = ctx(&[("purpose", "other")])));
        "ReEncrypt DestinationEncryptionContext over 8192 bytes", VALIDATION,
            |c| c.re_encrypt(with(re(), |r| {
                r.destination_encryption_context = ctx(&[("k", &"v".repeat(9000))]);
            }));
        "ReEncrypt SourceEncryptionAlgorithm asymmetric without SourceKeyId", VALIDATION,
            |c| c.re_encrypt(with(re(), |r| r.source_encryption_algorithm = "RSAES_OAEP_SHA_1".into()));
        "ReEncrypt SourceEncryptionAlgorithm asymmetric, symmetric SourceKeyId", INVALID_KEY_USAGE,
            |c| c.re_encrypt(with(re(), |r| {
                r.source_encryption_algorithm = "RSAES_OAEP_SHA_1".into();
                r.source_key_id = key.into();
            }));
        "ReEncrypt DestinationEncryptionAlgorithm unknown", VALIDATION,
            |c| c.re_encrypt(with(re(), |r| r.destination_encryption_algorithm = "ROT13".into()));
        "ReEncrypt GrantTokens 11", VALIDATION,
            |c| c.re_encrypt(with(re(), |r| r.grant_tokens = vec!["t".into(); 11]));

        // GenerateRandom, and the batch calls as a whole.
        "GenerateRandom NumberOfBytes absent", VALIDATION, |c| c.generate_random(random(None));
        "GenerateRandom NumberOfBytes 0", VALIDATION, |c| c.generate_random(random(Some(0)));
        "GenerateRandom NumberOfBytes 1025", VALIDATION, |c| c.generate_random(random(Some(1025)));
        "GenerateRandom NumberOfBytes i32::MAX", VALIDATION, |c| c.generate_random(random(Some(i32::MAX)));
        "BatchEncrypt no items", VALIDATION, |c| c.batch_encrypt(BatchEncryptRequest { items: vec![] });
        "BatchEncrypt 1001 items", VALIDATION,
            |c| c.batch_encrypt(BatchEncryptRequest { items: vec![enc(); 1001] });
        "BatchDecrypt no items", VALIDATION, |c| c.batch_decrypt(BatchDecryptRequest { items: vec![] });
        "BatchDecrypt 1001 items", VALIDATION,
            |c| c.batch_decrypt(BatchDecryptRequest { items: vec![dec(); 1001] });

        // CreateKey.
        "CreateKey Description 8193 characters", VALIDATION,
            |c| c.create_key(with(ck(), |r| r.description = "d".repeat(8193)));
        "CreateKey KeyUsage unknown", VALIDATION,
            |c| c.create_key(with(ck(), |r| r.key_usage = "DECRYPT_ONLY".into()));
        "CreateKey KeyUsage SIGN_VERIFY of a SYMMETRIC_DEFAULT key", VALIDATION,
            |c| c.create_key(with(ck(), |r| r.key_usage = "SIGN_VERIFY".into()));
        "CreateKey KeySpec unknown", VALIDATION,
            |c| c.create_key(with(ck(), |r| r.key_spec = "AES_1024".into()));
        "CreateKey KeySpec RSA_2048 without KeyUsage", VALIDATION,
            |c| c.create_key(with(ck(), |r| r.key_spec = "RSA_2048".into()));
        "CreateKey KeySpec ML_DSA_44", UNSUPPORTED,
            |c| c.create_key(with(ck(), |r| {
                r.key_spec = "ML_DSA_44".into();
                r.key_usage = "SIGN_VERIFY".into();
            }));
        "GetParametersForImport WrappingKeySpec RSA_1024", VALIDATION,
            |c| c.get_parameters_for_import(GetParametersForImportRequest {
                key_id: key.into(),
                wrapping_algorithm: "RSAES_OAEP_SHA_1".into(),
                wrapping_key_spec: "RSA_1024".into(),
            });
        "ImportKeyMaterial ValidTo before 1970", VALIDATION,
            |c| c.import_key_material(ImportKeyMaterialRequest {
                key_id: key.into(),
                import_token: vec![1],
                encrypted_key_material: vec![1],
                valid_to: Some(prost_types::Timestamp { seconds: -1, nanos: 0 }),
                expiration_model: String::new(),
            });
        "ImportKeyMaterial EncryptedKeyMaterial over 6144 bytes", VALIDATION,
            |c| c.import_key_material(ImportKeyMaterialRequest {
                key_id: key.into(),
                import_token: vec![1],
                encrypted_key_material: vec![1; 6145],
                valid_to: None,
                expiration_model: "KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
            });
        "CreateKey Origin unknown", VALIDATION, |c| c.create_key(with(ck(), |r| r.origin = "MOON".into()));
        "CreateKey Origin AWS_CLOUDHSM", UNSUPPORTED,
            |c| c.create_key(with(ck(), |r| r.origin = "AWS_CLOUDHSM".into()));
        "CreateKey Policy not JSON", MALFORMED_POLICY,
            |c| c.create_key(with(ck(), |r| r.policy = r#"{"Version":"#.into()));
        "CreateKey Policy 10,000 levels deep", MALFORMED_POLICY,
            |c| c.create_key(with(ck(), |r| r.policy = deep_json(10_000)));
        "CreateKey Policy 10,000 empty statements", MALFORMED_POLICY,
            |c| c.create_key(with(ck(), |r| r.policy = statements(10_000, "{}")));
        "CreateKey Policy over 32 KiB", LIMIT_EXCEEDED,
            |c| c.create_key(with(ck(), |r| r.policy = root_policy(32 * 1024)));
        "CreateKey Policy over 131,072 characters", VALIDATION,
            |c| c.create_key(with(ck(), |r| r.policy = statements(10_000, ALLOW_ALL)));
        "CreateKey Policy that locks the caller out", MALFORMED_POLICY,
            |c| c.create_key(with(ck(), |r| r.policy = lockout_policy()));
        "CreateKey Policy naming a member twice", MALFORMED_POLICY, |c| c.create_key(with(ck(), |r| r.policy =
            root_policy(0).replace(r#""Effect":"Allow""#, r#""Effect":"Deny","Effect":"Allow""#)));
        "CreateKey Policy a JSON string", MALFORMED_POLICY, |c| c.create_key(with(ck(), |r| r.policy = r#""kms:*""#.into()));

        // DescribeKey and ListKeys.
        "DescribeKey KeyId empty", VALIDATION, |c| c.describe_key(DescribeKeyRequest::default());
        "DescribeKey GrantTokens a token of 8193 characters", VALIDATION,
            |c| c.describe_key(DescribeKeyRequest {
                key_id: key.into(), grant_tokens: vec!["g".repeat(8193)] });
        "ListKeys Limit 0", VALIDATION, |c| c.list_keys(with(lk(), |r| r.limit = Some(0)));
        "ListKeys Limit 1001", VALIDATION, |c| c.list_keys(with(lk(), |r| r.limit = Some(1001)));
        "ListKeys Limit -1", VALIDATION, |c| c.list_keys(with(lk(), |r| r.limit = Some(-1)));
        "ListKeys Marker made up", INVALID_MARKER, |c| c.list_keys(with(lk(), |r| r.marker = "bogus".into()));
        "ListKeys Marker a NUL byte", VALIDATION, |c| c.list_keys(with(lk(), |r| r.marker = "\0".into()));
        "ListKeys Marker 1025 characters", VALIDATION,
            |c| c.list_keys(with(lk(), |r| r.marker = "m".repeat(1025)));

        // Key policies.
        "GetKeyPolicy PolicyName not default", NOT_FOUND,
            |c| c.get_key_policy(GetKeyPolicyRequest { key_id: key.into(), policy_name: "other".into() });
        "GetKeyPolicy PolicyName with a space", VALIDATION,
            |c| c.get_key_policy(GetKeyPolicyRequest { key_id: key.into(), policy_name: "de fault".into() });
        "GetKeyPolicy PolicyName 129 characters", VALIDATION,
            |c| c.get_key_policy(GetKeyPolicyRequest { key_id: key.into(), policy_name: "p".repeat(129) });
        "PutKeyPolicy Policy empty", VALIDATION, |c| c.put_key_policy(with(pkp(), |r| r.policy.clear()));
        "PutKeyPolicy Policy not JSON", MALFORMED_POLICY,
            |c| c.put_key_policy(with(pkp(), |r| r.policy = "not json".into()));
        "PutKeyPolicy Policy 10,000 levels deep", MALFORMED_POLICY,
            |c| c.put_key_policy(with(pkp(), |r| r.policy = deep_json(10_000)));
        "PutKeyPolicy Policy 5,000 objects deep", MALFORMED_POLICY,
            |c| c.put_key_policy(with(pkp(), |r| r.policy =
            format!("{}1{}", r#"{"a":"#.repeat(5_000), "}".repeat(5_000))));
        "PutKeyPolicy Policy 10,000 empty statements", MALFORMED_POLICY,
            |c| c.put_key_policy(with(pkp(), |r| r.policy = statements(10_000, "{}")));
        "PutKeyPolicy Policy over 32 KiB", LIMIT_EXCEEDED,
            |c| c.put_key_policy(with(pkp(), |r| r.policy = root_policy(32 * 1024)));
        "PutKeyPolicy Policy over 131,072 characters", VALIDATION,
            |c| c.put_key_policy(with(pkp(), |r| r.policy = statements(10_000, ALLOW_ALL)));
        "PutKeyPolicy Policy that locks the caller out", MALFORMED_POLICY,
            |c| c.put_key_policy(with(pkp(), |r| r.policy = lockout_policy()));
        "PutKeyPolicy Policy an array", MALFORMED_POLICY,
            |c| c.put_key_policy(with(pkp(), |r| r.policy = "[]".into()));
        "PutKeyPolicy Policy with an unknown element", MALFORMED_POLICY,
            |c| c.put_key_policy(with(pkp(), |r| r.policy =
            root_policy(0).replace(r#""Sid":"Root""#, r#""Sid":"Root","Fish":1"#)));
        "PutKeyPolicy PolicyName not default", NOT_FOUND,
            |c| c.put_key_policy(with(pkp(), |r| r.policy_name = "other".into()));
        "ListKeyPolicies Marker any", INVALID_MARKER,
            |c| c.list_key_policies(lkp(None, "m"));
        "ListKeyPolicies Limit 0", VALIDATION,
            |c| c.list_key_policies(lkp(Some(0), ""));

        // Identity policies and principal tags.
        "PutPrincipalPolicy PrincipalArn not an ARN", VALIDATION,
            |c| c.put_principal_policy(with(ppp(), |r| r.principal_arn = "bob".into()));
        "PutPrincipalPolicy PrincipalArn an account root", VALIDATION,
            |c| c.put_principal_policy(with(ppp(), |r| r.principal_arn = root_of(ACCOUNT)));
        "PutPrincipalPolicy PolicyName with a space", VALIDATION,
            |c| c.put_principal_policy(with(ppp(), |r| r.policy_name = "a b".into()));
        "PutPrincipalPolicy PolicyDocument over 10,240 characters", LIMIT_EXCEEDED,
            |c| c.put_principal_policy(with(ppp(), |r| r.policy_document = identity_policy(10_240)));
        "PutPrincipalPolicy PolicyDocument naming a Principal", MALFORMED_POLICY,
            |c| c.put_principal_policy(with(ppp(), |r| r.policy_document = root_policy(0)));
        "PutPrincipalPolicy PolicyDocument 5,000 levels deep", MALFORMED_POLICY,
            |c| c.put_principal_policy(with(ppp(), |r| r.policy_document = deep_json(5_000)));
        "GetPrincipalPolicy PolicyName nobody put", NOT_FOUND,
            |c| c.get_principal_policy(GetPrincipalPolicyRequest {
                principal_arn: role.into(), policy_name: "none".into() });
        "DeletePrincipalPolicy PrincipalArn of a managed policy", VALIDATION,
            |c| c.delete_principal_policy(DeletePrincipalPolicyRequest {
                principal_arn: "arn:aws:iam::aws:policy/Admin".into(), policy_name: "p".into() });
        "ListPrincipalPolicies PrincipalArn empty", VALIDATION,
            |c| c.list_principal_policies(ListPrincipalPoliciesRequest::default());
        "TagPrincipal a tag with a character IAM refuses", VALIDATION,
            |c| c.tag_principal(tp(vec![tag("team", "a<b")]));
        "TagPrincipal 51 tags", LIMIT_EXCEEDED, |c| c.tag_principal(TagPrincipalRequest {
            principal_arn: role.into(), tags: (0..51).map(|i| tag(&format!("t{i}"), "v")).collect() });
        "TagPrincipal keys differing in case", VALIDATION,
            |c| c.tag_principal(tp(vec![tag("Team", "a"), tag("team", "b")]));
        "UntagPrincipal PrincipalArn with a NUL byte", VALIDATION,
            |c| c.untag_principal(UntagPrincipalRequest {
                principal_arn: format!("{role}\0"), tag_keys: vec!["t".into()] });
        "ListPrincipalTags PrincipalArn with an 11-digit account", VALIDATION,
            |c| c.list_principal_tags(ListPrincipalTagsRequest {
                principal_arn: role.replace(ACCOUNT, "11112222333") });

        // Key state and settings.
        "EnableKey KeyId unknown", NOT_FOUND,
            |c| c.enable_key(EnableKeyRequest { key_id: UNKNOWN_KEY.into() });
        "DisableKey KeyId 2049 characters", VALIDATION,
            |c| c.disable_key(DisableKeyRequest { key_id: "k".repeat(2049) });
        "UpdateKeyDescription Description 8193 characters", VALIDATION,
            |c| c.update_key_description(UpdateKeyDescriptionRequest {
                key_id: key.into(), description: "d".repeat(8193) });
        "ScheduleKeyDeletion PendingWindowInDays 6", VALIDATION,
            |c| c.schedule_key_deletion(skd(6));
        "ScheduleKeyDeletion PendingWindowInDays 31", VALIDATION,
            |c| c.schedule_key_deletion(skd(31));
        "ScheduleKeyDeletion PendingWindowInDays i32::MIN", VALIDATION,
            |c| c.schedule_key_deletion(skd(i32::MIN));
        "CancelKeyDeletion a key not pending deletion", INVALID_STATE,
            |c| c.cancel_key_deletion(CancelKeyDeletionRequest { key_id: key.into() });
        "EnableKeyRotation RotationPeriodInDays 89", VALIDATION,
            |c| c.enable_key_rotation(ekr(89));
        "EnableKeyRotation RotationPeriodInDays 2561", VALIDATION,
            |c| c.enable_key_rotation(ekr(2561));
        "GetKeyRotationStatus KeyId empty", VALIDATION,
            |c| c.get_key_rotation_status(GetKeyRotationStatusRequest::default());
        "RotateKeyOnDemand KeyId an alias nobody made", NOT_FOUND,
            |c| c.rotate_key_on_demand(RotateKeyOnDemandRequest { key_id: "alias/none".into() });
        "ListKeyRotations Limit 1001", VALIDATION,
            |c| c.list_key_rotations(lkr(Some(1001), ""));
        "ListKeyRotations Marker made up", INVALID_MARKER,
            |c| c.list_key_rotations(lkr(None, "7"));

        // Key tags.
        "TagResource TagKey with aws: in front", TAG, |c| c.tag_resource(tr(vec![tag("aws:team", "a")]));
        "TagResource TagKey with a character AWS refuses", TAG, |c| c.tag_resource(tr(vec![tag("a<b", "a")]));
        "TagResource TagValue with a NUL byte", TAG, |c| c.tag_resource(tr(vec![tag("team", "a\0")]));
        "TagResource 51 tags", LIMIT_EXCEEDED,
            |c| c.tag_resource(tr((0..51).map(|i| tag(&format!("t{i}"), "v")).collect()));
        "TagResource one key twice", VALIDATION,
            |c| c.tag_resource(tr(vec![tag("team", "a"), tag("team", "b")]));
        "UntagResource KeyId unknown", NOT_FOUND,
            |c| c.untag_resource(UntagResourceRequest {
                key_id: UNKNOWN_KEY.into(), tag_keys: vec!["team".into()] });
        "ListResourceTags Limit 0", VALIDATION,
            |c| c.list_resource_tags(lrt(Some(0), ""));
        "ListResourceTags Marker made up", INVALID_MARKER,
            |c| c.list_resource_tags(lrt(None, "team"));

        // Grants.
        "CreateGrant GranteePrincipal empty", VALIDATION,
            |c| c.create_grant(with(grant(), |g| g.grantee_principal.clear()));
        "CreateGrant GranteePrincipal not an ARN", VALIDATION,
            |c| c.create_grant(with(grant(), |g| g.grantee_principal = "bob".into()));
        "CreateGrant GranteePrincipal over 256 characters", VALIDATION,
            |c| c.create_grant(with(grant(), |g| g.grantee_principal.push_str(&"r".repeat(2020))));
        "CreateGrant RetiringPrincipal not an ARN", VALIDATION,
            |c| c.create_grant(with(grant(), |g| g.retiring_principal = "x".into()));
        "CreateGrant Operations empty", VALIDATION,
            |c| c.create_grant(with(grant(), |g| g.operations.clear()));
        "CreateGrant Operations unknown", VALIDATION,
            |c| c.create_grant(with(grant(), |g| g.operations = vec!["Fly".into()]));
        "CreateGrant Operations Sign on a symmetric key", VALIDATION,
            |c| c.create_grant(with(grant(), |g| g.operations = vec!["Sign".into()]));
        "CreateGrant Name with a space", VALIDATION,
            |c| c.create_grant(with(grant(), |g| g.name = "a b".into()));
        "CreateGrant Name 257 characters", VALIDATION,
            |c| c.create_grant(with(grant(), |g| g.name = "n".repeat(257)));
        "CreateGrant Constraints key 385 characters", VALIDATION,
            |c| c.create_grant(with(grant(), |g| g.constraints = subset(&"k".repeat(385), "v")));
        "CreateGrant Constraints value 385 characters", VALIDATION,
            |c| c.create_grant(with(grant(), |g| g.constraints = Some(GrantConstraints {
                encryption_context_equals: ctx(&[("k", &"v".repeat(385))]), ..Default::default() })));
        "CreateGrant GrantTokens a token nobody issued", INVALID_GRANT_TOKEN,
            |c| c.create_grant(with(grant(), |g| g.grant_tokens = vec![BOGUS_TOKEN.into()]));
        "ListGrants GrantId not 64 hex digits", INVALID_GRANT_ID,
            |c| c.list_grants(with(lg(), |r| r.grant_id = "g".repeat(64)));
        "ListGrants Limit 0", VALIDATION, |c| c.list_grants(with(lg(), |r| r.limit = Some(0)));
        "ListGrants Marker made up", INVALID_MARKER,
            |c| c.list_grants(with(lg(), |r| r.marker = "0".repeat(64)));
        "ListGrants GranteePrincipal not an ARN", VALIDATION,
            |c| c.list_grants(with(lg(), |r| r.grantee_principal = "x".into()));
        "ListRetirableGrants RetiringPrincipal empty", VALIDATION,
            |c| c.list_retirable_grants(ListRetirableGrantsRequest::default());
        "ListRetirableGrants Limit 1001", VALIDATION, |c| c.list_retirable_grants(ListRetirableGrantsRequest {
            retiring_principal: role.into(), limit: Some(1001), marker: String::new() });
        "RetireGrant GrantToken nobody issued", INVALID_GRANT_TOKEN,
            |c| c.retire_grant(RetireGrantRequest { grant_token: BOGUS_TOKEN.into(), ..Default::default() });
        "RetireGrant GrantId not 64 hex digits", INVALID_GRANT_ID,
            |c| c.retire_grant(RetireGrantRequest {
                key_id: key.into(), grant_id: "xyz".into(), ..Default::default() });
        "RetireGrant neither token nor id", VALIDATION, |c| c.retire_grant(RetireGrantRequest::default());
        "RevokeGrant GrantId not 64 hex digits", INVALID_GRANT_ID,
            |c| c.revoke_grant(RevokeGrantRequest { key_id: key.into(), grant_id: "G".repeat(64) });
        "RevokeGrant GrantId nobody made", NOT_FOUND,
            |c| c.revoke_grant(RevokeGrantRequest { key_id: key.into(), grant_id: "0".repeat(64) });

        // Aliases.
        "CreateAlias AliasName without alias/", INVALID_ALIAS_NAME, |c| c.create_alias(ca("payroll", key));
        "CreateAlias AliasName alias/aws/ reserved", INVALID_ALIAS_NAME,
            |c| c.create_alias(ca("alias/aws/s3", key));
        "CreateAlias AliasName nothing after alias/", INVALID_ALIAS_NAME,
            |c| c.create_alias(ca("alias/", key));
        "CreateAlias AliasName with a colon", INVALID_ALIAS_NAME, |c| c.create_alias(ca("alias/a:b", key));
        "CreateAlias AliasName taken", ALREADY_EXISTS, |c| c.create_alias(ca(alias, other));
        "CreateAlias TargetKeyId an alias", VALIDATION, |c| c.create_alias(ca("alias/fresh", alias));
        "CreateAlias TargetKeyId unknown", NOT_FOUND, |c| c.create_alias(ca("alias/fresh", UNKNOWN_KEY));
        "UpdateAlias AliasName nobody made", NOT_FOUND,
            |c| c.update_alias(UpdateAliasRequest {
                alias_name: "alias/none".into(), target_key_id: key.into() });
        "DeleteAlias AliasName reserved", INVALID_ALIAS_NAME,
            |c| c.delete_alias(DeleteAliasRequest { alias_name: "alias/aws/ebs".into() });
        "ListAliases Limit 101", VALIDATION,
            |c| c.list_aliases(ListAliasesRequest { limit: Some(101), ..Default::default() });
        "ListAliases Marker made up", INVALID_MARKER,
            |c| c.list_aliases(ListAliasesRequest { marker: alias.into(), ..Default::default() });

        // Access keys.
        "CreateAccessKey PrincipalArn not an ARN", VALIDATION,
            |c| c.create_access_key(CreateAccessKeyRequest { principal_arn: "alice".into() });
        "ListAccessKeys PrincipalArn of a key", VALIDATION,
            |c| c.list_access_keys(ListAccessKeysRequest { principal_arn: arn.into() });
        "DeleteAccessKey AccessKeyId not AKIA and 16 of A-Z2-7", VALIDATION,
            |c| c.delete_access_key(DeleteAccessKeyRequest { access_key_id: "AKIA0000000000000000".into() });
        "DeleteAccessKey AccessKeyId nobody issued", NOT_FOUND,
            |c| c.delete_access_key(DeleteAccessKeyRequest { access_key_id: "AKIAAAAAAAAAAAAAAAAA".into() });
    }

    raw_calls! { t;
        // Strings that are not UTF-8 in each kind of place a string sits.
        "Encrypt EncryptionContext key not UTF-8", SERIALIZATION, "Encrypt",
            not_utf8(encrypt_req_unscanned(key, b"x", &[(MARK, "v")]));
        "Encrypt EncryptionContext value not UTF-8", SERIALIZATION, "Encrypt",
            not_utf8(encrypt_req_unscanned(key, b"x", &[("k", MARK)]));
        "Encrypt GrantTokens member not UTF-8", SERIALIZATION, "Encrypt",
            not_utf8(with(enc(), |r| r.grant_tokens = vec![MARK.into()]));
        "Encrypt EncryptionAlgorithm not UTF-8", SERIALIZATION, "Encrypt",
            not_utf8(with(enc(), |r| r.encryption_algorithm = MARK.into()));
        "Decrypt KeyId not UTF-8", SERIALIZATION, "Decrypt",
            not_utf8(with(dec(), |r| r.key_id = MARK.into()));
        "CreateKey Description not UTF-8", SERIALIZATION, "CreateKey",
            not_utf8(with(ck(), |r| r.description = MARK.into()));
        "PutKeyPolicy Policy not UTF-8", SERIALIZATION, "PutKeyPolicy",
            not_utf8(with(pkp(), |r| r.policy = r.policy.replace("Root", MARK)));
        "ListKeys Marker not UTF-8", SERIALIZATION, "ListKeys",
            not_utf8(with(lk(), |r| r.marker = MARK.into()));
        "CreateAlias AliasName not UTF-8", SERIALIZATION, "CreateAlias",
            not_utf8(ca(&format!("alias/{MARK}"), key));
        "TagResource TagKey not UTF-8 (a nested message)", SERIALIZATION, "TagResource",
            not_utf8(tr(vec![tag(MARK, "v")]));
        "CreateGrant constraint key not UTF-8 (a map in a message)", SERIALIZATION, "CreateGrant",
            not_utf8(with(grant(), |g| g.constraints = subset(MARK, "v")));
        "PutPrincipalPolicy PrincipalArn not UTF-8", SERIALIZATION, "PutPrincipalPolicy",
            not_utf8(with(ppp(), |r| r.principal_arn = format!("{role}{MARK}")));
        // Protobuf that is not the operation's message.
        "a string field sent as a varint", SERIALIZATION, "Encrypt", framed(&[0x08, 0x01]);
        "a length running past the message", SERIALIZATION, "Encrypt", framed(&[0x0a, 0x7f, b'k']);
        "field number 0", SERIALIZATION, "Encrypt", framed(&[0x02, 0x01, b'k']);
        "a map entry cut short", SERIALIZATION, "Encrypt", framed(&[0x1a, 0x04, 0x0a, 0x09, b'k', b'v']);
        "a varint of eleven bytes", SERIALIZATION, "GenerateRandom",
            framed(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        "an end-group tag with no group", SERIALIZATION, "GenerateRandom", framed(&[0x0c]);
        "a frame shorter than it declares", SERIALIZATION, "GenerateRandom", frame(false, 10, &[0x08, 0x08]);
        "a frame header cut short", SERIALIZATION, "GenerateRandom", vec![0, 0, 0];
        "a field number proto3 does not know (ignored)", Expect::Ok, "GenerateRandom",
            framed(&[0x08, 0x08, 0xf8, 0x06, 0x01]);
    }

    wire! { t, GrpcReq::Wire;
        "TLS: noise in place of a ClientHello", Wire::Plain(noise(4096, 1));
        "TLS: a plaintext HTTP/1.1 request", Wire::Plain(
            [&b"POST /p11kms.v1.KeyManagementService/GenerateRandom HTTP/1.1\r\n"[..],
             b"Host: localhost\r\nContent-Length: 0\r\n\r\n"].concat());
        "TLS: a plaintext HTTP/2 preface",
            Wire::Plain(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec());
        "TLS: a record over the largest length",
            Wire::Plain([&[0x16, 0x03, 0x01, 0xff, 0xff][..], &noise(64, 2)].concat());
        "TLS: no client certificate",
            Wire::Tls { alpn: b"h2", cert: false, bytes: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec() };
        "TLS: ALPN http/1.1 only",
            Wire::Tls { alpn: b"http/1.1", cert: true, bytes: b"GET / HTTP/1.1\r\n\r\n".to_vec() };
        "HTTP/2: noise in place of the preface", Wire::Tls { alpn: b"h2", cert: true, bytes: noise(1024, 3) };
    }
    t
}
