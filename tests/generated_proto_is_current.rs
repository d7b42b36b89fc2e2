//! `src/pprof/proto.rs` is generated from `proto/profile.proto` and checked
//! in, so building needs no `protoc`. This test regenerates it (with protox,
//! a Rust protobuf compiler) and fails if the checked-in file is stale.
//! To update: `LOCKPROF_REGENERATE_PROTO=1 cargo test --test generated_proto_is_current`.

use std::path::Path;

#[test]
fn checked_in_proto_code_matches_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile(["profile.proto"], [root.join("proto")]).expect("compile proto/profile.proto");
    let out = tempfile::tempdir().unwrap();
    prost_build::Config::new()
        .out_dir(out.path())
        .compile_fds(fds)
        .expect("generate Rust code");
    let fresh = std::fs::read_to_string(out.path().join("perftools.profiles.rs")).unwrap();
    let checked_in_path = root.join("src/pprof/proto.rs");
    if std::env::var_os("LOCKPROF_REGENERATE_PROTO").is_some() {
        std::fs::write(&checked_in_path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap();
    assert!(
        fresh == checked_in,
        "src/pprof/proto.rs is stale; regenerate with LOCKPROF_REGENERATE_PROTO=1 cargo test --test generated_proto_is_current"
    );
}
