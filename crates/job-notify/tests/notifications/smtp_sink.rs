//! A small SMTP server for tests: it speaks enough SMTP for a real client (EHLO/HELO,
//! MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT), accepts every message
//! and records its envelope and content. Plus a little MIME reading to check the parts.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The EHLO/HELO argument.
    pub helo: String,
    /// The MAIL FROM address (without angle brackets and parameters).
    pub mail_from: String,
    /// The RCPT TO addresses, in order.
    pub rcpt_to: Vec<String>,
    /// The message after dot-unstuffing, lines joined with `\n`.
    pub data: String,
}

/// A decoded MIME part.
#[derive(Debug, Clone)]
pub struct Part {
    /// Its `Content-Type` value.
    pub content_type: String,
    /// Its body after the transfer decoding.
    pub body: String,
}

impl ReceivedMail {
    fn split(text: &str) -> (Vec<(String, String)>, String) {
        let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        (headers, body.to_owned())
    }

    /// A top-level header, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        Self::split(&self.data)
            .0
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The parts of a multipart message, decoded.
    pub fn parts(&self) -> Vec<Part> {
        let content_type = self.header("Content-Type").unwrap_or_default();
        let Some(boundary) = content_type
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("boundary="))
            .next()
            .map(|b| b.trim_matches('"').to_owned())
        else {
            return Vec::new();
        };
        let (_, body) = Self::split(&self.data);
        let delimiter = format!("--{boundary}");
        body.split(&delimiter)
            .skip(1)
            .filter(|chunk| !chunk.starts_with("--"))
            .map(|chunk| {
                let (headers, body) = Self::split(chunk.trim_start_matches('\n'));
                let get = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let body = body.strip_suffix('\n').unwrap_or(&body).to_owned();
                Part {
                    content_type: get("Content-Type"),
                    body: decode(&get("Content-Transfer-Encoding"), &body),
                }
            })
            .collect()
    }

    /// The decoded part whose content type starts with `mime` (`text/plain`, `text/html`).
    pub fn part(&self, mime: &str) -> Option<String> {
        self.parts()
            .into_iter()
            .find(|p| p.content_type.starts_with(mime))
            .map(|p| p.body)
    }
}

fn decode(encoding: &str, body: &str) -> String {
    match encoding.to_ascii_lowercase().as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => decode_base64(body),
        _ => body.to_owned(),
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let mut out = Vec::new();
    let lines: Vec<&str> = body.split('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let bytes = line.trim_end_matches('\r').as_bytes();
        let soft_break = bytes.last() == Some(&b'=');
        let bytes = if soft_break {
            &bytes[..bytes.len() - 1]
        } else {
            bytes
        };
        let mut j = 0;
        while j < bytes.len() {
            if bytes[j] == b'=' && j + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[j + 1..j + 3]).unwrap_or("");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    j += 3;
                    continue;
                }
            }
            out.push(bytes[j]);
            j += 1;
        }
        if !soft_break && i + 1 < lines.len() {
            out.push(b'\n');
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_base64(body: &str) -> String {
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in body.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        buffer = (buffer << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The sink; stops when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<ReceivedMail>>>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_acking_after(Duration::ZERO).await
    }

    /// A sink that keeps each message at once but acknowledges it only after `delay`, as
    /// a busy relay does.
    pub async fn start_acking_after(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("sink address");
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&mails);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, Arc::clone(&store), delay));
            }
        });
        Self { addr, mails, task }
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every message received so far.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived, up to `timeout`; returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let mails = self.mails();
            if mails.len() >= n || Instant::now() >= deadline {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn address(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_owned(),
        _ => arg.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

async fn session(stream: TcpStream, store: Arc<Mutex<Vec<ReceivedMail>>>, ack_delay: Duration) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    macro_rules! reply {
        ($text:expr) => {
            if write.write_all($text.as_bytes()).await.is_err() {
                return;
            }
        };
    }
    reply!("220 sink.test ESMTP ready\r\n");
    let mut helo = String::new();
    let mut from: Option<String> = None;
    let mut rcpt: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            helo = command[4..].trim().to_owned();
            reply!("250-sink.test greets you\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
        } else if upper.starts_with("HELO") {
            helo = command[4..].trim().to_owned();
            reply!("250 sink.test\r\n");
        } else if upper.starts_with("MAIL FROM:") {
            from = Some(address(&command[10..]));
            rcpt.clear();
            reply!("250 OK\r\n");
        } else if upper.starts_with("RCPT TO:") {
            if from.is_none() {
                reply!("503 MAIL first\r\n");
                continue;
            }
            rcpt.push(address(&command[8..]));
            reply!("250 OK\r\n");
        } else if upper == "DATA" {
            if from.is_none() || rcpt.is_empty() {
                reply!("503 need MAIL and RCPT first\r\n");
                continue;
            }
            reply!("354 end data with <CR><LF>.<CR><LF>\r\n");
            let mut lines = Vec::new();
            loop {
                line.clear();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let text = line.trim_end_matches(['\r', '\n']);
                if text == "." {
                    break;
                }
                // Dot-unstuffing (RFC 5321 4.5.2).
                lines.push(text.strip_prefix('.').unwrap_or(text).to_owned());
            }
            store.lock().unwrap().push(ReceivedMail {
                helo: helo.clone(),
                mail_from: from.take().unwrap_or_default(),
                rcpt_to: std::mem::take(&mut rcpt),
                data: lines.join("\n"),
            });
            tokio::time::sleep(ack_delay).await;
            reply!("250 OK queued\r\n");
        } else if upper == "RSET" {
            from = None;
            rcpt.clear();
            reply!("250 OK\r\n");
        } else if upper.starts_with("NOOP") {
            reply!("250 OK\r\n");
        } else if upper == "QUIT" {
            reply!("221 bye\r\n");
            return;
        } else {
            reply!("502 command not implemented\r\n");
        }
    }
}
