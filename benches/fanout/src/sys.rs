//! Process CPU time (ours and the servers'), and a minimal HTTP/1.1 GET for the control
//! endpoints (origin hit counters, gateway metrics).

use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};
use nix::unistd::{SysconfVar, sysconf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// CPU seconds (user + system) this process has used so far, all threads.
pub fn own_cpu_s() -> Result<f64, String> {
    let u = getrusage(UsageWho::RUSAGE_SELF).map_err(|e| format!("getrusage: {e}"))?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(u.user_time()) + secs(u.system_time()))
}

fn clock_ticks() -> f64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// (ppid, utime + stime in seconds) of a process from /proc/PID/stat.
fn proc_stat(pid: u32) -> Result<(u32, f64), String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name is in parentheses and may contain spaces: fields follow the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) … utime(14) stime(15) → indices 0, 1, 11, 12.
    let field = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat: no field {}", i + 3))
    };
    let ticks = field(11)? + field(12)?;
    Ok((field(1)? as u32, ticks as f64 / clock_ticks()))
}

/// Write-type system calls (write, writev, sendmsg, …) a process has made, from /proc/PID/io
/// (0 if unreadable).
fn write_syscalls(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("syscw:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| proc_stat(p).is_ok_and(|(ppid, _)| ppid == pid))
        .collect()
}

/// The server processes whose CPU is measured: each pid given, and with `with_children` their
/// children too (nginx's master and its workers).
#[derive(Clone, Debug)]
pub struct ServerProcs {
    pub pids: Vec<u32>,
    pub with_children: bool,
}

impl ServerProcs {
    /// Per process, CPU seconds and write system calls so far. Processes are listed anew on
    /// every reading; one present at only one reading is ignored by [`delta`].
    pub fn sample(&self) -> Result<Vec<ProcSample>, String> {
        let mut out = Vec::new();
        let one = |pid: u32| -> Result<ProcSample, String> {
            Ok(ProcSample {
                pid,
                cpu_s: proc_stat(pid)?.1,
                writes: write_syscalls(pid),
            })
        };
        for &pid in &self.pids {
            out.push(one(pid)?);
            if self.with_children {
                out.extend(children_of(pid).into_iter().filter_map(|c| one(c).ok()));
            }
        }
        Ok(out)
    }
}

/// One process's counters at one time.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    pid: u32,
    cpu_s: f64,
    writes: u64,
}

/// CPU seconds and write system calls between two samples, summed over the processes present
/// in both.
pub fn delta(before: &[ProcSample], after: &[ProcSample]) -> (f64, u64) {
    after
        .iter()
        .filter_map(|a| {
            let b = before.iter().find(|b| b.pid == a.pid)?;
            Some((
                (a.cpu_s - b.cpu_s).max(0.0),
                a.writes.saturating_sub(b.writes),
            ))
        })
        .fold((0.0, 0), |(c, w), (dc, dw)| (c + dc, w + dw))
}

/// `GET http://addr{path}` over HTTP/1.1; returns the status and body (Content-Length,
/// chunked, or read to close).
pub async fn http1_get(addr: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    let fut = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write to {addr}: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        parse_http1(&raw).map_err(|e| format!("GET http://{addr}{path}: {e}"))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| format!("GET http://{addr}{path}: timed out"))?
}

fn parse_http1(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete response head")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "response head not UTF-8")?;
    let body = &raw[head_end + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status code")?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("truncated chunk size")?;
            let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size".to_string())?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                return Ok((status, out));
            }
            let chunk = rest.get(..size).ok_or("truncated chunk")?;
            out.extend_from_slice(chunk);
            rest = rest.get(size + 2..).ok_or("truncated chunk")?;
        }
    }
    match header("content-length").map(str::parse::<usize>) {
        Some(Ok(n)) => Ok((status, body.get(..n).ok_or("truncated body")?.to_vec())),
        Some(Err(_)) => Err("bad Content-Length".into()),
        None => Ok((status, body.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_and_sized_bodies() {
        let r = parse_http1(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        assert_eq!(r, Ok((200, b"abcde".to_vec())));
        let r = parse_http1(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno");
        assert_eq!(r, Ok((404, b"no".to_vec())));
    }

    #[test]
    fn reads_own_process_cpu() {
        let me = std::process::id();
        let s = ServerProcs {
            pids: vec![me],
            with_children: false,
        };
        let a = s.sample().expect("sample");
        assert_eq!(a.len(), 1);
        assert!(own_cpu_s().expect("rusage") >= 0.0);
    }
}
