//! Test images built in the test itself, without a registry: a root filesystem holding the
//! host's static busybox, imported with `POST /images/create?fromSrc=-` (what `docker import`
//! does).
//!
//! Note: bollard's `import_image` / `import_image_stream` call `POST /images/load`, which is
//! `docker load` (an image archive with manifest), not `docker import`; the rootfs import goes
//! through `create_image` with `from_src = "-"` and the tar as body.
//!
//! Used by the ops-worker tests, the end-to-end tests and the demo.
//!
//! Idempotent (an existing tag is not imported again) and safe when tests run in parallel in
//! one process (imports are serialized); parallel processes at worst import the same tag twice.

use bollard::query_parameters::CreateImageOptions;
use bollard::Docker;
use futures::TryStreamExt;
use tokio::sync::Mutex;

/// Runs `sleep 3600`.
pub const BUSYBOX_1: &str = "orion-test/busybox:1";
/// Runs `sleep 3600`; differs from [`BUSYBOX_1`] by a file `/version` containing `2`.
pub const BUSYBOX_2: &str = "orion-test/busybox:2";
/// Prints `exits-image: failing on purpose` and exits at once with status 3.
pub const EXITS_1: &str = "orion-test/exits:1";
/// Line [`EXITS_1`] prints before exiting.
pub const EXITS_LINE: &str = "exits-image: failing on purpose";

/// Applets linked to busybox in the images.
const APPLETS: [&str; 9] = [
    "sh", "sleep", "echo", "cat", "ls", "true", "false", "test", "[",
];

static IMPORT: Mutex<()> = Mutex::const_new(());

/// Makes sure the three test images exist on the engine.
pub async fn ensure_test_images(docker: &Docker) {
    let _serialized = IMPORT.lock().await;
    let sleep = r#"CMD ["sleep", "3600"]"#;
    let exits = format!(r#"CMD ["sh", "-c", "echo '{EXITS_LINE}'; exit 3"]"#);
    ensure_image(docker, BUSYBOX_1, None, sleep).await;
    ensure_image(docker, BUSYBOX_2, Some("2\n"), sleep).await;
    ensure_image(docker, EXITS_1, None, &exits).await;
}

/// The id (`sha256:…`) of a local image.
pub async fn image_id(docker: &Docker, image: &str) -> String {
    docker
        .inspect_image(image)
        .await
        .unwrap_or_else(|e| panic!("inspect image {image}: {e}"))
        .id
        .expect("image id")
}

async fn ensure_image(docker: &Docker, reference: &str, version: Option<&str>, cmd: &str) {
    if docker.inspect_image(reference).await.is_ok() {
        return;
    }
    let (repo, tag) = reference.rsplit_once(':').expect("reference has a tag");
    let rootfs = rootfs(version);
    let options = CreateImageOptions {
        from_src: Some("-".to_owned()),
        repo: Some(repo.to_owned()),
        tag: Some(tag.to_owned()),
        changes: vec!["ENV PATH=/bin".to_owned(), cmd.to_owned()],
        message: Some("orion ops-worker test image".to_owned()),
        ..Default::default()
    };
    docker
        .create_image(Some(options), Some(bollard::body_full(rootfs.into())), None)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_or_else(|e| panic!("importing test image {reference}: {e}"));
    image_id(docker, reference).await;
}

/// An uncompressed tar of a tiny root filesystem: `/bin/busybox` from the host, applet links,
/// empty `/tmp`, `/etc`, `/proc`, `/sys`, `/dev`, and `/version` when given.
fn rootfs(version: Option<&str>) -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect(
        "/bin/busybox is needed to build the test images (install Debian's busybox-static)",
    );
    let mut tar = tar::Builder::new(Vec::new());
    for dir in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
        header.set_size(0);
        header.set_mtime(0);
        tar.append_data(&mut header, format!("{dir}/"), std::io::empty())
            .expect("tar dir");
    }
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o755);
    header.set_size(busybox.len() as u64);
    header.set_mtime(0);
    tar.append_data(&mut header, "bin/busybox", busybox.as_slice())
        .expect("tar busybox");
    for applet in APPLETS {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_size(0);
        header.set_mtime(0);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")
            .expect("tar link");
    }
    if let Some(version) = version {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(version.len() as u64);
        header.set_mtime(0);
        tar.append_data(&mut header, "version", version.as_bytes())
            .expect("tar version");
    }
    tar.into_inner().expect("finish tar")
}
