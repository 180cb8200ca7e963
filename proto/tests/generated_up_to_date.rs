//! Drift test: regenerates the Rust code from `proto/` with a vendored `protoc` and fails when the
//! checked-in files under `src/gen/` differ, so the contract and the code never drift apart while
//! normal builds need no `protoc`.
//!
//! After editing a `.proto` file run
//! `LOADSHIFT_PROTO_BLESS=1 cargo test -p loadshift-proto --test generated_up_to_date`
//! to rewrite `src/gen/`, then review and commit the diff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

const PROTOS: &[&str] = &[
    "proto/loadshift/v1/types.proto",
    "proto/loadshift/v1/proxy_control.proto",
    "proto/loadshift/v1/operator.proto",
];

fn generate(out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let protos: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    let includes = [root.join("proto")];
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc for this platform");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // `ProxyControl.Connect` would clash with the generated `connect` constructor; clients
        // build a `Channel` themselves and call `new`.
        .build_transport(false)
        .codec_path("crate::codec::SmallBufferCodec")
        .emit_rerun_if_changed(false)
        .out_dir(out)
        .compile_with_config(config, &protos, &includes)
        .expect("protoc and code generation succeed");
}

#[test]
fn generated_code_matches_proto_files() {
    let tmp = std::env::temp_dir().join(format!("loadshift-proto-gen-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    generate(&tmp);

    let checked_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gen");
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(&tmp).unwrap() {
        let entry = entry.unwrap();
        let fresh = std::fs::read_to_string(entry.path()).unwrap();
        let target = checked_in.join(entry.file_name());
        let old = std::fs::read_to_string(&target).unwrap_or_default();
        if old != fresh {
            if std::env::var_os("LOADSHIFT_PROTO_BLESS").is_some() {
                std::fs::write(&target, &fresh).unwrap();
            } else {
                stale.push(target.display().to_string());
            }
        }
    }
    std::fs::remove_dir_all(&tmp).unwrap();
    assert!(
        stale.is_empty(),
        "generated code is stale: {stale:?}; rerun with LOADSHIFT_PROTO_BLESS=1 and commit the result"
    );
}
