//! A fleet of three gateways in front of one origin: each object is fetched from the origin
//! once, by its owner; when a gateway stops, its keys go to the next owner and no client fails.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use crate::harness::*;

const TOKEN: &str = "fleet-token-0123456789";

/// A free port for a gateway that must know its peers' ports before they start. Picked below
/// the kernel's ephemeral range (32768–60999 by default), so no other test's port-0 bind can
/// take it between this pick and the gateway's own bind.
pub(crate) fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seed = std::process::id() % 12_000;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + (seed + n * 7) % 12_000;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A gateway of the fleet on `port`, its peers on `ports`.
pub(crate) fn member(origin: SocketAddr, port: u16, ports: &[u16], dir: &Scratch) -> Gateway {
    let peers: Vec<String> = ports
        .iter()
        .map(|p| format!("\"http://127.0.0.1:{p}\""))
        .collect();
    let file = dir.0.join(format!("gw-{port}.yaml"));
    std::fs::write(
        &file,
        format!(
            "origin: http://{origin}\nlisten: 127.0.0.1:{port}\nprefetch: {{next: 0}}\n\
             fleet: {{self: \"http://127.0.0.1:{port}\", peers: [{}], token: {TOKEN}}}\n",
            peers.join(", ")
        ),
    )
    .unwrap();
    let mut proc = Proc::spawn(&[
        "run",
        "-c",
        file.to_str().unwrap(),
        "--admin",
        "127.0.0.1:0",
    ]);
    let addr = proc.addr_after("listening http/1.1+h2c on ");
    let admin = proc.addr_after("listening admin on ");
    let start = Instant::now();
    while get(admin, "/live").0 != 200 {
        assert!(start.elapsed() < DEADLINE, "gateway never became live");
        std::thread::sleep(Duration::from_millis(20));
    }
    Gateway { proc, addr, admin }
}

fn objects() -> Vec<String> {
    let mut v: Vec<String> = (0..3).map(|r| format!("/vod/init-stream{r}.m4s")).collect();
    for r in 0..3 {
        for k in 1..=3 {
            v.push(format!("/vod/chunk-stream{r}-{k:05}.m4s"));
        }
    }
    v
}

#[test]
fn a_fleet_of_three_asks_the_origin_once_per_object_and_survives_a_member_leaving() {
    let (_o, origin) = origin(&[]);
    let dir = Scratch::new("fleet");
    let ports = [free_port(), free_port(), free_port()];
    let mut fleet: Vec<Gateway> = ports
        .iter()
        .map(|&p| member(origin, p, &ports, &dir))
        .collect();
    let addrs: Vec<SocketAddr> = fleet.iter().map(|g| g.addr).collect();
    // 60 clients spread over the three, each fetching the same 12 objects.
    let clients: Vec<_> = (0..60)
        .map(|i| {
            let gw = addrs[i % 3];
            std::thread::spawn(move || {
                for path in objects() {
                    assert_eq!(get(gw, &path).0, 200, "{path} via {gw}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    for path in objects() {
        assert_eq!(
            origin_hits(origin, &path),
            1,
            "{path}: one origin fetch for the fleet"
        );
    }
    let total = |fleet: &[Gateway], series: &str| {
        fleet.iter().map(|g| metric(g.admin, series)).sum::<f64>()
    };
    assert!(total(&fleet, r#"dashpush_fills_total{source="peer"}"#) >= 1.0);
    assert_eq!(
        total(&fleet, r#"dashpush_fills_total{source="origin"}"#),
        12.0
    );

    // One member stops while 40 clients of the other two fetch 20 new objects each: the keys
    // it owned go to their next owner, and none of those clients sees an error.
    let gone = fleet.pop().unwrap();
    let survivors: Vec<SocketAddr> = fleet.iter().map(|g| g.addr).collect();
    let clients: Vec<_> = (0..40)
        .map(|c| {
            let gw = survivors[c % 2];
            std::thread::spawn(move || {
                for i in 0..20 {
                    let path = format!("/vod/chunk-stream{}-00001.m4s?after={i}", c % 3);
                    assert_eq!(get(gw, &path).0, 200, "{path} via {gw}");
                }
            })
        })
        .collect();
    drop(gone);
    for c in clients {
        c.join().unwrap();
    }
    assert!(total(&fleet, r#"dashpush_fills_total{source="peer_fallback"}"#) >= 1.0);
    assert!(
        fleet
            .iter()
            .any(|g| metric(g.admin, r#"dashpush_fleet_peers{state="down"}"#) >= 1.0)
    );
}

#[test]
fn a_request_with_a_wrong_fleet_token_is_an_ordinary_client() {
    let (_o, origin) = origin(&[]);
    let dir = Scratch::new("fleet-token");
    let ports = [free_port(), free_port()];
    let a = member(origin, ports[0], &ports, &dir);
    // Claiming to be a peer without the token changes nothing: the answer is the same as
    // for anyone, and the header never reaches the origin (checked by the echo of headers
    // elsewhere; here: the request is served).
    let url = format!("http://{}/vod/init-stream0.m4s", a.addr);
    let (code, body, err) = tool(
        "curl",
        &[
            "-sS",
            "--fail",
            "-H",
            "x-dashpush-peer: wrong-token-000000",
            "-H",
            "x-dashpush-peer-host: evil.example",
            &url,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, demo_file("init-stream0.m4s"));
}

#[test]
fn peers_are_discovered_by_dns() {
    let (_o, origin) = origin(&[]);
    let dir = Scratch::new("fleet-dns");
    let (pa, pb) = (free_port(), free_port());
    // B is a static fleet of itself and A; A finds its peers by resolving localhost:PORT(B).
    let b = member(origin, pb, &[pa, pb], &dir);
    let file = dir.0.join("a.yaml");
    std::fs::write(
        &file,
        format!(
            "origin: http://{origin}\nlisten: 127.0.0.1:{pa}\nprefetch: {{next: 0}}\n\
             fleet: {{self: \"http://127.0.0.1:{pa}\", dns: \"localhost:{pb}\", token: {TOKEN}}}\n"
        ),
    )
    .unwrap();
    let mut proc = Proc::spawn(&[
        "run",
        "-c",
        file.to_str().unwrap(),
        "--admin",
        "127.0.0.1:0",
    ]);
    let a_addr = proc.addr_after("listening http/1.1+h2c on ");
    let a_admin = proc.addr_after("listening admin on ");
    let start = Instant::now();
    while metric(a_admin, r#"dashpush_fleet_peers{state="up"}"#) < 1.0 {
        assert!(start.elapsed() < DEADLINE, "no peer discovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every object through A: those B owns come from B, and the origin sees each once.
    for path in objects() {
        assert_eq!(get(a_addr, &path).0, 200, "{path}");
        assert_eq!(get(b.addr, &path).0, 200, "{path}");
        assert_eq!(origin_hits(origin, &path), 1, "{path}");
    }
    assert!(metric(a_admin, r#"dashpush_fills_total{source="peer"}"#) >= 1.0);
}
