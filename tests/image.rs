//! `deploy/image/build.sh`: the loadshift image assembled as an OCI layout with umoci and
//! skopeo (which `.ci/run` installs): the binary runs as user 65532 with the entrypoint and
//! command set, the image holds the binary, its shared libraries and the user files, and no
//! shell; as root, the binary runs chrooted into the image's own files.

use std::process::Command;

#[test]
fn the_image_holds_the_binary_its_libraries_and_no_shell() {
    for tool in ["umoci", "skopeo"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("skipped: {tool} is not installed (.ci/run installs it)");
            return;
        }
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::env::temp_dir().join(format!("loadshift-oci-{}", std::process::id()));
    let o = Command::new("bash")
        .arg(format!("{root}/deploy/image/build.sh"))
        .arg(env!("CARGO_BIN_EXE_loadshift"))
        .arg(&out)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains(r#""Entrypoint": ["/usr/local/bin/loadshift"]"#)
            && stdout.contains(r#""User": "65532:65532""#)
            && stdout.contains(r#""Cmd": ["proxy", "--config", "/etc/loadshift/proxy.yaml"]"#),
        "{stdout}"
    );
    let files: Vec<&str> = stdout
        .lines()
        .skip_while(|l| *l != "== files")
        .skip(1)
        .take_while(|l| l.starts_with("./"))
        .collect();
    for want in ["./usr/local/bin/loadshift", "./etc/passwd", "./etc/group"] {
        assert!(files.contains(&want), "{want} missing: {files:?}");
    }
    assert!(files.iter().any(|f| f.contains("libc.so")), "{files:?}");
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with("/sh") || f.ends_with("/bash")),
        "a shell in the image: {files:?}"
    );
    // Nothing but the binary, the loader's libraries and the two user files.
    assert!(files.len() <= 8, "{files:?}");
    if stdout.contains("== chroot") {
        let version = concat!("loadshift ", env!("CARGO_PKG_VERSION"));
        assert!(stdout.contains(version), "{stdout}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
