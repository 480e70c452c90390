//! The AWS JSON table: each operation's members made wrong one at a time (over AWS's
//! limits, of the wrong JSON type, missing, unknown), bodies that are not JSON, the
//! envelope (method, path, target, content type, signature) and bytes in place of TLS
//! or HTTP.

use super::*;

pub(super) fn json_table(f: Fixture, signer: &Signer, host: &str) -> Table<JsonReq> {
    let Fixture {
        key,
        arn,
        other,
        blob,
        blob64,
        alias,
        role,
    } = f;
    let mut t = Table(Vec::new());
    let x = b64(b"x");
    let purpose = json!({"purpose": "bad-input"});
    let pkp = |policy: String| json!({"KeyId": key, "PolicyName": "default", "Policy": policy});
    let grant = |extra: Value| {
        let mut v = json!({"KeyId": key, "GranteePrincipal": role, "Operations": ["Encrypt"]});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let fifty_one_tags: Vec<Value> = (0..51)
        .map(|i| json!({"TagKey": format!("t{i}"), "TagValue": "v"}))
        .collect();

    signed! { t;
        // Encrypt.
        "Encrypt KeyId missing", VALIDATION, "Encrypt", {"Plaintext": x};
        "Encrypt KeyId null", VALIDATION, "Encrypt", {"KeyId": null, "Plaintext": x};
        "Encrypt KeyId empty", VALIDATION, "Encrypt", {"KeyId": "", "Plaintext": x};
        "Encrypt KeyId 2049 characters", VALIDATION, "Encrypt", {"KeyId": "k".repeat(2049), "Plaintext": x};
        "Encrypt KeyId \\u0000", NOT_FOUND, "Encrypt", {"KeyId": "\u{0}", "Plaintext": x};
        "Encrypt KeyId a number", SERIALIZATION, "Encrypt", {"KeyId": 7, "Plaintext": x};
        "Encrypt KeyId an object", SERIALIZATION, "Encrypt", {"KeyId": {"id": key}, "Plaintext": x};
        "Encrypt KeyId unknown", NOT_FOUND, "Encrypt", {"KeyId": UNKNOWN_KEY, "Plaintext": x};
        "Encrypt KeyId ARN of another account", NOT_FOUND, "Encrypt",
            {"KeyId": arn.replace(ACCOUNT, OTHER_ACCOUNT), "Plaintext": x};
        "Encrypt Plaintext missing", VALIDATION, "Encrypt", {"KeyId": key};
        "Encrypt Plaintext empty", VALIDATION, "Encrypt", {"KeyId": key, "Plaintext": ""};
        "Encrypt Plaintext 4097 bytes", VALIDATION, "Encrypt", {"KeyId": key, "Plaintext": b64(&[1; 4097])};
        "Encrypt Plaintext not base64", SERIALIZATION, "Encrypt", {"KeyId": key, "Plaintext": "not base64!"};
        "Encrypt Plaintext a number", SERIALIZATION, "Encrypt", {"KeyId": key, "Plaintext": 12};
        "Encrypt Plaintext an array of bytes", SERIALIZATION, "Encrypt", {"KeyId": key, "Plaintext": [1, 2]};
        "Encrypt EncryptionContext over 8192 bytes", VALIDATION, "Encrypt",
            {"KeyId": key, "Plaintext": x, "EncryptionContext": {"k": "v".repeat(8200)}};
        "Encrypt EncryptionContext 10,000 pairs", VALIDATION, "Encrypt",
            {"KeyId": key, "Plaintext": x, "EncryptionContext": pairs(10_000)};
        "Encrypt EncryptionContext an array", SERIALIZATION, "Encrypt",
            {"KeyId": key, "Plaintext": x, "EncryptionContext": ["a", "b"]};
        "Encrypt EncryptionContext a number value", SERIALIZATION, "Encrypt",
            {"KeyId": key, "Plaintext": x, "EncryptionContext": {"n": 1}};
        "Encrypt GrantTokens 11", VALIDATION, "Encrypt",
            {"KeyId": key, "Plaintext": x, "GrantTokens": vec!["t"; 11]};
        "Encrypt GrantTokens a string", SERIALIZATION, "Encrypt",
            {"KeyId": key, "Plaintext": x, "GrantTokens": "t"};
        "Encrypt GrantTokens a token nobody issued", INVALID_GRANT_TOKEN, "Encrypt",
            {"KeyId": key, "Plaintext": x, "GrantTokens": [BOGUS_TOKEN]};
        "Encrypt EncryptionAlgorithm unknown", VALIDATION, "Encrypt",
            {"KeyId": key, "Plaintext": x, "EncryptionAlgorithm": "AES_GCM"};
        "Encrypt EncryptionAlgorithm asymmetric", INVALID_KEY_USAGE, "Encrypt",
            {"KeyId": key, "Plaintext": x, "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"};
        "Encrypt DryRun true", UNSUPPORTED, "Encrypt", {"KeyId": key, "Plaintext": x, "DryRun": true};
        "Encrypt DryRun a string", SERIALIZATION, "Encrypt", {"KeyId": key, "Plaintext": x, "DryRun": "yes"};
        "Encrypt an unknown member (ignored)", Expect::Ok, "Encrypt",
            {"KeyId": key, "Plaintext": x, "Colour": "blue"};

        // Decrypt.
        "Decrypt CiphertextBlob missing", VALIDATION, "Decrypt", {"EncryptionContext": purpose};
        "Decrypt CiphertextBlob empty", VALIDATION, "Decrypt", {"CiphertextBlob": ""};
        "Decrypt CiphertextBlob 6145 bytes", VALIDATION, "Decrypt", {"CiphertextBlob": b64(&[b'p'; 6145])};
        "Decrypt CiphertextBlob base64 with a character outside it", SERIALIZATION, "Decrypt",
            {"CiphertextBlob": format!("*{}", &blob64[1..])};
        "Decrypt CiphertextBlob base64 without its padding", SERIALIZATION, "Decrypt",
            {"CiphertextBlob": b64(&blob[..blob.len() / 3 * 3 - 2]).trim_end_matches('=')};
        "Decrypt CiphertextBlob noise", INVALID_CIPHERTEXT, "Decrypt",
            {"CiphertextBlob": b64(&noise(200, 5))};
        "Decrypt EncryptionContext another", INVALID_CIPHERTEXT, "Decrypt",
            {"CiphertextBlob": blob64, "EncryptionContext": {"purpose": "other"}};
        "Decrypt KeyId another key", INCORRECT_KEY, "Decrypt",
            {"CiphertextBlob": blob64, "EncryptionContext": purpose, "KeyId": other};
        "Decrypt Recipient", UNSUPPORTED, "Decrypt", {"CiphertextBlob": blob64, "EncryptionContext": purpose,
            "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}};

        // The data keys, ReEncrypt, GenerateRandom, the batch calls.
        "GenerateDataKey NumberOfBytes 1025", VALIDATION, "GenerateDataKey",
            {"KeyId": key, "NumberOfBytes": 1025};
        "GenerateDataKey NumberOfBytes a string", SERIALIZATION, "GenerateDataKey",
            {"KeyId": key, "NumberOfBytes": "32"};
        "GenerateDataKey NumberOfBytes a fraction", SERIALIZATION, "GenerateDataKey",
            {"KeyId": key, "NumberOfBytes": 1.5};
        "GenerateDataKey NumberOfBytes 2^31", SERIALIZATION, "GenerateDataKey",
            {"KeyId": key, "NumberOfBytes": 2_147_483_648_u64};
        "GenerateDataKey KeySpec unknown", VALIDATION, "GenerateDataKey",
            {"KeyId": key, "KeySpec": "AES_512"};
        "GenerateDataKey both NumberOfBytes and KeySpec", VALIDATION, "GenerateDataKey",
            {"KeyId": key, "KeySpec": "AES_256", "NumberOfBytes": 32};
        "GenerateDataKeyWithoutPlaintext neither NumberOfBytes nor KeySpec", VALIDATION,
            "GenerateDataKeyWithoutPlaintext",
            {"KeyId": key};
        "ReEncrypt DestinationKeyId missing", VALIDATION, "ReEncrypt",
            {"CiphertextBlob": blob64, "SourceEncryptionContext": purpose};
        "ReEncrypt DestinationEncryptionAlgorithm asymmetric", INVALID_KEY_USAGE, "ReEncrypt",
            {"CiphertextBlob": blob64, "SourceEncryptionContext": purpose, "DestinationKeyId": other,
             "DestinationEncryptionAlgorithm": "SM2PKE"};
        "ReEncrypt DestinationEncryptionContext 10,000 pairs", VALIDATION, "ReEncrypt",
            {"CiphertextBlob": blob64, "SourceEncryptionContext": purpose, "DestinationKeyId": other,
             "DestinationEncryptionContext": pairs(10_000)};
        "GenerateRandom NumberOfBytes missing", VALIDATION, "GenerateRandom", {};
        "GenerateRandom NumberOfBytes 0", VALIDATION, "GenerateRandom", {"NumberOfBytes": 0};
        "GenerateRandom NumberOfBytes -5", VALIDATION, "GenerateRandom", {"NumberOfBytes": -5};
        "GenerateRandom CustomKeyStoreId", UNSUPPORTED, "GenerateRandom",
            {"NumberOfBytes": 8, "CustomKeyStoreId": "cks-1"};
        "GenerateRandom unknown members (ignored)", Expect::Ok, "GenerateRandom",
            {"NumberOfBytes": 8, "Unknown": {"deep": [1, 2, {"x": null}]}, "Other": 1e300};
        "Sign SigningAlgorithm missing", VALIDATION, "Sign", {"KeyId": key, "Message": "bQ=="};
        "Sign Message missing", VALIDATION, "Sign", {"KeyId": key, "SigningAlgorithm": "ECDSA_SHA_256"};
        "Sign SigningAlgorithm unknown", VALIDATION, "Sign",
            {"KeyId": key, "Message": "bQ==", "SigningAlgorithm": "ECDSA_MD5"};
        "Sign MessageType unknown", VALIDATION, "Sign",
            {"KeyId": key, "Message": "bQ==", "SigningAlgorithm": "ECDSA_SHA_256", "MessageType": "HASH"};
        "Sign with a symmetric key", INVALID_KEY_USAGE, "Sign",
            {"KeyId": key, "Message": "bQ==", "SigningAlgorithm": "ECDSA_SHA_256"};
        "Sign Message not base64", SERIALIZATION, "Sign",
            {"KeyId": key, "Message": "***", "SigningAlgorithm": "ECDSA_SHA_256"};
        "Verify Signature missing", VALIDATION, "Verify",
            {"KeyId": key, "Message": "bQ==", "SigningAlgorithm": "ECDSA_SHA_256"};
        "GetPublicKey KeyId missing", VALIDATION, "GetPublicKey", {};
        "GetPublicKey of a symmetric key", UNSUPPORTED, "GetPublicKey", {"KeyId": key};
        "GenerateMac MacAlgorithm missing", VALIDATION, "GenerateMac", {"KeyId": key, "Message": "bQ=="};
        "GenerateMac with a symmetric key", INVALID_KEY_USAGE, "GenerateMac",
            {"KeyId": key, "Message": "bQ==", "MacAlgorithm": "HMAC_SHA_256"};
        "VerifyMac Mac missing", VALIDATION, "VerifyMac",
            {"KeyId": key, "Message": "bQ==", "MacAlgorithm": "HMAC_SHA_256"};
        "DeriveSharedSecret PublicKey missing", VALIDATION, "DeriveSharedSecret",
            {"KeyId": key, "KeyAgreementAlgorithm": "ECDH"};
        "DeriveSharedSecret KeyAgreementAlgorithm other", VALIDATION, "DeriveSharedSecret",
            {"KeyId": key, "KeyAgreementAlgorithm": "DH", "PublicKey": "bQ=="};
        "DeriveSharedSecret Recipient", UNSUPPORTED, "DeriveSharedSecret",
            {"KeyId": key, "KeyAgreementAlgorithm": "ECDH", "PublicKey": "bQ==", "Recipient": {}};
        "GenerateDataKeyPair KeyPairSpec missing", VALIDATION, "GenerateDataKeyPair", {"KeyId": key};
        "GenerateDataKeyPair KeyPairSpec unknown", VALIDATION, "GenerateDataKeyPair",
            {"KeyId": key, "KeyPairSpec": "RSA_1024"};
        "GenerateDataKeyPairWithoutPlaintext KeyPairSpec SM2", UNSUPPORTED,
            "GenerateDataKeyPairWithoutPlaintext", {"KeyId": key, "KeyPairSpec": "SM2"};
        "GetParametersForImport WrappingKeySpec missing", VALIDATION, "GetParametersForImport",
            {"KeyId": key, "WrappingAlgorithm": "RSAES_OAEP_SHA_1"};
        "GetParametersForImport WrappingAlgorithm unknown", VALIDATION, "GetParametersForImport",
            {"KeyId": key, "WrappingAlgorithm": "RSAES_OAEP_SHA_512", "WrappingKeySpec": "RSA_2048"};
        "GetParametersForImport RSAES_PKCS1_V1_5", UNSUPPORTED, "GetParametersForImport",
            {"KeyId": key, "WrappingAlgorithm": "RSAES_PKCS1_V1_5", "WrappingKeySpec": "RSA_2048"};
        "GetParametersForImport of an AWS_KMS key", UNSUPPORTED, "GetParametersForImport",
            {"KeyId": key, "WrappingAlgorithm": "RSAES_OAEP_SHA_1", "WrappingKeySpec": "RSA_2048"};
        "ImportKeyMaterial ImportToken missing", VALIDATION, "ImportKeyMaterial",
            {"KeyId": key, "EncryptedKeyMaterial": "bQ=="};
        "ImportKeyMaterial ValidTo a string", SERIALIZATION, "ImportKeyMaterial",
            {"KeyId": key, "EncryptedKeyMaterial": "bQ==", "ImportToken": "bQ==", "ValidTo": "soon"};
        "ImportKeyMaterial ValidTo not finite", VALIDATION, "ImportKeyMaterial",
            {"KeyId": key, "EncryptedKeyMaterial": "bQ==", "ImportToken": "bQ==", "ValidTo": -5};
        "ImportKeyMaterial without ValidTo", VALIDATION, "ImportKeyMaterial",
            {"KeyId": key, "EncryptedKeyMaterial": "bQ==", "ImportToken": "bQ=="};
        "ImportKeyMaterial ImportType NEW_KEY_MATERIAL", UNSUPPORTED, "ImportKeyMaterial",
            {"KeyId": key, "EncryptedKeyMaterial": "bQ==", "ImportToken": "bQ==",
             "ImportType": "NEW_KEY_MATERIAL"};
        "ImportKeyMaterial into an AWS_KMS key", UNSUPPORTED, "ImportKeyMaterial",
            {"KeyId": key, "EncryptedKeyMaterial": "bQ==", "ImportToken": "bQ==",
             "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"};
        "DeleteImportedKeyMaterial KeyId missing", VALIDATION, "DeleteImportedKeyMaterial", {};
        "DeleteImportedKeyMaterial of an AWS_KMS key", UNSUPPORTED, "DeleteImportedKeyMaterial",
            {"KeyId": key};
        "BatchEncrypt Items missing", VALIDATION, "BatchEncrypt", {};
        "BatchEncrypt Items empty", VALIDATION, "BatchEncrypt", {"Items": []};
        "BatchDecrypt Items an object", SERIALIZATION, "BatchDecrypt", {"Items": {"CiphertextBlob": blob64}};

        // CreateKey and key policies.
        "CreateKey Description 8193 characters", VALIDATION, "CreateKey", {"Description": "d".repeat(8193)};
        "CreateKey KeyUsage unknown", VALIDATION, "CreateKey", {"KeyUsage": "DECRYPT_ONLY"};
        "CreateKey KeySpec RSA_4096 without KeyUsage", VALIDATION, "CreateKey", {"KeySpec": "RSA_4096"};
        "CreateKey KeySpec HMAC_256 with KeyUsage ENCRYPT_DECRYPT", VALIDATION, "CreateKey",
            {"KeySpec": "HMAC_256", "KeyUsage": "ENCRYPT_DECRYPT"};
        "CreateKey KeySpec SM2", UNSUPPORTED, "CreateKey", {"KeySpec": "SM2", "KeyUsage": "SIGN_VERIFY"};
        "CreateKey Origin AWS_CLOUDHSM", UNSUPPORTED, "CreateKey", {"Origin": "AWS_CLOUDHSM"};
        "CreateKey MultiRegion true", UNSUPPORTED, "CreateKey", {"MultiRegion": true};
        "CreateKey Tags", UNSUPPORTED, "CreateKey", {"Tags": [{"TagKey": "a", "TagValue": "b"}]};
        "CreateKey XksKeyId", UNSUPPORTED, "CreateKey", {"XksKeyId": "x"};
        "CreateKey BypassPolicyLockoutSafetyCheck a string", SERIALIZATION, "CreateKey",
            {"BypassPolicyLockoutSafetyCheck": "true"};
        "CreateKey Policy 10,000 levels deep", MALFORMED_POLICY, "CreateKey", {"Policy": deep_json(10_000)};
        "CreateKey Policy 10,000 empty statements", MALFORMED_POLICY, "CreateKey",
            {"Policy": statements(10_000, "{}")};
        "CreateKey Policy over 32 KiB", LIMIT_EXCEEDED, "CreateKey", {"Policy": root_policy(32 * 1024)};
        "CreateKey Policy a JSON object, not a string", SERIALIZATION, "CreateKey",
            {"Policy": serde_json::from_str::<Value>(&root_policy(0)).unwrap()};
        "PutKeyPolicy Policy missing", VALIDATION, "PutKeyPolicy", {"KeyId": key, "PolicyName": "default"};
        "PutKeyPolicy Policy 10,000 levels deep", MALFORMED_POLICY, "PutKeyPolicy", (pkp(deep_json(10_000)));
        "PutKeyPolicy Policy 10,000 statements", VALIDATION, "PutKeyPolicy",
            (pkp(statements(10_000, ALLOW_ALL)));
        "PutKeyPolicy Policy over 32 KiB", LIMIT_EXCEEDED, "PutKeyPolicy", (pkp(root_policy(40_000)));
        "PutKeyPolicy Policy JSON null", MALFORMED_POLICY, "PutKeyPolicy", (pkp("null".into()));
        "PutKeyPolicy Policy that locks the caller out", MALFORMED_POLICY, "PutKeyPolicy",
            (pkp(lockout_policy()));
        "PutKeyPolicy PolicyName not default", NOT_FOUND, "PutKeyPolicy",
            {"KeyId": key, "PolicyName": "mine", "Policy": root_policy(0)};
        "GetKeyPolicy KeyId missing", VALIDATION, "GetKeyPolicy", {"PolicyName": "default"};
        "GetKeyPolicy PolicyName \\u0000", VALIDATION, "GetKeyPolicy",
            {"KeyId": key, "PolicyName": "default\u{0}"};
        "ListKeyPolicies Marker any", INVALID_MARKER, "ListKeyPolicies", {"KeyId": key, "Marker": "x"};
        "DescribeKey KeyId a list", SERIALIZATION, "DescribeKey", {"KeyId": [key]};
        "ListKeys Limit 0", VALIDATION, "ListKeys", {"Limit": 0};
        "ListKeys Limit a string", SERIALIZATION, "ListKeys", {"Limit": "10"};
        "ListKeys Marker made up", INVALID_MARKER, "ListKeys", {"Marker": "bogus"};
        "ListKeys Marker \\u0000", VALIDATION, "ListKeys", {"Marker": "\u{0}"};
        "ListKeys Marker 1025 characters", VALIDATION, "ListKeys", {"Marker": "m".repeat(1025)};

        // Identity policies, principal tags, access keys.
        "PutPrincipalPolicy PolicyDocument missing", VALIDATION, "PutPrincipalPolicy",
            {"PrincipalArn": role, "PolicyName": "p"};
        "PutPrincipalPolicy PolicyDocument over 10,240 characters", LIMIT_EXCEEDED, "PutPrincipalPolicy",
            {"PrincipalArn": role, "PolicyName": "p", "PolicyDocument": identity_policy(10_240)};
        "TagPrincipal Tags a tag without TagKey", VALIDATION, "TagPrincipal",
            {"PrincipalArn": role, "Tags": [{"TagValue": "v"}]};
        "ListPrincipalTags PrincipalArn not an ARN", VALIDATION, "ListPrincipalTags", {"PrincipalArn": "x"};
        "CreateAccessKey PrincipalArn missing", VALIDATION, "CreateAccessKey", {};
        "DeleteAccessKey AccessKeyId lower case", VALIDATION, "DeleteAccessKey",
            {"AccessKeyId": "akiaaaaaaaaaaaaaaaaa"};

        // Key state and settings.
        "ScheduleKeyDeletion PendingWindowInDays 0", VALIDATION, "ScheduleKeyDeletion",
            {"KeyId": key, "PendingWindowInDays": 0};
        "ScheduleKeyDeletion PendingWindowInDays 365", VALIDATION, "ScheduleKeyDeletion",
            {"KeyId": key, "PendingWindowInDays": 365};
        "EnableKeyRotation RotationPeriodInDays 2561", VALIDATION, "EnableKeyRotation",
            {"KeyId": key, "RotationPeriodInDays": 2561};
        "EnableKeyRotation RotationPeriodInDays a boolean", SERIALIZATION, "EnableKeyRotation",
            {"KeyId": key, "RotationPeriodInDays": true};
        "UpdateKeyDescription Description missing", VALIDATION, "UpdateKeyDescription", {"KeyId": key};
        "DisableKey KeyId ARN of another region", NOT_FOUND, "DisableKey",
            {"KeyId": arn.replace("us-east-1", "ap-south-2")};
        "CancelKeyDeletion a key not pending deletion", INVALID_STATE, "CancelKeyDeletion", {"KeyId": key};
        "ListKeyRotations Marker made up", INVALID_MARKER, "ListKeyRotations", {"KeyId": key, "Marker": "1"};

        // Tags.
        "TagResource Tags missing", VALIDATION, "TagResource", {"KeyId": key};
        "TagResource Tags an object", SERIALIZATION, "TagResource", {"KeyId": key, "Tags": {"team": "a"}};
        "TagResource TagKey aws:", TAG, "TagResource",
            {"KeyId": key, "Tags": [{"TagKey": "aws:x", "TagValue": "v"}]};
        "TagResource 51 tags", LIMIT_EXCEEDED, "TagResource", {"KeyId": key, "Tags": fifty_one_tags};
        "UntagResource TagKeys a string", SERIALIZATION, "UntagResource", {"KeyId": key, "TagKeys": "team"};
        "ListResourceTags Limit 1001", VALIDATION, "ListResourceTags", {"KeyId": key, "Limit": 1001};

        // Grants.
        "CreateGrant GranteePrincipal missing", VALIDATION, "CreateGrant",
            {"KeyId": key, "Operations": ["Encrypt"]};
        "CreateGrant Operations missing", VALIDATION, "CreateGrant", {"KeyId": key, "GranteePrincipal": role};
        "CreateGrant Operations a string", SERIALIZATION, "CreateGrant",
            (grant(json!({"Operations": "Encrypt"})));
        "CreateGrant Operations GenerateMac", VALIDATION, "CreateGrant",
            (grant(json!({"Operations": ["GenerateMac"]})));
        "CreateGrant GranteeServicePrincipal", UNSUPPORTED, "CreateGrant",
            (grant(json!({"GranteeServicePrincipal": "s3.amazonaws.com"})));
        "CreateGrant Name 257 characters", VALIDATION, "CreateGrant",
            (grant(json!({"Name": "n".repeat(257)})));
        "CreateGrant Constraints EncryptionContextSubset a list", SERIALIZATION, "CreateGrant",
            (grant(json!({"Constraints": {"EncryptionContextSubset": ["a"]}})));
        "CreateGrant Constraints value 385 characters", VALIDATION, "CreateGrant",
            (grant(json!({"Constraints": {"EncryptionContextEquals": {"k": "v".repeat(385)}}})));
        "CreateGrant Constraints SourceArn", UNSUPPORTED, "CreateGrant",
            (grant(json!({"Constraints": {"SourceArn": "arn:aws:s3:::bad-input-bucket"}})));
        "ListGrants GrantId not 64 hex digits", INVALID_GRANT_ID, "ListGrants",
            {"KeyId": key, "GrantId": "xyz"};
        "ListGrants Marker made up", INVALID_MARKER, "ListGrants", {"KeyId": key, "Marker": "0".repeat(64)};
        "ListRetirableGrants RetiringPrincipal missing", VALIDATION, "ListRetirableGrants", {};
        "RetireGrant GrantToken nobody issued", INVALID_GRANT_TOKEN, "RetireGrant",
            {"GrantToken": BOGUS_TOKEN};
        "RevokeGrant GrantId missing", VALIDATION, "RevokeGrant", {"KeyId": key};
        "RevokeGrant GrantId nobody made", NOT_FOUND, "RevokeGrant",
            {"KeyId": key, "GrantId": "f".repeat(64)};

        // Aliases.
        "CreateAlias TargetKeyId missing", VALIDATION, "CreateAlias", {"AliasName": "alias/fresh"};
        "CreateAlias AliasName without alias/", INVALID_ALIAS_NAME, "CreateAlias",
            {"AliasName": "fresh", "TargetKeyId": key};
        "CreateAlias AliasName alias/aws/", INVALID_ALIAS_NAME, "CreateAlias",
            {"AliasName": "alias/aws/x", "TargetKeyId": key};
        "CreateAlias AliasName taken", ALREADY_EXISTS, "CreateAlias",
            {"AliasName": alias, "TargetKeyId": other};
        "UpdateAlias TargetKeyId an alias", VALIDATION, "UpdateAlias",
            {"AliasName": alias, "TargetKeyId": alias};
        "DeleteAlias AliasName nobody made", NOT_FOUND, "DeleteAlias", {"AliasName": "alias/none"};
        "ListAliases Limit 101", VALIDATION, "ListAliases", {"Limit": 101};
        "ListAliases Marker made up", INVALID_MARKER, "ListAliases", {"Marker": "alias/zzz"};
    }

    // Bodies that are not JSON, or JSON that is not an object of members.
    let deep = deep_json(10_000);
    signed_bytes! { t;
        "body not JSON", SERIALIZATION, "GenerateRandom", b"NumberOfBytes=8";
        "body JSON cut short", SERIALIZATION, "GenerateRandom", br#"{"NumberOfBytes": 8"#;
        "body a JSON array", SERIALIZATION, "GenerateRandom", b"[8]";
        "body a JSON string", SERIALIZATION, "GenerateRandom", br#""NumberOfBytes""#;
        "body JSON null", SERIALIZATION, "GenerateRandom", b"null";
        "body empty (no members)", VALIDATION, "GenerateRandom", b"";
        "body with trailing bytes", SERIALIZATION, "GenerateRandom", br#"{"NumberOfBytes": 8} {}"#;
        "body 10,000 levels deep", SERIALIZATION, "GenerateRandom", deep.as_bytes();
        "body 10,000 levels deep in a member read as JSON", SERIALIZATION, "Decrypt",
            format!(r#"{{"CiphertextBlob": "{blob64}", "Recipient": {deep}}}"#).as_bytes();
        // serde skips an unknown member without recursing: no depth to exhaust.
        "body 10,000 levels deep in an unknown member (ignored)", Expect::Ok, "GenerateRandom",
            format!(r#"{{"NumberOfBytes": 8, "Deep": {deep}}}"#).as_bytes();
        "body not UTF-8 inside a string", SERIALIZATION, "Encrypt",
            [br#"{"KeyId": ""#.as_slice(), &NOT_UTF8, br#"", "Plaintext": "eA=="}"#].concat();
        "body not UTF-8 outside strings", SERIALIZATION, "GenerateRandom",
            [br#"{"NumberOfBytes": 8"#.as_slice(), &NOT_UTF8, b"}"].concat();
        "body a NUL byte outside strings", SERIALIZATION, "GenerateRandom", b"{\"NumberOfBytes\": 8\0}";
        "body a raw control character in a string", SERIALIZATION, "Encrypt",
            b"{\"KeyId\": \"a\x01b\", \"Plaintext\": \"eA==\"}";
        "body a lone surrogate escape", SERIALIZATION, "DescribeKey", br#"{"KeyId": "\ud800"}"#;
        "body a number too large for any type", SERIALIZATION, "GenerateRandom",
            format!(r#"{{"NumberOfBytes": 1{}}}"#, "0".repeat(400)).as_bytes();
    }

    // The envelope: method, path, target, content type, signature. Each row is a
    // signed GenerateRandom with one thing changed.
    let gr = br#"{"NumberOfBytes":8}"#;
    let ok: Vec<(String, String)> = signer
        .sign(host, "GenerateRandom", gr)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let auth = ok
        .iter()
        .find(|(k, _)| k == "authorization")
        .unwrap()
        .1
        .clone();
    let set = |name: &str, value: Option<&str>| {
        let mut h = ok.clone();
        h.retain(|(k, _)| k != name);
        h.extend(value.map(|v| (name.to_owned(), v.to_owned())));
        h
    };
    custom! { t;
        "method GET", UNKNOWN_OPERATION, GET "/", ok.clone(), b"";
        "path not /", UNKNOWN_OPERATION, POST "/v1/GenerateRandom", ok.clone(), gr;
        "X-Amz-Target missing", UNKNOWN_OPERATION, POST "/", set("x-amz-target", None), gr;
        "X-Amz-Target another service", UNKNOWN_OPERATION, POST "/",
            set("x-amz-target", Some("AmazonSSM.GenerateRandom")), gr;
        "X-Amz-Target in lower case", UNKNOWN_OPERATION, POST "/",
            set("x-amz-target", Some("TrentService.generaterandom")), gr;
        "X-Amz-Target not ASCII", UNKNOWN_OPERATION, POST "/",
            set("x-amz-target", Some("TrentService.\u{e9}")), gr;
        "Content-Type missing", MEDIA_TYPE, POST "/", set("content-type", None), gr;
        "Content-Type application/json", MEDIA_TYPE, POST "/",
            set("content-type", Some("application/json")), gr;
        "Content-Type AWS JSON 1.0", MEDIA_TYPE, POST "/",
            set("content-type", Some("application/x-amz-json-1.0")), gr;
        "Authorization missing", Expect::Error(403, "MissingAuthenticationToken"), POST "/",
            set("authorization", None), gr;
        "Authorization garbage", INCOMPLETE_SIGNATURE, POST "/", set("authorization", Some("Bearer abc")), gr;
        "Authorization twice", INCOMPLETE_SIGNATURE, POST "/",
            [ok.clone(), vec![("authorization".to_owned(), auth.clone())]].concat(), gr;
        "X-Amz-Date missing", INCOMPLETE_SIGNATURE, POST "/", set("x-amz-date", None), gr;
        "X-Amz-Date not a date", INCOMPLETE_SIGNATURE, POST "/", set("x-amz-date", Some("yesterday")), gr;
        "X-Amz-Content-Sha256 not signed", INCOMPLETE_SIGNATURE, POST "/",
            set("x-amz-content-sha256", Some(&"0".repeat(64))), gr;
        "a body other than the one signed", INVALID_SIGNATURE, POST "/",
            ok.clone(), br#"{"NumberOfBytes":9}"#;
        "X-Amz-Target other than the one signed", INVALID_SIGNATURE, POST "/",
            set("x-amz-target", Some("TrentService.ListKeys")), gr;
        "access key nobody issued", err("UnrecognizedClientException"), POST "/",
            set("authorization", Some(&auth.replacen("Credential=AKIA", "Credential=AKIB", 1))), gr;
    }
    // Sent whole, over HTTP/2: a refused HTTP/1.1 body still being written may see its
    // connection reset before the answer (aws_json.rs refuses a declared length).
    let big = vec![b' '; 600 * 1024];
    t.add(
        "body over 512 KiB",
        Expect::Error(413, "RequestEntityTooLargeException"),
        JsonReq::Custom {
            method: Method::POST,
            path: "/",
            only: Some(Http::Two),
            headers: signer
                .sign(host, "GenerateRandom", &big)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            body: big,
        },
    );

    let request = |head: &str, rest: &[u8]| [head.as_bytes(), rest].concat();
    wire! { t, JsonReq::Wire;
        "TLS: noise in place of a ClientHello", Wire::Plain(noise(4096, 11));
        "TLS: a plaintext HTTP/1.1 request", Wire::Plain(request(
            "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: TrentService.GenerateRandom\r\n",
            b"Content-Length: 2\r\n\r\n{}"));
        "TLS: a record over the largest length",
            Wire::Plain([&[0x16, 0x03, 0x03, 0xff, 0xff][..], &noise(64, 12)].concat());
        "TLS: ALPN nobody serves",
            Wire::Tls { alpn: b"spdy/3", cert: false, bytes: b"GET / HTTP/1.1\r\n\r\n".to_vec() };
        "HTTP/1.1: noise in place of a request",
            Wire::Tls { alpn: b"http/1.1", cert: false, bytes: request("\r\n", &noise(512, 13)) };
        "HTTP/1.1: a header of 1 MiB", Wire::Tls { alpn: b"http/1.1", cert: false,
            bytes: request("POST / HTTP/1.1\r\nHost: localhost\r\nX-Big: ", &vec![b'a'; 1 << 20]) };
        "HTTP/1.1: a Content-Length that is not a number", Wire::Tls { alpn: b"http/1.1", cert: false,
            bytes: request("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n", b"") };
        "HTTP/2: noise in place of the preface",
            Wire::Tls { alpn: b"h2", cert: false, bytes: noise(1024, 14) };
    }
    t
}
