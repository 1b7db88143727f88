//! A syslog collector for the benchmark: TCP, octet-counted frames (RFC 6587 §3.4.1), each
//! message parsed strictly as RFC 5424 (PRI, version, timestamp, header field charsets and
//! lengths, structured-data syntax and escapes, the BOM and UTF-8 of MSG). It keeps the occurrence
//! key of each message (`key` in the `kee@32473` element) and counts messages that do not parse,
//! with the first reasons.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

#[derive(Default)]
struct State {
    keys: Vec<String>,
    malformed: usize,
    reasons: Vec<String>,
}

#[derive(Clone)]
pub struct SyslogCollector {
    pub addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl SyslogCollector {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state: Arc<Mutex<State>> = Arc::default();
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(read_frames(conn, s.clone()));
            }
        });
        Ok(Self {
            addr,
            state,
            task: Arc::new(task),
        })
    }

    pub fn count(&self) -> usize {
        let s = self.state.lock().expect("collector state");
        s.keys.len() + s.malformed
    }

    pub fn keys(&self) -> Vec<String> {
        self.state.lock().expect("collector state").keys.clone()
    }

    /// Messages that are not RFC 5424, and the first reasons why.
    pub fn malformed(&self) -> (usize, Vec<String>) {
        let s = self.state.lock().expect("collector state");
        (s.malformed, s.reasons.clone())
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn read_frames(mut conn: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        let mut parsed = Vec::new();
        loop {
            let rest = &buf[start..];
            let Some(sp) = rest.iter().take(11).position(|b| *b == b' ') else {
                if rest.len() > 10 {
                    record(&state, vec![Err("frame length missing".into())]);
                    return;
                }
                break;
            };
            let len = match std::str::from_utf8(&rest[..sp])
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
            {
                Some(l) => l,
                None => {
                    record(&state, vec![Err("frame length is not a number".into())]);
                    return;
                }
            };
            if rest.len() < sp + 1 + len {
                break;
            }
            parsed.push(parse(&rest[sp + 1..sp + 1 + len]));
            start += sp + 1 + len;
        }
        buf.drain(..start);
        record(&state, parsed);
    }
}

fn record(state: &Mutex<State>, parsed: Vec<Result<String, String>>) {
    let mut s = state.lock().expect("collector state");
    for p in parsed {
        match p {
            Ok(key) => s.keys.push(key),
            Err(why) => {
                s.malformed += 1;
                if s.reasons.len() < 5 {
                    s.reasons.push(why);
                }
            }
        }
    }
}

fn print_ascii(field: &[u8], max: usize, what: &str) -> Result<(), String> {
    if field.is_empty() || field.len() > max || !field.iter().all(|b| (33..=126).contains(b)) {
        return Err(format!(
            "{what} {:?} is not 1-{max} printable ASCII characters",
            String::from_utf8_lossy(field)
        ));
    }
    Ok(())
}

/// The occurrence key of one RFC 5424 message, or why it is not one.
pub fn parse(msg: &[u8]) -> Result<String, String> {
    let mut fields = msg.splitn(7, |b| *b == b' ');
    let mut next = |what: &str| fields.next().ok_or_else(|| format!("no {what}"));
    let head = next("PRI")?;
    let pri = head
        .strip_prefix(b"<")
        .and_then(|h| h.strip_suffix(b">1"))
        .ok_or("PRI/VERSION is not <N>1")?;
    let pri: u16 = std::str::from_utf8(pri)
        .ok()
        .filter(|p| (1..=3).contains(&p.len()) && (p.len() == 1 || !p.starts_with('0')))
        .and_then(|p| p.parse().ok())
        .ok_or("PRI is not a number")?;
    if pri > 191 {
        return Err(format!("PRI {pri} > 191"));
    }
    let ts = next("TIMESTAMP")?;
    if ts != b"-" {
        let ts = std::str::from_utf8(ts).map_err(|_| "TIMESTAMP not ASCII")?;
        let frac = ts
            .split_once('.')
            .map(|(_, f)| f.trim_end_matches(|c: char| !c.is_ascii_digit()).len())
            .unwrap_or(0);
        if frac > 6 || !ts.contains('T') {
            return Err(format!("TIMESTAMP {ts:?} is not RFC 5424"));
        }
        ts.parse::<jiff::Timestamp>()
            .map_err(|e| format!("TIMESTAMP {ts:?}: {e}"))?;
    }
    print_ascii(next("HOSTNAME")?, 255, "HOSTNAME")?;
    print_ascii(next("APP-NAME")?, 48, "APP-NAME")?;
    print_ascii(next("PROCID")?, 128, "PROCID")?;
    print_ascii(next("MSGID")?, 32, "MSGID")?;
    let rest = next("STRUCTURED-DATA")?;
    let (key, after) = structured_data(rest)?;
    match after {
        [] => {}
        [b' ', msg @ ..] => {
            let body = msg
                .strip_prefix(b"\xEF\xBB\xBF".as_slice())
                .ok_or("MSG without the BOM")?;
            std::str::from_utf8(body).map_err(|e| format!("MSG is not UTF-8: {e}"))?;
        }
        _ => return Err("no space after STRUCTURED-DATA".into()),
    }
    key.ok_or_else(|| "no kee@32473 key".into())
}

