//! The container image builds without a Docker engine and its unpacked root filesystem runs
//! `vk-stackpath --version` (deploy/build-image.sh does the checking). Ignored by default: it
//! builds the daemon for x86_64-unknown-linux-musl, which compiles every dependency again.
//! `cargo xtask test` (CI) runs it as its own step: `cargo test -p deploy-tests --test image --
//! --ignored`.

use std::process::Command;

#[test]
#[ignore = "builds the musl binary (minutes); run explicitly"]
fn the_image_builds_and_its_binary_runs_from_the_unpacked_layers() {
    let script = deploy_tests::deploy_dir().join("build-image.sh");
    // Debug profile: the check is about the image's shape, not the binary's speed.
    let mut args = vec!["--debug"];
    if std::env::var_os("VK_IMAGE_NO_BUILDAH").is_some() {
        args.push("--no-buildah");
    }
    let out = Command::new(&script)
        .args(&args)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("build-image.sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build-image.sh failed:\n{stderr}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        stderr.contains(&format!(
            "ok: vk-stackpath {version} from the unpacked image"
        )),
        "{stderr}"
    );
}
