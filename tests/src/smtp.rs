//! A private SMTP server per test (`tests/smtp_sink.py`, aiosmtpd), on its own port, that can
//! be told to refuse; it records every accepted message for the test to read.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    out: PathBuf,
}

/// One accepted message.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Mail {
    pub to: Vec<String>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub data: String,
    pub auth: Option<String>,
}

impl SmtpSink {
    /// Starts a sink on any free port; `args` are the script's (`--tempfail ADDR:N`,
    /// `--reject ADDR`, `--auth USER:PASS`).
    pub fn start(args: &[&str]) -> Self {
        Self::on_port(0, args)
    }

    pub fn on_port(port: u16, args: &[&str]) -> Self {
        let out = std::env::temp_dir().join(format!(
            "ferry-smtp-{:012x}.jsonl",
            rand::random::<u64>() >> 16
        ));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (scripts/services.sh up smtp installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the SMTP sink did not start: {line:?}"));
        Self { child, port, out }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        // The sink may be in the middle of writing a line: only finished lines count.
        let finished = text.rfind('\n').map_or("", |end| &text[..end]);
        finished
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// How many messages went to `to`.
    pub fn count_to(&self, to: &str) -> usize {
        self.mails()
            .iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to)))
            .count()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

/// A loopback port nothing listens on (for "the server is down").
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