/// Parses STRUCTURED-DATA at the start of `s`: the `key` of `kee@32473`, and what follows.
fn structured_data(s: &[u8]) -> Result<(Option<String>, &[u8]), String> {
    if let Some(after) = s.strip_prefix(b"-") {
        return Ok((None, after));
    }
    let mut key = None;
    let mut i = 0;
    if s.first() != Some(&b'[') {
        return Err("STRUCTURED-DATA is neither - nor [".into());
    }
    let name_char = |b: u8| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"' | b' ');
    while s.get(i) == Some(&b'[') {
        i += 1;
        let id_start = i;
        while s.get(i).is_some_and(|b| name_char(*b)) {
            i += 1;
        }
        let id = &s[id_start..i];
        if id.is_empty() || id.len() > 32 {
            return Err("bad SD-ID".into());
        }
        loop {
            match s.get(i) {
                Some(b']') => {
                    i += 1;
                    break;
                }
                Some(b' ') => i += 1,
                _ => return Err("SD-ELEMENT not closed".into()),
            }
            let name_start = i;
            while s.get(i).is_some_and(|b| name_char(*b)) {
                i += 1;
            }
            let name = &s[name_start..i];
            if name.is_empty() || name.len() > 32 || s.get(i) != Some(&b'=') {
                return Err("bad PARAM-NAME".into());
            }
            i += 1;
            if s.get(i) != Some(&b'"') {
                return Err("PARAM-VALUE not quoted".into());
            }
            i += 1;
            let mut value = Vec::new();
            loop {
                match s.get(i) {
                    None => return Err("PARAM-VALUE not closed".into()),
                    Some(b'\\') if matches!(s.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                        value.push(s[i + 1]);
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b']') => return Err("unescaped ] in PARAM-VALUE".into()),
                    Some(b) => {
                        value.push(*b);
                        i += 1;
                    }
                }
            }
            let value = String::from_utf8(value).map_err(|_| "PARAM-VALUE is not UTF-8")?;
            if id == b"kee@32473" && name == b"key" {
                key = Some(value);
            }
        }
    }
    Ok((key, &s[i..]))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn strict_rfc5424() {
        let ok = "<132>1 2025-01-02T03:04:05.123456Z host app 42 BackOff [kee@32473 key=\"u:3\" name=\"a\\\"b\\]\"] \u{feff}{}";
        assert_eq!(parse(ok.as_bytes()), Ok("u:3".into()));
        assert!(parse(b"<132>1 - host app - - [kee@32473 key=\"u:1\"]").is_ok());
        for bad in [
            "<192>1 - h a - - [kee@32473 key=\"u\"]",
            "<13> - h a - - [kee@32473 key=\"u\"]",
            "<13>1 2025-01-02 h a - - [kee@32473 key=\"u\"]",
            "<13>1 2025-01-02T03:04:05.1234567Z h a - - [kee@32473 key=\"u\"]",
            "<13>1 - h a - - [kee@32473 key=\"a]b\"]",
            "<13>1 - h a - - [kee@32473 key=\"u\"] no-bom",
            "<13>1 - h a - - -",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
