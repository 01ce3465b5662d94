//! The blocklist is reloaded without a shell in the container: a change of the file is seen,
//! as a Kubernetes ConfigMap update makes it (the configured path is a symlink through
//! `..data`, which the kubelet points at a new directory, then removes the old one). A file
//! that no longer parses leaves the list in force. (A test binary of its own: the SIGHUP test
//! signals its whole process.)

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, spawn_app};

/// A directory laid out as the kubelet mounts a ConfigMap with the key `hosts`.
struct ConfigMapVolume {
    dir: PathBuf,
    version: u32,
}

impl ConfigMapVolume {
    fn new(contents: &str) -> ConfigMapVolume {
        let dir = std::env::temp_dir().join(format!("shortener-configmap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = ConfigMapVolume { dir, version: 0 };
        let first = volume.write_version(contents);
        symlink(&first, volume.dir.join("..data")).unwrap();
        symlink("..data/hosts", volume.dir.join("hosts")).unwrap();
        volume
    }

    fn path(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    /// A new timestamped directory holding the file, as the kubelet writes it.
    fn write_version(&mut self, contents: &str) -> String {
        self.version += 1;
        let name = format!(
            "..2026_12_07_10_00_0{}.{}",
            self.version,
            1000 + self.version
        );
        std::fs::create_dir(self.dir.join(&name)).unwrap();
        std::fs::write(self.dir.join(&name).join("hosts"), contents).unwrap();
        name
    }

    /// An update: the new version written, `..data` swapped to it atomically (a new link
    /// renamed over the old), the old version removed.
    fn update(&mut self, contents: &str) {
        let old = std::fs::read_link(self.dir.join("..data")).unwrap();
        let new = self.write_version(contents);
        symlink(&new, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        std::fs::remove_dir_all(self.dir.join(Path::new(&old))).unwrap();
    }
}

impl Drop for ConfigMapVolume {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_configmap_update_reloads_the_blocklist_and_a_broken_one_changes_nothing() {
    let mut volume = ConfigMapVolume::new("evil.example\n");
    let path = volume.path();
    let app = spawn_app(&[
        "--blocklist-file",
        path.to_str().unwrap(),
        "--blocklist-watch-interval",
        "100ms",
    ])
    .await;
    let reloads = |result: &'static str| {
        let app = &app;
        async move {
            app.scrape()
                .await
                .value("shortener_blocklist_reloads_total", &[("result", result)])
        }
    };
    assert_eq!(app.create_status("https://evil.example/").await, 400);
    assert_eq!(app.create_status("https://later.example/").await, 201);
    assert_eq!(
        app.scrape().await.value("shortener_blocklist_entries", &[]),
        1.0
    );

    volume.update("evil.example\nlater.example # found today\n");
    let blocked = eventually(Duration::from_secs(5), || async {
        app.create_status("https://sub.later.example/").await == 400
    })
    .await;
    assert!(blocked, "the updated ConfigMap was not read");
    assert_eq!(reloads("reloaded").await, 1.0);
    assert_eq!(
        app.scrape().await.value("shortener_blocklist_entries", &[]),
        2.0
    );

    // A broken update: refused once (it is read once per change), the list in force stays.
    assert_eq!(reloads("refused").await, 0.0);
    volume.update("this is not a host\n");
    let refused = eventually(Duration::from_secs(5), || async {
        reloads("refused").await == 1.0
    })
    .await;
    assert!(refused, "the broken file was not read");
    assert_eq!(app.create_status("https://later.example/").await, 400);
    assert_eq!(app.create_status("https://fine.example/").await, 201);

    // Fixed: read again.
    volume.update("fine.example\n");
    let fixed = eventually(Duration::from_secs(5), || async {
        app.create_status("https://fine.example/").await == 400
    })
    .await;
    assert!(fixed, "the fixed ConfigMap was not read");
    assert_eq!(app.create_status("https://later.example/").await, 201);
    assert_eq!(reloads("reloaded").await, 2.0);
    assert_eq!(reloads("refused").await, 1.0);
    app.shutdown().await;
}
