//! AWS KMS's own wire protocol (AWS JSON 1.1 over HTTPS), so that the AWS CLI, boto3 and
//! the AWS SDKs work against p11kms: a second listener in front of the same request path
//! (`Vault::run`) as gRPC. `server` accepts and serves HTTP; `envelope` routes and
//! decodes (`operation` is the table of operations); `shapes` are the AWS request and
//! response members; `calls` turn them into the vault's inputs and back; `errors` maps
//! `KmsError` to AWS's error answer; `auth` says who is calling (SigV4). No policy
//! logic, no HSM calls.

mod auth;
mod calls;
mod envelope;
mod errors;
mod handler;
mod operation;
mod server;
mod shapes;

pub(crate) use server::serve;
