//! The `webpubsub-emulator` binary as a child process of the scale workload: started on a
//! free port, its connection string read from its first line, client URLs and REST calls
//! signed with the access key it printed.

use crate::common::*;
use crate::scale::SCALE_HUB;
use crate::script::repo;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `webpubsub-emulator` process, killed when dropped.
pub struct EmulatorProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`
    endpoint: String,
    key: String,
    agent: ureq::Agent,
}

/// The emulator binary of this build's profile, built first when run through cargo (a no-op
/// when it is up to date).
pub fn emulator_binary() -> R<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/examples/bench → target/<profile>/webpubsub-emulator
    let profile_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .ok_or("no profile directory")?;
    let bin = profile_dir.join(format!(
        "webpubsub-emulator{}",
        std::env::consts::EXE_SUFFIX
    ));
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.current_dir(repo()).args([
            "build",
            "-p",
            "webpubsub-emulator",
            "--bin",
            "webpubsub-emulator",
        ]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building webpubsub-emulator failed ({status})"));
        }
    }
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "no {} (cargo build --release -p webpubsub-emulator)",
            bin.display()
        ))
    }
}

impl EmulatorProcess {
    pub fn start(bin: &Path, stderr_name: &str) -> R<EmulatorProcess> {
        let stderr = std::fs::File::create(repo().join("target").join(stderr_name))
            .map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut emu = EmulatorProcess {
            child,
            endpoint: String::new(),
            key: String::new(),
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the emulator printed no connection string".to_owned())?;
        let field = |name: &str| {
            line.trim()
                .split(';')
                .find_map(|kv| kv.strip_prefix(name))
                .map(str::to_owned)
                .ok_or_else(|| format!("no {name} in the connection string"))
        };
        emu.endpoint = field("Endpoint=")?.trim_end_matches('/').to_owned();
        emu.key = field("AccessKey=")?;
        Ok(emu)
    }

    /// A client access URL of the scale hub: no user, no roles (receiving needs none).
    pub fn client_url(&self) -> String {
        let aud = format!("{}/client/hubs/{SCALE_HUB}", self.endpoint);
        let token = webpubsub_emulator::rest_token(&self.key, &aud, Duration::from_secs(4 * 3600));
        let ws = self.endpoint.replacen("http://", "ws://", 1);
        format!("{ws}/client/hubs/{SCALE_HUB}?access_token={token}")
    }

    /// `POST /api/hubs/scale/:send`: `text` to every connection of the hub.
    pub fn broadcast(&self, text: String) -> R<()> {
        let url = format!("{}/api/hubs/{SCALE_HUB}/:send", self.endpoint);
        let token = webpubsub_emulator::rest_token(&self.key, &url, Duration::from_secs(300));
        self.agent
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .content_type("text/plain")
            .send(text)
            .map(|_| ())
            .map_err(|e| format!("REST broadcast: {e}"))
    }

    /// Open files of the emulator process, and their limit.
    pub fn files(&self) -> (usize, u64) {
        let pid = self.child.id();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        // "Max open files            20000                20000                files"
        let limit = std::fs::read_to_string(format!("/proc/{pid}/limits"))
            .ok()
            .and_then(|l| {
                l.lines()
                    .find_map(|l| l.strip_prefix("Max open files"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0);
        (fds, limit)
    }

    /// Threads, RSS and open files of the emulator process.
    pub fn usage(&self) -> String {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        format!(
            "{} threads, {:.0} MiB RSS, {fds} open files",
            field("Threads:"),
            field("VmRSS:") / 1024.0
        )
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
