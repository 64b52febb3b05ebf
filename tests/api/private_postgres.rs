//! A Postgres cluster of the test's own (initdb in a temporary directory, on an ephemeral
//! port): to stop and start it under load, or to serve TLS with the test's own certificates.

use crate::certs::Issued;

/// A Postgres cluster of the test's own, on an ephemeral port, that it may stop and start.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
    /// More `-c name=value` server options (TLS).
    options: String,
}

impl PrivatePostgres {
    pub fn create() -> Self {
        Self::create_with(None)
    }

    /// A cluster with `ssl = on`, presenting `server` (a certificate of the test's CA).
    pub fn create_with_tls(server: &Issued) -> Self {
        Self::create_with(Some(server))
    }

    fn create_with(tls: Option<&Issued>) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .find(|bin| bin.join("pg_ctl").exists())
            .expect("pg_ctl");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cluster = Self {
            dir,
            port,
            bin,
            options: String::new(),
        };
        if let Some(server) = tls {
            // The server refuses a key file that others may read.
            let (cert, key) = (
                cluster.dir.path().join("server.crt"),
                cluster.dir.path().join("server.key"),
            );
            std::fs::copy(&server.cert_file, &cert).unwrap();
            std::fs::copy(&server.key_file, &key).unwrap();
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            cluster.options = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            );
        }
        if cluster.as_root() {
            let chown = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(cluster.dir.path())
                .status();
            assert!(chown.unwrap().success());
        }
        let data = cluster.data().display().to_string();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"],
        );
        cluster.start();
        cluster
    }

    fn as_root(&self) -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// A server binary's command, as the `postgres` user when the tests run as root.
    fn command(&self, tool: &str) -> std::process::Command {
        let program = self.bin.join(tool);
        if self.as_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            std::process::Command::new(program)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let output = self
            .command(tool)
            .args(args)
            .output()
            .expect("run a PostgreSQL tool");
        assert!(
            output.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn start(&self) {
        let (data, log) = (
            self.data().display().to_string(),
            self.dir.path().join("log").display().to_string(),
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1{}",
            self.port,
            self.dir.path().display(),
            self.options
        );
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        );
    }

    pub fn stop(&self) {
        let data = self.data().display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}
