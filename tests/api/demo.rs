//! `dibop demo` runs the SPEC's "Vehicle lookup" against its sandbox dealer system and prints a
//! working login.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::dibop_binary;

#[test]
fn the_demo_runs_the_vehicle_lookup_and_prints_a_login() {
    let data = tempfile::tempdir().expect("data dir");
    let mut child = Command::new(dibop_binary())
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("DIBOP_DATA_DIR", data.path())
        .env("DATABASE_URL", "")
        .env("DIBOP_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting dibop demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut output = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let done = line.starts_with("Serving until");
                output.push(line);
                if done {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = output.join("\n");
    assert!(text.contains("ran for VIN 1HGCM82633A004352: \"success\""), "{text}");
    assert!(text.contains("\"stock_number\": \"STK-1001\""), "{text}");
    assert!(text.contains("Login:   admin@dibop.local / "), "{text}");
    assert!(text.contains("http "), "the trace summary lists the HTTP calls: {text}");
}
