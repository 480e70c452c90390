//! Nothing: this package exists only to build kryoptic's cdylib at a pinned version
//! (`cargo build --release -p kryoptic`, see build.sh).
