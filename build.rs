//! Compiles proto/ with a vendored protoc, so no manual protoc install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // A build script is single-threaded, so setting the variable here races nothing.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        // Messages that carry plaintext or data keys get a hand-written, redacting Debug
        // (src/proto/redact.rs) instead of the derived one.
        .skip_debug([
            ".p11kms.v1.EncryptRequest",
            ".p11kms.v1.DecryptResponse",
            ".p11kms.v1.GenerateDataKeyResponse",
            ".p11kms.v1.GenerateRandomResponse",
            ".p11kms.v1.AccessKey",
            ".p11kms.v1.GenerateMacRequest",
            ".p11kms.v1.VerifyMacRequest",
            ".p11kms.v1.DeriveSharedSecretResponse",
            ".p11kms.v1.GenerateDataKeyPairResponse",
        ])
        .compile_protos(&["proto/p11kms/v1/kms.proto"], &["proto"])?;
    Ok(())
}
